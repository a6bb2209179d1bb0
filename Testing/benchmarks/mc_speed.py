"""Monte Carlo speed: Lu-177 decays/s for a patient-like phantom (body, lungs, spine, uptake blobs) at 64^3 and
128^3, full physics and electron-only / photon-only parts. Prints JSON on stdout.

    python Testing/benchmarks/mc_speed.py [--device auto] [--decays 200000] [--sizes 64 128]
    python Testing/benchmarks/mc_speed.py --efficiency [--data ../shared/data] [--decays 1e6]

--efficiency (issue #10): efficiency e = 1 / (sigma^2 T) of each technique alone and together, side by side in one
run, on the 128^3 patient-like phantom, patient15 and the real SPECT/CT patient on its SPECT grid (when --data
holds them). sigma = mean relative uncertainty over the body voxels at >= 10 % of the body's maximum dose (body =
body_mask and density >= 0.1 g/cm3), T = transport wall time; "before" = the engine's earlier settings (the
caller's torch threads, collision photon scoring, full electron transport).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from VoxelDosimetryLib.montecarlo.engine import MonteCarloEngine  # noqa: E402
from VoxelDosimetryLib.volume.volume import Volume  # noqa: E402


def patient_like(n: int, spacing_mm: float) -> tuple[Volume, np.ndarray]:
    """CT (HU) and activity (Bq/mL) of an elliptical torso with lungs, a spine, a liver and two kidneys."""
    c = (np.arange(n) + 0.5) / n * 2.0 - 1.0  # [-1, 1]
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    hu = np.full((n, n, n), -1000.0, np.float32)
    body = (x / 0.85) ** 2 + (y / 0.6) ** 2 <= 1.0
    hu[body] = 40.0
    lungs = (((x - 0.4) / 0.28) ** 2 + (y / 0.35) ** 2 + ((z - 0.4) / 0.5) ** 2 <= 1.0) | \
            (((x + 0.4) / 0.28) ** 2 + (y / 0.35) ** 2 + ((z - 0.4) / 0.5) ** 2 <= 1.0)
    hu[lungs & body] = -800.0
    spine = (x / 0.1) ** 2 + ((y + 0.4) / 0.1) ** 2 <= 1.0
    hu[spine] = 700.0
    act = np.zeros((n, n, n), np.float32)
    act[body] = 1.0e3
    liver = ((x + 0.35) / 0.3) ** 2 + ((y - 0.05) / 0.3) ** 2 + ((z + 0.3) / 0.3) ** 2 <= 1.0
    act[liver] = 2.0e4
    for sx in (-0.35, 0.35):
        kid = ((x - sx) / 0.1) ** 2 + ((y + 0.3) / 0.12) ** 2 + ((z + 0.6) / 0.15) ** 2 <= 1.0
        act[kid] = 1.0e5
    ct = Volume(hu, spacing=(spacing_mm,) * 3, quantity="ct", unit="HU")
    return ct, act


EFFICIENCY_SETTINGS = {  # name: (cpu_threads, track_length_photons, electron_range_rejection)
    "before": (None, False, False),
    "one thread": (1, False, False),
    "track-length photons": (None, True, False),
    "range rejection": (None, False, True),
    "all three": (1, True, True),
}


def efficiency_cases(data: Path | None) -> list[tuple[str, Volume, Volume]]:
    """(name, CT in HU, activity Bq/mL) on the same grid: the 128^3 phantom, and patient15 and the real SPECT/CT
    patient when their files are in `data`."""
    cases = []
    ct, act = patient_like(128, 2.4)
    cases.append(("patient-like 128^3 at 2.4 mm", ct, Volume(act, spacing=(2.4,) * 3,
                                                             quantity="activity_concentration", unit="Bq/mL")))
    if data is None:
        return cases
    if (data / "patient15_LuDOTATATE").is_dir():
        from VoxelDosimetryLib.montecarlo.validation import patient15_inputs

        ct15, src = patient15_inputs(data)
        ct15 = ct15.with_array(np.where(ct15.array == 2000, -1000.0, ct15.array).astype(np.float32))  # couch
        from VoxelDosimetryLib.physics.body_mask import body_mask

        weights = np.where(body_mask(ct15), src.array, 0.0)
        cases.append(("patient15 108x70x90", ct15, ct15.with_array(
            (weights * 7.4e9 / weights.sum() / ct15.voxel_volume_ml).astype(np.float32),
            quantity="activity_concentration", unit="Bq/mL")))
    real = data / "real_lu177_spect_ct"
    if (real / "spect_counts.nrrd").is_file() and (real / "ct_dicom.zip").is_file():
        from VoxelDosimetryLib.io import read_volume
        from VoxelDosimetryLib.physics.voxel_mass import ct_on_grid

        counts = read_volume(real / "spect_counts.nrrd", quantity="counts", unit="counts")
        ct_real = ct_on_grid(read_volume(real / "ct_dicom.zip", unit="HU"), counts.grid)
        cases.append(("real patient, SPECT grid 128x128x208", ct_real, counts.with_array(
            counts.array.astype(np.float32), quantity="activity_concentration", unit="Bq/mL")))
    return cases


def efficiency_rows(cases, decays: int, device: str, batch_size: int) -> list[dict]:
    from VoxelDosimetryLib.dose.value_policy import AIR_DENSITY_G_CM3
    from VoxelDosimetryLib.physics import ct_to_density
    from VoxelDosimetryLib.physics.body_mask import body_mask

    rows = []
    for name, ct, activity in cases:
        body = body_mask(ct) & (ct_to_density(ct).array >= AIR_DENSITY_G_CM3)
        base = None
        for setting, (threads, tle, rr) in EFFICIENCY_SETTINGS.items():
            eng = MonteCarloEngine(ct, "Lu-177", device=device, cpu_threads=threads, electron_range_rejection=rr)
            res = eng.run(activity, histories=decays, seed=7, batch_size=batch_size, track_length_photons=tle)
            dose, unc = res.dose.array, res.uncertainty.array
            high = body & (dose >= 0.1 * dose[body].max())
            sigma = float(unc[high].mean())
            seconds = res.stats["time_s"]
            eff = 1.0 / (sigma ** 2 * seconds)
            base = eff if base is None else base
            rows.append({"case": name, "setting": setting, "decays": decays, "time_s": round(seconds, 2),
                         "decays_per_s": round(res.stats["decays_per_s"]), "mean_sigma": round(sigma, 4),
                         "voxels": int(high.sum()), "efficiency": round(eff, 4), "ratio_to_before": round(eff / base, 2),
                         "electron_steps": res.stats["electron_steps"]})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--efficiency", action="store_true", help="the issue-#10 efficiency table (see above)")
    ap.add_argument("--data", type=Path, default=None, help="shared data folder (patient15, real SPECT/CT)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--decays", type=float, default=2e5)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--batch-size", type=int, default=500_000)
    ap.add_argument("--convergence", type=float, nargs="*", default=[1e5, 4e5, 1.6e6],
                    help="decays for the uncertainty-vs-time runs on the largest phantom (none to skip)")
    args = ap.parse_args(argv)
    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
           "cases": []}
    if args.efficiency:
        out["efficiency"] = efficiency_rows(efficiency_cases(args.data), int(args.decays), args.device,
                                            args.batch_size)
        print(json.dumps(out, indent=1))
        return 0
    for n in args.sizes:
        spacing = 4.8 * 64 / n  # same body size at both resolutions (307 mm field of view)
        ct, act = patient_like(n, spacing)
        activity = Volume(act, spacing=(spacing,) * 3, quantity="activity_concentration", unit="Bq/mL")
        for comps in (("electron", "photon"), ("electron",), ("photon",)):
            t0 = time.perf_counter()
            eng = MonteCarloEngine(ct, "Lu-177", device=args.device, components=comps)
            setup = time.perf_counter() - t0
            decays = int(args.decays)
            res = eng.run(activity, histories=decays, seed=1, batch_size=args.batch_size)
            s = res.stats
            liver_unc = float(np.median(res.uncertainty.array[act >= 2.0e4]))
            out["cases"].append({
                "size": n, "spacing_mm": spacing, "components": list(comps), "device": s["device"],
                "decays": decays, "setup_s": round(setup, 3), "time_s": round(s["time_s"], 3),
                "decays_per_s": round(s["decays_per_s"], 1), "electron_time_s": round(s["electron_time_s"], 3),
                "photon_time_s": round(s["photon_time_s"], 3),
                "energy_balance_relative_error": s["energy_balance_relative_error"],
                "median_relative_uncertainty_in_liver_and_kidneys": liver_unc})
            print(json.dumps(out["cases"][-1]), file=sys.stderr)
    # uncertainty reached vs time: full physics on the largest phantom, increasing decays (baseline: the first run)
    n = max(args.sizes)
    spacing = 4.8 * 64 / n
    ct, act = patient_like(n, spacing)
    activity = Volume(act, spacing=(spacing,) * 3, quantity="activity_concentration", unit="Bq/mL")
    eng = MonteCarloEngine(ct, "Lu-177", device=args.device)
    out["convergence"] = []
    for decays in args.convergence:
        res = eng.run(activity, histories=int(decays), seed=2, batch_size=args.batch_size)
        s = res.stats
        out["convergence"].append({"size": n, "decays": int(decays), "time_s": round(s["time_s"], 3),
                                   "decays_per_s": round(s["decays_per_s"], 1),
                                   "median_relative_uncertainty_in_liver_and_kidneys":
                                       float(np.median(res.uncertainty.array[act >= 2.0e4])),
                                   "median_relative_uncertainty_in_kidneys":
                                       float(np.median(res.uncertainty.array[act >= 1.0e5]))})
        print(json.dumps(out["convergence"][-1]), file=sys.stderr)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
