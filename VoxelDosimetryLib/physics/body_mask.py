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
    body = ndimage.binary_fill_holes(components == int(np.argmax(sizes)))
    for k in range(body.shape[0]):
        body[k] = ndimage.binary_fill_holes(body[k])
    return body


def body_mask_volume(ct: Volume) -> Volume:
    """body_mask as a 'mask' Volume (uint8 0/1) on the CT's grid, for resampling and displacement statistics."""
    return ct.with_array(body_mask(ct).astype(np.uint8), quantity="mask", unit="label")
