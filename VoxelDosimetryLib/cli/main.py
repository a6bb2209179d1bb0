"""Entry point of the `voxeldosimetry` console script: one sub-command per module in this package.

Every command runs inside a QC collector (warnings reach stderr as they happen) and an output session (its
outputs are checked before any work, written atomically, and never over an input: io/safe_write.py).
"""
from __future__ import annotations

import argparse
import sys
import traceback
from typing import Sequence

from VoxelDosimetryLib import __version__
from VoxelDosimetryLib.cli import compare, convert, demo, dose, gate, info, kernel, register, run, tia, voi
from VoxelDosimetryLib.cli.common import add_common_options, configure_logging
from VoxelDosimetryLib.errors import VoxelDosimetryError
from VoxelDosimetryLib.io.safe_write import output_session
from VoxelDosimetryLib.qc import collect_qc

# Every sub-command module provides add_parser(subparsers) and run(args) -> int.
COMMANDS = (info, demo, convert, kernel, dose, register, compare, voi, tia, gate, run)
READ_ONLY = (info,)

EXIT_ERROR, EXIT_INTERNAL, EXIT_INTERRUPTED = 1, 3, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxeldosimetry",
                                     description="Patient-specific voxel dosimetry for radiopharmaceutical therapy.")
    parser.add_argument("--version", action="version", version=f"voxeldosimetry {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS:
        command = module.add_parser(sub)
        command.set_defaults(handler=module.run)
        for nested in _subcommand_parsers(command) or [command]:
            add_common_options(nested, writes=module not in READ_ONLY)
            nested.allow_abbrev = False  # `--comp photon` must not silently mean `--component photon`
        command.allow_abbrev = False
    parser.allow_abbrev = False
    return parser


def _subcommand_parsers(parser: argparse.ArgumentParser) -> list:
    """The parsers of a command's own sub-commands (gate import/export), if it has any."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices.values())
    return []


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 input or processing error, 2 usage, 3 internal error)."""
    args = build_parser().parse_args(argv)
    name = " ".join(filter(None, [args.command, getattr(args, "gate_command", None)]))
    configure_logging(name, quiet=args.quiet, verbose=args.verbose)
    with collect_qc(), output_session(name, force=bool(getattr(args, "force", False))):
        try:
            return int(args.handler(args) or 0)
        except VoxelDosimetryError as exc:
            return _fail(name, str(exc), EXIT_ERROR)
        except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
            return _fail(name, f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc), EXIT_ERROR)
        except OSError as exc:
            return _fail(name, f"input/output problem: {exc}. Check the disk space and the paths.", EXIT_ERROR)
        except MemoryError:
            return _fail(name, "not enough memory for this input; use a coarser grid, crop the volume, or run on a "
                               "machine with more memory.", EXIT_ERROR)
        except KeyboardInterrupt:
            return _fail(name, "interrupted; no partial output was left behind.", EXIT_INTERRUPTED)
        except Exception as exc:  # a bug: say so plainly, traceback only with -v
            if args.verbose:
                traceback.print_exc()
            return _fail(name, f"internal error ({type(exc).__name__}: {exc}). This is a bug in voxeldosimetry; "
                               "rerun with -v for the traceback and please report it.", EXIT_INTERNAL)


def _fail(name: str, message: str, status: int) -> int:
    print(f"voxeldosimetry {name}: error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
