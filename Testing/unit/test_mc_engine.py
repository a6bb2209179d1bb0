"""Monte Carlo engine: energy conservation, reproducibility, input errors, outputs, and fast physics checks
(electron CSDA range in water, narrow-beam photon attenuation); spheres and kernels: test_mc_validation.py."""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("xraylib")

from VoxelDosimetryLib.errors import GridMismatchError, InputFormatError, UnknownNuclideError  # noqa: E402
from VoxelDosimetryLib.montecarlo.engine import (  # noqa: E402
    MonteCarloCancelled,
    MonteCarloEngine,
    run_monte_carlo,
)
from VoxelDosimetryLib.montecarlo.geometry import VoxelPhantom  # noqa: E402
from VoxelDosimetryLib.montecarlo.photon_data import PhotonCrossSections  # noqa: E402
from VoxelDosimetryLib.montecarlo.validation import slab_phantom  # noqa: E402
from VoxelDosimetryLib.montecarlo.transport_electron import electron_tables_for_media, transport_electrons  # noqa: E402
from VoxelDosimetryLib.montecarlo.transport_photon import (  # noqa: E402
    photon_tables_from_cross_sections,
    transport_photons,
)
from VoxelDosimetryLib.volume.volume import Volume  # noqa: E402


@pytest.fixture(scope="module")
def slab_engine():
    return MonteCarloEngine(slab_phantom(16, 2.0), "Lu-177", device="cpu")  # water/bone/lung slabs, air margin


def _slab_activity(shape):
    a = np.zeros(shape)
    a[4:12, 4:12, 5:14] = 1.0  # straddles water/bone/lung
    return a


def test_energy_conservation_per_decay(slab_engine):
    res = slab_engine.run(_slab_activity(slab_engine.phantom.shape), histories=20_000, seed=3, batch_size=8_000)
    s = res.stats
    # deposited (incl. below-cut local deposits) + escaped = emitted, within 0.1 %
    assert abs(s["energy_balance_relative_error"]) < 1e-3
    assert s["deposited_energy_mev"] == pytest.approx(float(res.edep.array.astype(np.float64).sum()), rel=1e-5)
    assert s["emitted_per_decay_kev"] == pytest.approx(183.0, rel=0.01)  # ICRP-107: 147.9 + 35.1 keV
    assert 0 < s["escaped_per_decay_kev"] < 40.0


def test_reproducible_with_seed_and_different_with_other_seed(slab_engine):
    a = _slab_activity(slab_engine.phantom.shape)
    r1 = slab_engine.run(a, histories=2_000, seed=11, batch_size=1_000)
    r2 = slab_engine.run(a, histories=2_000, seed=11, batch_size=1_000)
    r3 = slab_engine.run(a, histories=2_000, seed=12, batch_size=1_000)
    assert np.array_equal(r1.edep.array, r2.edep.array)
    assert not np.array_equal(r1.edep.array, r3.edep.array)


def test_run_from_ct_volume_with_outputs(tmp_path):
    n = 12
    hu = np.full((n, n, n), 0.0, np.float32)
    hu[:, :, :3] = -1000.0
    hu[:, :, 9:] = 1200.0
    ct = Volume(hu, spacing=(3.0, 3.0, 3.0), origin=(-10.0, 5.0, 2.0), quantity="ct", unit="HU")
    act = np.zeros_like(hu)
    act[4:8, 4:8, 4:8] = 1000.0
    activity = Volume(act, spacing=(3.0, 3.0, 3.0), origin=(-10.0, 5.0, 2.0), quantity="activity_concentration",
                      unit="Bq/mL")
    seen = []
    res = run_monte_carlo(activity, ct, histories=5_000, device="cpu", seed=1, batch_size=2_000,
                          progress=lambda f, msg: seen.append(f))
    assert np.array_equal(activity.array, act) and ct.array[0, 0, 0] == -1000.0  # inputs untouched
    assert res.dose.quantity == "dose_rate" and res.dose.unit == "Gy/s"
    assert res.uncertainty.quantity == "relative_uncertainty"
    assert res.dose.grid == ct.grid
    total_bq = act.sum() * 0.027
    assert np.allclose(res.dose.array, res.dose_per_decay.array * total_bq, rtol=1e-5)
    centre = res.uncertainty.array[4:8, 4:8, 4:8]
    # ~78 decays per source voxel: the batch-method relative error is ~0.12 (beta spectrum spread)
    assert np.median(centre) < 0.2 and np.all(centre < 0.4) and np.all(res.uncertainty.array >= 0)
    assert seen and seen[-1] == pytest.approx(1.0)
    assert res.stats["decays_per_s"] > 0 and abs(res.stats["energy_balance_relative_error"]) < 1e-3
    paths = res.write(tmp_path, prefix="mc")
    for key in ("edep", "dose", "dose_uncertainty", "stats"):
        assert paths[key].exists()
    assert (tmp_path / "mc_dose_uncertainty.nrrd").exists()


def test_input_errors(slab_engine):
    ct = Volume(np.zeros((4, 4, 4), np.float32), quantity="ct", unit="HU")
    good = Volume(np.ones((4, 4, 4)), quantity="activity_concentration", unit="Bq/mL")
    with pytest.raises(GridMismatchError):
        run_monte_carlo(Volume(np.ones((4, 4, 5)), quantity="activity_concentration", unit="Bq/mL"), ct,
                        histories=100, device="cpu")
    with pytest.raises(GridMismatchError):
        run_monte_carlo(Volume(np.ones((4, 4, 4)), spacing=(2, 2, 2), quantity="activity_concentration",
                               unit="Bq/mL"), ct, histories=100, device="cpu")
    with pytest.raises(UnknownNuclideError):
        run_monte_carlo(good, ct, nuclide="Xx-999", histories=100, device="cpu")
    for arr in (-np.ones((4, 4, 4)), np.full((4, 4, 4), np.nan), np.zeros((4, 4, 4))):
        with pytest.raises(InputFormatError):
            run_monte_carlo(Volume(arr, quantity="activity_concentration", unit="Bq/mL"), ct, histories=100,
                            device="cpu")
    ev = threading.Event()
    ev.set()
    with pytest.raises(MonteCarloCancelled):
        slab_engine.run(_slab_activity(slab_engine.phantom.shape), histories=100, cancel=ev)


def test_electron_csda_range_in_water():
    """498 keV electrons (Lu-177 Emax) from a point in water: mean path length = CSDA range (1.76 mm, Bethe,
    PHYSICS.md 2.2) within 2 % (log-normal straggling keeps the mean loss), and >= 99 % of the energy within
    2 mm of the source."""
    n_side, sp = 41, 0.1
    ph = VoxelPhantom.homogeneous((n_side,) * 3, (sp,) * 3)
    tables = electron_tables_for_media(list(ph.media), "cpu")
    tph = ph.to_torch("cpu")
    n = 10_000
    gen = torch.Generator().manual_seed(5)
    pos = torch.full((n, 3), n_side * sp / 2)
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=1)
    e = torch.full((n,), 0.498)
    edep = torch.zeros(tph.n_voxels, dtype=torch.float64)
    res = transport_electrons(pos, d, e, tph, tables, edep, gen, return_path_length=True)
    csda_mm = 10.0 * float(tables.range_of(torch.zeros(1, dtype=torch.long), torch.tensor([0.498])))
    assert csda_mm == pytest.approx(1.76, rel=0.02)
    assert float(res.path_length_mm.mean()) == pytest.approx(csda_mm, rel=0.02)
    assert res.deposited_energy_mev + res.escaped_energy_mev == pytest.approx(n * 0.498, rel=1e-6)
    assert res.escaped_energy_mev < 1e-3 * n * 0.498  # a 4.1 mm cube holds all but the rarest tracks
    c = (np.arange(n_side) + 0.5) * sp - n_side * sp / 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    r = np.sqrt(x * x + y * y + z * z).reshape(-1)
    ed = edep.numpy()
    assert ed[r <= 2.0].sum() / ed.sum() >= 0.99


def test_narrow_beam_photon_attenuation():
    """Fraction of 208.37 keV photons crossing 10 cm of water without interacting = exp(-mu t) within 3 sigma."""
    ph = VoxelPhantom.homogeneous((50, 1, 1), (2.0, 2.0, 2.0))
    xs = PhotonCrossSections.build(list(ph.media))
    tables = photon_tables_from_cross_sections(xs, "cpu")
    n = 100_000
    e0 = 0.20837
    pos = torch.zeros(n, 3)
    pos[:, :2] = 1.0
    d = torch.zeros(n, 3)
    d[:, 2] = 1.0
    edep = torch.zeros(ph.to_torch("cpu").n_voxels, dtype=torch.float64)
    res = transport_photons(pos, d, torch.full((n,), e0), ph.to_torch("cpu"), tables, edep,
                            torch.Generator().manual_seed(9), return_escaped=True)
    esc = res.escaped
    uncollided = int(((esc["energy"] == e0) & (esc["dir"][:, 2] == 1.0) & (esc["pos"][:, 2] >= 100.0)).sum())
    p = math.exp(-float(xs.interpolate(0, e0, "total")) * 1.0 * 10.0)
    assert abs(uncollided / n - p) < 3 * math.sqrt(p * (1 - p) / n)
    assert res.escaped_energy_mev + res.deposited_energy_mev == pytest.approx(n * e0, rel=1e-6)


def test_cpu_threads_are_set_for_the_run_and_restored(monkeypatch):
    """cpu_threads=1 runs the transport on one torch thread; None keeps the caller's setting, except under torchrun
    (one per rank); the caller's thread count comes back, also when the run fails."""
    from VoxelDosimetryLib.device import torch_threads
    import VoxelDosimetryLib.montecarlo.engine as engine_module

    before = torch.get_num_threads()
    seen = []
    original = engine_module.transport_photons

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(engine_module, "transport_photons", spy)
    act = _slab_activity((16, 16, 16))
    one = MonteCarloEngine(slab_phantom(16, 2.0), "Lu-177", device="cpu", cpu_threads=1)
    one.run(act, histories=200, seed=1, batch_size=100)
    assert seen and set(seen) == {1} and torch.get_num_threads() == before
    seen.clear()
    default = MonteCarloEngine(slab_phantom(16, 2.0), "Lu-177", device="cpu")
    default.run(act, histories=200, seed=1, batch_size=100)
    assert set(seen) == {before}
    seen.clear()
    monkeypatch.setattr(engine_module, "launched_world", lambda: 2)
    from VoxelDosimetryLib.montecarlo.sharding import Shard

    monkeypatch.setattr(engine_module, "current_shard", lambda device: Shard())  # no process group here
    default.run(act, histories=200, seed=1, batch_size=100)
    assert set(seen) == {engine_module.SHARDED_CPU_THREADS} and torch.get_num_threads() == before
    with pytest.raises(InputFormatError):
        one.run(act, histories=5, n_batches=10)
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
