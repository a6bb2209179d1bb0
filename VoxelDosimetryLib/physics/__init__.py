"""Physics data: radionuclides (ICRP-107), HU to density and media (Schneider 2000), density bins for MVSV.

Single source of truth for decay data and CT-to-material conversion; see docs/PHYSICS_DATA.md.
"""
from __future__ import annotations

from VoxelDosimetryLib.physics.calibration import HUDensityCurve, ct_to_density
from VoxelDosimetryLib.physics.media import (
    DEFAULT_DENSITY_BIN_EDGES_G_CM3,
    DensityBin,
    DensityBins,
    MediaTable,
    Medium,
    density_bin_map,
    schneider_media,
)
from VoxelDosimetryLib.physics.nuclides import (
    SUPPORTED_NUCLIDES,
    BetaSpectrum,
    EmissionLines,
    Line,
    Nuclide,
    available_nuclides,
    canonical_nuclide_name,
    get_nuclide,
)
from VoxelDosimetryLib.physics.schneider import (
    CompositionTable,
    DensityTable,
    HURangeReport,
    composition_bin,
    hu_to_density,
    schneider_composition_table,
    schneider_density_table,
)

__all__ = [
    "SUPPORTED_NUCLIDES", "BetaSpectrum", "EmissionLines", "Line", "Nuclide", "available_nuclides",
    "canonical_nuclide_name", "get_nuclide",
    "CompositionTable", "DensityTable", "HURangeReport", "composition_bin", "hu_to_density",
    "schneider_composition_table", "schneider_density_table",
    "HUDensityCurve", "ct_to_density",
    "DEFAULT_DENSITY_BIN_EDGES_G_CM3", "DensityBin", "DensityBins", "MediaTable", "Medium", "density_bin_map",
    "schneider_media",
]
