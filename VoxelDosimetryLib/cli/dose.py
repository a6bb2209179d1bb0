"""`voxeldosimetry dose`: absorbed dose (from TIA) or dose rate (from activity) with a registered method."""
from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub) -> argparse.ArgumentParser:
    from VoxelDosimetryLib.dose import available_dose_methods

    methods = ", ".join(f"{m.name} ({m.description})" for m in available_dose_methods())
    parser = sub.add_parser(
        "dose", help="dose or dose rate from a TIA or activity map and a CT",
        description="Compute absorbed dose (Gy) from a time-integrated activity map, or dose rate (Gy/s) from an "
                    f"activity map, on the CT grid. Methods: {methods}. A source on another grid is resampled "
                    "onto the CT grid conserving activity.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--activity", help="activity concentration image (Bq/mL) -> dose rate (Gy/s)")
    source.add_argument("--tia", help="time-integrated activity image (Bq*s/mL) -> dose (Gy)")
    parser.add_argument("--ct", required=True, help="CT image in HU (defines the dose grid)")
    parser.add_argument("--nuclide", default="Lu-177", help="radionuclide (default Lu-177)")
    parser.add_argument("--method", required=True, help="dose method name (see above)")
    parser.add_argument("--out", required=True, help="output dose image")
    parser.add_argument("--uncertainty", help="output relative uncertainty image (stochastic methods)")
    parser.add_argument("--histories", type=int, help="number of decays to simulate (Monte Carlo)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (stochastic methods)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--component", choices=("all", "electrons"), default="all",
                        help="LED only: deposit all emitted energy or the electrons' only")
    return parser


def _progress(fraction: float, message: str) -> None:
    print(f"[dose {100 * fraction:5.1f}%] {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from VoxelDosimetryLib.dose import DoseRequest, compute_dose, get_dose_method
    from VoxelDosimetryLib.errors import InputFormatError
    from VoxelDosimetryLib.geometry import resample_to
    from VoxelDosimetryLib.io import read_volume, write_volume

    method = get_dose_method(args.method)
    if args.uncertainty and not method.provides_uncertainty:
        raise InputFormatError(f"Method {method.name!r} gives no uncertainty map; drop --uncertainty.")
    ct = read_volume(args.ct, quantity="ct")
    if args.activity:
        source = read_volume(args.activity)
        source.require_quantity("activity_concentration")
    else:
        source = read_volume(args.tia)
        source.require_quantity("tia_concentration")
    difference = source.grid.mismatch(ct.grid)
    if difference is not None:
        _progress(0.0, f"resampling the source onto the CT grid ({difference})")
        source = resample_to(source, ct, mode="activity")
    request = DoseRequest(source, ct, nuclide=args.nuclide, device=args.device, seed=args.seed,
                          histories=args.histories, options={"component": args.component}, progress=_progress)
    result = compute_dose(method.name, request)
    written = {"dose": str(write_volume(result.dose, args.out))}
    if args.uncertainty and result.uncertainty is not None:
        written["uncertainty"] = str(write_volume(result.uncertainty, args.uncertainty))
    print(json.dumps({"method": method.name, "outputs": written, "info": result.info,
                      "dose": result.dose.summary()}, indent=2, default=str))
    return 0
