"""Monte Carlo speed: Lu-177 decays/s for a patient-like phantom (body, lungs, spine, uptake blobs) at 64^3 and
128^3, full physics and electron-only / photon-only parts. Prints JSON on stdout.

    python Testing/benchmarks/mc_speed.py [--device auto] [--decays 200000] [--sizes 64 128]
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
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
