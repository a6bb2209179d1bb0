"""Voxel agreement metrics with exact analytic answers: MAE% (Kim Eq. 3), NRMSE and ensemble noise
(DblurDoseNet Sec. 2.5), Pearson r, Lin's CCC."""
from __future__ import annotations

import numpy as np
import pytest

from VoxelDosimetryLib import Volume
from VoxelDosimetryLib.errors import GridMismatchError, InputFormatError
from VoxelDosimetryLib.metrics import ensemble_noise, lin_ccc, mae_percent, nrmse, pearson_r


@pytest.fixture
def reference() -> np.ndarray:
    return np.random.default_rng(1).uniform(0.5, 5.0, size=(4, 5, 6))


def test_identical_maps_agree_perfectly(reference):
    assert mae_percent(reference, reference) == 0.0
    assert nrmse(reference, reference) == 0.0
    assert pearson_r(reference, reference) == pytest.approx(1.0, abs=1e-12)
    assert lin_ccc(reference, reference) == pytest.approx(1.0, abs=1e-12)


def test_ten_percent_overestimate_has_exact_metrics(reference):
    test = 1.1 * reference
    assert mae_percent(test, reference) == pytest.approx(10.0, rel=1e-12)
    assert nrmse(test, reference) == pytest.approx(0.1, rel=1e-12)  # sqrt(mean 0.01 x^2) / sqrt(mean x^2)
    assert pearson_r(test, reference) == pytest.approx(1.0, abs=1e-12)
    var, mean = reference.var(), reference.mean()  # 1/n moments as in Lin 1989
    expected_ccc = 2 * 1.1 * var / (var + 1.21 * var + (0.1 * mean) ** 2)
    assert lin_ccc(test, reference) == pytest.approx(expected_ccc, rel=1e-12)
    assert lin_ccc(test, reference) < 1.0


def test_volumes_and_masks_select_the_compared_voxels(reference):
    ref = Volume(reference, quantity="dose")
    test_array = reference.copy()
    test_array[0] *= 3.0  # a gross error only in slice 0
    mask = np.ones(reference.shape, bool)
    mask[0] = False
    assert mae_percent(ref.with_array(test_array), ref, mask) == 0.0
    assert mae_percent(ref.with_array(test_array), ref) == pytest.approx(200.0 / 4, rel=1e-12)
    with pytest.raises(GridMismatchError):
        nrmse(reference, reference, mask[:2])


def test_mae_percent_averages_organ_doses_over_datasets_like_kim_eq3():
    # one organ's mean dose in three datasets: errors 5 %, 10 %, 0 %
    assert mae_percent([10.5, 9.0, 4.0], [10.0, 10.0, 4.0]) == pytest.approx(5.0, rel=1e-12)


def test_mae_percent_refuses_zero_reference_instead_of_nan():
    reference = np.array([0.0, 1.0, 2.0])
    with pytest.raises(InputFormatError, match="threshold"):
        mae_percent(reference + 1, reference)
    assert mae_percent(reference * 1.5, reference, reference > 0) == pytest.approx(50.0)


def test_nrmse_of_a_known_error():
    reference = np.array([1.0, 2.0, 3.0])
    test = reference + np.array([1.0, -1.0, 1.0])
    assert nrmse(test, reference) == pytest.approx(1.0 / np.sqrt(14.0 / 3.0), rel=1e-12)
    with pytest.raises(InputFormatError, match="zero"):
        nrmse(test, np.zeros(3))


def test_ensemble_noise_of_known_spread():
    base = np.full((3, 3, 3), 4.0)
    d = 0.2
    # three realisations base-d, base, base+d: per-voxel sample variance (M - 1) = d^2, noise = d / base
    assert ensemble_noise([base - d, base, base + d]) == pytest.approx(100 * d / 4.0, rel=1e-12)
    # two realisations base +- d: sample variance 2 d^2
    assert ensemble_noise([base - d, base + d]) == pytest.approx(100 * np.sqrt(2) * d / 4.0, rel=1e-12)
    mask = np.zeros(base.shape, bool)
    mask[1] = True
    vols = [Volume(a, quantity="dose") for a in (base - d, base, base + d)]
    assert ensemble_noise(vols, mask) == pytest.approx(5.0, rel=1e-12)
    with pytest.raises(InputFormatError, match="at least 2"):
        ensemble_noise([base])
    with pytest.raises(GridMismatchError):
        ensemble_noise([base, base[:2]])


def test_undefined_correlations_raise_or_follow_the_documented_convention():
    constant = np.full(5, 2.0)
    with pytest.raises(InputFormatError, match="constant"):
        pearson_r(constant, constant)
    assert lin_ccc(constant, constant) == 1.0  # identical constants: perfect concordance by convention
    assert lin_ccc(constant + 1, constant) == 0.0


def test_inputs_are_not_modified_and_non_finite_values_are_refused(reference):
    before = reference.copy()
    mae_percent(reference * 2, reference)
    lin_ccc(reference * 2, reference)
    assert np.array_equal(reference, before)
    bad = reference.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputFormatError, match="NaN"):
        pearson_r(bad, reference)
