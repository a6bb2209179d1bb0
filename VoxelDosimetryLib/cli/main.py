"""Entry point of the `voxeldosimetry` console script: one sub-command per module in this package."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from VoxelDosimetryLib import __version__
from VoxelDosimetryLib.cli import compare, convert, demo, dose, gate, info, register, run, tia, voi
from VoxelDosimetryLib.errors import VoxelDosimetryError

# Every sub-command module provides add_parser(subparsers) and run(args) -> int.
COMMANDS = (info, demo, convert, dose, register, compare, voi, tia, gate, run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxeldosimetry",
                                     description="Patient-specific voxel dosimetry for radiopharmaceutical therapy.")
    parser.add_argument("--version", action="version", version=f"voxeldosimetry {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS:
        module.add_parser(sub).set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 input or processing error, 2 usage error)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except VoxelDosimetryError as exc:
        print(f"voxeldosimetry {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(f"voxeldosimetry {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
