"""MetaImage volumes (.mhd + data file, .mha single file) via SimpleITK; GATE DoseActor outputs.

MetaImage keeps origin, spacing and direction (TransformMatrix) in LPS as text, so geometry round-trips
exactly. Quantity and unit travel in the JSON sidecar ``<stem>.json`` (sidecar.py); the writer also puts
``quantity``/``unit`` fields into the MetaImage header, which other readers ignore. Where no sidecar, header
field or argument says otherwise, GATE DoseActor names give the quantity (recorded as
``quantity_from = "gate_file_name"`` in metadata["source"]):

    *_dose.mhd, *-Dose.mhd, *-DoseToWater.mhd -> dose (Gy)
    *_edep.mhd, *-Edep.mhd                    -> energy_deposited (MeV)
    *_uncertainty.mhd, *-Uncertainty.mhd      -> relative_uncertainty (1, fraction)

Before SimpleITK reads a file its text header is checked (read_guard): sizes within the voxel cap, finite
positive spacing, finite origin, finite non-singular TransformMatrix, a data file that exists and holds the
declared bytes (compressed data are decompressed in constant memory and must give exactly those bytes;
SimpleITK would read truncated or corrupt compressed data silently).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.io.nifti_io import image_for_writing, read_sitk_image, volume_from_image
from VoxelDosimetryLib.io.read_guard import (check_data_size, check_geometry, check_voxel_count, count_inflated,
                                             reading)
from VoxelDosimetryLib.io.sidecar import (check_sidecar_writable, label_volume, read_sidecar, reconcile_grid,
                                          restore_dtype, write_sidecar)
from VoxelDosimetryLib.volume.sitk_bridge import QUANTITY_KEY, UNIT_KEY
from VoxelDosimetryLib.volume.volume import Volume

METAIMAGE_EXTENSIONS = (".mhd", ".mha")

# (pattern on the lower-case file stem, quantity, unit), first match wins.
_GATE_NAMES = (
    (re.compile(r"[_\-]uncertainty$"), "relative_uncertainty", "1"),
    (re.compile(r"[_\-](dose|dosetowater)$"), "dose", "Gy"),
    (re.compile(r"[_\-]edep$"), "energy_deposited", "MeV"),
)


MAX_HEADER_BYTES = 1 << 20  # a MetaImage text header is a few hundred bytes
# MetaIO element types -> bytes per value
_ELEMENT_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
                  "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
                  "MET_DOUBLE": 8}


def _header_fields(path: Path) -> tuple[dict, int]:
    """(lower-case key -> value text, header length in bytes) of a .mhd/.mha; the header ends at ElementDataFile."""
    with reading(path, "MetaImage"), open(path, "rb") as fh:
        head = fh.read(MAX_HEADER_BYTES)
    fields: dict = {}
    position = 0
    for line in head.splitlines(keepends=True):
        position += len(line)
        key, sep, value = line.decode("latin-1").partition("=")
        if not sep:
            continue
        fields.setdefault(key.strip().lower(), value.strip())
        if key.strip().lower() == "elementdatafile":
            return fields, position
    raise InputFormatError(f"{path} is not a MetaImage header: no 'ElementDataFile = ...' line in its first "
                           f"{min(len(head), MAX_HEADER_BYTES)} bytes. Re-export the image.")


def _numbers(fields: dict, key: str, path: Path, count: int | None = None) -> np.ndarray | None:
    if key not in fields:
        return None
    try:
        values = np.array([float(v) for v in fields[key].split()], dtype=float)
    except ValueError:
        values = np.zeros(0)
    if values.size == 0 or (count is not None and values.size != count):
        raise InputFormatError(f"{path}: the MetaImage field '{key} = {fields[key]}' should hold "
                               f"{count or 'some'} numbers; the header is damaged.")
    return values


def check_metaimage_header(path: Path) -> None:
    """Refuse a damaged MetaImage before SimpleITK allocates anything (see the module docstring)."""
    fields, header_bytes = _header_fields(path)
    ndims = _numbers(fields, "ndims", path, 1)
    sizes = _numbers(fields, "dimsize", path)
    if ndims is None or sizes is None:
        raise InputFormatError(f"{path} is not a usable MetaImage header: 'NDims' or 'DimSize' is missing.")
    n = int(ndims[0])
    if sizes.size != n:
        raise InputFormatError(f"{path}: 'DimSize = {fields['dimsize']}' does not give NDims = {n} sizes.")
    channels = _numbers(fields, "elementnumberofchannels", path, 1)
    count = check_voxel_count(path, list(sizes) + ([] if channels is None else [channels[0]]), "MetaImage")
    spacing = _numbers(fields, "elementspacing", path, n)
    spacing = _numbers(fields, "elementsize", path, n) if spacing is None else spacing
    origin = next((_numbers(fields, k, path, n) for k in ("offset", "origin", "position") if k in fields), None)
    matrix = next((_numbers(fields, k, path, n * n) for k in ("transformmatrix", "rotation", "orientation")
                   if k in fields), None)
    check_geometry(path, spacing, origin, matrix)
    data_name = fields["elementdatafile"]
    itemsize = _ELEMENT_BYTES.get(fields.get("elementtype", "").upper())
    if itemsize is None or data_name.upper() == "LIST" or "%" in data_name:
        return  # multi-file or unusual data: SimpleITK checks those itself
    local = data_name.upper() == "LOCAL"
    data_path = path if local else path.parent / data_name
    skip = int(_numbers(fields, "headersize", path, 1)[0]) if "headersize" in fields else 0
    needed = count * itemsize
    check_data_size(path, data_path, 0, 0)  # the data file exists
    if local:
        offset = header_bytes
    else:  # HeaderSize = -1: the data are the last bytes of the file
        offset = skip if skip >= 0 else max(data_path.stat().st_size - needed, 0)
    if fields.get("compresseddata", "false").lower() != "true":
        check_data_size(path, data_path, offset, needed)
        return
    check_data_size(path, data_path, offset, needed, compression="deflate")
    with reading(path, "MetaImage"), open(data_path, "rb") as fh:
        fh.seek(offset)
        got = count_inflated(fh, "zlib", needed, data_path)
    if got != needed:
        raise InputFormatError(f"{path}: the header declares {needed} bytes of voxel data but the compressed data "
                               f"in {data_path.name} hold {got}: the file is truncated or damaged. Re-copy or "
                               "re-export it.")


def gate_quantity_from_name(path: str | Path) -> tuple[str, str] | None:
    """(quantity, unit) implied by a GATE DoseActor output name (e.g. 'patient_dose.mhd'), else None."""
    stem = Path(path).name
    for ext in METAIMAGE_EXTENSIONS:
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
    stem = stem.lower()
    for pattern, quantity, unit in _GATE_NAMES:
        if pattern.search(stem):
            return quantity, unit
    return None


def read_metaimage(path: str | Path, quantity: str | None = None, unit: str | None = None) -> Volume:
    """Read a 3-D .mhd/.mha as an LPS Volume.

    Quantity/unit precedence: arguments, sidecar, MetaImage header fields, GATE file name, else 'unknown'.
    """
    path = Path(path)
    if path.is_file():
        check_metaimage_header(path)
    image = read_sitk_image(path, "MetaImage")
    notes: list = []
    plain = volume_from_image(image, path)
    sidecar = read_sidecar(path, notes)
    grid = reconcile_grid(plain.grid, sidecar, notes)
    array = restore_dtype(plain.array, sidecar.dtype if sidecar else None)
    keys = set(image.GetMetaDataKeys())
    file_q = file_u = None
    stated_by = "sidecar"
    if sidecar is not None and (sidecar.quantity or sidecar.unit):
        file_q, file_u = sidecar.quantity, sidecar.unit
    elif QUANTITY_KEY in keys or UNIT_KEY in keys:
        file_q = image.GetMetaData(QUANTITY_KEY) if QUANTITY_KEY in keys else None
        file_u = image.GetMetaData(UNIT_KEY) if UNIT_KEY in keys else None
        stated_by = "file"
    else:
        gate = gate_quantity_from_name(path)
        if gate is not None:
            file_q, file_u = gate
            stated_by = "gate_file_name"
            notes.append(f"quantity {file_q} ({file_u}) inferred from the GATE DoseActor file name {path.name}; "
                         "pass quantity=/unit= if that is wrong.")
    return label_volume(array, grid, path=path, fmt="metaimage", file_quantity=file_q, file_unit=file_u,
                        stated_by=stated_by, quantity=quantity, unit=unit,
                        metadata=sidecar.metadata if sidecar else None, notes=notes)


def write_metaimage(volume: Volume, path: str | Path, compress: bool = False) -> Path:
    """Write `volume` to .mha (one file) or .mhd (+ .raw, or .zraw when compressed) plus its JSON sidecar.

    compress: zlib-compress the voxel data (off by default: GATE 9 reads uncompressed MetaImage only).
    Keeps the dtype; returns the image (header) path; the volume is not modified.
    """
    path = Path(path)
    if path.suffix.lower() not in METAIMAGE_EXTENSIONS:
        raise InputFormatError(f"MetaImage file names end in .mhd or .mha, got {path.name}.")
    image, dtype_name = image_for_writing(volume, "MetaImage")
    image.SetMetaData(QUANTITY_KEY, volume.quantity)
    image.SetMetaData(UNIT_KEY, volume.unit)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_sidecar_writable(path)
    try:
        sitk.WriteImage(image, str(path), bool(compress))
    except RuntimeError as exc:
        raise InputFormatError(f"Cannot write MetaImage {path}: {str(exc).strip().splitlines()[-1]}") from None
    write_sidecar(path, volume, stored_dtype=dtype_name)
    return path
