"""Pipeline geometry: the dose grid, the CT on it (voxel-averaged HU) and the automatic 'body' segment.

The dose grid is the reference SPECT's grid by default: kernel and Monte Carlo costs scale with the voxel count
(a 1 mm CT grid holds ~25x more voxels than a 4.4 mm SPECT grid) and the activity is not known more finely
than the SPECT resolution (~10 mm FWHM), so a finer grid adds cost without information. `dose_grid: ct`
computes on the reference CT grid instead.
"""
from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk

from VoxelDosimetryLib.geometry.resample import resample_to
from VoxelDosimetryLib.kinetics.registration_quality import body_mask
from VoxelDosimetryLib.volume import Grid, Volume, from_sitk, to_sitk

AIR_HU = -1000.0
BODY_LABEL = 1
BODY_NAME = "body"


def dose_grid(mode: str, reference_ct: Volume, reference_spect: Volume) -> Grid:
    """The grid the dose is computed on: the reference SPECT's ("spect") or the reference CT's ("ct")."""
    return reference_ct.grid if mode == "ct" else reference_spect.grid


def ct_on_grid(ct: Volume, grid: Grid) -> Volume:
    """The CT (HU) on `grid`, each voxel ~ the mean HU over its volume; air (-1000 HU) outside the CT.

    Where the target voxel is larger than the CT voxel along an axis, whole blocks of CT voxels are averaged
    first (BinShrink by floor(t/s)), then a Gaussian adds the variance still missing to that of a box of the
    target width t: (t^2 - w^2)/12 for blocks of width w (a box of width w has variance w^2/12). Sampling the
    result approximates the voxel average instead of one noisy point.
    """
    ct = ct.to_canonical_unit()
    if ct.grid == grid:
        return ct.with_array(ct.array.astype(np.float32))
    image = sitk.Cast(to_sitk(ct), sitk.sitkFloat32)
    factors = [max(1, int(t // s)) for t, s in zip(grid.spacing, ct.spacing)]
    if max(factors) > 1:
        image = sitk.BinShrink(image, factors)
    sigmas = [math.sqrt(max(t * t - w * w, 0.0) / 12.0) for t, w in zip(grid.spacing, image.GetSpacing())]
    if max(sigmas) > 0:
        image = sitk.SmoothingRecursiveGaussian(image, [max(s, 1e-6) for s in sigmas])
    smoothed = from_sitk(image, quantity="ct", unit="HU", metadata=ct.metadata)
    return resample_to(smoothed, grid, mode="linear", default_value=AIR_HU)


def inside_mask(grid: Grid, other: Grid) -> np.ndarray:
    """Boolean (z, y, x) mask of `grid`'s voxels whose centres lie inside `other`'s image."""
    ones = Volume(np.ones(other.shape, np.uint8), grid=other, quantity="mask", unit="label")
    return resample_to(ones, grid, mode="nearest", default_value=0).array > 0


def body_labels(ct_on_dose_grid: Volume) -> Volume:
    """Label map with one segment, 'body' = 1: CT > -500 HU, largest connected component, holes filled."""
    mask = body_mask(ct_on_dose_grid)
    return mask.with_array(mask.array.astype(np.uint8) * BODY_LABEL, quantity="labels", unit="label")


def labels_on_grid(labels: Volume, grid: Grid) -> Volume:
    """Labels moved onto `grid` by nearest neighbour (0 = background outside the label map)."""
    if labels.grid == grid:
        return labels
    return resample_to(labels, grid, mode="nearest", default_value=0)
