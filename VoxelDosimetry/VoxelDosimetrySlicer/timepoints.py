"""Timepoint bookkeeping for the Inputs & timepoints panel: plain Python, no MRML, no Qt.

Times after injection are hours in the user interface and in the parameter node; the Lib works in
seconds (`Timepoint.seconds_after_injection`). A timepoint's time comes from, in this order:
the hours the user entered, else its acquisition date-time minus the injection date-time.
Date-times are naive local times unless both carry a UTC offset; mixing the two is refused. Parsing
(`parse_datetime`, `dicom_date_time`) and the time checks are the Lib's (VoxelDosimetryLib.io.datetime_parse and
io.timepoints), which import with numpy and SimpleITK only, both shipped with Slicer.
"""
from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from VoxelDosimetryLib.io.datetime_parse import dicom_date_time, parse_datetime  # noqa: F401 (module API)
from VoxelDosimetryLib.io.timepoints import timepoint_time_problems

# Parameter-node value meaning "the user did not enter hours" (the parameter node stores floats).
HOURS_NOT_SET = -1.0

# Units offered for a SPECT timepoint; the Calibration panel turns counts into Bq/mL.
SPECT_UNITS: tuple[str, ...] = ("Bq/mL", "kBq/mL", "MBq/mL", "counts")
DEFAULT_SPECT_UNIT = "Bq/mL"

# DICOM Units (0054,1001) of NM/PET images -> our unit spelling.
_DICOM_UNITS = {"BQML": "Bq/mL", "CNTS": "counts", "COUNTS": "counts"}

TIME_SOURCE_ENTERED = "entered"
TIME_SOURCE_ACQUISITION = "acquisition date-time"
TIME_SOURCE_MISSING = "missing"


def format_datetime(value: _dt.datetime | None) -> str:
    """ISO 8601 text ('2024-03-01T10:30:00', with the offset when known); '' for None."""
    if value is None:
        return ""
    return value.isoformat(timespec="seconds") if value.microsecond == 0 else value.isoformat()


def hours_between(start: _dt.datetime, end: _dt.datetime) -> float:
    """Hours from `start` (injection) to `end` (acquisition)."""
    if (start.tzinfo is None) != (end.tzinfo is None):
        raise ValueError("One date-time has a UTC offset and the other does not; give both offsets or neither.")
    return (end - start).total_seconds() / 3600.0


def unit_from_dicom_units(dicom_units: str | None) -> str | None:
    """Our unit for a DICOM Units (0054,1001) value ('BQML' -> 'Bq/mL', 'CNTS' -> 'counts'); None if unknown."""
    if not dicom_units:
        return None
    return _DICOM_UNITS.get(dicom_units.strip().upper())


def quantity_for_spect_unit(unit: str) -> str:
    """The Volume quantity of a SPECT in `unit`: 'counts' or 'activity_concentration'."""
    return "counts" if unit.strip().lower() in ("counts", "cnts") else "activity_concentration"


def hours_entered(value: float | None) -> float | None:
    """The parameter-node hours as a value, or None when not entered (HOURS_NOT_SET, negative or NaN)."""
    if value is None:
        return None
    value = float(value)
    if math.isnan(value) or value < 0:
        return None
    return value


@dataclass
class Timepoint:
    """One SPECT acquisition as the module sees it once every source of timing has been consulted."""

    name: str
    hours_after_injection: float | None
    time_source: str
    acquisition_datetime: _dt.datetime | None = None
    unit: str = DEFAULT_SPECT_UNIT
    node_id: str | None = None
    has_image: bool = True
    node: Any = None  # the MRML node, when built by the module Logic
    note: str = ""  # why the time could not be derived, when it could not

    @property
    def seconds_after_injection(self) -> float | None:
        return None if self.hours_after_injection is None else self.hours_after_injection * 3600.0

    @property
    def quantity(self) -> str:
        return quantity_for_spect_unit(self.unit)


def resolve_timepoint(name: str, entered_hours: float | None, acquisition: Any, injection: Any,
                      unit: str = DEFAULT_SPECT_UNIT, **extra: Any) -> Timepoint:
    """A Timepoint whose hours come from the entered value, else acquisition minus injection."""
    note = ""
    try:
        acquisition_dt = parse_datetime(acquisition)
    except ValueError as exc:
        acquisition_dt, note = None, str(exc)
    hours = hours_entered(entered_hours)
    if hours is not None:
        return Timepoint(name, hours, TIME_SOURCE_ENTERED, acquisition_dt, unit, note=note, **extra)
    try:
        injection_dt = parse_datetime(injection)
    except ValueError as exc:
        injection_dt, note = None, note or f"injection: {exc}"
    if acquisition_dt is not None and injection_dt is not None:
        try:
            return Timepoint(name, hours_between(injection_dt, acquisition_dt), TIME_SOURCE_ACQUISITION,
                             acquisition_dt, unit, note=note, **extra)
        except ValueError as exc:
            note = str(exc)
    elif not note:
        if acquisition_dt is None and injection_dt is None:
            note = "neither hours after injection nor acquisition and injection date-times are set"
        elif acquisition_dt is None:
            note = "the acquisition date-time is unknown"
        else:
            note = "the injection date-time is not set"
    return Timepoint(name, None, TIME_SOURCE_MISSING, acquisition_dt, unit, note=note, **extra)


def sort_timepoints(timepoints: Iterable[Timepoint]) -> list[Timepoint]:
    """Timepoints in increasing time; those without a time keep their order at the end."""
    items = list(timepoints)
    known = sorted((t for t in items if t.hours_after_injection is not None), key=lambda t: t.hours_after_injection)
    return known + [t for t in items if t.hours_after_injection is None]


def validate_inputs(ct_name: str | None, timepoints: Sequence[Timepoint], nuclide: str,
                    supported_nuclides: Sequence[str] | None, administered_activity_mbq: float,
                    nuclide_problem: str | None = None) -> list[str]:
    """User-facing sentences, one per problem that blocks dosimetry; an empty list means ready.

    `supported_nuclides` None means the nuclide list could not be loaded (`nuclide_problem` says why).
    """
    problems: list[str] = []
    if not ct_name:
        problems.append("No reference CT is selected: choose the CT that defines the dose grid.")
    if not timepoints:
        problems.append("No SPECT timepoint: add at least one SPECT volume.")
    seen_nodes: dict[str, str] = {}
    known_hours: list[float] = []
    known_labels: list[str] = []
    for index, tp in enumerate(timepoints, start=1):
        label = f"Timepoint {index} ({tp.name})" if tp.name else f"Timepoint {index}"
        if tp.node_id is None and tp.node is None and not tp.name:
            problems.append(f"{label}: no SPECT volume is selected.")
            continue
        if not tp.has_image:
            problems.append(f"{label}: the volume has no image data; load it again.")
        if tp.node_id is not None:
            if tp.node_id in seen_nodes:
                problems.append(f"{label}: the same volume is already used by {seen_nodes[tp.node_id]}.")
            else:
                seen_nodes[tp.node_id] = label
        if tp.hours_after_injection is None:
            why = f" ({tp.note})" if tp.note else ""
            problems.append(f"{label}: time after injection is unknown{why}. Enter the hours after injection, "
                            "or its acquisition date-time and the injection date-time.")
        else:
            known_hours.append(tp.hours_after_injection)
            known_labels.append(label)
    if known_hours:  # the table is sorted before dosimetry: distinct times suffice, in any order
        problems += [f"{p}." for p in timepoint_time_problems(known_hours, known_labels, ordered=False)]
    if not nuclide:
        problems.append("No radionuclide is selected.")
    elif supported_nuclides is None:
        problems.append(f"The radionuclide list is unavailable: {nuclide_problem or 'unknown reason'}.")
    elif nuclide not in supported_nuclides:
        problems.append(f"Radionuclide {nuclide!r} is not supported; choose one of: {', '.join(supported_nuclides)}.")
    if not administered_activity_mbq or administered_activity_mbq <= 0:
        problems.append("Administered activity is not set: enter it in MBq.")
    return problems
