"""Organ time-activity curve fits: exact TIA of the true model, selection by AICc/AIC, guards."""
from __future__ import annotations

import math

import numpy as np
import pytest

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.kinetics.tac_fit import MODELS, aic, aicc, fit_tac
from VoxelDosimetryLib.physics import get_nuclide

LAM = get_nuclide("Lu-177").decay_constant_per_s
H = 3600.0
TIMES = np.array([0.5, 1, 2, 4, 8, 24, 48, 72, 96, 168, 240]) * H
LAM_W, LAM_U = math.log(2) / (50 * H), math.log(2) / (3 * H)
ALL = ("mono_exp", "bi_exp", "bi_exp_clearance", "tri_exp")


def bi(t):
    return 1e9 * (np.exp(-LAM_W * t) - np.exp(-LAM_U * t)), 1e9 * (1 / LAM_W - 1 / LAM_U)


def mono(t):
    return 1e9 * np.exp(-LAM_W * t), 1e9 / LAM_W


def tri(t):
    l1, l2, lu = math.log(2) / (80 * H), math.log(2) / (10 * H), math.log(2) / (1 * H)
    return 6e8 * np.exp(-l1 * t) + 4e8 * np.exp(-l2 * t) - 1e9 * np.exp(-lu * t), 6e8 / l1 + 4e8 / l2 - 1e9 / lu


@pytest.mark.parametrize("truth, name", [(mono, "mono_exp"), (bi, "bi_exp"), (tri, "tri_exp")])
def test_noiseless_curve_selects_the_true_model_and_its_tia(truth, name):
    y, tia = truth(TIMES)
    result = fit_tac(TIMES, y, "Lu-177", models=ALL)
    assert result.selected == name and result.criterion == "aicc"
    assert result.tia == pytest.approx(tia, rel=1e-3)
    np.testing.assert_allclose(result.evaluate(TIMES), y, rtol=1e-4, atol=1e-6 * y.max())


@pytest.mark.parametrize("truth, name", [(mono, "mono_exp"), (bi, "bi_exp")])
def test_mildly_noisy_curve_selects_the_true_model(truth, name):
    y, tia = truth(TIMES)
    hits = 0
    for seed in range(5):
        noisy = y * (1 + 0.02 * np.random.default_rng(seed).standard_normal(y.size))
        result = fit_tac(TIMES, np.maximum(noisy, 0), "Lu-177")
        hits += result.selected == name
        assert result.tia == pytest.approx(tia, rel=0.05)
    assert hits >= 4


def test_parameters_are_reported_in_si_units():
    y, _ = bi(TIMES)
    fit = fit_tac(TIMES, y, "Lu-177", models=("bi_exp",)).selected_fit
    assert fit.parameters["lambda_washout_per_s"] == pytest.approx(LAM_W, rel=1e-5)
    assert fit.parameters["lambda_uptake_per_s"] == pytest.approx(LAM_U, rel=1e-5)
    assert fit.parameters["half_life_washout_h"] == pytest.approx(50.0, rel=1e-5)
    assert fit.parameters["a0"] == pytest.approx(1e9, rel=1e-5)


def test_models_with_too_many_parameters_are_rejected_and_aicc_falls_back_to_aic():
    t = np.array([4, 24, 96, 168.0]) * H
    y, tia = mono(t)
    result = fit_tac(t, y, "Lu-177", models=ALL)
    assert not result.fits["tri_exp"].admissible and "5 parameters" in result.fits["tri_exp"].reason
    assert not result.fits["bi_exp_clearance"].admissible
    assert result.fits["bi_exp"].aicc is None  # n = 4 <= K + 1 = 4
    assert result.selected == "mono_exp" and result.tia == pytest.approx(tia, rel=1e-3)
    three = fit_tac(t[:3], y[:3], "Lu-177", models=("mono_exp",))
    assert three.criterion == "aic" and any("AIC instead" in n for n in three.notes)
    with pytest.raises(InputFormatError, match="No TAC model"):
        fit_tac(t[:2], y[:2], "Lu-177", models=("mono_exp", "bi_exp"))


def test_clearance_never_slower_than_physical_decay():
    t = np.array([4, 24, 96, 168.0]) * H
    rising = np.array([1.0, 2.0, 3.0, 4.0]) * 1e6
    result = fit_tac(t, rising, "Lu-177", models=("mono_exp",))
    assert result.selected_fit.parameters["lambda_per_s"] >= LAM * (1 - 1e-9)


def test_aic_formulas():
    assert aic(2.0, 10, 3) == pytest.approx(10 * math.log(0.2) + 6)
    assert aicc(2.0, 10, 3) == pytest.approx(10 * math.log(0.2) + 6 + 24 / 6)
    assert aicc(2.0, 4, 3) is None
    assert set(MODELS) == set(ALL)


def test_bad_input():
    y, _ = mono(TIMES)
    with pytest.raises(InputFormatError, match="one activity per time"):
        fit_tac(TIMES, y[:-1], "Lu-177")
    with pytest.raises(InputFormatError, match="Negative"):
        fit_tac(TIMES, -y, "Lu-177")
    with pytest.raises(InputFormatError, match="finite"):
        fit_tac(TIMES, np.where(TIMES > 100 * H, np.nan, y), "Lu-177")
    with pytest.raises(InputFormatError, match="increase"):
        fit_tac(TIMES[::-1], y, "Lu-177")
    with pytest.raises(InputFormatError, match="Unknown TAC model"):
        fit_tac(TIMES, y, "Lu-177", models=("quad",))
    with pytest.raises(InputFormatError, match="criterion"):
        fit_tac(TIMES, y, "Lu-177", criterion="bic")
    assert fit_tac(TIMES, y, "Lu-177").to_dict()["selected"] == "mono_exp"
