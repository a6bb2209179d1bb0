"""`voxeldosimetry register`: a timepoint's CT onto the reference CT; its SPECT follows with the same transform."""
from __future__ import annotations

import argparse
import json


def add_parser(sub) -> argparse.ArgumentParser:
    from VoxelDosimetryLib.volume.numbers import integer_type

    parser = sub.add_parser(
        "register", help="register a timepoint's CT to the reference CT and move its SPECT along",
        description="Register MOVING CT onto FIXED (reference) CT with mutual information (rigid by default), write "
                    "the transform (it maps fixed points to moving points, ITK convention) and optionally the moved "
                    "SPECT (activity conserved) and CT. The quality report (JSON) goes to stdout. The moved SPECT "
                    "lies on --reference-spect's grid when given, else on a grid with the moving SPECT's voxel size "
                    "covering the fixed CT.")
    parser.add_argument("--fixed", required=True, help="reference CT (HU)")
    parser.add_argument("--moving", required=True, help="CT of the timepoint to align (HU)")
    parser.add_argument("--moving-spect", help="SPECT acquired with the moving CT (Bq/mL, Bq or counts); needs "
                                               "--out-spect")
    parser.add_argument("--reference-spect", help="SPECT of the reference timepoint: its grid receives the moved SPECT")
    parser.add_argument("--out-transform", required=True, help="output transform file (.tfm, .txt, .h5)")
    parser.add_argument("--out-spect", help="output moved SPECT (needs --moving-spect)")
    parser.add_argument("--out-ct", help="output moving CT resampled onto the fixed CT grid")
    parser.add_argument("--kind", choices=("rigid", "affine", "bspline"), default="rigid",
                        help="transform model (default rigid; affine and bspline start from the rigid result)")
    parser.add_argument("--backend", choices=("simpleitk", "elastix"), default="simpleitk",
                        help="registration engine (elastix needs `pip install itk-elastix`)")
    parser.add_argument("--initializer", choices=("auto", "geometry", "moments", "identity"), default="auto",
                        help="starting alignment (default auto: the best of the three by the coarse metric)")
    parser.add_argument("--seed", type=integer_type(minimum=0, example="42"), default=0,
                        help="seed of the metric's random sampling (default 0)")
    parser.add_argument("--report", help="also write the quality report JSON to this file")
    parser.add_argument("--spect-quantity", choices=("activity_concentration", "activity", "counts"),
                        help="state what --moving-spect holds when its file does not say (a file that declares "
                             "another quantity is refused)")
    return parser


def _progress(fraction: float, message: str) -> None:
    from VoxelDosimetryLib.cli.common import say

    say(f"register {100 * fraction:5.1f}%", message)


def _read_ct(path, option: str):
    """A CT volume: files that do not say what they hold are taken as HU; other quantities are refused."""
    from VoxelDosimetryLib.cli.inputs import read_ct

    return read_ct(path, option)


def run(args: argparse.Namespace) -> int:
    from VoxelDosimetryLib.cli.common import JSON, VOLUME_EXTENSIONS, prepare_outputs, say
    from VoxelDosimetryLib.cli.inputs import read_input
    from VoxelDosimetryLib.errors import InputFormatError
    from VoxelDosimetryLib.io import read_volume, write_volume
    from VoxelDosimetryLib.io.safe_write import write_text_atomic
    from VoxelDosimetryLib.qc import qc_warn
    from VoxelDosimetryLib.kinetics.registration import (
        TRANSFORM_SUFFIXES, apply_to_spect, apply_to_volume, covering_grid, register_ct, write_transform,
    )

    if args.out_spect and not args.moving_spect:
        raise InputFormatError("--out-spect needs --moving-spect (the SPECT acquired with the moving CT).")
    if args.moving_spect and not args.out_spect:
        raise InputFormatError("--moving-spect needs --out-spect (where to write the moved SPECT); add --out-spect "
                               "PATH, or drop --moving-spect to register the CTs only.")
    if args.reference_spect and not args.out_spect:
        raise InputFormatError("--reference-spect only sets the grid of --out-spect; add --out-spect or drop it.")
    prepare_outputs({"--out-transform": args.out_transform, "--out-spect": args.out_spect, "--out-ct": args.out_ct,
                     "--report": args.report}, [args.fixed, args.moving, args.moving_spect, args.reference_spect],
                    {"--out-transform": TRANSFORM_SUFFIXES, "--out-spect": VOLUME_EXTENSIONS,
                     "--out-ct": VOLUME_EXTENSIONS, "--report": JSON})
    fixed = _read_ct(args.fixed, "--fixed")
    moving = _read_ct(args.moving, "--moving")
    spect = read_input(args.moving_spect, args.spect_quantity, quantity_option="--spect-quantity") \
        if args.moving_spect else None
    if spect is not None and spect.quantity == "unknown":
        raise InputFormatError(f"{args.moving_spect} does not say what it holds; add --spect-quantity "
                               "(activity_concentration, activity or counts).")
    if spect is not None and spect.quantity not in ("activity_concentration", "activity", "counts"):
        raise InputFormatError(f"{args.moving_spect} declares {spect.quantity} ({spect.unit}), not a SPECT: "
                               "--moving-spect needs activity concentration, activity or counts (the SPECT acquired "
                               "with the moving CT).")
    result = register_ct(fixed, moving, kind=args.kind, backend=args.backend, seed=args.seed, progress=_progress,
                         initializer=args.initializer)
    outputs = {"transform": str(write_transform(result, args.out_transform))}
    if args.out_spect:
        if args.reference_spect:
            grid = read_volume(args.reference_spect).grid
            grid_note = f"grid of {args.reference_spect}"
        else:
            grid = covering_grid(fixed.grid, spect.spacing)
            grid_note = "moving SPECT voxel size, covering the fixed CT"
        say("register", f"moving the SPECT onto the {grid_note}")
        outputs["spect"] = str(write_volume(apply_to_spect(spect, result, grid), args.out_spect))
        outputs["spect_grid"] = grid_note
    if args.out_ct:
        moved_ct = apply_to_volume(moving, result, fixed)
        moved_ct = moved_ct.replace(array=moved_ct.array.astype("float32"))  # HU need no double precision
        outputs["ct"] = str(write_volume(moved_ct, args.out_ct))
    if args.report:
        outputs["report"] = str(args.report)
    report = {"fixed": str(args.fixed), "moving": str(args.moving), "outputs": outputs, **result.to_dict()}
    text = json.dumps(report, indent=2, default=str)
    if args.report:
        write_text_atomic(args.report, text + "\n")
    print(text)
    for warning in result.quality.get("warnings", []):
        qc_warn("registration_quality", warning)
    return 0
