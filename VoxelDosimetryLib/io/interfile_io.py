"""Interfile 3.3 image volumes (.h33 header + .i33 data; .hdr + .img), as read by GATE.

Keys are matched case-insensitively, with or without the leading '!', with any spacing around '[n]';
';' starts a comment. Required: ``matrix size [1]``, ``matrix size [2]``, a slice count (``matrix size [3]``,
``number of slices``, ``total number of images`` or ``number of images``), ``number format``, ``number of
bytes per pixel`` (except short/long float), ``scaling factor (mm/pixel) [1]`` and ``[2]``, a slice spacing and
``name of data file``. A missing or unusable key raises InputFormatError naming it.

Slice spacing, first found: ``scaling factor (mm/pixel) [3]``; ``slice thickness (mm)``; ``slice thickness
(pixels)``. The last is read as **mm by default**, as GATE reads it (GateInterfileHeader takes its value as
the z voxel size); pass ``slice_thickness_unit="pixels"`` for the Interfile 3.3 text meaning (x pixel size
multiples). The patient15 Lu-DOTATATE phantom says "(pixels)" but holds 4.4196, the SPECT slice size in mm.

Orientation convention (Interfile has no patient geometry): column, row and slice indices increase towards
patient **Left, Anterior, Inferior** (``axis_directions="LAI"``): the first voxel is the patient's
right-posterior-superior corner and slices run head to feet. Checked on the patient15 phantom: the carbon
table and spine sit in the first rows (posterior), lungs in the first slices, pelvis in the last (slices
run head→feet), and the liver and right kidney in the low columns (patient right). LPS direction matrix
columns: x=(1,0,0), y=(0,-1,0), z=(0,0,-1). The image centre is placed at LPS (0, 0, 0) mm, as GATE centres
voxelised phantoms. Headers declaring another patient orientation/rotation/slice orientation need an explicit
``axis_directions``. Every assumption is recorded in metadata["source"]["interfile"].

The writer stores exact LPS geometry in extra keys (``voxeldosimetry origin (mm lps)``, ``voxeldosimetry
column/row/slice direction (lps)``) that GATE and other readers ignore, and quantity/unit/metadata in the JSON
sidecar, so its files read back identically. Data are written little-endian, x fastest.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.io.read_guard import check_geometry, check_voxel_count, reading
from VoxelDosimetryLib.io.sidecar import (array_for_writing, check_sidecar_writable, label_volume, read_sidecar,
                                          reconcile_grid, restore_dtype, write_sidecar)
from VoxelDosimetryLib.volume.volume import Grid, Volume

INTERFILE_EXTENSIONS = (".h33", ".hdr")
DATA_EXTENSIONS = {".h33": ".i33", ".hdr": ".img"}
DEFAULT_AXIS_DIRECTIONS = "LAI"
SLICE_THICKNESS_UNITS = ("mm", "pixels")

_PATIENT_AXES = {"L": (1.0, 0.0, 0.0), "R": (-1.0, 0.0, 0.0), "P": (0.0, 1.0, 0.0), "A": (0.0, -1.0, 0.0),
                 "S": (0.0, 0.0, 1.0), "I": (0.0, 0.0, -1.0)}
_GEOMETRY_KEYS = ("voxeldosimetry origin (mm lps)", "voxeldosimetry column direction (lps)",
                  "voxeldosimetry row direction (lps)", "voxeldosimetry slice direction (lps)")
_FORMATS_OUT = {"u": "unsigned integer", "i": "signed integer"}
MAX_HEADER_BYTES = 1 << 20  # an Interfile header is a few kB of text


# ---------------------------------------------------------------------------------------- header

def _norm_key(key: str) -> str:
    key = key.strip().lstrip("!").strip().lower()
    key = re.sub(r"\s+", " ", key)
    return re.sub(r"\s*\[\s*(\d+)\s*\]", r" [\1]", key)


def is_interfile_header(path: str | Path) -> bool:
    """True when the file starts (after blanks) with '!INTERFILE'."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return False
    return head.lstrip().upper().startswith(b"!INTERFILE")


def parse_interfile_header(path: str | Path) -> dict:
    """Header keys (normalised: lower case, no '!', single spaces, ' [n]') -> first value (str)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_HEADER_BYTES + 1)
    except OSError as exc:
        raise InputFormatError(f"Cannot read the Interfile header {path}: {exc}") from None
    if len(raw) > MAX_HEADER_BYTES:
        raise InputFormatError(f"{path} is larger than {MAX_HEADER_BYTES} bytes, so it is not an Interfile text "
                               "header (is it the data file?). Give the .h33/.hdr header.")
    text = raw.decode("latin-1")
    if "\x00" in text[:4096]:
        raise InputFormatError(f"{path} is binary, not an Interfile text header (an Analyze .hdr? Convert it to "
                               "NIfTI first).")
    keys: dict = {}
    for line in text.splitlines():
        line = line.split(";", 1)[0]
        if ":=" not in line:
            continue
        key, value = line.split(":=", 1)
        key = _norm_key(key)
        if key and key not in keys:
            keys[key] = value.strip()
    if "interfile" not in keys:
        raise InputFormatError(f"{path} is not an Interfile header: the '!INTERFILE :=' line is missing.")
    return keys


def _require(keys: dict, key: str, path: Path) -> str:
    value = keys.get(key, "")
    if value == "":
        raise InputFormatError(f"{path}: the Interfile key '{key}' is missing or empty; add it to the header.")
    return value


def _number(keys: dict, key: str, path: Path, kind: type = float) -> float:
    value = _require(keys, key, path)
    try:
        number = float(value)
    except ValueError:
        raise InputFormatError(f"{path}: the Interfile key '{key}' should be a number, got {value!r}.") from None
    if not np.isfinite(number):
        raise InputFormatError(f"{path}: the Interfile key '{key}' should be a finite number, got {value!r}.")
    if kind is int:
        if number != int(number):
            raise InputFormatError(f"{path}: the Interfile key '{key}' should be an integer, got {value!r}.")
        return int(number)
    return number


def _vector(keys: dict, key: str, path: Path) -> np.ndarray:
    value = _require(keys, key, path).strip().strip("{}")
    try:
        vec = np.array([float(v) for v in value.split(",")], dtype=float)
    except ValueError:
        vec = np.zeros(0)
    if vec.shape != (3,) or not np.all(np.isfinite(vec)):
        raise InputFormatError(f"{path}: the Interfile key '{key}' should be three numbers {{x, y, z}}, got {value!r}.")
    return vec


# ------------------------------------------------------------------------------------ conventions

def axis_directions_matrix(code: str) -> np.ndarray:
    """LPS direction matrix (columns = index axes x, y, z) for a code such as 'LAI'.

    Letter i names the patient direction towards which index axis i (column, row, slice) increases.
    """
    letters = str(code).strip().upper()
    if len(letters) != 3 or any(c not in _PATIENT_AXES for c in letters):
        raise InputFormatError(f"axis_directions must be three letters from L/R, P/A, S/I (e.g. 'LAI'), got {code!r}.")
    matrix = np.array([_PATIENT_AXES[c] for c in letters]).T
    if abs(abs(np.linalg.det(matrix)) - 1.0) > 1e-9:
        raise InputFormatError(f"axis_directions {code!r} uses one patient axis twice; "
                               "name each of L/R, P/A, S/I once.")
    return matrix


def _centred_origin(direction: np.ndarray, spacing: np.ndarray, size_xyz: tuple) -> np.ndarray:
    """First-voxel centre (LPS mm) that puts the image centre at (0, 0, 0)."""
    half = (np.asarray(size_xyz, dtype=float) - 1.0) / 2.0 * spacing
    return -(direction @ half)


def _dtype(keys: dict, path: Path, notes: list) -> np.dtype:
    fmt = re.sub(r"\s+", " ", _require(keys, "number format", path).lower())
    bpp = _number(keys, "number of bytes per pixel", path, int) if keys.get("number of bytes per pixel") else None
    if fmt in ("short float", "long float"):
        size = 4 if fmt == "short float" else 8
        if bpp not in (None, size):
            raise InputFormatError(f"{path}: 'number format := {fmt}' needs {size} bytes per pixel, "
                                   f"but 'number of bytes per pixel' says {bpp}.")
        kind, bpp = "f", size
    elif fmt in ("float", "unsigned integer", "signed integer"):
        if bpp is None:
            raise InputFormatError(f"{path}: the Interfile key 'number of bytes per pixel' is missing; it is needed "
                                   f"for 'number format := {fmt}'.")
        kind = {"float": "f", "unsigned integer": "u", "signed integer": "i"}[fmt]
        allowed = (4, 8) if kind == "f" else (1, 2, 4, 8)
        if bpp not in allowed:
            raise InputFormatError(f"{path}: {bpp} bytes per pixel is not valid for '{fmt}' (use {allowed}).")
    else:
        raise InputFormatError(f"{path}: 'number format := {fmt}' is not supported; use unsigned integer, signed "
                               "integer, short float, long float or float.")
    if bpp == 1:
        return np.dtype(f"{kind}1")
    order = keys.get("imagedata byte order", "").replace(" ", "").upper()
    if order == "":
        order = "BIGENDIAN"
        notes.append("'imagedata byte order' is missing: the Interfile default BIGENDIAN was used.")
    if order not in ("LITTLEENDIAN", "BIGENDIAN"):
        raise InputFormatError(f"{path}: 'imagedata byte order := {keys['imagedata byte order']}' must be "
                               "LITTLEENDIAN or BIGENDIAN.")
    return np.dtype(("<" if order == "LITTLEENDIAN" else ">") + f"{kind}{bpp}")


def _slice_count(keys: dict, path: Path) -> int:
    found = {k: _number(keys, k, path, int) for k in ("matrix size [3]", "number of slices", "total number of images",
                                                      "number of images") if keys.get(k)}
    if not found:
        raise InputFormatError(f"{path}: no slice count: add 'number of slices' (or 'matrix size [3]') to the header.")
    if len(set(found.values())) > 1:
        raise InputFormatError(f"{path}: the slice counts disagree: {found}. Several frames or windows in one file "
                               "are not supported; fix the header.")
    return next(iter(found.values()))


def _slice_spacing(keys: dict, path: Path, pixel_mm: float, unit: str, notes: list) -> tuple[float, str]:
    if keys.get("scaling factor (mm/pixel) [3]"):
        return _number(keys, "scaling factor (mm/pixel) [3]", path), "scaling factor (mm/pixel) [3]"
    if keys.get("slice thickness (mm)"):
        return _number(keys, "slice thickness (mm)", path), "slice thickness (mm)"
    if keys.get("slice thickness (pixels)"):
        value = _number(keys, "slice thickness (pixels)", path)
        if unit == "mm":
            notes.append(f"'slice thickness (pixels) := {value:g}' read as mm, as GATE reads it; pass "
                         "slice_thickness_unit='pixels' for the Interfile 3.3 meaning.")
            return value, "slice thickness (pixels) read as mm (GATE)"
        notes.append(f"'slice thickness (pixels) := {value:g}' read as pixels of {pixel_mm:g} mm.")
        return value * pixel_mm, "slice thickness (pixels) read as pixels"
    raise InputFormatError(f"{path}: no slice spacing: add 'scaling factor (mm/pixel) [3]' or 'slice thickness "
                           "(pixels)' to the header.")


def _data_path(keys: dict, path: Path) -> Path:
    name = _require(keys, "name of data file", path).strip().strip('"').strip("'")
    tried = [path.parent / name, path.parent / os.path.basename(name.replace("\\", "/"))]
    for candidate in tried:
        if candidate.is_file():
            return candidate
    raise InputFormatError(f"{path}: 'name of data file := {name}' was not found (looked for "
                           f"{', '.join(str(t) for t in tried)}). Put the data file next to the header.")


def _geometry(keys: dict, path: Path, spacing: np.ndarray, size_xyz: tuple, axis_directions: str | None,
              notes: list) -> tuple[np.ndarray, np.ndarray, dict]:
    """(direction, origin, description) following the module's orientation convention."""
    present = [k for k in _GEOMETRY_KEYS if keys.get(k)]
    if axis_directions is None and present:
        if len(present) != len(_GEOMETRY_KEYS):
            missing = [k for k in _GEOMETRY_KEYS if k not in present]
            raise InputFormatError(f"{path}: incomplete VoxelDosimetry geometry keys; missing {missing}.")
        origin = _vector(keys, _GEOMETRY_KEYS[0], path)
        direction = np.column_stack([_vector(keys, k, path) for k in _GEOMETRY_KEYS[1:]])
        return direction, origin, {"geometry_from": "voxeldosimetry header keys (exact LPS)"}
    if axis_directions is None:
        expected = {"patient orientation": "head_in", "patient rotation": "supine", "slice orientation": "transverse"}
        for key, value in expected.items():
            stated = keys.get(key, "").strip().lower().replace(" ", "_")
            if stated and stated != value:
                raise InputFormatError(f"{path}: '{key} := {keys[key]}' differs from the default convention "
                                       f"({value}, axis_directions='{DEFAULT_AXIS_DIRECTIONS}'). Pass "
                                       "axis_directions (e.g. 'LAI', 'RAS') saying where columns, rows and "
                                       "slices point.")
        code = DEFAULT_AXIS_DIRECTIONS
        notes.append("Interfile has no patient geometry: columns/rows/slices taken to point Left/Anterior/Inferior "
                     "(first voxel at patient right-posterior-superior, slices head to feet) with the image centre "
                     "at LPS (0, 0, 0) mm; pass axis_directions to change it.")
    else:
        code = str(axis_directions).strip().upper()
        notes.append(f"axis_directions={code!r} given; image centre placed at LPS (0, 0, 0) mm.")
    direction = axis_directions_matrix(code)
    origin = _centred_origin(direction, spacing, size_xyz)
    return direction, origin, {"axis_directions": code, "origin_convention": "image centre at LPS (0, 0, 0) mm"}


def _rescale(array: np.ndarray, keys: dict, path: Path, notes: list) -> np.ndarray:
    slope_key = next((k for k in ("data rescale slope", "rescale slope") if keys.get(k)), None)
    offset_key = next((k for k in ("data rescale offset", "rescale intercept", "rescale offset") if keys.get(k)), None)
    slope = _number(keys, slope_key, path) if slope_key else 1.0
    offset = _number(keys, offset_key, path) if offset_key else 0.0
    if slope == 1.0 and offset == 0.0:
        return array
    notes.append(f"values rescaled as stored * {slope:g} + {offset:g} ('{slope_key}', '{offset_key}').")
    return array.astype(np.float64) * slope + offset


# ------------------------------------------------------------------------------------------ read

def read_interfile(path: str | Path, quantity: str | None = None, unit: str | None = None,
                   axis_directions: str | None = None, slice_thickness_unit: str = "mm") -> Volume:
    """Read an Interfile image (.h33/.hdr header + data file) as an LPS Volume (see the module docstring).

    axis_directions: override the orientation convention (default 'LAI', or the writer's exact keys).
    slice_thickness_unit: 'mm' (GATE reading, default) or 'pixels' for 'slice thickness (pixels)'.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFormatError(f"No such Interfile header: {path}. Check the path.")
    if slice_thickness_unit not in SLICE_THICKNESS_UNITS:
        raise InputFormatError(f"slice_thickness_unit must be one of {SLICE_THICKNESS_UNITS}, "
                               f"got {slice_thickness_unit!r}.")
    keys = parse_interfile_header(path)
    for key in ("number of time frames", "number of energy windows", "number of frame groups",
                "number of time windows"):
        if keys.get(key) and _number(keys, key, path, int) > 1:
            raise InputFormatError(f"{path}: '{key} := {keys[key]}': only single-frame, single-window images are "
                                   "supported. Split the file per frame/window first.")
    notes: list = []
    nx = _number(keys, "matrix size [1]", path, int)
    ny = _number(keys, "matrix size [2]", path, int)
    nz = _slice_count(keys, path)
    if min(nx, ny, nz) < 1:
        raise InputFormatError(f"{path}: matrix size {nx} x {ny} x {nz} has an empty axis.")
    count = check_voxel_count(path, (nx, ny, nz), "Interfile matrix")
    dtype = _dtype(keys, path, notes)
    sx = _number(keys, "scaling factor (mm/pixel) [1]", path)
    sy = _number(keys, "scaling factor (mm/pixel) [2]", path)
    sz, sz_from = _slice_spacing(keys, path, sx, slice_thickness_unit, notes)
    check_geometry(path, (sx, sy, sz))
    if keys.get("data offset in bytes"):
        offset = _number(keys, "data offset in bytes", path, int)
    elif keys.get("data starting block"):
        offset = 2048 * _number(keys, "data starting block", path, int)
    else:
        offset = 0
    if offset < 0:
        raise InputFormatError(f"{path}: the data offset {offset} bytes is negative; fix 'data offset in bytes'.")
    data_path = _data_path(keys, path)
    expected = offset + count * dtype.itemsize
    actual = data_path.stat().st_size
    if actual != expected:
        raise InputFormatError(
            f"{data_path} holds {actual} bytes but the header {path.name} describes {expected} "
            f"({nx} x {ny} x {nz} voxels x {dtype.itemsize} bytes + offset {offset}). Check 'matrix size', "
            "'number of slices', 'number of bytes per pixel' and 'data offset in bytes'.")
    with reading(data_path, "Interfile data"):
        array = np.fromfile(data_path, dtype=dtype, count=count, offset=offset).reshape(nz, ny, nx)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    array = _rescale(array, keys, path, notes)
    spacing = np.array([sx, sy, sz], dtype=float)
    direction, origin, geometry = _geometry(keys, path, spacing, (nx, ny, nz), axis_directions, notes)
    try:
        grid = Grid((nz, ny, nx), spacing, origin, direction)
    except InputFormatError as exc:
        raise InputFormatError(f"{path}: {exc}") from None
    sidecar = read_sidecar(path, notes)
    grid = reconcile_grid(grid, sidecar, notes)
    array = restore_dtype(array, sidecar.dtype if sidecar else None)
    details = {"interfile": {**geometry, "slice_spacing_from": sz_from, "data_file": str(data_path), "header": keys}}
    return label_volume(array, grid, path=path, fmt="interfile",
                        file_quantity=sidecar.quantity if sidecar else None,
                        file_unit=sidecar.unit if sidecar else None, stated_by="sidecar",
                        quantity=quantity, unit=unit, metadata=sidecar.metadata if sidecar else None,
                        notes=notes, details=details)


# ----------------------------------------------------------------------------------------- write

def _fmt_vec(values) -> str:
    return "{" + ", ".join(repr(float(v)) for v in values) + "}"


def write_interfile(volume: Volume, path: str | Path) -> Path:
    """Write `volume` as an Interfile pair (.h33 + .i33, or .hdr + .img) plus its JSON sidecar; returns the header.

    Integer and float32/float64 dtypes are kept (bool as unsigned 1-byte, restored on reading).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in DATA_EXTENSIONS:
        raise InputFormatError(f"Interfile headers end in .h33 or .hdr, got {path.name}.")
    array, dtype_name = array_for_writing(volume, "Interfile")
    kind = array.dtype.kind
    number_format = {4: "short float", 8: "long float"}[array.dtype.itemsize] if kind == "f" else _FORMATS_OUT[kind]
    data_path = path.with_suffix(DATA_EXTENSIONS[suffix] if path.suffix == suffix else DATA_EXTENSIONS[suffix].upper())
    nz, ny, nx = volume.shape
    sx, sy, sz = volume.spacing
    d = volume.direction
    # GATE's parser reads each key up to the next '=': no comment line may precede a key GATE uses.
    lines = [
        "!INTERFILE :=",
        "!imaging modality := nucmed",
        "!version of keys := 3.3",
        "program author := VoxelDosimetry",
        f"!name of data file := {data_path.name}",
        "!data offset in bytes := 0",
        "imagedata byte order := LITTLEENDIAN",
        "!type of data := Tomographic",
        f"!total number of images := {nz}",
        f"!matrix size [1] := {nx}",
        f"!matrix size [2] := {ny}",
        f"!matrix size [3] := {nz}",
        f"!number format := {number_format}",
        f"!number of bytes per pixel := {array.dtype.itemsize}",
        f"scaling factor (mm/pixel) [1] := {float(sx)!r}",
        f"scaling factor (mm/pixel) [2] := {float(sy)!r}",
        f"scaling factor (mm/pixel) [3] := {float(sz)!r}",
        f"!number of slices := {nz}",
        f"slice thickness (pixels) := {float(sz)!r}",
        "slice orientation := Transverse",
        "; slice thickness is in mm, as GATE reads it. The voxeldosimetry keys below give the exact patient",
        "; LPS geometry in mm: first voxel centre and the directions of columns, rows and slices.",
        f"{_GEOMETRY_KEYS[0]} := {_fmt_vec(volume.origin)}",
        f"{_GEOMETRY_KEYS[1]} := {_fmt_vec(d[:, 0])}",
        f"{_GEOMETRY_KEYS[2]} := {_fmt_vec(d[:, 1])}",
        f"{_GEOMETRY_KEYS[3]} := {_fmt_vec(d[:, 2])}",
        "!END OF INTERFILE :=",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    check_sidecar_writable(path)
    little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    little.tofile(data_path)
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    write_sidecar(path, volume, stored_dtype=dtype_name)
    return path
