"""Monte Carlo validation on the shared reference kernel (fast version of Testing/benchmarks/mc_validation.py)."""
from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("xraylib")

from conftest import require_data  # noqa: E402

from VoxelDosimetryLib.montecarlo import validation as val  # noqa: E402


@pytest.mark.realdata
def test_soft_tissue_vsv_against_reference_kernel(test_data_dir):
    require_data(test_data_dir, val.REFERENCE_KERNEL_FILE)
    r = val.soft_tissue_vsv(histories=30_000, data_dir=test_data_dir, size=11)
    # our self-absorbed energy agrees with the sphere table (4.8 mm cube ~ 137 keV, PHYSICS.md 4.1); the reference
    # kernel's centre implies 147 keV (99 % of the electron energy): docs/VALIDATION.md reports the gap (-6 %)
    assert r["self_absorbed_kev"] == pytest.approx(137.0, rel=0.03)
    assert abs(r["offsets"]["0,0,0"]["relative"]) < 0.10
    assert abs(r["offsets"]["1,0,0"]["relative"]) < 0.25


@pytest.mark.realdata
def test_cli_mc_dose_on_patient15(test_data_dir, tmp_path, capsys):
    """`voxeldosimetry dose --method mc` on the shared patient15 phantom (HU + 1000 attenuation map, relative
    activity scaled to 7.4 GBq): dose rate and uncertainty written, energy conserved, input untouched."""
    import json

    import numpy as np

    from VoxelDosimetryLib.cli.main import main
    from VoxelDosimetryLib.io import read_volume

    folder = require_data(test_data_dir, "patient15_LuDOTATATE")
    out, unc = tmp_path / "dose.nrrd", tmp_path / "unc.nrrd"
    argv = ["dose", "--activity", str(folder / "patient15_LuDOTATATE_src.h33"), "--total-activity-mbq", "7400",
            "--ct", str(folder / "patient15_LuDOTATATE_attn.h33"), "--ct-offset-hu", "-1000", "--method", "mc",
            "--histories", "20000", "--device", "cpu", "--out", str(out), "--uncertainty", str(unc)]
    assert main(argv) == 0
    dose, u = read_volume(out), read_volume(unc)
    assert dose.quantity == "dose_rate" and dose.unit == "Gy/s" and dose.shape == (90, 70, 108)
    d = dose.array
    assert np.all(np.isfinite(d)) and d.min() >= 0 and d.max() > 0
    src = read_volume(folder / "patient15_LuDOTATATE_src.h33").array
    un = u.array
    assert np.all(np.isfinite(un)) and un.min() >= 0 and un.max() <= 1.0
    info = json.loads(capsys.readouterr().out)["info"]
    assert abs(info["energy_balance_relative_error"]) < 1e-3
    # the body absorbs all electrons and about half the photon energy (35 of 183 keV per decay are photons)
    assert 0.85 < info["deposited_per_decay_kev"] / info["emitted_per_decay_kev"] < 0.97
    assert float(src.astype(np.float64).sum()) == pytest.approx(7.54e8, rel=0.01)  # input untouched


def test_kerma_scoring_agrees_with_analog_photons():
    """Track-length (kerma) photon scoring gives the same photon energy in a 30 mm sphere as analog scoring."""
    import numpy as np

    from VoxelDosimetryLib.montecarlo.engine import MonteCarloEngine
    from VoxelDosimetryLib.montecarlo.geometry import AIR, VoxelPhantom
    from VoxelDosimetryLib.volume.volume import Grid

    n, sp, radius = 24, 3.0, 30.0
    c = (np.arange(n) + 0.5) * sp - n * sp / 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    inside = np.sqrt(x * x + y * y + z * z) <= radius
    ph = VoxelPhantom.from_arrays(Grid((n,) * 3, (sp,) * 3, (0.0, 0.0, 0.0)), [AIR, val.icrp_soft_tissue()],
                                  inside.astype(np.int64), np.where(inside, 1.03, 0.00121))
    eng = MonteCarloEngine(ph, "Lu-177", device="cpu", components=("photon",))
    e = {k: eng.run(inside.astype(float), histories=30_000, seed=3, track_length_photons=k) for k in (False, True)}
    analog, kerma = (float(e[k].edep.array[inside].sum()) for k in (False, True))
    assert kerma == pytest.approx(analog, rel=0.05)
    # kerma scoring spreads deposits along tracks: lower variance in the sphere's outer voxels
    shell = inside & (np.sqrt(x * x + y * y + z * z) > 20.0)
    assert float(e[True].uncertainty.array[shell].mean()) < float(e[False].uncertainty.array[shell].mean())
