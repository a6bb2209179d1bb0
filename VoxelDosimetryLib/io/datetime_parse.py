"""The one date-time parser of the library and the Slicer module: ISO 8601, DICOM DA/TM/DT, typed text.

Strict (text from users, case.json, configs, metadata): `parse_datetime` and `dicom_date_time` raise
InputFormatError (a ValueError) naming the accepted forms. Lenient (DICOM header values, where one bad tag must
not stop the image from loading): `parse_da`, `parse_tm`, `parse_dt` and `combine_date_time` give None for blank
or malformed values. Both read through the same patterns below.

Python 3.9 safe: no datetime.fromisoformat, which on 3.9 refuses a trailing 'Z' and fractions other than 3 or 6
digits. UTC offsets ('Z', '+01:00', '+0100', DICOM '&ZZXX') make `parse_datetime` return an aware datetime;
without one it is naive (local time as written). `parse_dt` returns the naive value and the offset text apart.
"""
from __future__ import annotations

import datetime as _dt
import re
from typing import Any

from VoxelDosimetryLib.errors import InputFormatError

# DICOM PS3.5 6.2: DA 'YYYYMMDD' (legacy 'YYYY.MM.DD'), TM 'HH[MM[SS[.F{1,6}]]]' (legacy colons),
# DT 'YYYY[MM[DD[HH[MM[SS[.F{1,6}]]]]]][&ZZXX]'.
_DA = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})$")
_TM = re.compile(r"^(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?$")
_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?$")
# ISO 8601 extended form: 'YYYY-MM-DD[(T| )HH[:MM[:SS[.F+]]]][Z|+HH[[:]MM]]'
_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2})(?::(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?)?"
                  r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?$")

ACCEPTED_FORMS = ("ISO 8601 such as 2024-03-01T10:30 (optionally with seconds, a fraction and a UTC offset: Z or "
                  "+01:00) or DICOM form 20240301103000[.ffffff][+0100]")


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip(" \x00")


def _time_parts(hh: Any, mm: Any, ss: Any, fraction: Any) -> tuple[int, int, int, int]:
    """(hour, minute, second, microsecond); a DICOM leap second 60 becomes 59, fractions beyond 6 digits are cut."""
    micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
    return int(hh or 0), int(mm or 0), min(int(ss or 0), 59), micro


def _timezone(offset: str | None) -> _dt.timezone | None:
    """'Z', '+01:00', '+0100', '-05' -> timezone; None for None."""
    if not offset:
        return None
    if offset == "Z":
        return _dt.timezone.utc
    digits = offset[1:].replace(":", "")
    delta = _dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
    return _dt.timezone(-delta if offset[0] == "-" else delta)


def _dicom_dt(text: str) -> tuple[_dt.datetime, str | None] | None:
    """(naive datetime, offset text) of a DICOM DT; None when not in DT form; ValueError for impossible dates."""
    m = _DT.match(text)
    if not m:
        return None
    y, mo, d, hh, mi, ss, frac, offset = m.groups()
    return _dt.datetime(int(y), int(mo or 1), int(d or 1), *_time_parts(hh, mi, ss, frac)), offset


def _iso(text: str) -> _dt.datetime | None:
    """Datetime (aware when an offset is given) of ISO 8601 text; None when not ISO; ValueError when impossible."""
    m = _ISO.match(text)
    if not m:
        return None
    y, mo, d, hh, mi, ss, frac, offset = m.groups()
    value = _dt.datetime(int(y), int(mo), int(d), *_time_parts(hh, mi, ss, frac))
    zone = _timezone(offset)
    return value if zone is None else value.replace(tzinfo=zone)


# ---------------------------------------------------------------------------------------------------- strict

def parse_datetime(value: Any, name: str = "") -> _dt.datetime | None:
    """A datetime from ISO 8601 or DICOM DT text (or a datetime/date); None for None or empty text.

    Anything else raises InputFormatError naming `name` (e.g. 'injection_datetime') and the accepted forms.
    """
    where = f" ({name})" if name else ""
    if value is None or isinstance(value, _dt.datetime):
        return value
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, str):
        raise InputFormatError(f"The date-time{where} must be text or a datetime; got {type(value).__name__}.")
    text = _text(value)
    if not text:
        return None
    try:
        parsed = _iso(text)
        if parsed is not None:
            return parsed
        compact = text.replace(" ", "")
        if re.match(r"^\d{8}", compact):  # a full DICOM date at least; 'YYYY' or 'YYYYMM' alone is refused here
            parts = _dicom_dt(compact)
            if parts is not None:
                naive, offset = parts
                zone = _timezone(offset)
                return naive if zone is None else naive.replace(tzinfo=zone)
    except ValueError as exc:
        raise InputFormatError(f"The date-time{where} {text!r} is not a valid date-time: {exc}.") from None
    raise InputFormatError(f"Cannot read the date-time{where} {text!r}. Use {ACCEPTED_FORMS}.")


def dicom_date_time(date: Any, time: Any) -> _dt.datetime | None:
    """A naive datetime from a DICOM date (DA) and time (TM); None when the date is empty, midnight without a time.

    A malformed date or time raises InputFormatError (unlike `combine_date_time`, which gives None).
    """
    date_text, time_text = _text(date), _text(time)
    if not date_text:
        return None
    if parse_da(date_text) is None:
        raise InputFormatError(f"DICOM date {date_text!r} is not a valid date in the form YYYYMMDD.")
    if time_text and parse_tm(time_text) is None:
        raise InputFormatError(f"DICOM time {time_text!r} is not a valid time in the form HHMMSS[.ffffff].")
    return _dt.datetime.combine(parse_da(date_text), parse_tm(time_text) or _dt.time())


# --------------------------------------------------------------------------------------------------- lenient

def parse_da(value: Any) -> _dt.date | None:
    """DICOM DA ('YYYYMMDD', legacy 'YYYY.MM.DD') -> date, None when blank or malformed."""
    if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        return value
    m = _DA.match(_text(value))
    if not m:
        return None
    try:
        return _dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def parse_tm(value: Any) -> _dt.time | None:
    """DICOM TM ('HH', 'HHMM', 'HHMMSS.FFFFFF', legacy 'HH:MM:SS') -> time, None when blank or malformed."""
    if isinstance(value, _dt.time):
        return value
    m = _TM.match(_text(value))
    if not m:
        return None
    try:
        return _dt.time(*_time_parts(*m.groups()))
    except ValueError:
        return None


def parse_dt(value: Any) -> tuple[_dt.datetime | None, str | None]:
    """DICOM DT ('YYYYMMDDHHMMSS.FFFFFF&ZZXX', partial allowed) -> (naive datetime, UTC offset text or None).

    (None, None) when blank or malformed. An aware datetime gives its naive value and its offset as '+HHMM'.
    """
    if isinstance(value, _dt.datetime):
        offset = value.utcoffset()
        if value.tzinfo is None or offset is None:
            return value, None
        minutes = int(offset.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        return value.replace(tzinfo=None), f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    try:
        parts = _dicom_dt(_text(value))
    except ValueError:
        return None, None
    return parts if parts is not None else (None, None)


def combine_date_time(date_value: Any, time_value: Any) -> _dt.datetime | None:
    """DICOM DA + TM -> naive datetime; None unless both parse."""
    d, t = parse_da(date_value), parse_tm(time_value)
    if d is None or t is None:
        return None
    return _dt.datetime.combine(d, t)
