"""Grid operations: resampling between voxel grids."""
from __future__ import annotations

from VoxelDosimetryLib.geometry.resample import MODES, resample_to

__all__ = ["MODES", "resample_to"]
