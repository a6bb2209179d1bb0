"""Timepoint bookkeeping of the Slicer module (VoxelDosimetrySlicer.timepoints): plain Python."""
from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pytest

MODULE_DIR = Path(__file__).resolve().parents[2] / "VoxelDosimetry"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

from VoxelDosimetrySlicer import timepoints as tp  # noqa: E402


@pytest.mark.parametrize("text, expected", [
    ("2024-03-01T10:30", dt.datetime(2024, 3, 1, 10, 30)),
    ("2024-03-01 10:30:15", dt.datetime(2024, 3, 1, 10, 30, 15)),
    ("2024-03-01T10:30:15.250", dt.datetime(2024, 3, 1, 10, 30, 15, 250000)),
    ("20240301103015", dt.datetime(2024, 3, 1, 10, 30, 15)),
    ("20240301103015.5", dt.datetime(2024, 3, 1, 10, 30, 15, 500000)),
    ("202403011030", dt.datetime(2024, 3, 1, 10, 30)),
    ("20240301", dt.datetime(2024, 3, 1)),
    ("", None),
    (None, None),
])
def test_parse_datetime_accepts_iso_and_dicom(text, expected):
    assert tp.parse_datetime(text) == expected


def test_parse_datetime_keeps_utc_offsets():
    aware = tp.parse_datetime("20240301103000+0100")
    assert aware.utcoffset() == dt.timedelta(hours=1)
    assert tp.parse_datetime("2024-03-01T09:30:00Z") == aware
    assert tp.format_datetime(aware) == "2024-03-01T10:30:00+01:00"


@pytest.mark.parametrize("bad", ["yesterday", "2024-13-01T00:00", "20241301"])
def test_parse_datetime_names_the_accepted_forms(bad):
    with pytest.raises(ValueError, match="date-time"):
        tp.parse_datetime(bad)


def test_dicom_date_and_time():
    assert tp.dicom_date_time("20240301", "103015.123") == dt.datetime(2024, 3, 1, 10, 30, 15, 123000)
    assert tp.dicom_date_time("20240301", "1030") == dt.datetime(2024, 3, 1, 10, 30)
    assert tp.dicom_date_time("20240301", "") == dt.datetime(2024, 3, 1)
    assert tp.dicom_date_time("", "103000") is None
    with pytest.raises(ValueError, match="YYYYMMDD"):
        tp.dicom_date_time("2024-03-01", "103000")


def test_hours_between_refuses_mixed_offsets():
    start = dt.datetime(2024, 3, 1, 10, 0)
    assert tp.hours_between(start, dt.datetime(2024, 3, 2, 10, 0)) == 24.0
    with pytest.raises(ValueError, match="UTC offset"):
        tp.hours_between(start, tp.parse_datetime("20240302100000+0000"))


def test_units_and_quantities():
    assert tp.unit_from_dicom_units("BQML") == "Bq/mL"
    assert tp.unit_from_dicom_units("CNTS") == "counts"
    assert tp.unit_from_dicom_units("SUV") is None
    assert tp.quantity_for_spect_unit("counts") == "counts"
    assert tp.quantity_for_spect_unit("kBq/mL") == "activity_concentration"


def test_entered_hours_win_over_date_times():
    t = tp.resolve_timepoint("A", 5.0, "2024-03-01T14:00", "2024-03-01T10:00")
    assert (t.hours_after_injection, t.time_source) == (5.0, tp.TIME_SOURCE_ENTERED)
    t = tp.resolve_timepoint("A", tp.HOURS_NOT_SET, "2024-03-01T14:00", "2024-03-01T10:00")
    assert (t.hours_after_injection, t.time_source) == (4.0, tp.TIME_SOURCE_ACQUISITION)
    assert t.seconds_after_injection == 4.0 * 3600.0


@pytest.mark.parametrize("acquisition, injection, why", [
    ("", "", "neither"),
    ("", "2024-03-01T10:00", "acquisition date-time is unknown"),
    ("2024-03-01T14:00", "", "injection date-time is not set"),
    ("2024-03-01T14:00", "20240301100000+0000", "UTC offset"),
    ("soon", "2024-03-01T10:00", "Cannot read"),
])
def test_missing_time_says_why(acquisition, injection, why):
    t = tp.resolve_timepoint("A", tp.HOURS_NOT_SET, acquisition, injection)
    assert t.hours_after_injection is None and t.time_source == tp.TIME_SOURCE_MISSING
    assert why in t.note


def test_sort_puts_unknown_times_last():
    items = [tp.Timepoint("c", None, tp.TIME_SOURCE_MISSING), tp.Timepoint("b", 24.0, "entered"),
             tp.Timepoint("a", 4.0, "entered")]
    assert [t.name for t in tp.sort_timepoints(items)] == ["a", "b", "c"]


def _tp(name, hours, node_id=None, **kw):
    source = tp.TIME_SOURCE_MISSING if hours is None else tp.TIME_SOURCE_ENTERED
    return tp.Timepoint(name, hours, source, node_id=node_id or name, **kw)


def test_validation_of_complete_inputs_is_empty():
    assert tp.validate_inputs("CT", [_tp("A", 4.0), _tp("B", 24.0)], "Lu-177", ["Lu-177"], 7400.0) == []


def test_validation_lists_every_problem_in_plain_words():
    problems = tp.validate_inputs(None, [_tp("A", None, note="the injection date-time is not set"), _tp("B", -2.0),
                                         _tp("C", 24.0), _tp("D", 24.0), _tp("E", 48.0, node_id="C"),
                                         _tp("F", 72.0, has_image=False)],
                                  "Xx-1", ["Lu-177"], 0.0)
    text = "\n".join(problems)
    assert "No reference CT" in text
    assert "Timepoint 1 (A): time after injection is unknown (the injection date-time is not set)" in text
    assert "Timepoint 2 (B): -2.00 h after injection" in text
    assert "Timepoint 4 (D): same time after injection (24 h) as Timepoint 3 (C)" in text
    assert "Timepoint 5 (E): the same volume is already used by Timepoint 3 (C)" in text
    assert "Timepoint 6 (F): the volume has no image data" in text
    assert "Radionuclide 'Xx-1' is not supported" in text
    assert "Administered activity is not set" in text


def test_validation_without_timepoints_or_nuclide_list():
    problems = tp.validate_inputs("CT", [], "Lu-177", None, 100.0, nuclide_problem="icrp107 missing")
    assert any("No SPECT timepoint" in p for p in problems)
    assert any("radionuclide list is unavailable: icrp107 missing" in p for p in problems)
