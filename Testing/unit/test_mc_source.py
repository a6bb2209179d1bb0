"""Monte Carlo decay source: ICRP-107 energy budget per decay, positions inside the source voxels, voxel
sampling proportional to activity, input validation."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from VoxelDosimetryLib.errors import InputFormatError  # noqa: E402
from VoxelDosimetryLib.montecarlo.source import DecaySource  # noqa: E402
from VoxelDosimetryLib.physics import get_nuclide  # noqa: E402


def _source(weights, spacing=(2.0, 3.0, 4.0), cut=0.01):
    return DecaySource(weights, spacing, get_nuclide("Lu-177"), "cpu", cut_mev=cut)


def test_energy_per_decay_matches_icrp107_budget():
    w = np.zeros((4, 5, 6))
    w[1, 2, 3] = 1.0
    src = _source(w)
    gen = torch.Generator().manual_seed(7)
    n = 200_000
    em = src.sample(n, gen)
    budget = get_nuclide("Lu-177").energy_budget()  # 147.92 keV electrons, 35.10 keV photons (PHYSICS.md 1.2)
    e_kev = em.emitted_electron_mev / n * 1e3
    p_kev = em.emitted_photon_mev / n * 1e3
    # per-decay standard deviations are < 0.12 MeV (electrons) and < 0.08 MeV (photons): 4 sigma tolerances,
    # plus the 0.06 keV difference between the beta spectrum mean (133.33) and the ICRP branch means (133.27)
    assert abs(e_kev - budget["electrons"] * 1e3) < 4 * 120 / math.sqrt(n) + 0.1
    assert abs(p_kev - budget["photons"] * 1e3) < 4 * 80 / math.sqrt(n)
    # the sampling model's expectation equals the budget
    exp = src.expected_energy_per_decay_mev()
    assert exp["photons"] == pytest.approx(budget["photons"], rel=1e-6)
    assert exp["electrons"] == pytest.approx(budget["electrons"], rel=1e-3)
    # everything emitted is either transported or deposited locally below the cut
    total = float(em.electrons.energy.double().sum() + em.photons.energy.double().sum() + em.local_energy.double().sum())
    assert total == pytest.approx(em.emitted_energy_mev, rel=1e-9)
    assert float(em.local_energy.max()) < 0.01
    assert float(em.electrons.energy.min()) >= 0.01 and float(em.photons.energy.min()) >= 0.01


def test_positions_inside_source_voxels_and_isotropic():
    rng = np.random.default_rng(0)
    w = np.where(rng.random((6, 7, 8)) < 0.1, rng.random((6, 7, 8)), 0.0)
    spacing = (2.0, 3.0, 4.0)
    src = _source(w, spacing)
    em = src.sample(20_000, torch.Generator().manual_seed(1))
    for p in (em.electrons, em.photons):
        pos = p.pos.numpy()
        ijk = np.floor(pos / np.asarray(spacing)).astype(int)
        flat = (ijk[:, 2] * 7 + ijk[:, 1]) * 8 + ijk[:, 0]
        assert np.array_equal(flat, p.voxel.numpy())
        assert np.all(w.reshape(-1)[flat] > 0)
        d = p.dir.numpy()
        assert np.allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)
    d = em.electrons.dir.numpy()
    assert np.all(np.abs(d.mean(axis=0)) < 4 / math.sqrt(3 * len(d)) * 1.5 + 0.01)


def test_decay_voxels_proportional_to_activity():
    w = np.zeros((3, 3, 3))
    w[0, 0, 0], w[1, 1, 1], w[2, 2, 2] = 1.0, 3.0, 6.0
    src = _source(w)
    n = 100_000
    vox = src.sample_decay_voxels(n, torch.Generator().manual_seed(3)).numpy()
    counts = np.bincount(vox, minlength=27)
    for flat, p in ((0, 0.1), (13, 0.3), (26, 0.6)):
        assert abs(counts[flat] / n - p) < 4 * math.sqrt(p * (1 - p) / n)
    assert counts.sum() == counts[[0, 13, 26]].sum()


@pytest.mark.parametrize("bad", ["negative", "nan", "zero"])
def test_bad_activity_raises(bad):
    w = np.ones((2, 2, 2))
    if bad == "negative":
        w[0, 0, 0] = -1
    elif bad == "nan":
        w[0, 0, 0] = np.nan
    else:
        w[:] = 0
    before = w.copy()
    with pytest.raises(InputFormatError):
        _source(w)
    assert np.array_equal(before, w, equal_nan=True)
