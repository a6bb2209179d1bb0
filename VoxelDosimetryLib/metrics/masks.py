"""Segment masks and mass-weighted segment means (the body mask and voxel masses live in physics/)."""
from __future__ import annotations

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.volume import Volume


def segment_mean(values: np.ndarray, mask: np.ndarray, mass_g: np.ndarray | None = None) -> float:
    """Mean of `values` inside `mask`; mass-weighted when `mass_g` is given.

    Mass-weighted: D = sum_i m_i D_i / m_total (Kim et al. 2022, Eq. 2). Raises when the mask is empty or
    its total mass is zero.
    """
    selected = np.asarray(values, dtype=np.float64)[mask]
    if selected.size == 0:
        raise InputFormatError("The segment has no voxels; check the label map is on the dose grid.")
    if mass_g is None:
        return float(selected.mean())
    mass = np.asarray(mass_g, dtype=np.float64)[mask]
    total = float(mass.sum())
    if total <= 0:
        raise InputFormatError("The segment has zero mass (all voxels air?); check the CT and label map.")
    return float(np.dot(mass, selected) / total)  # Kim et al. 2022, Eq. 2


def label_values(labels: Volume) -> list[int]:
    """Sorted non-zero integer labels present in a label map (0 is background)."""
    arr = labels.array
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise InputFormatError("The label map holds non-integer values; give an integer label map.")
    return [int(v) for v in np.unique(arr) if v != 0]
