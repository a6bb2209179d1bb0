"""Stopping a Monte Carlo run at an uncertainty goal or a time limit (issue #10): the rule, its σ estimate, and the
engine and dose method honouring it."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("xraylib")

from VoxelDosimetryLib.errors import InputFormatError  # noqa: E402
from VoxelDosimetryLib.montecarlo.engine import MonteCarloEngine  # noqa: E402
from VoxelDosimetryLib.montecarlo.stopping import MIN_BATCHES, StopRule  # noqa: E402
from VoxelDosimetryLib.montecarlo.validation import slab_phantom  # noqa: E402


@pytest.fixture(scope="module")
def engine():
    return MonteCarloEngine(slab_phantom(16, 2.0), "Lu-177", device="cpu")


def _activity(shape):
    a = np.zeros(shape)
    a[4:12, 4:12, 5:14] = 1.0
    return a


@pytest.mark.parametrize("goal", [0, 1, -0.1, float("nan"), "2 %"])
def test_goal_must_be_a_fraction(goal):
    with pytest.raises(InputFormatError, match="uncertainty goal"):
        StopRule(uncertainty_goal=goal)


@pytest.mark.parametrize("limit", [0, -5, float("inf")])
def test_time_limit_must_be_positive(limit):
    with pytest.raises(InputFormatError, match="time limit"):
        StopRule(time_limit_s=limit)


def test_batches_fit_ten_times_in_the_cap():
    assert StopRule.batch_decays(1_000, 200_000) == 100
    assert StopRule.batch_decays(10**9, 200_000) == 50_000
    assert StopRule.batch_decays(10**9, 200_000, 79_000_000) == 200_000  # a CT grid: >= 1 % of the voxels
    assert StopRule.batch_decays(10**9, 200_000, 2_000_000) == 50_000
    assert StopRule.batch_decays(10**9, 200_000, 12_000_000) == 120_000
    with pytest.raises(InputFormatError, match="10 batches"):
        StopRule.batch_decays(5, 100)


def test_median_sigma_is_the_batch_estimate_over_the_relevant_voxels():
    rng = np.random.default_rng(1)
    batches, per_batch = 12, 50
    d = rng.gamma(4.0, 1.0, size=(batches, 30)) * np.linspace(0.01, 1, 30)  # per-decay energy per batch and voxel
    s1 = torch.from_numpy(d.sum(axis=0) * per_batch)
    s2 = torch.from_numpy((d ** 2).sum(axis=0))
    mean = d.mean(axis=0)
    rel = d.std(axis=0, ddof=0) / np.sqrt(batches - 1) / mean
    relevant = mean >= 0.1 * mean.max()
    got = StopRule.median_sigma(s1, s2, batches, batches * per_batch, None)
    assert got == pytest.approx(float(np.median(rel[relevant])), rel=1e-9)
    # the 10 % cut is on dose: with voxel masses, energy-rich but heavy voxels may drop out
    inverse_mass = torch.from_numpy(np.where(np.arange(30) < 15, 20.0, 1.0))
    dose = mean * inverse_mass.numpy()
    by_dose = dose >= 0.1 * dose.max()
    assert StopRule.median_sigma(s1, s2, batches, batches * per_batch, None, inverse_mass) == \
        pytest.approx(float(np.median(rel[by_dose])), rel=1e-9)
    assert by_dose.sum() != relevant.sum()
    index = torch.arange(10, 30)
    sub = mean[10:] >= 0.1 * mean[10:].max()
    assert StopRule.median_sigma(s1, s2, batches, batches * per_batch, index) == \
        pytest.approx(float(np.median(rel[10:][sub])), rel=1e-9)


def test_run_stops_at_the_uncertainty_goal(engine):
    shape = engine.phantom.shape
    mask = np.zeros(shape, bool)
    mask[4:12, 4:12, 5:14] = True
    res = engine.run(_activity(shape), histories=2_000_000, seed=4, batch_size=2_000,
                     stop=StopRule(uncertainty_goal=0.05, goal_mask=mask))
    s = res.stats
    assert s["stop_reason"] == "uncertainty_goal"
    assert s["goal_median_relative_uncertainty"] <= 0.05
    assert MIN_BATCHES * 2_000 <= s["histories"] < 2_000_000 and s["histories"] % 2_000 == 0
    assert s["n_batches"] == s["histories"] // 2_000
    # the result's own uncertainty map says the same about the goal voxels
    dose = res.dose.array[mask]
    unc = res.uncertainty.array[mask]
    assert float(np.median(unc[dose >= 0.1 * dose.max()])) == pytest.approx(s["goal_median_relative_uncertainty"],
                                                                            rel=1e-3)  # float32 maps
    assert abs(s["energy_balance_relative_error"]) < 1e-3


def test_time_limit_stops_after_ten_batches_at_least(engine):
    res = engine.run(_activity(engine.phantom.shape), histories=1_000_000, seed=5, batch_size=500,
                     stop=StopRule(time_limit_s=1e-3))
    assert res.stats["stop_reason"] == "time_limit"
    assert res.stats["histories"] == MIN_BATCHES * 500 and res.stats["n_batches"] == MIN_BATCHES


def test_the_cap_ends_a_run_whose_goal_is_out_of_reach(engine):
    res = engine.run(_activity(engine.phantom.shape), histories=10_050, seed=6, batch_size=1_000,
                     stop=StopRule(uncertainty_goal=1e-4))
    assert res.stats["stop_reason"] == "histories"
    assert res.stats["histories"] == 10_000  # whole batches of 1005 would not divide: 10 x 1000
    assert res.stats["goal_median_relative_uncertainty"] > 1e-4


def test_mc_dose_method_takes_goal_and_time_limit_options():
    from VoxelDosimetryLib.dose import DoseRequest, compute_dose
    from VoxelDosimetryLib.volume import Volume

    shape = (12, 14, 14)
    hu = np.full(shape, -1000.0, np.float32)
    hu[2:10, 2:12, 2:12] = 40.0
    ct = Volume(hu, spacing=(3.0, 3.0, 3.0), quantity="ct", unit="HU")
    act = np.zeros(shape, np.float32)
    act[4:8, 5:9, 5:9] = 1e5
    source = ct.with_array(act, quantity="activity_concentration", unit="Bq/mL")
    result = compute_dose("mc", DoseRequest(source, ct, device="cpu", seed=2, options={"uncertainty_goal": 0.08}))
    info = result.info
    assert info["stop_reason"] == "uncertainty_goal" and info["goal_median_relative_uncertainty"] <= 0.08
    assert info["histories"] < 1_000_000
    with pytest.raises(InputFormatError, match="uncertainty_goal"):
        compute_dose("mc", DoseRequest(source, ct, device="cpu", options={"uncertainty_goal": 2}))
    limited = compute_dose("mc", DoseRequest(source, ct, device="cpu", histories=10**7,
                                             options={"time_limit_s": 0.5}))
    assert limited.info["stop_reason"] == "time_limit" and limited.info["histories"] < 10**7
    assert not math.isnan(limited.info["goal_median_relative_uncertainty"])
