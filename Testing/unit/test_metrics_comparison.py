"""compare_doses: whole-body and per-segment metrics, error maps, unit/grid checks, no NaN."""
from __future__ import annotations

import json

import numpy as np
import pytest

from VoxelDosimetryLib import Volume
from VoxelDosimetryLib.errors import GridMismatchError, InputFormatError, UnitError
from VoxelDosimetryLib.metrics import compare_doses, ensemble_noise
from VoxelDosimetryLib.metrics.report import metrics_document
from VoxelDosimetryLib.physics import hu_to_density


def _case(zero_corner: bool = True):
    """A (8, 10, 12) dose map with a hot block, a CT with air at the x edges, and two labels."""
    z, y, x = np.meshgrid(np.arange(8), np.arange(10), np.arange(12), indexing="ij")
    dose = 1.0 + 0.1 * x + 0.2 * y + 0.3 * z
    dose[3:6, 4:7, 5:8] += 20.0
    if zero_corner:
        dose[:, :3, :] = 0.0  # reference zeros inside the body
    reference = Volume(dose, spacing=(2.0, 2.5, 3.0), origin=(-10, 5, 0), quantity="dose", unit="Gy")
    hu = np.where((x >= 1) & (x <= 10), 0.0, -1000.0)
    hu[:, :, 6:] = np.where(hu[:, :, 6:] > -500, 1000.0, hu[:, :, 6:])  # "bone" on the right half
    ct = reference.with_array(hu, quantity="ct", unit="HU")
    labels = np.zeros(dose.shape, np.uint8)
    labels[3:6, 4:7, 5:8] = 1  # the hot block, half soft tissue, half bone
    labels[0:2, 5:9, 2:5] = 2
    return reference, ct, reference.with_array(labels, quantity="labels", unit="label")


def test_ten_percent_overestimate_everywhere():
    reference, ct, labels = _case()
    test = reference.with_array(reference.array * 1.1)
    result = compare_doses(test, reference, labels=labels, ct=ct, names={1: "tumour", 2: "kidney"})
    m = result.metrics
    assert m["voxel_mae_percent"] == pytest.approx(10.0, rel=1e-9)
    assert m["nrmse"] == pytest.approx(0.1, rel=1e-9)
    assert m["pearson_r"] == pytest.approx(1.0, abs=1e-12)
    assert m["mae_percent_segments"] == pytest.approx(10.0, rel=1e-9)
    assert m["bland_altman_segments_percent"]["bias"] == pytest.approx(200 * 0.1 / 2.1, rel=1e-9)
    assert [row["name"] for row in result.per_segment] == ["tumour", "kidney"]
    for row in result.per_segment:
        assert row["mae_percent"] == pytest.approx(10.0, rel=1e-9)
        assert row["difference_percent"] == pytest.approx(10.0, rel=1e-9)
        assert row["nrmse"] == pytest.approx(0.1, rel=1e-9)
    assert m["mask"].startswith("body") and m["n_voxels_mask"] == 8 * 10 * 10
    assert m["segment_mean_weighting"] == "mass"


def test_segment_means_are_mass_weighted_with_a_ct_and_voxel_means_without():
    reference, ct, labels = _case()
    result = compare_doses(reference, reference, labels=labels, ct=ct)
    seg = labels.array == 1
    mass = hu_to_density(ct.array) * reference.voxel_volume_ml
    expected = float((mass[seg] * reference.array[seg]).sum() / mass[seg].sum())  # Kim et al. Eq. 2
    tumour = result.per_segment[0]
    assert tumour["reference_mean"] == pytest.approx(expected, rel=1e-12)
    assert tumour["mass_g"] == pytest.approx(float(mass[seg].sum()), rel=1e-12)
    assert tumour["reference_mean"] != pytest.approx(float(reference.array[seg].mean()), rel=1e-6)
    plain = compare_doses(reference, reference, labels=labels)
    assert plain.per_segment[0]["reference_mean"] == pytest.approx(float(reference.array[seg].mean()))
    assert plain.per_segment[0]["mass_g"] is None
    assert plain.metrics["mask"].startswith("all voxels") and plain.metrics["segment_mean_weighting"] == "volume"


def test_identical_maps_and_constant_offset():
    reference, ct, labels = _case()
    same = compare_doses(reference, reference, labels=labels, ct=ct)
    assert same.metrics["voxel_mae_percent"] == 0.0 and same.metrics["nrmse"] == 0.0
    assert same.metrics["lin_ccc"] == pytest.approx(1.0) and same.metrics["pearson_r"] == pytest.approx(1.0)
    shifted = compare_doses(reference.with_array(reference.array + 0.25), reference, ct=ct)
    ba = shifted.metrics["bland_altman_voxels"]
    assert ba["bias"] == pytest.approx(0.25, abs=1e-12)
    assert ba["loa_upper"] - ba["loa_lower"] == pytest.approx(0.0, abs=1e-9)


def test_error_maps_are_finite_and_relative_error_is_defined_above_the_threshold_only():
    reference, ct, _ = _case(zero_corner=True)
    test = reference.with_array(reference.array * 0.8 + 0.01)
    result = compare_doses(test, reference, ct=ct, threshold_fraction=0.05)
    rel, diff = result.maps["relative_error"], result.maps["difference"]
    assert rel.quantity == "relative_error" and rel.unit == "%"
    assert diff.quantity == "dose" and diff.unit == "Gy"
    assert np.all(np.isfinite(rel.array)) and np.all(np.isfinite(diff.array))
    threshold = 0.05 * reference.array[result.mask].max()
    assert result.metrics["threshold"] == pytest.approx(threshold)
    above = result.mask & (reference.array > threshold)
    expected = 100 * (test.array - reference.array) / np.where(above, reference.array, 1.0)
    assert np.allclose(rel.array[above], expected[above], rtol=1e-5)
    assert np.all(rel.array[~above] == 0)
    assert np.all(diff.array[~result.mask] == 0)
    assert np.allclose(diff.array[result.mask], (test.array - reference.array)[result.mask], atol=1e-6)
    json.dumps(metrics_document(result), allow_nan=False)  # no NaN anywhere


def test_units_convert_and_quantities_must_match():
    reference, ct, _ = _case()
    in_mgy = reference.with_array(reference.array * 1100.0).replace(unit="mGy")
    assert compare_doses(in_mgy, reference).metrics["voxel_mae_percent"] == pytest.approx(10.0, rel=1e-9)
    rate = reference.replace(quantity="dose_rate", unit="Gy/s")
    with pytest.raises(UnitError, match="dose rate"):
        compare_doses(rate, reference)
    with pytest.raises(UnitError, match="compare needs"):
        compare_doses(ct, ct)
    rates = compare_doses(rate, rate.to_unit("mGy/h"))
    assert rates.metrics["unit"] == "Gy/s" and rates.metrics["nrmse"] == pytest.approx(0.0, abs=1e-12)


def test_grid_mismatch_raises_unless_resampling_is_asked_for():
    reference, ct, labels = _case()
    z, y, x = np.meshgrid(np.arange(8), np.arange(10), np.arange(12), indexing="ij")
    linear = reference.with_array(1.0 + 0.1 * x + 0.2 * y + 0.3 * z)
    shifted = linear.replace(grid=linear.grid.__class__(linear.shape, linear.spacing, (-9.0, 5.0, 0.0)))
    with pytest.raises(GridMismatchError, match="--resample"):
        compare_doses(shifted, linear)
    result = compare_doses(shifted, linear, resample=True)
    # a linear ramp shifted by half a voxel in x: inside the overlap the test is the ramp minus 0.05
    inner = np.zeros(linear.shape, bool)
    inner[:, :, 1:] = True
    assert np.allclose(result.test.array[inner], linear.array[inner] - 0.05)
    with pytest.raises(GridMismatchError, match="label map"):
        compare_doses(linear, linear, labels=labels.replace(grid=shifted.grid))
    moved = compare_doses(linear, linear, labels=labels.replace(grid=shifted.grid), resample=True)
    assert moved.per_segment[0]["n_voxels"] == 27


def test_ensemble_noise_from_realisations():
    reference, ct, labels = _case()
    realisations = [reference.with_array(reference.array * f) for f in (0.9, 1.0, 1.1)]
    result = compare_doses(realisations[0], reference, labels=labels, ct=ct, realisations=realisations[1:])
    above = result.mask & (reference.array > result.metrics["threshold"])
    assert result.metrics["n_realisations"] == 3
    assert result.metrics["ensemble_noise_percent"] == pytest.approx(ensemble_noise(realisations, above))
    # x 0.9, 1.0, 1.1: per-voxel SD 0.1 x, so noise = 10 % x sqrt(mean x^2) / mean x in each segment
    tumour = labels.array == 1
    values = reference.array[tumour]
    expected = 10.0 * np.sqrt(np.mean(values ** 2)) / values.mean()
    assert result.per_segment[0]["ensemble_noise_percent"] == pytest.approx(expected, rel=1e-9)
    assert compare_doses(reference, reference).metrics["ensemble_noise_percent"] is None


def test_bad_inputs_and_inputs_untouched():
    reference, ct, labels = _case()
    before = reference.array.copy()
    compare_doses(reference.with_array(reference.array * 2), reference, labels=labels, ct=ct)
    assert np.array_equal(reference.array, before)
    with pytest.raises(InputFormatError, match="threshold_fraction"):
        compare_doses(reference, reference, threshold_fraction=1.0)
    with pytest.raises(InputFormatError, match="<= 0 everywhere"):
        compare_doses(reference, reference.with_array(np.zeros(reference.shape)))
    bad = reference.array.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputFormatError, match="NaN"):
        compare_doses(reference.with_array(bad), reference)


def test_segment_without_dose_gives_empty_entries_and_a_note_not_nan():
    reference, ct, labels = _case(zero_corner=True)
    array = labels.array.copy()
    array[:, 0:2, 2:5] = 3  # inside the zero-dose corner
    result = compare_doses(reference.with_array(reference.array * 1.2), reference,
                           labels=labels.with_array(array), ct=ct, names={3: "empty"})
    empty = [row for row in result.per_segment if row["name"] == "empty"][0]
    assert empty["reference_mean"] == 0.0 and empty["difference"] == 0.0
    assert empty["mae_percent"] is None and empty["difference_percent"] is None and empty["nrmse"] is None
    assert empty["lin_ccc"] == 1.0  # identical (zero) values: perfect concordance by convention
    assert any(note.startswith("segment empty:") for note in result.notes)
    assert result.metrics["n_segments"] == 3 and result.metrics["n_segments_above_threshold"] == 2
    assert result.metrics["mae_percent_segments"] == pytest.approx(20.0, rel=1e-9)
    assert "bland_altman_segments_percent" not in result.metrics  # a pair mean of 0 has no percent difference
    json.dumps(metrics_document(result), allow_nan=False)
