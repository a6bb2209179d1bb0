"""Guard rails of time integration: times, point counts, grids, quantities, NaN, negatives, never NaN out."""
from __future__ import annotations

import numpy as np
import pytest

from VoxelDosimetryLib.errors import GridMismatchError, InputFormatError, UnitError
from VoxelDosimetryLib.kinetics.tia import MODELS, integrate_activity, integrate_dose_rate
from VoxelDosimetryLib.volume.volume import Volume

TIMES_S = [4 * 3600.0, 24 * 3600.0, 96 * 3600.0]


def image(value=1000.0, shape=(2, 2, 2), quantity="activity_concentration", origin=(0, 0, 0), unit=None):
    return Volume(np.full(shape, value, dtype=np.float32), spacing=(4, 4, 4), origin=origin,
                  quantity=quantity, unit=unit)


def three(**kwargs):
    return [image(1000.0, **kwargs), image(800.0, **kwargs), image(300.0, **kwargs)]


@pytest.mark.parametrize("times, message", [
    ([4 * 3600.0, 4 * 3600.0, 96 * 3600.0], "same time"),
    ([24 * 3600.0, 4 * 3600.0, 96 * 3600.0], "increase"),
    ([0.0, 24 * 3600.0, 96 * 3600.0], "> 0"),
    ([-5.0, 24 * 3600.0, 96 * 3600.0], "> 0"),
    ([4 * 3600.0, float("nan"), 96 * 3600.0], "finite"),
    ([4 * 3600.0, 24 * 3600.0], "one time"),
])
def test_bad_times_are_refused_with_the_timepoint_named(times, message):
    with pytest.raises(InputFormatError, match=message):
        integrate_activity(three(), times, "Lu-177")


def test_fewer_points_than_parameters():
    with pytest.raises(InputFormatError, match="at least 3 timepoints"):
        integrate_activity(three()[:2], TIMES_S[:2], "Lu-177", "bi_exp")
    with pytest.raises(InputFormatError, match="at least 2 timepoints"):
        integrate_activity(three()[:1], TIMES_S[:1], "Lu-177", "mono_exp")
    with pytest.raises(InputFormatError, match="exactly 1"):
        integrate_activity(three(), TIMES_S, "Lu-177", "hanscheid")
    with pytest.raises(InputFormatError, match="tail_points"):
        integrate_activity(three(), TIMES_S, "Lu-177", "trapezoid_fit_tail", tail_points=4)


def test_grid_mismatch_names_the_timepoint_and_suggests_register():
    images = three()
    images[2] = image(300.0, origin=(0, 0, 8))
    with pytest.raises(GridMismatchError, match=r"timepoint 3 \(96 h\).*voxeldosimetry register"):
        integrate_activity(images, TIMES_S, "Lu-177")


def test_wrong_quantities_and_units():
    with pytest.raises(UnitError, match="--sensitivity-cps-per-mbq"):
        integrate_activity(three(quantity="counts"), TIMES_S, "Lu-177")
    with pytest.raises(UnitError, match="--quantity"):
        integrate_activity(three(quantity="unknown"), TIMES_S, "Lu-177")
    with pytest.raises(UnitError, match="dose_rate"):
        integrate_dose_rate(three(), TIMES_S, "Lu-177")
    mixed = three()
    mixed[1] = image(1.0, quantity="activity", unit="MBq")
    with pytest.raises(UnitError, match="same quantity"):
        integrate_activity(mixed, TIMES_S, "Lu-177")


def test_scaled_units_are_converted():
    kbq = [image(1.0, unit="kBq/mL"), image(0.8, unit="kBq/mL"), image(0.3, unit="kBq/mL")]
    a = integrate_activity(kbq, TIMES_S, "Lu-177").tia.array
    b = integrate_activity(three(), TIMES_S, "Lu-177").tia.array
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_nan_is_refused():
    images = three()
    bad = images[1].array.copy()
    bad[0, 0, 0] = np.nan
    images[1] = images[1].with_array(bad)
    with pytest.raises(InputFormatError, match=r"timepoint 2 \(24 h\).*NaN"):
        integrate_activity(images, TIMES_S, "Lu-177")


def test_negative_voxels_policy_is_reported_or_refused():
    images = three()
    arr = images[0].array.copy()
    arr[0, 0, :] = -5.0
    images[0] = images[0].with_array(arr)
    result = integrate_activity(images, TIMES_S, "Lu-177")
    assert result.info["negative_voxels_set_to_zero"] == [2, 0, 0]
    assert result.info["most_negative_value"][0] == -5.0
    assert images[0].array[0, 0, 0] == -5.0  # caller's data untouched
    zeroed = [images[0].with_array(np.maximum(arr, 0))] + images[1:]
    np.testing.assert_array_equal(result.tia.array, integrate_activity(zeroed, TIMES_S, "Lu-177").tia.array)
    with pytest.raises(InputFormatError, match="negative"):
        integrate_activity(images, TIMES_S, "Lu-177", negative_policy="error")


def test_unknown_model_option_nuclide():
    with pytest.raises(InputFormatError, match="trapezoid"):
        integrate_activity(three(), TIMES_S, "Lu-177", "quadratic")
    with pytest.raises(InputFormatError, match="tail_point"):
        integrate_activity(three(), TIMES_S, "Lu-177", "trapezoid", tail_point=2)
    with pytest.raises(Exception, match="Lu-177"):
        integrate_activity(three(), TIMES_S, "Lu-999")


def test_decay_corrected_images_are_refused():
    images = three()
    images[1] = images[1].replace(metadata={"calibration": {"decay_corrected_to_reference": True}})
    with pytest.raises(InputFormatError, match="decay-corrected"):
        integrate_activity(images, TIMES_S, "Lu-177")
    images = three()
    images[0] = images[0].replace(metadata={"nm": {"decay_correction": "ADMIN"}})
    with pytest.raises(InputFormatError, match="timepoint 1"):
        integrate_activity(images, TIMES_S, "Lu-177")


@pytest.mark.parametrize("model", [m for m in MODELS if m != "hanscheid"])
def test_adversarial_voxels_never_give_nan_or_inf(model):
    columns = np.array([
        [0.0, 0.0, 0.0],           # background
        [0.0, 0.0, 7.0],           # only the last point
        [5.0, 0.0, 0.0],           # only the first point
        [1e30, 1e-30, 1e-30],      # absurd drop
        [1e-30, 1e30, 1e-30],      # absurd spike
        [1.0, 1.0, 1.0],           # flat
        [1.0, 2.0, 4.0],           # rising
        [3e4, 1e4, 1e2],           # ordinary
    ]).T
    images = [Volume(c.reshape(1, 1, -1)) .replace(quantity="activity_concentration", unit="Bq/mL")
              for c in columns]
    times = [60.0, 3600.0, 7200.0]
    result = integrate_activity(images, times, "Lu-177", model)
    assert np.all(np.isfinite(result.tia.array)) and np.all(result.tia.array >= 0)
    assert result.tia.array[0, 0, 0] == 0.0
    assert all(np.all(np.isfinite(p)) for p in result.parameters.values())
    assert np.isfinite(result.info["tail_fraction"])
