"""Voxel time-integration models against exact answers: trapezoid formula, exponentials to 0.1 %, dose rate."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

from VoxelDosimetryLib.kinetics.tia import MODELS, TIAResult, integrate_activity, integrate_dose_rate
from VoxelDosimetryLib.physics import get_nuclide
from VoxelDosimetryLib.volume.volume import Volume

LAM = get_nuclide("Lu-177").decay_constant_per_s
TIMES_H = (4.0, 24.0, 96.0, 168.0)
TIMES_S = [h * 3600.0 for h in TIMES_H]
SPACING = (4.0, 4.0, 4.0)


def as_images(values: np.ndarray, shape=None, quantity="activity_concentration", unit=None) -> list:
    """(T, n) float64 -> one float64 Volume per timepoint."""
    shape = shape or (1, 1, values.shape[1])
    return [Volume(v.reshape(shape), spacing=SPACING, quantity=quantity, unit=unit) for v in values]


def mono_truth(n: int, rng: np.random.Generator):
    a0 = rng.uniform(1e3, 1e6, n)
    lam = LAM * rng.uniform(1.0, 8.0, n)
    values = a0 * np.exp(-np.outer(TIMES_S, lam))
    return values, a0 / lam, a0, lam


def bi_truth(n: int, rng: np.random.Generator):
    lam_w = LAM * rng.uniform(1.05, 5.0, n)
    lam_u = lam_w + math.log(2) / (rng.uniform(0.3, 15.0, n) * 3600)
    a0 = rng.uniform(1e3, 1e6, n)
    t = np.asarray(TIMES_S)[:, None]
    values = a0 * (np.exp(-lam_w * t) - np.exp(-lam_u * t))
    return values, a0 * (1 / lam_w - 1 / lam_u), lam_w, lam_u


def test_models_are_listed_with_descriptions():
    assert {"trapezoid", "trapezoid_fit_tail", "mono_exp", "bi_exp", "hanscheid"} <= set(MODELS)
    assert all(isinstance(text, str) and len(text) > 20 for text in MODELS.values())


def test_trapezoid_matches_its_analytic_formula():
    rng = np.random.default_rng(1)
    values = rng.uniform(0, 1e5, (4, 50))
    result = integrate_activity(as_images(values), TIMES_S, "Lu-177", "trapezoid")
    assert isinstance(result, TIAResult)
    for j in range(values.shape[1]):
        a = [0.0] + list(values[:, j])
        t = [0.0] + TIMES_S
        expected = sum(0.5 * (a[i] + a[i + 1]) * (t[i + 1] - t[i]) for i in range(4)) + a[4] / LAM  # Kim Eq. 1
        assert result.tia.array.reshape(-1)[j] == pytest.approx(expected, rel=2e-7)
    assert result.tia.quantity == "tia_concentration" and result.tia.unit == "Bq*s/mL"
    tails = values[-1] / LAM
    assert result.info["tail_fraction"] == pytest.approx(tails.sum() / result.tia.array.astype(float).sum(), rel=1e-6)
    total = result.tia.array.astype(float).sum() * 0.064
    assert result.info["total_tia_bq_s"] == pytest.approx(total, rel=1e-6)
    assert result.info["total_tia_mbq_h"] == pytest.approx(total / 3.6e9, rel=1e-6)


def test_mono_exp_recovers_exact_exponentials():
    values, truth, a0, lam = mono_truth(200, np.random.default_rng(2))
    result = integrate_activity(as_images(values), TIMES_S, "Lu-177", "mono_exp")
    np.testing.assert_allclose(result.tia.array.reshape(-1), truth, rtol=1e-3)
    np.testing.assert_allclose(result.parameters["lambda_eff_per_s"].reshape(-1), lam, rtol=1e-5)
    np.testing.assert_allclose(result.parameters["a0"].reshape(-1), a0, rtol=1e-5)
    assert sum(result.info["fallback_voxels"].values()) == 0


def test_mono_exp_slower_than_physical_falls_back_and_is_counted():
    rising = np.array([[1.0, 2.0], [2.0, 2.0], [3.0, 2.0], [4.0, 2.0]]) * 1e3  # rising; flat (no clearance)
    result = integrate_activity(as_images(rising), TIMES_S, "Lu-177", "mono_exp")
    assert result.info["fallback_voxels"]["slower_than_physical_decay"] == 2
    np.testing.assert_allclose(result.parameters["lambda_eff_per_s"].reshape(-1), LAM, rtol=1e-6)
    # flat voxel: A0 = 2000 * exp(lam t) weighted -> TIA = A0 / lam_phys
    t = np.asarray(TIMES_S)
    a0 = math.exp(np.mean(np.log(2e3) + LAM * t))
    assert result.tia.array.reshape(-1)[1] == pytest.approx(a0 / LAM, rel=1e-6)


def test_trapezoid_fit_tail_uses_the_fitted_effective_decay():
    values, truth, a0, lam = mono_truth(100, np.random.default_rng(3))
    result = integrate_activity(as_images(values), TIMES_S, "Lu-177", "trapezoid_fit_tail", tail_points=3)
    t = [0.0] + TIMES_S
    for j in (0, 17, 99):
        a = [0.0] + list(values[:, j])
        area = sum(0.5 * (a[i] + a[i + 1]) * (t[i + 1] - t[i]) for i in range(4))
        assert result.tia.array.reshape(-1)[j] == pytest.approx(area + a[4] / lam[j], rel=1e-6)
    np.testing.assert_allclose(result.parameters["lambda_tail_per_s"].reshape(-1), lam, rtol=1e-6)
    rising = np.array([[1.0], [2.0], [3.0], [4.0]]) * 1e3
    fallback = integrate_activity(as_images(rising), TIMES_S, "Lu-177", "trapezoid_fit_tail")
    assert fallback.info["fallback_voxels"]["tail_slower_than_physical_decay"] == 1
    plain = integrate_activity(as_images(rising), TIMES_S, "Lu-177", "trapezoid")
    assert fallback.tia.array[0, 0, 0] == pytest.approx(plain.tia.array[0, 0, 0], rel=1e-7)


def test_bi_exp_recovers_exact_uptake_washout_curves():
    values, truth, lam_w, lam_u = bi_truth(2000, np.random.default_rng(4))
    result = integrate_activity(as_images(values), TIMES_S, "Lu-177", "bi_exp")
    np.testing.assert_allclose(result.tia.array.reshape(-1), truth, rtol=1e-3)
    np.testing.assert_allclose(result.parameters["lambda_washout_per_s"].reshape(-1), lam_w, rtol=1e-3)
    assert result.info["fallback_voxels"]["fit_failed_trapezoid"] == 0
    tail = (np.exp(-lam_w * TIMES_S[-1]) / lam_w - np.exp(-lam_u * TIMES_S[-1]) / lam_u) * values[0] / (
        np.exp(-lam_w * TIMES_S[0]) - np.exp(-lam_u * TIMES_S[0]))
    assert result.info["tail_fraction"] == pytest.approx(tail.sum() / truth.sum(), rel=1e-3)


def test_bi_exp_with_three_points_and_too_few_positive_points():
    t3 = TIMES_S[:3]
    values, _, lam_w, lam_u = bi_truth(20, np.random.default_rng(5))
    result = integrate_activity(as_images(values[:3]), t3, "Lu-177", "bi_exp")
    assert np.all(np.isfinite(result.tia.array)) and np.all(result.tia.array > 0)
    sparse = np.array([[0.0], [0.0], [5.0], [1.0]])  # two positive points: trapezoid fall-back
    out = integrate_activity(as_images(sparse), TIMES_S, "Lu-177", "bi_exp")
    assert out.info["fallback_voxels"]["fewer_than_3_positive_points_trapezoid"] == 1
    plain = integrate_activity(as_images(sparse), TIMES_S, "Lu-177", "trapezoid")
    assert out.tia.array[0, 0, 0] == pytest.approx(plain.tia.array[0, 0, 0], rel=1e-7)


def test_mildly_noisy_bi_exp_stays_close():
    values, truth, _, _ = bi_truth(500, np.random.default_rng(6))
    noisy = values * (1 + 0.02 * np.random.default_rng(7).standard_normal(values.shape))
    result = integrate_activity(as_images(noisy), TIMES_S, "Lu-177", "bi_exp")
    err = np.abs(result.tia.array.reshape(-1) / truth - 1)
    assert np.median(err) < 0.03 and np.all(np.isfinite(result.tia.array))


def test_dose_rate_integrates_to_dose():
    values, truth, _, _ = mono_truth(30, np.random.default_rng(8))
    rates = values * 1e-9  # Gy/s
    result = integrate_dose_rate(as_images(rates, quantity="dose_rate"), TIMES_S, "Lu-177", "mono_exp")
    assert result.tia.quantity == "dose" and result.tia.unit == "Gy"
    np.testing.assert_allclose(result.tia.array.reshape(-1), truth * 1e-9, rtol=1e-3)
    assert result.info["max_dose_gy"] == pytest.approx(float(np.max(truth * 1e-9)), rel=1e-3)
    assert "total_tia_bq_s" not in result.info
    mgy = integrate_dose_rate(as_images(rates * 1e3 * 3600, quantity="dose_rate", unit="mGy/h"), TIMES_S, "Lu-177")
    plain = integrate_dose_rate(as_images(rates, quantity="dose_rate"), TIMES_S, "Lu-177")
    np.testing.assert_allclose(mgy.tia.array, plain.tia.array, rtol=1e-6)


def test_activity_per_voxel_gives_tia_in_bq_s_and_chunking_is_invisible():
    values, truth, _, _ = mono_truth(60, np.random.default_rng(9))
    images = as_images(values, shape=(3, 4, 5), quantity="activity", unit="MBq")
    whole = integrate_activity(images, TIMES_S, "Lu-177", "mono_exp")
    chunked = integrate_activity(images, TIMES_S, "Lu-177", "mono_exp", chunk_voxels=7)
    assert whole.tia.quantity == "tia" and whole.tia.unit == "Bq*s"
    np.testing.assert_allclose(whole.tia.array.reshape(-1), truth * 1e6, rtol=1e-3)
    np.testing.assert_array_equal(whole.tia.array, chunked.tia.array)
    assert whole.info["total_tia_bq_s"] == pytest.approx(float(np.sum(truth)) * 1e6, rel=1e-3)
    assert whole.tia.metadata["time_integration"]["model"] == "mono_exp"


@pytest.mark.slow
def test_bi_exp_64_cubed_speed():
    """64^3 voxels x 4 timepoints, every voxel fitted (no background): reported in docs/TIME_INTEGRATION.md."""
    rng = np.random.default_rng(10)
    n = 64 ** 3
    values, truth, _, _ = bi_truth(n, rng)
    images = as_images(values, shape=(64, 64, 64))
    started = time.perf_counter()
    result = integrate_activity(images, TIMES_S, "Lu-177", "bi_exp", keep_parameters=False)
    elapsed = time.perf_counter() - started
    np.testing.assert_allclose(result.tia.array.reshape(-1), truth, rtol=1e-3)
    print(f"bi_exp 64^3 x 4 timepoints: {elapsed:.2f} s")
    assert elapsed < 30.0
