"""io.datetime_parse: the one date-time parser (ISO 8601, DICOM DA/TM/DT) of the library and the Slicer module."""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.io.datetime_parse import (combine_date_time, dicom_date_time, parse_da, parse_datetime,
                                                 parse_dt, parse_tm)

ROOT = Path(__file__).resolve().parents[2]
UTC = dt.timezone.utc
PLUS_ONE = dt.timezone(dt.timedelta(hours=1))


@pytest.mark.parametrize("text, expected", [
    ("2024-03-01", dt.datetime(2024, 3, 1)),
    ("2024-03-01T10:30", dt.datetime(2024, 3, 1, 10, 30)),
    ("2024-03-01 10:30:15", dt.datetime(2024, 3, 1, 10, 30, 15)),
    ("2024-03-01T10:30:15.5", dt.datetime(2024, 3, 1, 10, 30, 15, 500000)),  # 1 digit: refused by 3.9 fromisoformat
    ("2024-03-01T10:30:15.123456789", dt.datetime(2024, 3, 1, 10, 30, 15, 123456)),
    ("2024-03-01T09:30:00Z", dt.datetime(2024, 3, 1, 9, 30, tzinfo=UTC)),
    ("2024-03-01T10:30:00+01:00", dt.datetime(2024, 3, 1, 10, 30, tzinfo=PLUS_ONE)),
    ("2024-03-01T10:30:00+0100", dt.datetime(2024, 3, 1, 10, 30, tzinfo=PLUS_ONE)),
    ("2024-03-01T05:30-05", dt.datetime(2024, 3, 1, 5, 30, tzinfo=dt.timezone(-dt.timedelta(hours=5)))),
    ("20240301", dt.datetime(2024, 3, 1)),
    ("202403011030", dt.datetime(2024, 3, 1, 10, 30)),
    ("20240301103015.25", dt.datetime(2024, 3, 1, 10, 30, 15, 250000)),
    ("20240301103000+0100", dt.datetime(2024, 3, 1, 10, 30, tzinfo=PLUS_ONE)),
    ("20240301 103000", dt.datetime(2024, 3, 1, 10, 30)),
    (" 2024-03-01T10:30 ", dt.datetime(2024, 3, 1, 10, 30)),
    ("", None), (None, None),
    (dt.date(2024, 3, 1), dt.datetime(2024, 3, 1)),
])
def test_parse_datetime_reads_iso_and_dicom(text, expected):
    value = parse_datetime(text)
    assert value == expected
    if expected is not None:
        assert value.utcoffset() == expected.utcoffset()


def test_the_same_instant_in_utc_and_with_an_offset_compares_equal():
    assert parse_datetime("2024-03-01T09:30:00Z") == parse_datetime("20240301103000+0100")


@pytest.mark.parametrize("bad", ["yesterday", "2024-13-01T00:00", "20241301", "2024", "202403", "01/03/2024",
                                 "2024-03-01T25:00"])
def test_parse_datetime_refuses_other_text_naming_the_setting_and_the_forms(bad):
    with pytest.raises(InputFormatError, match=r"date-time \(injection_datetime\)"):
        parse_datetime(bad, "injection_datetime")


def test_parse_datetime_refuses_numbers():
    with pytest.raises(InputFormatError, match="text or a datetime"):
        parse_datetime(20240301)


def test_strict_dicom_date_and_time():
    assert dicom_date_time("20240301", "103015.123") == dt.datetime(2024, 3, 1, 10, 30, 15, 123000)
    assert dicom_date_time("20240301", "10:30") == dt.datetime(2024, 3, 1, 10, 30)
    assert dicom_date_time("20240301", "") == dt.datetime(2024, 3, 1)
    assert dicom_date_time("", "103000") is None
    with pytest.raises(InputFormatError, match="YYYYMMDD"):
        dicom_date_time("2024-03-01", "103000")
    with pytest.raises(InputFormatError, match="HHMMSS"):
        dicom_date_time("20240301", "1030xx")


def test_lenient_dicom_values_give_none_for_blank_or_malformed():
    assert parse_da("2024.03.01") == dt.date(2024, 3, 1) and parse_da("20241301") is None and parse_da("") is None
    assert parse_tm("103060") == dt.time(10, 30, 59)  # DICOM leap second
    assert parse_tm("25") is None and parse_tm(None) is None
    assert parse_dt("20240105101530.5+0100") == (dt.datetime(2024, 1, 5, 10, 15, 30, 500000), "+0100")
    assert parse_dt("2024") == (dt.datetime(2024, 1, 1), None)  # partial DT is legal DICOM
    assert parse_dt("garbage") == (None, None) and parse_dt("20241301") == (None, None)
    assert parse_dt(dt.datetime(2024, 1, 5, 10, tzinfo=PLUS_ONE)) == (dt.datetime(2024, 1, 5, 10), "+0100")
    assert combine_date_time("20240105", "0930") == dt.datetime(2024, 1, 5, 9, 30)
    assert combine_date_time("20240105", "") is None


def test_no_other_date_time_parser_in_the_library_or_the_slicer_module():
    offenders = []
    for folder in (ROOT / "VoxelDosimetryLib", ROOT / "VoxelDosimetry"):
        for path in sorted(folder.rglob("*.py")):
            if path.name == "datetime_parse.py":
                continue
            text = path.read_text(encoding="utf-8")
            if re.search(r"fromisoformat\(|strptime\(|^def (parse_datetime|parse_dt|parse_da|parse_tm)\(", text, re.M):
                offenders.append(path.relative_to(ROOT).as_posix())
    assert not offenders, f"date-time parsing outside io/datetime_parse.py: {offenders}"
