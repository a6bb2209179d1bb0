"""Registration quality measures: Dice overlap of body masks (physics/body_mask.py) and displacement of body
voxels."""
from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk

from VoxelDosimetryLib.volume import Grid, Volume

# Displacement statistics use at most this many grid points (a regular subset of the voxel centres).
MAX_DISPLACEMENT_POINTS = 2_000_000


def dice(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """Dice similarity coefficient 2|A∩B| / (|A|+|B|) of two boolean arrays (1.0 when both are empty)."""
    a = np.asarray(mask_a, bool)
    b = np.asarray(mask_b, bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(a, b).sum()) / total


def body_dice(fixed_body: Volume, moving_body: Volume, transform: sitk.Transform | None = None) -> tuple[float, float]:
    """(Dice, overlap) of the fixed body mask and the moving one mapped by `transform` (fixed -> moving points).

    Dice counts only fixed voxels that map inside the moving image, so a shorter or shifted field of view is not
    mistaken for misalignment; overlap is the fraction of the fixed body that maps inside the moving image.
    """
    from VoxelDosimetryLib.geometry.resample import resample_to

    ones = moving_body.with_array(np.ones(moving_body.shape, np.uint8))
    inside = resample_to(ones, fixed_body, mode="nearest", transform=transform).array > 0
    moved = resample_to(moving_body, fixed_body, mode="nearest", transform=transform).array > 0
    fixed = fixed_body.array > 0
    seen = fixed & inside
    overlap = float(seen.sum()) / max(1, int(fixed.sum()))
    return dice(seen, moved & inside), overlap


def _subset_grid(grid: Grid) -> tuple[Grid, int]:
    """Every f-th voxel centre of `grid` (same origin, spacing x f) so at most MAX_DISPLACEMENT_POINTS remain."""
    n = int(np.prod(grid.shape))
    step = max(1, math.ceil((n / MAX_DISPLACEMENT_POINTS) ** (1.0 / 3.0)))
    shape = tuple(math.ceil(s / step) for s in grid.shape)
    spacing = tuple(s * step for s in grid.spacing)
    return Grid(shape, spacing, grid.origin, grid.direction), step


def displacement_field(transform: sitk.Transform, grid: Grid) -> np.ndarray:
    """T(p) - p in mm for every voxel centre p of `grid`; array (z, y, x, 3) with LPS (x, y, z) components."""
    field = sitk.TransformToDisplacementField(transform, sitk.sitkVectorFloat64, list(grid.size_xyz),
                                              grid.origin, grid.spacing, tuple(grid.direction.reshape(-1)))
    return sitk.GetArrayFromImage(field)


def displacement_stats(transform: sitk.Transform, mask: Volume,
                       reference: sitk.Transform | None = None) -> dict:
    """Mean, 95th percentile and max of |T(p) - R(p)| (mm) over the mask's voxels (R = identity by default).

    With `reference` the numbers measure how far two transforms disagree (e.g. recovered vs true); without
    it they measure how far the registration moves the body. Large grids use every f-th voxel (f in the result).
    """
    grid, step = _subset_grid(mask.grid)
    inside = mask.array[::step, ::step, ::step] > 0
    if not inside.any():
        return {"mean_mm": 0.0, "p95_mm": 0.0, "max_mm": 0.0, "voxels": 0, "voxel_step": step}
    difference = displacement_field(transform, grid)[inside]
    if reference is not None:
        difference = difference - displacement_field(reference, grid)[inside]
    length = np.linalg.norm(difference, axis=1)
    return {"mean_mm": float(length.mean()), "p95_mm": float(np.percentile(length, 95)),
            "max_mm": float(length.max()), "voxels": int(inside.sum()), "voxel_step": step}


def rotation_angle_deg(matrix) -> float:
    """Total rotation angle (degrees) of a 3x3 rotation matrix: arccos((trace - 1) / 2) (axis-angle form)."""
    cosine = (float(np.trace(np.asarray(matrix, float))) - 1.0) / 2.0
    return math.degrees(math.acos(min(1.0, max(-1.0, cosine))))
