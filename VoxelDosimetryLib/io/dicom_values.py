"""DICOM value helpers: blank-aware tag access; DA/TM/DT values are parsed by io/datetime_parse.py."""
from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError


def import_pydicom():
    try:
        import pydicom
    except ImportError as exc:  # pragma: no cover - pydicom is a declared dependency
        raise InputFormatError("Reading DICOM needs pydicom: pip install pydicom") from exc
    return pydicom


# ----------------------------------------------------------------------------------------------------------
# small value helpers
# ----------------------------------------------------------------------------------------------------------

def is_blank(value: Any) -> bool:
    """True for an absent or empty DICOM value ('' or None or an empty sequence)."""
    if value is None:
        return True
    if isinstance(value, (str, bytes)):
        return str(value).strip(" \x00") == ""
    try:
        return len(value) == 0
    except TypeError:
        return False


def get_value(ds: Any, keyword: str, default: Any = None) -> Any:
    """`ds.keyword` or `default` when the element is absent or blank."""
    if ds is None:
        return default
    value = ds.get(keyword, None)
    if hasattr(value, "value") and not isinstance(value, (str, bytes)):  # a DataElement (tag lookup)
        value = value.value
    return default if is_blank(value) else value


def get_float(ds: Any, keyword: str) -> float | None:
    value = get_value(ds, keyword)
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or (hasattr(value, "__len__") and not isinstance(value, (str, bytes))):
        if len(value) == 0:
            return None
        value = value[0]
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def get_floats(ds: Any, keyword: str, count: int) -> np.ndarray | None:
    value = get_value(ds, keyword)
    if value is None:
        return None
    try:
        arr = np.asarray([float(v) for v in (value if not isinstance(value, (str, bytes)) else [value])])
    except (TypeError, ValueError):
        return None
    if arr.shape != (count,) or not np.all(np.isfinite(arr)):
        return None
    return arr


def get_str(ds: Any, keyword: str) -> str | None:
    value = get_value(ds, keyword)
    if value is None:
        return None
    if not isinstance(value, str) and hasattr(value, "__iter__"):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


# ----------------------------------------------------------------------------------------------------------
# date and time (parsing: io/datetime_parse.py)
# ----------------------------------------------------------------------------------------------------------

def iso(value: _dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()

