"""Pipeline geometry: the dose grid, the CT on it (voxel-averaged HU) and the automatic 'body' segment.

The dose grid is the reference SPECT's grid by default: kernel and Monte Carlo costs scale with the voxel count
(a 1 mm CT grid holds ~25x more voxels than a 4.4 mm SPECT grid) and the activity is not known more finely
than the SPECT resolution (~10 mm FWHM), so a finer grid adds cost without information. `dose_grid: ct`
computes on the reference CT grid instead. The CT goes onto the grid by physics.voxel_mass.ct_on_grid and the
masses of the tables come from physics.voxel_mass.density_on_grid, the same functions `voi` and `compare` use.
"""
from __future__ import annotations

import numpy as np

from VoxelDosimetryLib.geometry.resample import resample_to
from VoxelDosimetryLib.geometry.voxel_average import inside_mask
from VoxelDosimetryLib.physics.body_mask import body_mask
from VoxelDosimetryLib.physics.voxel_mass import AIR_HU, ct_on_grid
from VoxelDosimetryLib.volume import Grid, Volume

BODY_LABEL = 1
BODY_NAME = "body"

__all__ = ["AIR_HU", "BODY_LABEL", "BODY_NAME", "body_labels", "ct_on_grid", "dose_grid", "inside_mask",
           "labels_on_grid"]


def dose_grid(mode: str, reference_ct: Volume, reference_spect: Volume) -> Grid:
    """The grid the dose is computed on: the reference SPECT's ("spect") or the reference CT's ("ct")."""
    return reference_ct.grid if mode == "ct" else reference_spect.grid


def body_labels(ct_on_dose_grid: Volume) -> Volume:
    """Label map with one segment, 'body' = 1: physics.body_mask (CT > -500 HU, largest component, holes filled)."""
    mask = body_mask(ct_on_dose_grid)
    return ct_on_dose_grid.with_array(mask.astype(np.uint8) * BODY_LABEL, quantity="labels", unit="label")


def labels_on_grid(labels: Volume, grid: Grid) -> Volume:
    """Labels moved onto `grid` by nearest neighbour (0 = background outside the label map)."""
    if labels.grid == grid:
        return labels
    return resample_to(labels, grid, mode="nearest", default_value=0)
