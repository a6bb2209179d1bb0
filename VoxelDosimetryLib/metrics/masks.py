"""Analysis masks (body from CT, dose threshold, segments) and mass-weighted segment means."""
from __future__ import annotations

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.volume import Volume

# Voxels with CT above this value (HU) count as "inside the body". Air (about -1000 HU) is outside; note that
# aerated lung (about -850 HU) is outside too, so give a label map to analyse the lungs.
BODY_THRESHOLD_HU = -500.0


def body_mask(ct: Volume, threshold_hu: float = BODY_THRESHOLD_HU) -> np.ndarray:
    """Boolean (z, y, x) mask of voxels with CT > threshold_hu (HU)."""
    ct.require_quantity("ct")
    hu = ct.to_unit("HU").array
    if hu.dtype.kind == "f" and not np.all(np.isfinite(hu)):
        raise InputFormatError("The CT holds NaN or infinite voxels; fix or mask them before comparing doses.")
    return np.asarray(hu > threshold_hu)


def voxel_mass_g(ct: Volume) -> np.ndarray:
    """Mass of each voxel in g: Schneider density (g/cm3, physics.hu_to_density) x voxel volume (mL)."""
    from VoxelDosimetryLib.physics import hu_to_density

    ct.require_quantity("ct")
    return hu_to_density(ct.to_unit("HU").array) * ct.voxel_volume_ml


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
