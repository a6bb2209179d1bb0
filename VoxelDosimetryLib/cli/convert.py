"""`voxeldosimetry convert IN OUT`: change file format (and optionally unit) keeping geometry exactly."""
from __future__ import annotations

import argparse
import json

from VoxelDosimetryLib.volume.units import QUANTITIES


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "convert", help="convert a volume between formats (NRRD, NIfTI, MHD/MHA, Interfile, DICOM)",
        description="Read IN (file, DICOM folder or .zip) and write OUT in the format of its extension. "
                    "World geometry (LPS) is kept exactly; quantity and unit travel in NRRD fields or a JSON sidecar.")
    parser.add_argument("input", metavar="IN")
    parser.add_argument("output", metavar="OUT")
    parser.add_argument("--quantity", choices=sorted(QUANTITIES),
                        help="state what IN holds when the file does not say (a file that declares another "
                             "quantity is refused unless --relabel)")
    parser.add_argument("--unit", help="unit of IN's values when the file does not say (e.g. Bq/mL, HU, Gy; a file "
                                       "that declares another unit is refused unless --relabel)")
    parser.add_argument("--to-unit", help="express the values in this unit in OUT (e.g. MBq/mL -> Bq/mL)")
    parser.add_argument("--relabel", action="store_true",
                        help="with --quantity/--unit: replace what IN declares (the voxel values are not changed), "
                             "for a file its writer labelled wrongly; to convert values use --to-unit")
    return parser


def run(args: argparse.Namespace) -> int:
    from VoxelDosimetryLib.cli.common import FOLDER, VOLUME_EXTENSIONS, prepare_outputs, say
    from VoxelDosimetryLib.cli.inputs import read_input
    from VoxelDosimetryLib.errors import InputFormatError, UnitError
    from VoxelDosimetryLib.io import write_volume
    from VoxelDosimetryLib.io.volume_io import format_for_path

    if args.relabel and args.quantity is None and args.unit is None:
        raise InputFormatError("--relabel replaces the quantity/unit IN declares with --quantity and/or --unit; "
                               "give at least one of them, or drop --relabel.")
    prepare_outputs({"OUT": args.output}, [args.input], {"OUT": VOLUME_EXTENSIONS + FOLDER})
    given = " and ".join(o for o, v in (("--quantity", args.quantity), ("--unit", args.unit)) if v)
    fix = (f"Drop {given} to keep what IN declares; to replace the declaration (the values are not changed: only "
           "for a file its writer labelled wrongly), add --relabel")
    if args.unit and not args.quantity:
        fix = f"To express the values in {args.unit} in OUT, use --to-unit {args.unit} instead of --unit. " + fix
    volume = read_input(args.input, args.quantity, args.unit, relabel=args.relabel, fix=fix)
    if args.relabel:
        say("convert", f"relabelled {args.input} as {volume.quantity} ({volume.unit}); the values are unchanged")
    if args.to_unit:
        volume = volume.to_unit(args.to_unit)
    if format_for_path(args.output) is None and volume.quantity not in ("ct", "unknown"):
        raise UnitError(f"OUT {args.output} has no volume extension, so it would be a DICOM series, but DICOM output "
                        f"is a CT image series only for now (no RT Dose or NM writer) and {args.input} holds "
                        f"{volume.quantity} ({volume.unit}). Write it as NRRD (.nrrd) or NIfTI (.nii.gz) instead.")
    written = write_volume(volume, args.output)
    print(json.dumps({"input": str(args.input), "output": str(written), **volume.summary()}, indent=2))
    say("convert", f"converted {args.input} -> {written}")
    return 0
