"""NIfTI-1 volumes (.nii, .nii.gz) via SimpleITK, with a JSON sidecar for quantity, unit and metadata.

NIfTI stores RAS world coordinates (sform/qform); SimpleITK converts them to LPS in memory and writes
both qform and sform (code 1, scanner anatomical) from our LPS geometry, so orientation survives a round
trip, oblique and reflected directions included. NIfTI keeps geometry in float32 (origin errors ~1e-5 mm):
the sidecar (see sidecar.py) carries the exact float64 grid, used whenever it agrees with the file header
within 1e-3 mm. NIfTI has no key/value fields, hence the sidecar ``<stem>.json``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.io.sidecar import (array_for_writing, check_sidecar_writable, label_volume, read_sidecar,
                                          reconcile_grid, restore_dtype, write_sidecar)
from VoxelDosimetryLib.volume.sitk_bridge import from_sitk
from VoxelDosimetryLib.volume.volume import Volume

NIFTI_EXTENSIONS = (".nii", ".nii.gz")


def _is_nifti_name(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def read_sitk_image(path: Path, fmt: str) -> sitk.Image:
    """Read a 3-D scalar image with SimpleITK (a trailing singleton 4th axis is dropped)."""
    if not path.is_file():
        raise InputFormatError(f"No such {fmt} file: {path}. Check the path.")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise InputFormatError(f"Cannot read {fmt} {path}: {first}") from None
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() != 3:
        raise InputFormatError(f"{path}: expected a 3-D volume, got {image.GetDimension()}-D size {image.GetSize()}. "
                               "Split time series into one file per frame first.")
    return image


def image_for_writing(volume: Volume, fmt: str) -> tuple[sitk.Image, str]:
    """(SimpleITK image with the volume's voxels and LPS geometry, stored dtype name); the volume is not modified."""
    array, dtype_name = array_for_writing(volume, fmt)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=False)
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(tuple(float(v) for v in volume.direction.reshape(-1)))
    return image, dtype_name


def read_nifti(path: str | Path, quantity: str | None = None, unit: str | None = None) -> Volume:
    """Read a 3-D NIfTI (.nii/.nii.gz) as an LPS Volume.

    Quantity/unit precedence: arguments, the JSON sidecar, else 'unknown' (recorded in metadata["source"]).
    """
    path = Path(path)
    image = read_sitk_image(path, "NIfTI")
    keys = set(image.GetMetaDataKeys())
    notes: list = []
    details = {}
    for key in ("qform_code", "sform_code"):
        if key in keys:
            details["nifti_" + key] = int(float(image.GetMetaData(key)))
    if details.get("nifti_qform_code", 1) == 0 and details.get("nifti_sform_code", 1) == 0:
        notes.append("the NIfTI has neither qform nor sform: SimpleITK used the voxel sizes with an identity "
                     "orientation, which may not be the patient orientation.")
    slope = float(image.GetMetaData("scl_slope")) if "scl_slope" in keys else 0.0
    inter = float(image.GetMetaData("scl_inter")) if "scl_inter" in keys else 0.0
    if slope not in (0.0, 1.0) or inter != 0.0:
        notes.append(f"voxel values were rescaled with the NIfTI scl_slope={slope:g}, scl_inter={inter:g}.")
    plain = from_sitk(image, quantity="unknown", unit="unknown")
    sidecar = read_sidecar(path, notes)
    grid = reconcile_grid(plain.grid, sidecar, notes)
    array = restore_dtype(plain.array, sidecar.dtype if sidecar else None)
    return label_volume(array, grid, path=path, fmt="nifti",
                        file_quantity=sidecar.quantity if sidecar else None,
                        file_unit=sidecar.unit if sidecar else None, stated_by="sidecar",
                        quantity=quantity, unit=unit, metadata=sidecar.metadata if sidecar else None,
                        notes=notes, details=details)


def write_nifti(volume: Volume, path: str | Path) -> Path:
    """Write `volume` to .nii or .nii.gz (gzip by extension) plus its JSON sidecar; returns the image path.

    Keeps the dtype (int8…int64, uint8…uint64, float32, float64; bool as uint8 restored on reading).
    """
    path = Path(path)
    if not _is_nifti_name(path):
        raise InputFormatError(f"NIfTI file names end in .nii or .nii.gz, got {path.name}.")
    image, dtype_name = image_for_writing(volume, "NIfTI")
    path.parent.mkdir(parents=True, exist_ok=True)
    check_sidecar_writable(path)
    try:
        sitk.WriteImage(image, str(path))
    except RuntimeError as exc:
        raise InputFormatError(f"Cannot write NIfTI {path}: {str(exc).strip().splitlines()[-1]}") from None
    write_sidecar(path, volume, stored_dtype=dtype_name)
    return path
