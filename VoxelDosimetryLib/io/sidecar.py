"""Where a read volume's quantity, unit and metadata come from, and the JSON sidecar that carries them.

Formats without key/value fields of their own (NIfTI, MetaImage, Interfile) keep the quantity, unit,
metadata, stored dtype and exact LPS grid in a JSON sidecar next to the image. NRRD keeps them in its
header instead (nrrd_io).

Sidecar naming (BIDS style): the image extension is replaced by ``.json``::

    ct.nii.gz -> ct.json      dose_dose.mhd -> dose_dose.json      patient.h33 -> patient.json

Two images that differ only by extension (``ct.nii.gz`` and ``ct.mha``) would share one sidecar, so the
sidecar names the image it describes (``"image"``); a reader ignores a sidecar written for another image
and a writer refuses to overwrite one (choose another file stem).

Every volume a reader returns has ``metadata["source"]``: the file, its format, where the quantity came
from (``quantity_from``: argument | file | sidecar | gate_file_name | none), whether a unit was stated
(``unit_stated``) and human-readable ``notes`` on every assumption made while reading. Writers store the
metadata as it is; on reading, the stored "source" is replaced and its path kept as ``derived_from``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError, UnitError
from VoxelDosimetryLib.volume.units import (canonical_unit, check_unit_for_quantity, get_quantity,
                                            guess_quantity_for_unit)
from VoxelDosimetryLib.volume.volume import GRID_TOLERANCE_MM, Grid, Volume

SIDECAR_FORMAT = "voxeldosimetry-sidecar"
SIDECAR_VERSION = 1
SOURCE_KEY = "source"

# Compound extensions first so that "ct.nii.gz" loses ".nii.gz", not only ".gz".
IMAGE_EXTENSIONS = (".nii.gz", ".nrrd.gz", ".nii", ".mhd", ".mha", ".h33", ".hdr", ".nrrd", ".nhdr", ".img", ".raw")


@dataclass
class Sidecar:
    """Parsed sidecar content (every field optional)."""

    path: Path
    quantity: str | None = None
    unit: str | None = None
    metadata: dict = field(default_factory=dict)
    grid: Grid | None = None
    dtype: str | None = None


# ----------------------------------------------------------------------------------------- naming

def image_stem(path: str | Path) -> str:
    """File name without its image extension ('ct.nii.gz' -> 'ct')."""
    name = Path(path).name
    lower = name.lower()
    for ext in IMAGE_EXTENSIONS:
        if lower.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return Path(name).stem


def sidecar_path(image_path: str | Path) -> Path:
    """The sidecar of an image: same folder, image extension replaced by '.json'."""
    image_path = Path(image_path)
    return image_path.with_name(image_stem(image_path) + ".json")


# ------------------------------------------------------------------------------------ JSON values

def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def metadata_to_json(metadata: dict) -> str:
    """One-line JSON text of a metadata dict (numpy values become plain numbers, others strings)."""
    return json.dumps(metadata, default=_json_default, sort_keys=True, ensure_ascii=True)


def metadata_from_json(text: str, where: str) -> dict:
    """Parse a metadata JSON object; InputFormatError naming `where` when malformed."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InputFormatError(f"{where}: the metadata is not valid JSON ({exc}). Fix or remove it.") from None
    if not isinstance(value, dict):
        raise InputFormatError(f"{where}: the metadata must be a JSON object, got {type(value).__name__}.")
    return value


# ---------------------------------------------------------------------------------- read / write

def check_sidecar_writable(image_path: str | Path) -> Path:
    """The sidecar path for `image_path`; InputFormatError when an existing file there belongs to something else.

    Call before writing the image so that a refused sidecar leaves no half-written output.
    """
    image_path = Path(image_path)
    path = sidecar_path(image_path)
    if not path.exists():
        return path
    try:
        existing = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        existing = None
    stem = image_stem(image_path)
    fix = (f"Choose another file name stem (e.g. {stem}_2{image_path.name[len(stem):]}) or delete {path.name} "
           "if it is no longer needed.")
    if not isinstance(existing, dict) or existing.get("format") != SIDECAR_FORMAT:
        raise InputFormatError(f"{path} exists and is not a VoxelDosimetry sidecar; writing {image_path.name} "
                               f"would overwrite it. {fix}")
    other = existing.get("image")
    if other and other != image_path.name:
        raise InputFormatError(f"{path} already describes {other}; writing {image_path.name} would overwrite "
                               f"its units. {fix}")
    return path


def write_sidecar(image_path: str | Path, volume: Volume, stored_dtype: str | None = None) -> Path:
    """Write the sidecar of `image_path` (quantity, unit, metadata, dtype, exact grid); returns its path."""
    image_path = Path(image_path)
    path = check_sidecar_writable(image_path)
    content = {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        "image": image_path.name,
        "quantity": volume.quantity,
        "unit": volume.unit,
        "dtype": stored_dtype or str(volume.array.dtype),
        "grid": volume.grid.to_dict(),
        "metadata": json.loads(metadata_to_json(volume.metadata)),
    }
    path.write_text(json.dumps(content, indent=2, ensure_ascii=True) + "\n", encoding="utf-8")
    return path


def _load_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputFormatError(f"Cannot read the sidecar {path}: {exc}. Fix the JSON or remove the file.") from None
    if not isinstance(value, dict):
        raise InputFormatError(f"The sidecar {path} must hold a JSON object, got {type(value).__name__}.")
    return value


# A hand-written sidecar (no "format" marker) may hold only these keys; any other JSON document is not a sidecar.
HAND_WRITTEN_KEYS = {"quantity", "unit", "metadata", "dtype", "grid", "image"}


def read_sidecar(image_path: str | Path, notes: list | None = None) -> Sidecar | None:
    """The sidecar of `image_path`, or None when there is none that applies (reasons appended to `notes`).

    A JSON file without the VoxelDosimetry marker is still used when it has "quantity" or "unit" keys and nothing
    but sidecar keys (hand-written sidecars); other JSON (BIDS, a segment table, a report) is ignored.
    """
    image_path = Path(image_path)
    path = sidecar_path(image_path)
    notes = notes if notes is not None else []
    if not path.is_file():
        return None
    content = _load_json(path)
    ours = content.get("format") == SIDECAR_FORMAT
    if not ours and "quantity" not in content and "unit" not in content:
        notes.append(f"{path.name} exists but is not a VoxelDosimetry sidecar (no quantity/unit); ignored.")
        return None
    foreign = sorted(set(content) - HAND_WRITTEN_KEYS)
    if not ours and foreign:  # e.g. a segment table's JSON (rows, columns) that happens to share the image's stem
        notes.append(f"{path.name} is not a sidecar (it holds {', '.join(foreign[:4])}); ignored.")
        return None
    other = content.get("image")
    if other and other != image_path.name:
        notes.append(f"{path.name} describes {other}, not {image_path.name}; ignored.")
        return None
    for key in ("quantity", "unit", "dtype"):
        if key in content and content[key] is not None and not isinstance(content[key], str):
            raise InputFormatError(f"The sidecar {path}: '{key}' must be a string, got {content[key]!r}.")
    metadata = content.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InputFormatError(f"The sidecar {path}: 'metadata' must be a JSON object.")
    grid = None
    if isinstance(content.get("grid"), dict):
        g = content["grid"]
        try:
            grid = Grid(tuple(g["shape_zyx"]), g["spacing_mm"], g["origin_lps_mm"],
                        np.asarray(g["direction"], dtype=float).reshape(3, 3))
        except (KeyError, TypeError, ValueError) as exc:
            notes.append(f"{path.name}: the stored grid is malformed ({exc}); the image header geometry is used.")
    return Sidecar(path=path, quantity=content.get("quantity"), unit=content.get("unit"), metadata=metadata,
                   grid=grid, dtype=content.get("dtype"))


def reconcile_grid(file_grid: Grid, sidecar: Sidecar | None, notes: list) -> Grid:
    """The sidecar's exact (float64) grid when it agrees with the image header within tolerance, else the header's.

    NIfTI stores geometry in float32 (origin errors ~1e-5 mm); the sidecar restores the exact values. A sidecar
    that disagrees (image resampled by another tool) never wins over the image header.
    """
    if sidecar is None or sidecar.grid is None:
        return file_grid
    problem = file_grid.mismatch(sidecar.grid, tol_mm=GRID_TOLERANCE_MM)
    if problem is None:
        return sidecar.grid
    notes.append(f"{sidecar.path.name} geometry disagrees with the image header ({problem}); the header was used.")
    return file_grid


# ------------------------------------------------------------------------------------------ dtype

def array_for_writing(volume: Volume, fmt: str) -> tuple[np.ndarray, str]:
    """(array to store, original dtype name): bool is stored as uint8; float16 is refused.

    Never modifies the volume's array (bool conversion copies).
    """
    array = volume.array
    dtype_name = str(array.dtype)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
        dtype_name = str(array.dtype)
    if array.dtype == np.bool_:
        return array.astype(np.uint8), dtype_name
    if array.dtype.kind == "f" and array.dtype.itemsize not in (4, 8):
        raise InputFormatError(f"{fmt} cannot store {array.dtype} voxels. Convert first, e.g. "
                               "volume.with_array(volume.array.astype(numpy.float32)).")
    if array.dtype.kind not in "biuf":
        raise InputFormatError(f"{fmt} stores numeric voxels only, got {array.dtype}.")
    return array, dtype_name


def restore_dtype(array: np.ndarray, stored_dtype: str | None) -> np.ndarray:
    """Undo array_for_writing: uint8 0/1 voxels written from a bool volume come back as bool."""
    if stored_dtype == "bool" and array.dtype == np.uint8 and (array.size == 0 or int(array.max()) <= 1):
        return array.astype(np.bool_)
    return array


# ------------------------------------------------------------------------------- quantity / unit

def _unit_fits(quantity: str | None, unit: str | None) -> bool:
    if quantity is None or unit is None:
        return False
    try:
        check_unit_for_quantity(quantity, unit)
    except UnitError:
        return False
    return True


def _canonical_or_unknown(quantity: str) -> str:
    """Canonical unit of `quantity`, or 'unknown' for an unknown name (the caller reports it)."""
    try:
        return get_quantity(quantity).unit
    except UnitError:
        return "unknown"


def _check_label(quantity: str, unit: str, where: str) -> None:
    try:
        get_quantity(quantity)
        canonical_unit(unit)
        check_unit_for_quantity(quantity, unit)
    except UnitError as exc:
        raise UnitError(f"{where}: {exc} Pass quantity=/unit= to read_volume to set them explicitly (command "
                        "line: voxeldosimetry convert IN OUT --relabel --quantity Q --unit U writes a corrected "
                        "copy).") from None


def resolve_quantity_unit(file_quantity: str | None, file_unit: str | None, stated_by: str,
                          quantity: str | None, unit: str | None, where: str,
                          notes: list) -> tuple[str, str, str, bool]:
    """(quantity, unit, quantity_from, unit_stated): arguments override the file; nothing stated -> 'unknown'.

    `stated_by` names where the file's labels came from (file | sidecar | gate_file_name).
    """
    # "unknown" in a file means "not stated" (a volume of unknown meaning written earlier)
    file_quantity = None if file_quantity in (None, "", "unknown") else file_quantity
    file_unit = None if file_unit in (None, "", "unknown") else file_unit
    if quantity is not None or unit is not None:
        if quantity is not None:
            _check_label(quantity, unit if unit is not None else _canonical_or_unknown(quantity), where)
        if quantity is None:
            quantity = file_quantity if _unit_fits(file_quantity, unit) else guess_quantity_for_unit(unit)
        if unit is None:
            unit = file_unit if _unit_fits(quantity, file_unit) else get_quantity(quantity).unit
        if (file_quantity, file_unit) != (None, None) and (file_quantity, file_unit) != (quantity, unit):
            notes.append(f"quantity/unit set by argument to {quantity} ({unit}); the {stated_by} said "
                         f"{file_quantity} ({file_unit}).")
        _check_label(quantity, unit, where)
        return quantity, unit, "argument", True
    if file_quantity is not None or file_unit is not None:
        unit_given = file_unit is not None
        if file_quantity is None:
            file_quantity = guess_quantity_for_unit(file_unit)
            notes.append(f"the {stated_by} states only the unit {file_unit!r}; quantity {file_quantity!r} "
                         "follows from it.")
        if file_unit is None:
            file_unit = get_quantity(file_quantity).unit
            notes.append(f"the {stated_by} states only the quantity; its canonical unit {file_unit} is assumed.")
        _check_label(file_quantity, file_unit, where)
        return file_quantity, file_unit, stated_by, unit_given and stated_by in ("file", "sidecar")
    notes.append("the file states no quantity or unit: quantity 'unknown'. Pass quantity=/unit= "
                 "(CLI --quantity/--unit) to say what the voxels hold.")
    return "unknown", "unknown", "none", False


def label_volume(array: np.ndarray, grid: Grid, *, path: str | Path, fmt: str,
                 file_quantity: str | None = None, file_unit: str | None = None, stated_by: str = "file",
                 quantity: str | None = None, unit: str | None = None, metadata: dict | None = None,
                 notes: Sequence[str] = (), details: dict | None = None) -> Volume:
    """Build the Volume a reader returns: resolved quantity/unit plus metadata['source'] provenance."""
    notes = list(notes)
    q, u, origin, stated = resolve_quantity_unit(file_quantity, file_unit, stated_by, quantity, unit,
                                                 str(path), notes)
    meta = dict(metadata or {})
    source = {"path": str(path), "format": fmt, "quantity_from": origin, "unit_stated": stated, "notes": notes}
    if details:
        source.update(details)
    previous = meta.get(SOURCE_KEY)
    previous_path = previous.get("path") if isinstance(previous, dict) else previous
    if previous_path and str(previous_path) != str(path):
        source["derived_from"] = str(previous_path)  # the file the writer's volume was read from
    meta[SOURCE_KEY] = source
    return Volume(array, grid=grid, quantity=q, unit=u, metadata=meta)


def relabel(volume: Volume, quantity: str | None = None, unit: str | None = None) -> Volume:
    """Apply explicit quantity/unit arguments to a volume read elsewhere (e.g. DICOM); same voxels and grid."""
    if quantity is None and unit is None:
        return volume
    meta = dict(volume.metadata)
    previous = meta.get(SOURCE_KEY)
    source = dict(previous) if isinstance(previous, dict) else ({"path": str(previous)} if previous else {})
    notes = list(source.get("notes") or [])
    file_q = None if volume.quantity == "unknown" else volume.quantity
    file_u = None if volume.unit == "unknown" else volume.unit
    q, u, origin, stated = resolve_quantity_unit(file_q, file_u, "file", quantity, unit,
                                                 str(source.get("path", "volume")), notes)
    source.update({"quantity_from": origin, "unit_stated": stated, "notes": notes})
    meta[SOURCE_KEY] = source
    return volume.replace(quantity=q, unit=u, metadata=meta)
