"""MetaImage volumes (.mhd + data file, .mha single file) via SimpleITK; GATE DoseActor outputs.

MetaImage keeps origin, spacing and direction (TransformMatrix) in LPS as text, so geometry round-trips
exactly. Quantity and unit travel in the JSON sidecar ``<stem>.json`` (sidecar.py); the writer also puts
``quantity``/``unit`` fields into the MetaImage header, which other readers ignore. Where no sidecar, header
field or argument says otherwise, GATE DoseActor names give the quantity (recorded as
``quantity_from = "gate_file_name"`` in metadata["source"]):

    *_dose.mhd, *-Dose.mhd, *-DoseToWater.mhd -> dose (Gy)
    *_edep.mhd, *-Edep.mhd                    -> energy_deposited (MeV)
    *_uncertainty.mhd, *-Uncertainty.mhd      -> relative_uncertainty (1, fraction)
"""
from __future__ import annotations

import re
from pathlib import Path

import SimpleITK as sitk

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.io.nifti_io import image_for_writing, read_sitk_image
from VoxelDosimetryLib.io.sidecar import (check_sidecar_writable, label_volume, read_sidecar, reconcile_grid,
                                          restore_dtype, write_sidecar)
from VoxelDosimetryLib.volume.sitk_bridge import QUANTITY_KEY, UNIT_KEY, from_sitk
from VoxelDosimetryLib.volume.volume import Volume

METAIMAGE_EXTENSIONS = (".mhd", ".mha")

# (pattern on the lower-case file stem, quantity, unit), first match wins.
_GATE_NAMES = (
    (re.compile(r"[_\-]uncertainty$"), "relative_uncertainty", "1"),
    (re.compile(r"[_\-](dose|dosetowater)$"), "dose", "Gy"),
    (re.compile(r"[_\-]edep$"), "energy_deposited", "MeV"),
)


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
    image = read_sitk_image(path, "MetaImage")
    notes: list = []
    plain = from_sitk(image, quantity="unknown", unit="unknown")
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
