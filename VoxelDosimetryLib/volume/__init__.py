"""Volume type (array + LPS geometry + quantity + unit) and unit handling."""
from __future__ import annotations

from VoxelDosimetryLib.volume.units import QUANTITIES, conversion_factor, get_quantity
from VoxelDosimetryLib.volume.volume import Grid, Volume
from VoxelDosimetryLib.volume.sitk_bridge import from_sitk, to_sitk

__all__ = ["Grid", "Volume", "QUANTITIES", "conversion_factor", "get_quantity", "from_sitk", "to_sitk"]
