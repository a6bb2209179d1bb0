"""Voxel averages on a coarser grid: each target voxel gets ~ the mean of the source over its volume.

Used for intensive quantities whose voxel mean is what matters: CT numbers (HU) for the dose engines and mass
density (g/cm3) for voxel masses (physics/voxel_mass.py). Point sampling (plain linear resampling) would
instead pick one noisy value per target voxel.
"""
from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk

from VoxelDosimetryLib.geometry.resample import resample_to
from VoxelDosimetryLib.volume import Grid, Volume, from_sitk, to_sitk


def average_on_grid(volume: Volume, grid: Grid, default_value: float = 0.0) -> Volume:
    """`volume` (canonical unit) on `grid`, each voxel ~ its mean over the target voxel; `default_value` outside.

    Where the target voxel is larger than the source voxel along an axis, whole blocks of source voxels are
    averaged first (BinShrink by floor(t/s)), then a Gaussian adds the variance still missing to that of a box of
    the target width t: (t^2 - w^2)/12 for blocks of width w (a box of width w has variance w^2/12). Sampling the
    result (linear interpolation at the target centres) approximates the voxel average. Same grid: unchanged
    values (float32).
    """
    volume = volume.to_canonical_unit()
    if volume.grid == grid:
        return volume.with_array(volume.array.astype(np.float32))
    image = sitk.Cast(to_sitk(volume), sitk.sitkFloat32)
    factors = [max(1, int(t // s)) for t, s in zip(grid.spacing, volume.spacing)]
    if max(factors) > 1:
        image = sitk.BinShrink(image, factors)
    sigmas = [math.sqrt(max(t * t - w * w, 0.0) / 12.0) for t, w in zip(grid.spacing, image.GetSpacing())]
    if max(sigmas) > 0:
        image = sitk.SmoothingRecursiveGaussian(image, [max(s, 1e-6) for s in sigmas])
    smoothed = from_sitk(image, quantity=volume.quantity, unit=volume.unit, metadata=volume.metadata)
    return resample_to(smoothed, grid, mode="linear", default_value=default_value)


def inside_mask(grid: Grid, other: Grid) -> np.ndarray:
    """Boolean (z, y, x) mask of `grid`'s voxels whose centres lie inside `other`'s image (nearest-voxel test)."""
    if grid == other:
        return np.ones(grid.shape, bool)
    ones = Volume(np.ones(other.shape, np.uint8), grid=other, quantity="mask", unit="label")
    return resample_to(ones, grid, mode="nearest", default_value=0).array > 0
