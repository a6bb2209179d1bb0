"""The value policy at the dose boundary (dose/value_policy.py, volume/source_values.py): every method, and tia."""
from __future__ import annotations

import numpy as np
import pytest

from VoxelDosimetryLib.dose import DoseRequest, compute_dose
from VoxelDosimetryLib.dose.led import MEV_TO_J
from VoxelDosimetryLib.dose.registry import DoseMethod, DoseResult, register_dose_method
from VoxelDosimetryLib.dose.value_policy import DoseResultError
from VoxelDosimetryLib.kinetics.tia import integrate_activity
from VoxelDosimetryLib.physics import ct_to_density, get_nuclide
from VoxelDosimetryLib.qc import collect_qc
from VoxelDosimetryLib.volume import Volume
from VoxelDosimetryLib.volume.source_values import SourceValueError, checked_source

SPACING = (4.0, 4.0, 4.0)
ORIGIN = (-10.0, 20.0, 30.0)


def phantom() -> tuple[Volume, Volume]:
    """A 12^3 CT: water body (0 HU) in the middle 8^3, air (-1000 HU) around; activity 1000 Bq/mL in the body."""
    hu = np.full((12, 12, 12), -1000.0, np.float32)
    hu[2:10, 2:10, 2:10] = 0.0
    activity = np.zeros_like(hu)
    activity[2:10, 2:10, 2:10] = 1000.0
    ct = Volume(hu, spacing=SPACING, origin=ORIGIN, quantity="ct", unit="HU")
    return ct, ct.with_array(activity, quantity="activity_concentration", unit="Bq/mL")


def led(source: Volume, ct: Volume, **kwargs):
    return compute_dose("led", DoseRequest(source, ct, **kwargs))


def test_non_finite_source_is_refused_with_count_and_position():
    ct, activity = phantom()
    array = activity.array.copy()
    array[3, 4, 5] = np.nan
    array[6, 6, 6] = np.inf
    bad = activity.with_array(array)
    with pytest.raises(SourceValueError) as err:
        led(bad, ct)
    message = str(err.value)
    x, y, z = np.array(ORIGIN) + np.array([5, 4, 3]) * 4.0  # first bad voxel (i=5, j=4, k=3), identity direction
    assert "2 NaN or infinite voxel(s)" in message and "(5, 4, 3)" in message
    assert f"LPS ({x:.1f}, {y:.1f}, {z:.1f}) mm" in message
    assert np.isnan(bad.array[3, 4, 5])  # the input is untouched


def test_non_finite_ct_is_refused():
    ct, activity = phantom()
    hu = ct.array.copy()
    hu[0, 0, 0] = np.nan
    with pytest.raises(SourceValueError, match="The CT holds 1 NaN"):
        led(activity, ct.with_array(hu))


def test_small_negatives_are_zeroed_counted_and_warned():
    ct, activity = phantom()
    array = activity.array.copy()
    array[4, 4, 4] = -50.0  # 50 against 512 * 1000 positive: 0.01 %
    array[5, 5, 5] = -25.0
    noisy = activity.with_array(array)
    with collect_qc() as log:
        result = led(noisy, ct)
    assert "negative_voxels_zeroed" in log.codes()
    warning = next(w for w in log if w.code == "negative_voxels_zeroed")
    assert warning.details["voxels"] == 2
    assert warning.details["negative_fraction_of_positive"] == pytest.approx(75.0 / (510 * 1000.0))
    assert result.info["value_policy"]["negative_voxels_zeroed"] == 2
    clipped = led(activity.with_array(np.clip(array, 0, None)), ct)
    np.testing.assert_array_equal(result.dose.array, clipped.dose.array)
    assert array[4, 4, 4] == -50.0 and noisy.array[4, 4, 4] == -50.0  # the caller's volume is unchanged


def test_large_negative_mass_is_refused_and_the_limit_is_overridable():
    ct, activity = phantom()
    array = activity.array.copy()
    array[2:4] *= -1.0  # 2 of 8 body slices negative: 128000 against 384000 = 33 %
    with pytest.raises(SourceValueError, match=r"33\.3 % of the positive.*max_negative_fraction"):
        led(activity.with_array(array), ct)
    result = led(activity.with_array(array), ct, max_negative_fraction=0.5)
    assert result.info["value_policy"]["negative_voxels_zeroed"] == 2 * 8 * 8


@pytest.mark.parametrize("method", ["led", "mc"])
def test_all_negative_map_is_refused_by_every_method(method):
    ct, activity = phantom()
    with pytest.raises(SourceValueError, match="all of its non-zero voxels are negative"):
        compute_dose(method, DoseRequest(activity.with_array(-activity.array), ct, histories=1000))


def test_activity_in_air_is_reported_and_gets_no_dose():
    ct, activity = phantom()
    array = activity.array.copy()
    array[0, 0, 0] = 512.0 * 1000.0 / 99.0  # 1 % of the total in an air voxel outside the body
    with collect_qc() as log:
        result = led(activity.with_array(array), ct)
    warning = next(w for w in log if w.code == "activity_in_air")
    assert warning.details["fraction_of_total"] == pytest.approx(0.01)
    assert result.info["value_policy"]["activity_in_air_fraction"] == pytest.approx(0.01)
    assert result.dose.array[0, 0, 0] == 0.0
    # tissue voxels keep the LED dose exactly: A E / m
    energy_j = get_nuclide("Lu-177").energy_budget()["non_penetrating"] * MEV_TO_J  # LED default: electrons
    density = float(ct_to_density(ct).array[5, 5, 5])
    assert result.dose.array[5, 5, 5] == pytest.approx(1000.0 * energy_j / (density * 1e-3), rel=1e-6)


def _fake(name: str, values: np.ndarray) -> None:
    def compute(request):
        return DoseResult(request.ct.with_array(values.astype(np.float32), quantity="dose_rate", unit="Gy/s"))

    register_dose_method(DoseMethod(name, "test method returning fixed values", compute), replace=True)


def test_non_finite_or_negative_results_are_internal_errors():
    ct, activity = phantom()
    values = np.ones(ct.shape)
    values[1, 2, 3] = np.nan
    _fake("test-nan", values)
    with pytest.raises(DoseResultError, match="returned 1 non-finite"):
        compute_dose("test-nan", DoseRequest(activity, ct))
    values = np.ones(ct.shape)
    values[1, 2, 3] = -0.5
    _fake("test-negative", values)
    with pytest.raises(DoseResultError, match="negative"):
        compute_dose("test-negative", DoseRequest(activity, ct))


def test_round_off_negatives_are_set_to_zero_and_counted():
    ct, activity = phantom()
    values = np.ones(ct.shape)
    values[5, 5, 5] = -1e-8  # FFT round-off scale
    _fake("test-roundoff", values)
    result = compute_dose("test-roundoff", DoseRequest(activity, ct))
    assert result.dose.array[5, 5, 5] == 0.0 and result.info["value_policy"]["roundoff_negatives_zeroed"] == 1


def test_tia_shares_the_policy():
    ct, activity = phantom()
    images = [activity.with_array(activity.array * f) for f in (1.0, 0.5)]
    noisy = images[1].array.copy()
    noisy[4, 4, 4] = -10.0
    with collect_qc() as log:
        result = integrate_activity([images[0], images[1].with_array(noisy)], [3600.0 * 4, 3600.0 * 24], "Lu-177")
    assert "negative_voxels_zeroed" in log.codes() and result.info["negative_voxels_set_to_zero"] == [0, 1]
    with pytest.raises(SourceValueError, match="max_negative_fraction"):
        integrate_activity([images[0], images[1].with_array(-images[1].array)], [3600.0 * 4, 3600.0 * 24], "Lu-177")


def test_checked_source_without_negatives_returns_the_same_volume():
    _, activity = phantom()
    volume, summary = checked_source(activity, "map")
    assert volume is activity and summary["negative_voxels_zeroed"] == 0


def test_a_noisy_stochastic_dose_is_flagged():
    ct, activity = phantom()
    with collect_qc() as log:
        result = compute_dose("mc", DoseRequest(activity, ct, histories=2000, seed=1))
    median = result.info["value_policy"]["median_relative_uncertainty"]
    warning = next(w for w in log if w.code == "dose_uncertainty_high")
    assert median > 0.10 and warning.details["median_relative_uncertainty"] == median
    assert f"{100 * median:.0f} %" in warning.message


def test_unknown_method_options_are_refused_not_ignored():
    from VoxelDosimetryLib.errors import InputFormatError

    ct, activity = phantom()
    with pytest.raises(InputFormatError, match=r"has no options \['componnent'\]; its options: component"):
        compute_dose("led", DoseRequest(activity, ct, options={"componnent": "electrons"}))
