"""What every sub-command shares: -q/-v/--force, logging that always shows warnings, progress lines, output checks.

Exit statuses: 0 done; 1 the input or a setting is wrong (the message says what and how to fix it); 2 usage error
(argparse); 3 internal error (a bug: the message says so; -v prints the traceback); 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from VoxelDosimetryLib.io.safe_write import check_outputs, current_session

_STATE = {"quiet": False}

# Extensions of the files each kind of output may have.
VOLUME_EXTENSIONS = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mhd", ".mha", ".h33")
CSV = (".csv",)
JSON = (".json",)
PNG = (".png",)
MARKDOWN = (".md",)
FOLDER = ("",)


def add_common_options(parser: argparse.ArgumentParser, writes: bool = True) -> None:
    """-q/--quiet, -v/--verbose and (for commands that write files) --force."""
    group = parser.add_argument_group("output and messages")
    group.add_argument("-q", "--quiet", action="store_true", help="no progress lines (warnings and errors still show)")
    group.add_argument("-v", "--verbose", action="count", default=0,
                       help="more detail (-v: debug log; tracebacks of internal errors)")
    if writes:
        group.add_argument("--force", action="store_true",
                           help="replace existing outputs even if another command made them, and recompute every "
                                "pipeline step (inputs are never overwritten)")


class _WarningFormatter(logging.Formatter):
    def __init__(self, command: str) -> None:
        super().__init__()
        self.command = command

    def format(self, record: logging.LogRecord) -> str:
        level = "warning" if record.levelno >= logging.WARNING else record.levelname.lower()
        return f"voxeldosimetry {self.command}: {level}: {record.getMessage()}"


def configure_logging(command: str, quiet: bool = False, verbose: int = 0) -> logging.Handler:
    """Send the library's log to stderr: warnings always, info unless -q, debug with -v. Returns the handler."""
    _STATE["quiet"] = bool(quiet)
    logger = logging.getLogger("VoxelDosimetryLib")
    for old in [h for h in logger.handlers if getattr(h, "_voxeldosimetry_cli", False)]:
        logger.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler._voxeldosimetry_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(_WarningFormatter(command))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else (logging.WARNING if quiet else logging.INFO))
    logger.propagate = False
    return handler


def say(prefix: str, message: str) -> None:
    """A progress line on stderr (silenced by -q)."""
    if not _STATE["quiet"]:
        print(f"[{prefix}] {message}", file=sys.stderr, flush=True)


def progress_printer(prefix: str):
    """A progress(fraction, message) callable printing '[prefix  42.0%] message' on stderr (silenced by -q)."""
    def progress(fraction: float, message: str) -> None:
        say(f"{prefix} {100 * fraction:5.1f}%", message)
    return progress


def prepare_outputs(outputs: Mapping[str, str | Path | None], inputs: Iterable[str | Path | None],
                    extensions: Mapping[str, Sequence[str]] | None = None) -> dict[str, Path]:
    """Check every output path before any work (io/safe_write.py) and register the inputs as never-written."""
    inputs = [Path(p) for p in inputs if p not in (None, "", "-")]
    session = current_session()
    if session is not None:
        session.inputs.extend(p for p in inputs if p not in session.inputs)
    return check_outputs(outputs, inputs, extensions=extensions)


# ------------------------------------------------------------------------------------ reading inputs
# What a file declares (its NRRD fields, sidecar, DICOM tags, GATE file name) wins over command-line options,
# which only fill in what a file does not say (docs/RELIABILITY.md, "Declared quantities and units win").
