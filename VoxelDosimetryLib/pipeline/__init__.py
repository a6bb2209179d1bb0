"""Case folders and (later) the config -> outputs pipeline."""
from __future__ import annotations

from VoxelDosimetryLib.pipeline.case import Case, Timepoint, read_case, write_case

__all__ = ["Case", "Timepoint", "read_case", "write_case"]
