"""DICOM value helpers: blank-aware tag access and DA/TM/DT parsing (naive date-times, as written in the file)."""
from __future__ import annotations

import datetime as _dt
import re
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
# date and time
# ----------------------------------------------------------------------------------------------------------

_DA_RE = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})$")
_TM_RE = re.compile(r"^(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?$")
_DT_RE = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?$")


def parse_da(value: Any) -> _dt.date | None:
    """DICOM DA ('YYYYMMDD', legacy 'YYYY.MM.DD') -> date, None when blank or malformed."""
    if is_blank(value):
        return None
    if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        return value
    m = _DA_RE.match(str(value).strip())
    if not m:
        return None
    try:
        return _dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def parse_tm(value: Any) -> _dt.time | None:
    """DICOM TM ('HH', 'HHMM', 'HHMMSS.FFFFFF', legacy 'HH:MM:SS') -> time, None when blank or malformed."""
    if is_blank(value):
        return None
    if isinstance(value, _dt.time):
        return value
    m = _TM_RE.match(str(value).strip())
    if not m:
        return None
    hh, mm, ss, frac = m.groups()
    seconds = min(int(ss or 0), 59)  # DICOM allows 60 for a leap second
    micro = int((frac or "0").ljust(6, "0")) if frac else 0
    try:
        return _dt.time(int(hh), int(mm or 0), seconds, micro)
    except ValueError:
        return None


def parse_dt(value: Any) -> tuple[_dt.datetime | None, str | None]:
    """DICOM DT ('YYYYMMDDHHMMSS.FFFFFF&ZZXX', partial allowed) -> (naive datetime, UTC offset string or None)."""
    if is_blank(value):
        return None, None
    if isinstance(value, _dt.datetime):
        offset = None
        if value.tzinfo is not None and value.utcoffset() is not None:
            minutes = int(value.utcoffset().total_seconds() // 60)
            offset = f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
        return value.replace(tzinfo=None), offset
    m = _DT_RE.match(str(value).strip())
    if not m:
        return None, None
    y, mo, d, hh, mi, ss, frac, off = m.groups()
    try:
        out = _dt.datetime(int(y), int(mo or 1), int(d or 1), int(hh or 0), int(mi or 0), min(int(ss or 0), 59),
                           int(frac.ljust(6, "0")) if frac else 0)
    except ValueError:
        return None, None
    return out, off


def combine_date_time(date_value: Any, time_value: Any) -> _dt.datetime | None:
    """DA + TM -> naive datetime; None unless both parse."""
    d, t = parse_da(date_value), parse_tm(time_value)
    if d is None or t is None:
        return None
    return _dt.datetime.combine(d, t)


def iso(value: _dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()

