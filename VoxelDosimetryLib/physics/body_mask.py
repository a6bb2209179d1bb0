"""The patient body in a CT: the one body mask of the library (registration, comparison, dose policy, pipeline).

Body = voxels above -500 HU, largest connected component, holes filled. -500 HU lies halfway between air
(-1000 HU) and soft tissue (~0 HU); aerated lung (~ -850 HU) is below it but, enclosed by the chest wall, comes
back as a filled hole. The largest component drops the couch, cables and other objects outside the patient.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.volume import Volume

BODY_THRESHOLD_HU = -500.0


def body_mask(ct: Volume) -> np.ndarray:
    """Boolean (z, y, x) body mask of a CT in HU: > -500 HU, largest connected component, holes filled.

    Holes are filled in 3-D and then slice by slice along the array's first axis, so lungs and bowel gas that
    touch the image border through the airway still count as body. NaN/inf CT voxels raise InputFormatError.
    """
    ct.require_quantity("ct")
    hu = ct.to_canonical_unit().array
    if hu.dtype.kind == "f" and not np.all(np.isfinite(hu)):
        raise InputFormatError("The CT holds NaN or infinite voxels; fix or mask them before taking the body mask.")
    components, count = ndimage.label(hu > BODY_THRESHOLD_HU)
    if count == 0:
        return np.zeros(ct.shape, bool)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    body = components == int(np.argmax(sizes))
    del components
    body |= _holes(body, ndimage.generate_binary_structure(3, 1), (0, 1, 2))
    in_slice = np.zeros((3, 3, 3), bool)
    in_slice[1] = ndimage.generate_binary_structure(2, 1)
    body |= _holes(body, in_slice, (1, 2))
    return body


def _holes(mask: np.ndarray, structure: np.ndarray, border_axes: tuple) -> np.ndarray:
    """Background voxels not connected (through `structure`) to the array's faces along `border_axes`: what
    ndimage.binary_fill_holes fills, in one labelling pass instead of its iterated dilation (10x faster on a CT).
    With an in-slice structure and the in-slice faces this fills every slice on its own."""
    labels, count = ndimage.label(~mask, structure=structure)
    if count == 0:
        return np.zeros(mask.shape, bool)
    outside = np.zeros(count + 1, bool)
    for axis in border_axes:
        for end in (0, -1):
            outside[np.unique(np.take(labels, end, axis=axis))] = True
    outside[0] = True  # label 0: the mask itself
    return ~outside[labels]


def body_mask_volume(ct: Volume) -> Volume:
    """body_mask as a 'mask' Volume (uint8 0/1) on the CT's grid, for resampling and displacement statistics."""
    return ct.with_array(body_mask(ct).astype(np.uint8), quantity="mask", unit="label")
