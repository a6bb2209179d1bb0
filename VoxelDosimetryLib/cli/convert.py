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
    parser.add_argument("--quantity", choices=sorted(QUANTITIES), help="state what IN holds when the file does not say")
    parser.add_argument("--unit", help="unit of IN's values when the file does not say (e.g. Bq/mL, HU, Gy)")
    parser.add_argument("--to-unit", help="express the values in this unit in OUT (e.g. MBq/mL -> Bq/mL)")
    return parser


def run(args: argparse.Namespace) -> int:
    from VoxelDosimetryLib.cli.common import FOLDER, VOLUME_EXTENSIONS, prepare_outputs, say
    from VoxelDosimetryLib.io import read_volume, write_volume

    prepare_outputs({"OUT": args.output}, [args.input], {"OUT": VOLUME_EXTENSIONS + FOLDER})
    volume = read_volume(args.input, quantity=args.quantity, unit=args.unit)
    if args.to_unit:
        volume = volume.to_unit(args.to_unit)
    written = write_volume(volume, args.output)
    print(json.dumps({"input": str(args.input), "output": str(written), **volume.summary()}, indent=2))
    say("convert", f"converted {args.input} -> {written}")
    return 0
