"""Resampling a Volume onto another voxel grid (SimpleITK, LPS physical space)."""
from __future__ import annotations

import math
from typing import Union

import numpy as np
import SimpleITK as sitk

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.volume import Grid, Volume, get_quantity, to_sitk

GridLike = Union[Grid, Volume]

MODES = ("linear", "nearest", "activity")
# Quantities whose voxel values are per-volume densities (integral = value x volume) or per-voxel amounts.
_CONCENTRATIONS = ("activity_concentration", "tia_concentration")
_PER_VOXEL_AMOUNTS = ("activity", "tia", "counts", "energy_deposited")


def _reference_image(grid: Grid) -> sitk.Image:
    ref = sitk.Image(list(grid.size_xyz), sitk.sitkUInt8)
    ref.SetSpacing(grid.spacing)
    ref.SetOrigin(grid.origin)
    ref.SetDirection(tuple(grid.direction.reshape(-1)))
    return ref


def _resample(volume: Volume, grid: Grid, interpolator: int, default_value: float,
              transform: sitk.Transform | None) -> np.ndarray:
    image = to_sitk(volume)
    if interpolator != sitk.sitkNearestNeighbor and image.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64):
        image = sitk.Cast(image, sitk.sitkFloat64)
    out = sitk.Resample(image, _reference_image(grid), transform or sitk.Transform(), interpolator,
                        float(default_value), image.GetPixelID())
    return sitk.GetArrayFromImage(out)


def _supersampled_grid(grid: Grid, source: Grid) -> tuple[Grid, tuple[int, int, int]]:
    """Target grid subdivided so each sub-voxel is at most half the source spacing (factors per x, y, z)."""
    finest_source_mm = min(source.spacing)
    factors = tuple(min(8, max(1, math.ceil(2.0 * t / finest_source_mm))) for t in grid.spacing)
    spacing = tuple(t / f for t, f in zip(grid.spacing, factors))
    # the first sub-voxel centre sits half a sub-voxel from the original voxel's lower face
    shift = np.array([(1.0 / f - 1.0) / 2.0 for f in factors])  # in target index units
    origin = grid.index_to_world(shift)
    shape = (grid.shape[0] * factors[2], grid.shape[1] * factors[1], grid.shape[2] * factors[0])
    return Grid(shape, spacing, tuple(origin), grid.direction), factors


def _block_mean(array: np.ndarray, factors_xyz: tuple[int, int, int]) -> np.ndarray:
    fx, fy, fz = factors_xyz
    z, y, x = array.shape
    return array.reshape(z // fz, fz, y // fy, fy, x // fx, fx).mean(axis=(1, 3, 5))


def _source_total_inside(volume: Volume, grid: Grid, transform: sitk.Transform | None) -> float:
    """Sum of the source voxels whose centres fall inside the target's field of view."""
    ones = sitk.Image(list(grid.size_xyz), sitk.sitkUInt8) + 1
    ones.CopyInformation(_reference_image(grid))
    inverse = sitk.Transform() if transform is None else transform.GetInverse()
    inside = sitk.GetArrayFromImage(sitk.Resample(ones, _reference_image(volume.grid), inverse,
                                                  sitk.sitkNearestNeighbor, 0.0, sitk.sitkUInt8)) > 0
    return float(volume.array[inside].astype(np.float64).sum())


def resample_to(volume: Volume, target: GridLike, mode: str = "linear", default_value: float = 0.0,
                transform: sitk.Transform | None = None) -> Volume:
    """Resample `volume` onto the grid of `target` (a Grid or a Volume).

    mode: "linear" for intensities (HU, density, dose), "nearest" for labels, "activity" for activity
    images: supersampled linear interpolation averaged back to the target voxels, then scaled so the total
    activity inside the target field of view equals that of the source (concentrations are integrated with
    the voxel volume, per-voxel amounts are summed). `transform` maps target points to source points
    (SimpleITK resampling convention), e.g. a registration result.
    """
    if mode not in MODES:
        raise InputFormatError(f"Unknown resampling mode {mode!r}; use one of {MODES}.")
    grid = target.grid if isinstance(target, Volume) else target
    if mode == "nearest" or get_quantity(volume.quantity).is_label:
        if mode != "nearest":
            raise InputFormatError(f"{volume.quantity} volumes hold labels; resample them with mode='nearest'.")
        array = _resample(volume, grid, sitk.sitkNearestNeighbor, default_value, transform)
        return Volume(array, grid=grid, quantity=volume.quantity, unit=volume.unit, metadata=volume.metadata)
    if mode == "linear":
        array = _resample(volume, grid, sitk.sitkLinear, default_value, transform)
        return Volume(array, grid=grid, quantity=volume.quantity, unit=volume.unit, metadata=volume.metadata)
    return _resample_activity(volume, grid, transform)


def _resample_activity(volume: Volume, grid: Grid, transform: sitk.Transform | None) -> Volume:
    per_voxel = volume.quantity in _PER_VOXEL_AMOUNTS
    if not per_voxel and volume.quantity not in _CONCENTRATIONS + ("unknown",):
        raise InputFormatError(f"Activity-conserving resampling applies to activity or TIA images, not "
                               f"{volume.quantity!r}; use mode='linear'.")
    if np.any(~np.isfinite(volume.array)):
        raise InputFormatError("The activity image holds NaN or infinite voxels; fix or mask them before resampling.")
    source = volume
    if per_voxel:  # interpolate a density (amount per mL), convert back at the end
        source = volume.replace(array=volume.array.astype(np.float64) / volume.voxel_volume_ml)
    fine, factors = _supersampled_grid(grid, volume.grid)
    density = _block_mean(_resample(source, fine, sitk.sitkLinear, 0.0, transform), factors)
    total_out = float(density.sum()) * grid.voxel_volume_ml
    total_in = _source_total_inside(volume, grid, transform) * (1.0 if per_voxel else volume.voxel_volume_ml)
    if total_out > 0:
        density = density * (total_in / total_out)
    array = density * grid.voxel_volume_ml if per_voxel else density
    return Volume(array, grid=grid, quantity=volume.quantity, unit=volume.unit, metadata=volume.metadata)
