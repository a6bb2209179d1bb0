"""Reading and writing volumes (NRRD, NIfTI, MHD/MHA, Interfile, DICOM) with geometry and units.

`read_volume`, `write_volume` and `SUPPORTED_EXTENSIONS` load the format readers on first use (PEP 562), so the
plain-Python helpers (io.datetime_parse, io.timepoints) import without pynrrd and the other optional packages:
the Slicer module uses them before it installs its Python packages.
"""
from __future__ import annotations

from typing import Any

__all__ = ["SUPPORTED_EXTENSIONS", "read_volume", "write_volume"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from VoxelDosimetryLib.io import volume_io

        return getattr(volume_io, name)
    raise AttributeError(f"module 'VoxelDosimetryLib.io' has no attribute {name!r}")
