"""A volume given for a role (the CT, the label map, ...) must hold what the role needs: one check for the CLI and
the pipeline (docs/RELIABILITY.md §9)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from VoxelDosimetryLib.errors import UnitError
from VoxelDosimetryLib.io.sidecar import relabel
from VoxelDosimetryLib.volume.volume import Volume


def as_role(volume: Volume, path: str | Path, quantities: Sequence[str], option: str, what: str,
            fix: str | None = None) -> Volume:
    """`volume` (read from `path`) for a role needing one of `quantities` (`what`, for people: 'a CT in HU').

    A volume that does not say what it holds is taken as quantities[0]; one declaring another quantity is refused
    (UnitError naming what it declares, what `option` needs, and `fix`).
    """
    if volume.quantity == "unknown":
        return relabel(volume, quantity=quantities[0])
    if volume.quantity in quantities:
        return volume
    raise UnitError(f"{path} declares {volume.quantity} ({volume.unit}), but {option} needs {what}. "
                    f"{fix or f'Give {what} as {option}'}.")
