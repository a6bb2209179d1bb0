"""Electron range rejection (issue #10): the same voxel doses as full transport, within the statistics, with fewer
electron steps."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("xraylib")

from VoxelDosimetryLib.montecarlo.engine import MonteCarloEngine  # noqa: E402
from VoxelDosimetryLib.montecarlo.validation import slab_phantom  # noqa: E402


def test_distance_to_faces():
    phantom = slab_phantom(8, 2.0).to_torch("cpu")
    pos = torch.tensor([[1.0, 1.0, 1.0], [0.1, 1.0, 1.0], [3.9, 3.0, 2.5], [5.0, 5.0, 4.2]])
    np.testing.assert_allclose(phantom.distance_to_faces_mm(pos).numpy(), [1.0, 0.1, 0.1, 0.2], atol=1e-6)


@pytest.fixture(scope="module")
def runs():
    phantom = slab_phantom(16, 1.0)  # water/bone/lung slabs, 1 mm voxels: many electrons can leave their voxel
    act = np.zeros(phantom.shape)
    act[4:12, 4:12, 5:14] = 1.0
    out = {}
    for rejection in (False, True):
        engine = MonteCarloEngine(phantom, "Lu-177", device="cpu", components=("electron",),
                                  electron_range_rejection=rejection)
        out[rejection] = engine.run(act, histories=300_000, seed=11 + rejection, batch_size=100_000)
    return out


def test_range_rejection_keeps_the_voxel_doses(runs):
    full, fast = runs[False], runs[True]
    a, b = full.edep.array.astype(np.float64), fast.edep.array.astype(np.float64)
    ua, ub = full.uncertainty.array, fast.uncertainty.array
    hot = a > 0.02 * a.max()
    z = (b[hot] - a[hot]) / np.sqrt((ua[hot] * a[hot]) ** 2 + (ub[hot] * b[hot]) ** 2)
    assert hot.sum() > 500
    assert np.mean(np.abs(z) < 3) > 0.98 and abs(float(np.mean(z))) < 0.1  # no shift: unbiased
    absorbed = [r.stats["deposited_energy_mev"] / r.stats["emitted_energy_mev"] for r in (full, fast)]
    assert absorbed[1] == pytest.approx(absorbed[0], abs=5e-4)  # the source's own sampling noise divided out
    assert abs(fast.stats["energy_balance_relative_error"]) < 1e-6
    assert fast.stats["electron_range_rejection"] and not full.stats["electron_range_rejection"]


def test_range_rejection_saves_electron_steps(runs):
    full, fast = runs[False].stats, runs[True].stats
    assert fast["electrons_transported"] == pytest.approx(full["electrons_transported"], rel=0.01)
    assert fast["electron_steps"] < 0.8 * full["electron_steps"]
