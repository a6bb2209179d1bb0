"""Local energy deposition (LED) against the project's Monte Carlo in soft tissue: prints JSON on stdout.

    .venv/bin/python Testing/benchmarks/led_vs_mc.py [--histories 3e5] [--device cpu] [--seed 1]

Uniform Lu-177 activity (1 MBq/mL) in a homogeneous cube of ICRP soft tissue (31^3 voxels of 4 mm, 1.04 g/cm3,
surrounded by nothing: particles leaving the cube escape). Reported: the mean dose rate over the central 11^3
voxels from Monte Carlo (all emissions, and photons only, to split the photon share), from LED electron (the
default) and LED total, and their ratios. The LED doses go through compute_dose on a CT whose HU maps to the same
density; the MC runs on VoxelPhantom.homogeneous with the NIST 'Tissue, Soft (ICRP)' composition.
docs/DOSE_METHODS.md quotes the numbers.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from VoxelDosimetryLib import Volume  # noqa: E402
from VoxelDosimetryLib.dose import DoseRequest, compute_dose  # noqa: E402
from VoxelDosimetryLib.montecarlo.engine import run_monte_carlo  # noqa: E402
from VoxelDosimetryLib.montecarlo.geometry import VoxelPhantom  # noqa: E402
from VoxelDosimetryLib.montecarlo.validation import icrp_soft_tissue  # noqa: E402
from VoxelDosimetryLib.physics import ct_to_density, get_nuclide, hu_to_density  # noqa: E402
from VoxelDosimetryLib.qc import collect_qc  # noqa: E402
from VoxelDosimetryLib.volume.numbers import integer_type  # noqa: E402

ACTIVITY_BQ_ML = 1e6


def hu_for_density(density: float) -> float:
    """The HU whose Schneider density is `density` (the curve is monotonic piecewise-linear near water)."""
    hu = np.arange(-200.0, 300.0, 0.01)
    return float(np.interp(density, hu_to_density(hu), hu))


def core_mean(array: np.ndarray, core: int) -> float:
    lo = [(n - core) // 2 for n in array.shape]
    return float(array[lo[0]:lo[0] + core, lo[1]:lo[1] + core, lo[2]:lo[2] + core].astype(np.float64).mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--histories", type=integer_type(positive=True), default=300_000)
    parser.add_argument("--size", type=int, default=31, help="voxels per side (default 31)")
    parser.add_argument("--core", type=int, default=11, help="central voxels per side averaged (default 11)")
    parser.add_argument("--voxel-mm", type=float, default=4.0)
    parser.add_argument("--density", type=float, default=1.04, help="g/cm3 (default 1.04)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    shape, spacing = (args.size,) * 3, (args.voxel_mm,) * 3
    activity = Volume(np.full(shape, ACTIVITY_BQ_ML, np.float32), spacing=spacing,
                      quantity="activity_concentration", unit="Bq/mL")
    hu = hu_for_density(args.density)
    ct = Volume(np.full(shape, hu, np.float32), spacing=spacing, quantity="ct", unit="HU")
    led_density = float(ct_to_density(ct).array[0, 0, 0])

    with collect_qc() as log:  # the homogeneous CT has no air: 'ct_looks_like_activity' is expected
        led = {c: core_mean(compute_dose("led", DoseRequest(activity, ct, options={"component": c})).dose.array,
                            args.core) for c in ("electron", "total")}

    phantom = VoxelPhantom.homogeneous(shape, spacing, icrp_soft_tissue(args.density))
    start = time.perf_counter()
    full = run_monte_carlo(activity, phantom, "Lu-177", histories=args.histories, device=args.device,
                           seed=args.seed, batch_size=min(args.histories, 200_000))
    photons = run_monte_carlo(activity, phantom, "Lu-177", histories=args.histories, device=args.device,
                              seed=args.seed + 1, batch_size=min(args.histories, 200_000), components=("photon",))
    elapsed = time.perf_counter() - start
    mc = core_mean(full.dose.array, args.core)
    mc_photon = core_mean(photons.dose.array, args.core)
    core_unc = float(core_mean(full.uncertainty.array, args.core) / args.core ** 1.5)  # mean of independent voxels
    budget = get_nuclide("Lu-177").energy_budget()
    out = {
        "setup": {"nuclide": "Lu-177", "activity_bq_per_ml": ACTIVITY_BQ_ML, "shape": list(shape),
                  "voxel_mm": args.voxel_mm, "cube_cm": args.size * args.voxel_mm / 10.0,
                  "density_g_cm3": args.density, "led_ct_hu": round(hu, 2), "led_density_g_cm3": led_density,
                  "mc_medium": "Tissue, Soft (ICRP) (NIST via xraylib)", "core_voxels": args.core ** 3,
                  "histories": args.histories, "device": full.stats["device"], "seed": args.seed},
        "energy_per_decay_kev": {"non_penetrating": budget["non_penetrating"] * 1e3,
                                 "photons": budget["photons"] * 1e3, "total": budget["total"] * 1e3},
        "core_mean_dose_rate_gy_per_s": {"mc": mc, "mc_photons_only": mc_photon, "mc_electrons": mc - mc_photon,
                                         "led_electron": led["electron"], "led_total": led["total"]},
        "ratios": {"mc_over_led_electron": mc / led["electron"], "mc_over_led_total": mc / led["total"],
                   "mc_electrons_over_led_electron": (mc - mc_photon) / led["electron"],
                   "absorbed_photon_fraction_in_core": mc_photon / (led["total"] - led["electron"])},
        "mc_core_mean_relative_uncertainty_approx": core_unc,
        "mc_escaped_photon_fraction_of_emitted_photon_energy":
            photons.stats["escaped_photon_mev"] / max(photons.stats["emitted_photon_mev"], 1e-300),
        "mc_energy_balance_relative_error": full.stats["energy_balance_relative_error"],
        "mc_time_s": round(elapsed, 1), "qc_warnings": sorted(set(log.codes())),
        "python": platform.python_version(),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
