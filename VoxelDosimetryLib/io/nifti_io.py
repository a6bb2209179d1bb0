"""NIfTI-1 volumes (.nii, .nii.gz) via SimpleITK, with a JSON sidecar for quantity, unit and metadata.

NIfTI stores RAS world coordinates (sform/qform); SimpleITK converts them to LPS in memory and writes
both qform and sform (code 1, scanner anatomical) from our LPS geometry, so orientation survives a round
trip, oblique and reflected directions included. NIfTI keeps geometry in float32 (origin errors ~1e-5 mm):
the sidecar (see sidecar.py) carries the exact float64 grid, used whenever it agrees with the file header
within 1e-3 mm. NIfTI has no key/value fields, hence the sidecar ``<stem>.json``.

Before SimpleITK reads a file, its NIfTI-1/NIfTI-2 header is checked (read_guard): dimensions within the voxel
cap, finite non-zero voxel sizes, finite non-singular qform/sform, and voxel data present in full (.nii: file
size; .nii.gz: the gzip stream is decompressed in constant memory and must hold the declared bytes, which also
catches truncated and corrupt streams that SimpleITK would read silently).
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.io.read_guard import (CHUNK_BYTES, check_data_size, check_geometry, check_voxel_count,
                                             reading)
from VoxelDosimetryLib.io.sidecar import (array_for_writing, check_sidecar_writable, label_volume, read_sidecar,
                                          reconcile_grid, restore_dtype, write_sidecar)
from VoxelDosimetryLib.volume.sitk_bridge import from_sitk
from VoxelDosimetryLib.volume.volume import Volume

NIFTI_EXTENSIONS = (".nii", ".nii.gz")


def _is_nifti_name(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


# Byte layouts of the fields checked: NIfTI-1 (348-byte header) and NIfTI-2 (540-byte header).
_LAYOUTS = {
    348: {"dim": (40, "8h"), "bitpix": (72, "h"), "pixdim": (76, "8f"), "vox_offset": (108, "f"),
          "forms": (252, "2h"), "quatern": (256, "6f"), "srow": (280, "12f"), "magic": (344, 4)},
    540: {"dim": (16, "8q"), "bitpix": (14, "h"), "pixdim": (104, "8d"), "vox_offset": (168, "q"),
          "forms": (344, "2i"), "quatern": (352, "6d"), "srow": (400, "12d"), "magic": (4, 4)},
}


def _field(head: bytes, layout: dict, name: str, endian: str) -> tuple:
    offset, fmt = layout[name]
    return struct.unpack_from(endian + fmt, head, offset)


def check_nifti_header(path: Path) -> None:
    """Refuse a damaged NIfTI before SimpleITK allocates anything (see the module docstring)."""
    gz = path.name.lower().endswith(".gz")
    with reading(path, "NIfTI"), (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
        head = fh.read(540)
        size = int.from_bytes(head[:4], "little") if len(head) >= 4 else 0
        endian = "<" if size in _LAYOUTS else ">"
        size = size if size in _LAYOUTS else int.from_bytes(head[:4], "big") if len(head) >= 4 else 0
        if size not in _LAYOUTS or len(head) < size:
            raise InputFormatError(f"{path} is not a NIfTI file: it has no complete NIfTI-1/NIfTI-2 header "
                                   f"({len(head)} bytes{', after decompression' if gz else ''}). Re-export it.")
        layout = _LAYOUTS[size]
        magic_at, magic_len = layout["magic"]
        if head[magic_at:magic_at + magic_len].rstrip(b"\x00")[:3] not in (b"n+1", b"n+2"):
            raise InputFormatError(f"{path}: the NIfTI magic {head[magic_at:magic_at + magic_len]!r} does not mark a "
                                   "single-file .nii image (a two-file .hdr/.img pair, or a damaged header).")
        dim = _field(head, layout, "dim", endian)
        if not 1 <= dim[0] <= 7:
            raise InputFormatError(f"{path}: the NIfTI header says {dim[0]} dimensions (dim[0] must be 1..7); the "
                                   "header is damaged.")
        count = check_voxel_count(path, dim[1:dim[0] + 1], "NIfTI image")
        bitpix = _field(head, layout, "bitpix", endian)[0]
        if bitpix <= 0 or bitpix % 8:
            raise InputFormatError(f"{path}: bitpix {bitpix} is not a whole number of bytes; the header is damaged.")
        pixdim = np.array(_field(head, layout, "pixdim", endian)[1:min(dim[0], 3) + 1], dtype=float)
        if not np.all(np.isfinite(pixdim)) or np.any(pixdim == 0):
            raise InputFormatError(f"{path}: the NIfTI voxel sizes (pixdim) {pixdim.tolist()} must be finite and "
                                   "non-zero; the header is damaged.")
        qform, sform = _field(head, layout, "forms", endian)
        if qform > 0 and not np.all(np.isfinite(_field(head, layout, "quatern", endian))):
            raise InputFormatError(f"{path}: the NIfTI qform (quatern/qoffset) holds non-finite values; the header "
                                   "is damaged.")
        if sform > 0:
            srow = np.array(_field(head, layout, "srow", endian), dtype=float).reshape(3, 4)
            check_geometry(path, None, srow[:, 3], srow[:, :3])
        start = max(int(_field(head, layout, "vox_offset", endian)[0]), size)  # as niftilib reads a small offset
        needed = count * (bitpix // 8)
        if not gz:
            check_data_size(path, path, start, needed)
            return
        check_data_size(path, path, 0, start + needed, compression="deflate")
        total, limit = len(head), start + needed + CHUNK_BYTES
        while total < limit:  # reaching the end of the stream also verifies its CRC
            chunk = fh.read(CHUNK_BYTES)
            if not chunk:
                break
            total += len(chunk)
        if total < start + needed:
            raise InputFormatError(f"{path}: the header declares {needed} bytes of voxel data but the gzip stream "
                                   f"holds only {max(total - start, 0)}: the file is truncated. Re-copy or re-export "
                                   "it.")


def read_sitk_image(path: Path, fmt: str) -> sitk.Image:
    """Read a 3-D scalar image with SimpleITK (a trailing singleton 4th axis is dropped)."""
    if not path.is_file():
        raise InputFormatError(f"No such {fmt} file: {path}. Check the path.")
    with reading(path, fmt):
        image = sitk.ReadImage(str(path))
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() != 3:
        raise InputFormatError(f"{path}: expected a 3-D volume, got {image.GetDimension()}-D size {image.GetSize()}. "
                               "Split time series into one file per frame first.")
    return image


def volume_from_image(image: sitk.Image, path: Path) -> Volume:
    """from_sitk with the file named in a geometry error."""
    try:
        return from_sitk(image, quantity="unknown", unit="unknown")
    except InputFormatError as exc:
        raise InputFormatError(f"{path}: {exc}") from None


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
    if path.is_file():
        check_nifti_header(path)
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
    plain = volume_from_image(image, path)
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
