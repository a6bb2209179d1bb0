"""Lossless conversion between Volume and SimpleITK images (both LPS, same index order)."""
from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.volume.units import guess_quantity_for_unit
from VoxelDosimetryLib.volume.volume import Grid, Volume

QUANTITY_KEY = "quantity"
UNIT_KEY = "unit"


def to_sitk(volume: Volume) -> sitk.Image:
    """SimpleITK image with the same voxels (copied), spacing, origin, direction; quantity/unit as metadata."""
    array = volume.array
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=False)
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(tuple(volume.direction.reshape(-1)))
    image.SetMetaData(QUANTITY_KEY, volume.quantity)
    image.SetMetaData(UNIT_KEY, volume.unit)
    return image


def from_sitk(image: sitk.Image, quantity: str | None = None, unit: str | None = None,
              metadata: dict | None = None) -> Volume:
    """Volume from a 3-D scalar SimpleITK image; quantity/unit from arguments, else the image's metadata."""
    if image.GetDimension() != 3:
        raise InputFormatError(f"Expected a 3-D image, got {image.GetDimension()}-D. "
                               "Stack 2-D slices into a series before loading.")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputFormatError(f"Expected a scalar image, got {image.GetNumberOfComponentsPerPixel()} components "
                               "per voxel (vector/RGB images are not dose inputs).")
    if quantity is None and image.HasMetaDataKey(QUANTITY_KEY):
        quantity = image.GetMetaData(QUANTITY_KEY)
    if unit is None and image.HasMetaDataKey(UNIT_KEY):
        unit = image.GetMetaData(UNIT_KEY)
    if quantity is None and unit is not None:
        quantity = guess_quantity_for_unit(unit)
    grid = Grid(tuple(reversed(image.GetSize())), image.GetSpacing(), image.GetOrigin(),
                np.array(image.GetDirection()).reshape(3, 3))
    return Volume(sitk.GetArrayFromImage(image), grid=grid, quantity=quantity or "unknown", unit=unit,
                  metadata=metadata)


def metadata_json(volume: Volume) -> str:
    return json.dumps(volume.metadata, default=str, sort_keys=True)
