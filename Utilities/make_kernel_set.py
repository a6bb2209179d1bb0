#!/usr/bin/env python3
"""Generate the shipped Lu-177 kernel set with the project's own Monte Carlo engine (issue #9).

For each grid (4.8, 4.42, 3.9 mm isotropic; 0.98x0.98x3 mm, the DblurDoseNet CT grid) and each medium (ICRP soft
tissue at 1.04 g/cm³ for SVSV/DVK, and every MVSV density bin at or above 0.1 g/cm³ — bins below are air and
get no dose), an electron kernel (sized by the electrons' CSDA reach in that medium) and a photon kernel
(track-length scoring, reaching about 120 mm; 99x99x33 on the 0.98x0.98x3 mm grid) are simulated and stored as
octant NRRDs under VoxelDosimetryLib/kernels/data/, with index.json listing them. Each file records the
equivalent `voxeldosimetry kernel` command. The soft-tissue photon tail (kernels/photon_tail.py: the radial
photon dose beyond the kernels' reach, 2e6 decays) is made as Lu-177/photon_tail_soft_tissue.json and indexed
under "photon_tails". Existing files are kept (rerun to resume).

    .venv/bin/python Utilities/make_kernel_set.py [--only 4.8mm] [--photon-histories 500000]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GRIDS = {"4.8mm": (4.8, 4.8, 4.8), "4.42mm": (4.42, 4.42, 4.42), "3.9mm": (3.9, 3.9, 3.9),
         "0.98x0.98x3mm": (0.98, 0.98, 3.0)}
PHOTON_REACH_MM = 120.0
PHOTON_SIZE = {"0.98x0.98x3mm": (99, 99, 33)}


def media() -> list[tuple[str, float]]:
    """Soft tissue (svsv, dvk) and every MVSV tissue bin: the kernels the methods look up."""
    from VoxelDosimetryLib.dose.value_policy import AIR_DENSITY_G_CM3
    from VoxelDosimetryLib.kernels.medium import method_media

    return method_media("svsv", AIR_DENSITY_G_CM3) + method_media("mvsv", AIR_DENSITY_G_CM3)


def photon_size(grid: str, voxel: tuple) -> tuple:
    from VoxelDosimetryLib.kernels.library import default_kernel_size

    return PHOTON_SIZE.get(grid) or default_kernel_size(voxel, PHOTON_REACH_MM)


def main(argv=None) -> int:
    from VoxelDosimetryLib.kernels.generate import electron_half_width, generate_kernel
    from VoxelDosimetryLib.kernels.kernel import read_kernel, write_kernel
    from VoxelDosimetryLib.kernels.library import SHIPPED_DIR, SHIPPED_INDEX
    from VoxelDosimetryLib.kernels.medium import kernel_medium
    from VoxelDosimetryLib.physics import get_nuclide

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=list(GRIDS), help="grids to make")
    parser.add_argument("--electron-histories", type=int, default=200_000)
    parser.add_argument("--photon-histories", type=int, default=500_000)
    parser.add_argument("--tail-histories", type=int, default=2_000_000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    nuclide = get_nuclide("Lu-177")
    for grid in args.only:
        voxel = GRIDS[grid]
        for i, (medium, density) in enumerate(media()):
            for component in ("electron", "photon"):
                path = SHIPPED_DIR / "Lu-177" / grid / f"{medium}_{density:g}_{component}.nrrd"
                if path.exists():
                    continue
                if component == "electron":
                    half = electron_half_width(nuclide, kernel_medium(medium, density), voxel)
                    size = tuple(2 * h + 1 for h in half)
                    histories = args.electron_histories
                else:
                    size = photon_size(grid, voxel)
                    histories = args.photon_histories
                seed = 1000 * list(GRIDS).index(grid) + 10 * i + (component == "photon")
                command = (f"voxeldosimetry kernel --nuclide Lu-177 --voxel-mm {' '.join(f'{v:g}' for v in voxel)} "
                           f"--medium {medium} --density {density:g} --size {' '.join(map(str, size))} "
                           f"--histories {histories} --component {component} --seed {seed} --out {path.name}")
                t0 = time.time()
                kernel = generate_kernel("Lu-177", voxel, size, medium=medium, density_g_cm3=density,
                                         histories=histories, component=component, seed=seed, device=args.device,
                                         command=command)
                path.parent.mkdir(parents=True, exist_ok=True)
                write_kernel(kernel, path, octant=True)
                print(json.dumps({"file": str(path.relative_to(SHIPPED_DIR)), "time_s": round(time.time() - t0, 1),
                                  "centre_relative_uncertainty": kernel.metadata["centre_relative_uncertainty"],
                                  "absorbed_kev": round(kernel.energy_per_decay_kev(), 3)}), flush=True)
    from VoxelDosimetryLib.kernels.photon_tail import generate_photon_tail, read_photon_tail, write_photon_tail

    tail_path = SHIPPED_DIR / "Lu-177" / "photon_tail_soft_tissue.json"
    if not tail_path.exists():
        write_photon_tail(generate_photon_tail("Lu-177", "soft_tissue", None, args.tail_histories, seed=0,
                                               device=args.device), tail_path)
    tails = []
    for path in sorted(SHIPPED_DIR.glob("*/photon_tail_*.json")):
        tail = read_photon_tail(path)
        tails.append({"file": str(path.relative_to(SHIPPED_DIR)), "nuclide": tail.nuclide, "medium": tail.medium,
                      "density_g_cm3": tail.density_g_cm3, "reach_mm": tail.reach_mm,
                      "histories": tail.metadata.get("histories"), "command": tail.metadata.get("command")})
    entries = []
    for path in sorted(SHIPPED_DIR.glob("*/*/*.nrrd")):
        k = read_kernel(path)
        entries.append({"file": str(path.relative_to(SHIPPED_DIR)), "nuclide": k.nuclide, "medium": k.medium,
                        "density_g_cm3": k.density_g_cm3, "component": k.component, "voxel_mm": list(k.spacing_mm),
                        "size_xyz": list(k.shape[::-1]), "histories": k.metadata.get("histories"),
                        "centre_relative_uncertainty": k.metadata.get("centre_relative_uncertainty"),
                        "absorbed_kev_per_decay": k.energy_per_decay_kev(), "command": k.metadata.get("command")})
    SHIPPED_INDEX.write_text(json.dumps({"format": "voxeldosimetry-kernel-index", "version": 1,
                                         "generator": "Utilities/make_kernel_set.py", "kernels": entries,
                                         "photon_tails": tails},
                                        indent=1) + "\n")
    print(f"{len(entries)} kernels indexed in {SHIPPED_INDEX}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
