"""CT -> mass density -> voxel mass on a dose grid: the one way every command puts the CT on the dose grid.

Masses use the mean *density* over each dose voxel (Schneider 2000 density of every CT voxel, then the voxel
average of geometry/voxel_average.py). That conserves mass: averaging HU first and converting after does not,
because the HU->density curve is not linear (it changes slope between tissues and drops from 1.12 to 1.08
g/cm3 between 100 and 101 HU). Dose-grid voxels whose centre lies outside the CT are air (-1000 HU), exactly as
`ct_on_grid` gives the dose engines, so the mass a segment's mean dose is weighted with is the mass its dose was
computed in (dose there is not meaningful and the value policy reports none); callers report those voxels.
"""
from __future__ import annotations

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.geometry.voxel_average import average_on_grid, inside_mask
from VoxelDosimetryLib.physics.schneider import hu_to_density
from VoxelDosimetryLib.volume import Grid, Volume

AIR_HU = -1000.0
WATER_DENSITY_G_CM3 = 1.0  # the density assumed when no CT or density map is given at all


def ct_on_grid(ct: Volume, grid: Grid) -> Volume:
    """The CT (HU) on `grid`, each voxel ~ the mean HU over its volume; air (-1000 HU) outside the CT."""
    ct.require_quantity("ct")
    return average_on_grid(ct, grid, default_value=AIR_HU)


def density_of(source: Volume) -> Volume:
    """Mass density (g/cm3, float64) of a CT in HU (Schneider 2000, physics.hu_to_density) or of a density map."""
    source.require_quantity("ct", "density")
    values = np.asarray(source.to_canonical_unit().array, dtype=np.float64)
    what = "CT" if source.quantity == "ct" else "density volume"
    if not np.all(np.isfinite(values)):
        raise InputFormatError(f"The {what} holds NaN or infinite voxels; fix them before computing masses.")
    rho = hu_to_density(values) if source.quantity == "ct" else values
    if rho.size and rho.min() < 0:
        raise InputFormatError(f"The density volume holds negative values (min {rho.min():g} g/cm3); fix it.")
    return source.with_array(rho, quantity="density", unit="g/cm3")


def density_on_grid(source: Volume, grid: Grid) -> Volume:
    """Mass density (g/cm3, float64) on `grid` from a CT (HU) or density map: the mean density over each voxel.

    Voxels whose centre lies outside the source image get the density of air (-1000 HU), as the dose engines;
    `inside_mask(grid, source.grid)` (geometry.voxel_average) tells which.
    """
    density = density_of(source)
    if source.grid == grid:
        return density
    outside = float(hu_to_density(np.array([AIR_HU]))[0]) if source.quantity == "ct" else 0.0
    averaged = average_on_grid(density, grid, default_value=outside)
    rho = averaged.array.astype(np.float64)
    rho[~inside_mask(grid, source.grid)] = outside
    return averaged.with_array(rho)


def voxel_mass_g(source: Volume, grid: Grid | None = None) -> np.ndarray:
    """Mass of each voxel of `grid` (default: the source's) in g: density_on_grid (g/cm3) x voxel volume (mL)."""
    grid = source.grid if grid is None else grid
    return density_on_grid(source, grid).array * grid.voxel_volume_ml
