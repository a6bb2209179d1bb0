"""Reading and writing volumes (NRRD, NIfTI, MHD/MHA, Interfile, DICOM) with geometry and units."""
from __future__ import annotations

from VoxelDosimetryLib.io.volume_io import SUPPORTED_EXTENSIONS, read_volume, write_volume

__all__ = ["SUPPORTED_EXTENSIONS", "read_volume", "write_volume"]
