"""DICOM NM and PT: reconstructed SPECT/PET volumes, NM projections, and acquisition metadata.

* `read_dicom_spect`: an NM multi-frame reconstruction ('RECON TOMO', frames = slices, geometry in
  DetectorInformationSequence) or a single-frame PT/NM slice series -> Volume with quantity/unit from the
  Units tag (0054,1001), RealWorldValueMappingSequence, RescaleSlope/Intercept, or Philips' private activity
  scale factor. Units that cannot be established give quantity "unknown" and a note, never a guess.
* `read_nm_projections`: raw NM projections (TOMO, STATIC, WHOLE BODY) -> array (energy window,
  detector/rotation/view, row, col) + NMMetadata. Projections must be reconstructed before dosimetry.
* `read_nm_metadata`: NMMetadata (timing, radiopharmaceutical, energy windows, rotation, units) with a
  `missing` list of every needed tag that was blank or absent and `report()` lines for people.

Times are seconds, activities Bq, energies keV (as in DICOM). Date-times are timezone-naive, as written
(scanner local time); a TimezoneOffsetFromUTC is kept in `timezone_offset`.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError, MissingMetadataError
from VoxelDosimetryLib.io.dicom_files import (DicomCollection, DicomSource, is_single_file, select_series,
                                             single_file_header)
from VoxelDosimetryLib.io.dicom_slices import DEFAULT_SPACING_TOLERANCE_MM, pixel_array, stack_geometry
from VoxelDosimetryLib.io.datetime_parse import combine_date_time, parse_da, parse_dt, parse_tm
from VoxelDosimetryLib.io.dicom_values import get_float, get_floats, get_str, get_value, is_blank, iso
from VoxelDosimetryLib.volume.units import check_unit_for_quantity, get_quantity
from VoxelDosimetryLib.volume.volume import Grid, Volume

NM_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.20"
PET_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.128"

PROJECTION_TYPES = ("TOMO", "GATED TOMO")
PLANAR_TYPES = ("STATIC", "WHOLE BODY", "DYNAMIC", "GATED")
RECON_TYPES = ("RECON TOMO", "RECON GATED TOMO")

# Units (0054,1001) -> (quantity, unit) for values the library can use directly.
UNITS_TAG_MAP: dict[str, tuple[str, str]] = {
    "BQML": ("activity_concentration", "Bq/mL"),
    "CNTS": ("counts", "counts"),
    "PROPCNTS": ("counts", "counts"),
}
# Units codes with a known meaning that has no quantity in the library (reported, quantity "unknown").
UNITS_TAG_MEANING: dict[str, str] = {
    "CPS": "counts per second", "NONE": "unitless", "GML": "SUV body weight (g/mL)",
    "CM2ML": "SUV body surface area (cm2/mL)", "CM2": "SUV lean body mass? (cm2)", "PCNT": "percent",
    "MGMINML": "mg/min/mL", "UMOLMINML": "umol/min/mL", "MLMING": "mL/min/g", "MLG": "mL/g", "1CM": "1/cm",
    "UMOLML": "umol/mL", "MLMINML": "mL/min/mL", "MLMIN": "mL/min", "NMOLMINML": "nmol/min/mL",
}
# RealWorldValueMapping MeasurementUnitsCodeSequence CodeValue (UCUM) -> (quantity, unit)
RWVM_UNITS: dict[str, tuple[str, str]] = {
    "bq/ml": ("activity_concentration", "Bq/mL"), "kbq/ml": ("activity_concentration", "kBq/mL"),
    "mbq/ml": ("activity_concentration", "MBq/mL"), "bq/cm3": ("activity_concentration", "Bq/mL"),
    "{counts}": ("counts", "counts"), "counts": ("counts", "counts"), "{cnts}": ("counts", "counts"),
    "cnts": ("counts", "counts"), "{count}": ("counts", "counts"),
}

PHILIPS_PET_CREATOR = "Philips PET Private Group"
GE_PET_CREATOR = "GEMS_PETD_01"


# ----------------------------------------------------------------------------------------------------------
# metadata
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EnergyWindow:
    """One acquisition energy window (keV)."""

    name: str | None
    lower_kev: float | None
    upper_kev: float | None

    @property
    def center_kev(self) -> float | None:
        if self.lower_kev is None or self.upper_kev is None:
            return None
        return (self.lower_kev + self.upper_kev) / 2.0

    @property
    def width_kev(self) -> float | None:
        if self.lower_kev is None or self.upper_kev is None:
            return None
        return self.upper_kev - self.lower_kev

    def contains(self, energy_kev: float) -> bool:
        return (self.lower_kev is not None and self.upper_kev is not None
                and self.lower_kev <= energy_kev <= self.upper_kev)

    def describe(self) -> str:
        lo = "?" if self.lower_kev is None else f"{self.lower_kev:g}"
        hi = "?" if self.upper_kev is None else f"{self.upper_kev:g}"
        return f"'{self.name or ''}' {lo}-{hi} keV"


@dataclass(frozen=True)
class RotationInfo:
    """One item of the RotationInformationSequence (angles in degrees, frame duration in s)."""

    start_angle_deg: float | None
    direction: str | None  # 'CW' or 'CC' as in DICOM (0018,1140)
    angular_step_deg: float | None
    number_of_views: int | None  # NumberOfFramesInRotation
    scan_arc_deg: float | None
    frame_duration_s: float | None
    radial_position_mm: tuple[float, ...] | None
    table_height_mm: float | None
    table_traverse_mm: float | None

    def describe(self) -> str:
        def f(v: Any, unit: str = "") -> str:
            return "?" if v is None else f"{v:g}{unit}"
        dur = "" if self.frame_duration_s is None else f", {self.frame_duration_s:g} s per view"
        return (f"start {f(self.start_angle_deg, ' deg')}, direction {self.direction or '?'}, step "
                f"{f(self.angular_step_deg, ' deg')}, {f(self.number_of_views)} views, arc "
                f"{f(self.scan_arc_deg, ' deg')}{dur}")


@dataclass
class NMMetadata:
    """What an NM or PT file says about its acquisition (s, Bq, keV, mm), and what it does not say.

    `missing` names every needed tag that was blank or absent (DICOM keywords, sequence items as
    'Sequence[0].Keyword'); `notes` record each fallback used and each suspicious value.
    """

    source: str
    modality: str | None = None
    sop_class_uid: str | None = None
    image_type: tuple[str, ...] = ()
    kind: str = "unknown"  # 'projections' | 'planar' | 'reconstruction' | 'unknown'
    manufacturer: str | None = None
    model: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    frame_of_reference_uid: str | None = None
    series_description: str | None = None
    series_datetime: _dt.datetime | None = None
    acquisition_datetime: _dt.datetime | None = None
    acquisition_datetime_source: str | None = None
    timezone_offset: str | None = None
    radiopharmaceutical_start_datetime: _dt.datetime | None = None
    radiopharmaceutical_start_source: str | None = None
    administered_activity_bq: float | None = None
    half_life_s: float | None = None
    radionuclide: str | None = None
    radiopharmaceutical: str | None = None
    frame_duration_s: float | None = None
    number_of_frames: int | None = None
    number_of_slices: int | None = None
    number_of_energy_windows: int | None = None
    number_of_detectors: int | None = None
    number_of_rotations: int | None = None
    number_of_views: int | None = None
    energy_windows: list[EnergyWindow] = field(default_factory=list)
    rotations: list[RotationInfo] = field(default_factory=list)
    collimator: str | None = None
    units: str | None = None
    rescale_slope: float | None = None
    rescale_intercept: float | None = None
    decay_correction: str | None = None
    decay_correction_datetime: _dt.datetime | None = None
    corrected_image: tuple[str, ...] = ()
    rows: int | None = None
    columns: int | None = None
    pixel_spacing_mm: tuple[float, float] | None = None  # (between rows, between columns) as in DICOM
    slice_thickness_mm: float | None = None
    spacing_between_slices_mm: float | None = None
    patient_position: str | None = None
    patient_orientation: str | None = None
    counts_accumulated: int | None = None
    projection_order: list[tuple[int, int, int]] = field(default_factory=list)  # (detector, rotation, view)
    vendor: dict = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    # convenience views of the first rotation
    @property
    def start_angle_deg(self) -> float | None:
        return self.rotations[0].start_angle_deg if self.rotations else None

    @property
    def rotation_direction(self) -> str | None:
        return self.rotations[0].direction if self.rotations else None

    @property
    def angular_step_deg(self) -> float | None:
        return self.rotations[0].angular_step_deg if self.rotations else None

    def energy_window_index(self, energy_kev: float) -> int | None:
        """0-based index of the narrowest energy window containing `energy_kev`, None when none does."""
        hits = [(w.width_kev or np.inf, i) for i, w in enumerate(self.energy_windows) if w.contains(energy_kev)]
        return min(hits)[1] if hits else None

    def to_dict(self) -> dict:
        """Plain JSON values (date-times as ISO strings)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, _dt.datetime):
                v = v.isoformat()
            elif f.name == "energy_windows":
                v = [dataclasses.asdict(w) for w in v]
            elif f.name == "rotations":
                v = [dataclasses.asdict(r) for r in v]
            elif isinstance(v, tuple):
                v = list(v)
            elif isinstance(v, list):
                v = [list(x) if isinstance(x, tuple) else x for x in v]
            out[f.name] = v
        return out

    def report(self) -> list[str]:
        """Human-readable lines: what was found, what is missing and what must be supplied."""
        def dt(v: _dt.datetime | None, source: str | None) -> str:
            if v is None:
                return "MISSING"
            return v.isoformat(sep=" ") + (f" (from {source})" if source else "")

        lines = [f"{self.source}: {self.modality or '?'} {self.kind} from {self.manufacturer or '?'} "
                 f"{self.model or ''}".rstrip(),
                 f"ImageType {'/'.join(self.image_type) or '?'}; {self.number_of_frames or 1} frame(s) of "
                 f"{self.rows}x{self.columns}, pixel spacing {self.pixel_spacing_mm} mm"]
        if self.kind in ("projections", "planar"):
            lines.append(f"{self.number_of_energy_windows} energy window(s) x {self.number_of_detectors} detector(s) "
                         f"x {self.number_of_rotations or 1} rotation(s) x {self.number_of_views} view(s)")
        for i, w in enumerate(self.energy_windows):
            lines.append(f"energy window {i + 1}: {w.describe()}")
        for i, r in enumerate(self.rotations):
            lines.append(f"rotation {i + 1}: {r.describe()}")
        if self.collimator:
            lines.append(f"collimator: {self.collimator}")
        lines.append(f"series date-time: {dt(self.series_datetime, None)}")
        lines.append(f"acquisition date-time: {dt(self.acquisition_datetime, self.acquisition_datetime_source)}")
        lines.append("injection (radiopharmaceutical start) date-time: "
                     f"{dt(self.radiopharmaceutical_start_datetime, self.radiopharmaceutical_start_source)}")
        lines.append("administered activity: " + ("MISSING" if self.administered_activity_bq is None
                                                  else f"{self.administered_activity_bq / 1e6:g} MBq"))
        lines.append(f"radionuclide: {self.radionuclide or 'MISSING'}; half-life: "
                     + ("MISSING" if self.half_life_s is None else f"{self.half_life_s:g} s"))
        lines.append("frame duration: " + ("MISSING" if self.frame_duration_s is None
                                           else f"{self.frame_duration_s:g} s"))
        if self.kind == "reconstruction" or self.modality == "PT":
            lines.append(f"units: {self.units or 'MISSING'}; rescale slope {self.rescale_slope}, intercept "
                         f"{self.rescale_intercept}; decay correction {self.decay_correction or '?'}")
        if self.patient_position or self.patient_orientation:
            lines.append("patient position: " + " / ".join(v for v in (self.patient_position,
                                                                       self.patient_orientation) if v))
        if self.missing:
            lines.append("missing (blank or absent): " + ", ".join(self.missing))
            lines.append("supply what is missing explicitly (injection time, administered activity, "
                         "acquisition time, radionuclide); the library does not guess it.")
        lines.extend(f"note: {n}" for n in self.notes)
        return lines


# ----------------------------------------------------------------------------------------------------------
# metadata extraction
# ----------------------------------------------------------------------------------------------------------

def _seq_item(ds: Any, keyword: str, index: int = 0) -> Any | None:
    seq = get_value(ds, keyword)
    if seq is None or len(seq) <= index:
        return None
    return seq[index]


def _private_value(ds: Any, group: int, creator: str, offset: int) -> Any | None:
    """Value of a private element by creator string and element offset (0x00-0xFF), None when absent."""
    try:
        block = ds.private_block(group, creator)
    except (KeyError, ValueError):
        return None
    tag = block.get_tag(offset)
    if tag not in ds:
        return None
    value = ds[tag].value
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii").strip(" \x00")
        except UnicodeDecodeError:
            return None
    return None if is_blank(value) else value


def image_kind(ds: Any) -> str:
    modality = get_str(ds, "Modality") or ""
    image_type = [str(v).upper() for v in (get_value(ds, "ImageType") or [])]
    if isinstance(get_value(ds, "ImageType"), str):
        image_type = [p.upper() for p in str(get_value(ds, "ImageType")).split("\\")]
    value3 = image_type[2] if len(image_type) > 2 else ""
    if modality == "PT":
        return "reconstruction"
    if value3 in RECON_TYPES or any("RECON" in v for v in image_type):
        return "reconstruction"
    if value3 in PROJECTION_TYPES:
        return "projections"
    if value3 in PLANAR_TYPES:
        return "planar"
    if "SliceVector" in ds or "NumberOfSlices" in ds:
        return "reconstruction"
    if "AngularViewVector" in ds or "RotationInformationSequence" in ds:
        return "projections"
    if int(get_float(ds, "NumberOfFrames") or 1) == 1 and "ImagePositionPatient" in ds:
        return "reconstruction"  # a slice of a single-frame series
    return "unknown"


class _Tracker:
    def __init__(self) -> None:
        self.missing: list[str] = []
        self.notes: list[str] = []

    def miss(self, *names: str) -> None:
        for n in names:
            if n not in self.missing:
                self.missing.append(n)


def _nm_timing(ds: Any, meta: NMMetadata, t: _Tracker) -> None:
    # timezone
    offset = get_str(ds, "TimezoneOffsetFromUTC")
    # series
    meta.series_datetime = combine_date_time(get_value(ds, "SeriesDate"), get_value(ds, "SeriesTime"))
    if meta.series_datetime is None:
        if parse_da(get_value(ds, "SeriesDate")) is None:
            t.miss("SeriesDate")
        if parse_tm(get_value(ds, "SeriesTime")) is None:
            t.miss("SeriesTime")
    # acquisition, with fallbacks
    acq, acq_off = parse_dt(get_value(ds, "AcquisitionDateTime"))
    source = "AcquisitionDateTime" if acq is not None else None
    offset = offset or acq_off
    if acq is None:
        acq = combine_date_time(get_value(ds, "AcquisitionDate"), get_value(ds, "AcquisitionTime"))
        source = "AcquisitionDate+AcquisitionTime" if acq is not None else None
    if acq is None and not is_blank(get_value(ds, "AcquisitionTime")):
        for date_key in ("SeriesDate", "StudyDate"):
            acq = combine_date_time(get_value(ds, date_key), get_value(ds, "AcquisitionTime"))
            if acq is not None:
                source = f"{date_key}+AcquisitionTime"
                t.notes.append(f"AcquisitionDate is blank; the acquisition date was taken from {date_key}")
                break
    if acq is None:
        ge_scan, _ = parse_dt(_private_value(ds, 0x0009, GE_PET_CREATOR, 0x0D))
        if ge_scan is not None:
            acq, source = ge_scan, f"GE private scan date-time (0009,xx0D) {GE_PET_CREATOR}"
    if acq is None and meta.series_datetime is not None:
        acq, source = meta.series_datetime, "SeriesDate+SeriesTime"
    if acq is None:
        acq = combine_date_time(get_value(ds, "ContentDate"), get_value(ds, "ContentTime"))
        source = "ContentDate+ContentTime" if acq is not None else None
    if acq is None:
        t.miss("AcquisitionDateTime", "AcquisitionDate", "AcquisitionTime", "ContentDate", "ContentTime")
    elif source != "AcquisitionDateTime" and source != "AcquisitionDate+AcquisitionTime":
        t.notes.append(f"acquisition date-time taken from {source} (AcquisitionDate/AcquisitionTime blank)")
    meta.acquisition_datetime, meta.acquisition_datetime_source = acq, source
    meta.timezone_offset = offset

    # radiopharmaceutical
    rp = _seq_item(ds, "RadiopharmaceuticalInformationSequence")
    if rp is None:
        t.miss("RadiopharmaceuticalInformationSequence")
    start, start_off = parse_dt(get_value(rp, "RadiopharmaceuticalStartDateTime"))
    start_source = "RadiopharmaceuticalStartDateTime" if start is not None else None
    if start is None and rp is not None and not is_blank(get_value(rp, "RadiopharmaceuticalStartTime")):
        for date_key, date_value in (("SeriesDate", get_value(ds, "SeriesDate")),
                                     ("AcquisitionDate", get_value(ds, "AcquisitionDate")),
                                     ("StudyDate", get_value(ds, "StudyDate"))):
            start = combine_date_time(date_value, get_value(rp, "RadiopharmaceuticalStartTime"))
            if start is not None:
                start_source = f"RadiopharmaceuticalStartTime+{date_key}"
                t.notes.append(f"injection date-time = RadiopharmaceuticalStartTime on the {date_key}: the file has "
                               "no injection date, so this is wrong when the scan is on a later day than the "
                               "injection (e.g. Lu-177 imaging at 24-168 h); check it and supply the injection "
                               "date-time explicitly")
                break
    if start is None:
        t.miss("RadiopharmaceuticalStartDateTime", "RadiopharmaceuticalStartTime")
    meta.radiopharmaceutical_start_datetime, meta.radiopharmaceutical_start_source = start, start_source
    offset = meta.timezone_offset or start_off
    meta.timezone_offset = offset
    if start is not None and acq is not None and start > acq:
        t.notes.append(f"the injection date-time {start} is after the acquisition {acq}; check both")

    dose = get_float(rp, "RadionuclideTotalDose") if rp is not None else None
    if dose is None or dose <= 0:
        if dose is not None:
            t.notes.append("RadionuclideTotalDose is 0, which means 'not recorded'")
        t.miss("RadionuclideTotalDose")
        dose = None
    elif dose < 1e5:
        t.notes.append(f"RadionuclideTotalDose = {dose:g} Bq is implausibly small; some systems write MBq here. "
                       "It is kept as Bq (the DICOM unit): check it")
    meta.administered_activity_bq = dose
    half = get_float(rp, "RadionuclideHalfLife") if rp is not None else None
    if half is None or half <= 0:
        t.miss("RadionuclideHalfLife")
        half = None
    meta.half_life_s = half
    code = _seq_item(rp, "RadionuclideCodeSequence") if rp is not None else None
    meta.radionuclide = get_str(code, "CodeMeaning") or get_str(code, "CodeValue") if code is not None else None
    if meta.radionuclide is None:
        t.miss("RadionuclideCodeSequence")
    meta.radiopharmaceutical = (get_str(rp, "Radiopharmaceutical") if rp is not None else None) or (
        get_str(_seq_item(rp, "RadiopharmaceuticalCodeSequence"), "CodeMeaning") if rp is not None else None)

    # frame duration: root, else the first rotation
    duration = get_float(ds, "ActualFrameDuration")
    if duration is None:
        rot = _seq_item(ds, "RotationInformationSequence")
        duration = get_float(rot, "ActualFrameDuration") if rot is not None else None
        if duration is not None:
            t.notes.append("frame duration from RotationInformationSequence[0].ActualFrameDuration")
    if duration is None or duration <= 0:
        t.miss("ActualFrameDuration")
        duration = None
    meta.frame_duration_s = None if duration is None else duration / 1000.0


def _decay_reference(ds: Any, meta: NMMetadata, t: _Tracker) -> None:
    """PET-style DecayCorrection (0054,1102): the date-time the voxel values are decay-corrected to."""
    meta.decay_correction = get_str(ds, "DecayCorrection")
    if meta.decay_correction is None:
        return
    kind = meta.decay_correction.upper()
    if kind == "ADMIN":
        meta.decay_correction_datetime = meta.radiopharmaceutical_start_datetime
    elif kind == "START":
        series, acq = meta.series_datetime, meta.acquisition_datetime
        if series is not None and (acq is None or series <= acq):
            meta.decay_correction_datetime = series
        else:
            ge_scan, _ = parse_dt(_private_value(ds, 0x0009, GE_PET_CREATOR, 0x0D))
            if ge_scan is not None:
                meta.decay_correction_datetime = ge_scan
                t.notes.append("SeriesTime is after the acquisition (post-processed series): decay reference from "
                               f"the GE private scan date-time ({GE_PET_CREATOR})")
            else:
                meta.decay_correction_datetime = acq
                if series is not None:
                    t.notes.append("SeriesTime is after the acquisition time; the acquisition date-time is used as "
                                   "the decay-correction reference")


def nm_metadata_from_dataset(ds: Any, source: str = "") -> NMMetadata:
    """NMMetadata from one pydicom dataset (NM or PT; header only is enough)."""
    t = _Tracker()
    image_type = get_value(ds, "ImageType") or ()
    if isinstance(image_type, str):
        image_type = tuple(image_type.split("\\"))
    meta = NMMetadata(source=source, modality=get_str(ds, "Modality"), sop_class_uid=get_str(ds, "SOPClassUID"),
                      image_type=tuple(str(v) for v in image_type), kind=image_kind(ds),
                      manufacturer=get_str(ds, "Manufacturer"), model=get_str(ds, "ManufacturerModelName"),
                      study_instance_uid=get_str(ds, "StudyInstanceUID"),
                      series_instance_uid=get_str(ds, "SeriesInstanceUID"),
                      frame_of_reference_uid=get_str(ds, "FrameOfReferenceUID"),
                      series_description=get_str(ds, "SeriesDescription"))
    if meta.modality is None:
        t.miss("Modality")
    if meta.manufacturer is None:
        t.miss("Manufacturer")
    _nm_timing(ds, meta, t)

    frames = get_float(ds, "NumberOfFrames")
    meta.number_of_frames = int(frames) if frames else 1
    slices = get_float(ds, "NumberOfSlices")
    meta.number_of_slices = int(slices) if slices else None
    meta.rows, meta.columns = int(get_float(ds, "Rows") or 0) or None, int(get_float(ds, "Columns") or 0) or None
    ps = get_floats(ds, "PixelSpacing", 2)
    meta.pixel_spacing_mm = None if ps is None else (float(ps[0]), float(ps[1]))
    if ps is None:
        t.miss("PixelSpacing")
    meta.slice_thickness_mm = get_float(ds, "SliceThickness")
    meta.spacing_between_slices_mm = get_float(ds, "SpacingBetweenSlices")
    counts = get_float(ds, "CountsAccumulated")
    meta.counts_accumulated = int(counts) if counts is not None else None

    # energy windows (NM; PT has EnergyWindowRangeSequence-less lower/upper thresholds)
    ew_seq = get_value(ds, "EnergyWindowInformationSequence")
    for i, item in enumerate(ew_seq or []):
        rng = _seq_item(item, "EnergyWindowRangeSequence")
        lower = get_float(rng, "EnergyWindowLowerLimit") if rng is not None else None
        upper = get_float(rng, "EnergyWindowUpperLimit") if rng is not None else None
        if lower is None or upper is None:
            t.miss(f"EnergyWindowInformationSequence[{i}].EnergyWindowRangeSequence")
        meta.energy_windows.append(EnergyWindow(get_str(item, "EnergyWindowName"), lower, upper))
    if meta.modality == "PT":
        lo, hi = get_float(ds, "EnergyWindowLowerLimit"), get_float(ds, "EnergyWindowUpperLimit")
        if lo is not None or hi is not None:
            meta.energy_windows.append(EnergyWindow("PET", lo, hi))
    n_ew = get_float(ds, "NumberOfEnergyWindows")
    meta.number_of_energy_windows = int(n_ew) if n_ew else (len(meta.energy_windows) or None)
    if meta.modality == "NM" and not meta.energy_windows:
        t.miss("EnergyWindowInformationSequence")
    n_det = get_float(ds, "NumberOfDetectors")
    meta.number_of_detectors = int(n_det) if n_det else None
    det = _seq_item(ds, "DetectorInformationSequence")
    meta.collimator = get_str(det, "CollimatorGridName") if det is not None else None

    # rotations
    for i, item in enumerate(get_value(ds, "RotationInformationSequence") or []):
        radial = get_value(item, "RadialPosition")
        if radial is not None:
            try:
                radial = tuple(float(v) for v in (radial if hasattr(radial, "__iter__") and not isinstance(
                    radial, str) else [radial]))
            except (TypeError, ValueError):
                radial = None
        views = get_float(item, "NumberOfFramesInRotation")
        dur = get_float(item, "ActualFrameDuration")
        rot = RotationInfo(get_float(item, "StartAngle"), get_str(item, "RotationDirection"),
                           get_float(item, "AngularStep"), int(views) if views else None,
                           get_float(item, "ScanArc"), None if dur is None else dur / 1000.0, radial,
                           get_float(item, "TableHeight"), get_float(item, "TableTraverse"))
        if meta.kind == "projections":
            for key, value in (("StartAngle", rot.start_angle_deg), ("RotationDirection", rot.direction),
                               ("AngularStep", rot.angular_step_deg), ("NumberOfFramesInRotation",
                                                                       rot.number_of_views)):
                if value is None:
                    t.miss(f"RotationInformationSequence[{i}].{key}")
        meta.rotations.append(rot)
    n_rot = get_float(ds, "NumberOfRotations")
    meta.number_of_rotations = int(n_rot) if n_rot else (len(meta.rotations) or None)
    if meta.kind == "projections":
        if not meta.rotations:
            t.miss("RotationInformationSequence")
        views = get_value(ds, "AngularViewVector")
        meta.number_of_views = (int(np.max(views)) if views is not None else
                                (meta.rotations[0].number_of_views if meta.rotations else None))
    elif meta.rotations:
        meta.number_of_views = meta.rotations[0].number_of_views

    # units (reconstructions and PET)
    meta.units = get_str(ds, "Units")
    meta.rescale_slope = get_float(ds, "RescaleSlope")
    meta.rescale_intercept = get_float(ds, "RescaleIntercept")
    if meta.kind == "reconstruction" and meta.units is None:
        t.miss("Units")
    corrected = get_value(ds, "CorrectedImage")
    meta.corrected_image = tuple(str(v) for v in ([corrected] if isinstance(corrected, str) else corrected or ()))
    _decay_reference(ds, meta, t)

    # patient position
    meta.patient_position = get_str(ds, "PatientPosition")
    orient = get_str(_seq_item(ds, "PatientOrientationCodeSequence"), "CodeMeaning")
    modifier = get_str(_seq_item(_seq_item(ds, "PatientOrientationCodeSequence"),
                                 "PatientOrientationModifierCodeSequence"), "CodeMeaning")
    gantry = get_str(_seq_item(ds, "PatientGantryRelationshipCodeSequence"), "CodeMeaning")
    words = [w for w in (gantry, modifier, orient) if w]
    meta.patient_orientation = ", ".join(words) or None
    if meta.patient_position is None and gantry and modifier:
        code = {"head-first": "HF", "feet-first": "FF"}.get(gantry.lower(), "") + {
            "supine": "S", "prone": "P", "left lateral decubitus": "DL", "right lateral decubitus": "DR"}.get(
            modifier.lower(), "")
        if len(code) >= 3:
            meta.patient_position = code
            t.notes.append(f"PatientPosition {code} derived from the patient orientation codes ({gantry}, {modifier})")

    # vendor private values that change the interpretation of pixels or times
    philips_scale = _private_value(ds, 0x7053, PHILIPS_PET_CREATOR, 0x09)
    philips_suv = _private_value(ds, 0x7053, PHILIPS_PET_CREATOR, 0x00)
    if philips_scale is not None:
        meta.vendor["philips_activity_concentration_scale_factor"] = float(_first(philips_scale))
    if philips_suv is not None:
        meta.vendor["philips_suv_scale_factor"] = float(_first(philips_suv))
    ge_scan, _ = parse_dt(_private_value(ds, 0x0009, GE_PET_CREATOR, 0x0D))
    if ge_scan is not None:
        meta.vendor["ge_scan_datetime"] = ge_scan.isoformat()

    meta.missing, meta.notes = t.missing, t.notes
    return meta


def _first(value: Any) -> Any:
    if hasattr(value, "__iter__") and not isinstance(value, (str, bytes)):
        return list(value)[0]
    return value


# ----------------------------------------------------------------------------------------------------------
# value mapping: stored pixel -> quantity
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ValueMapping:
    slope: float
    intercept: float
    quantity: str
    unit: str
    source: str


def value_mapping(ds: Any, default_quantity: str | None = None) -> tuple[ValueMapping, list[str]]:
    """How stored pixel values become physical values for one dataset, plus notes."""
    notes: list[str] = []
    for i, item in enumerate(get_value(ds, "RealWorldValueMappingSequence") or []):
        code = _seq_item(item, "MeasurementUnitsCodeSequence")
        code_value = (get_str(code, "CodeValue") or "") if code is not None else ""
        slope = get_float(item, "RealWorldValueSlope")
        if "RealWorldValueLUTData" in item and slope is None:
            notes.append(f"RealWorldValueMappingSequence[{i}] uses a LUT, which is not supported; ignored")
            continue
        if code_value.lower() in RWVM_UNITS and slope is not None:
            quantity, unit = RWVM_UNITS[code_value.lower()]
            return ValueMapping(slope, get_float(item, "RealWorldValueIntercept") or 0.0, quantity, unit,
                                f"RealWorldValueMappingSequence[{i}] ({code_value})"), notes
        if code_value:
            notes.append(f"RealWorldValueMappingSequence[{i}] maps to '{code_value}', not a unit the library uses")
    slope = get_float(ds, "RescaleSlope")
    intercept = get_float(ds, "RescaleIntercept")
    slope = 1.0 if slope is None else slope
    intercept = 0.0 if intercept is None else intercept
    units = (get_str(ds, "Units") or "").upper()
    rescale = f"RescaleSlope {slope:g}/RescaleIntercept {intercept:g}"
    if units == "CNTS":
        factor = _private_value(ds, 0x7053, PHILIPS_PET_CREATOR, 0x09)
        if factor is not None and float(_first(factor)) > 0:
            f = float(_first(factor))
            return ValueMapping(slope * f, intercept * f, "activity_concentration", "Bq/mL",
                                f"Units CNTS x Philips activity concentration scale factor (7053,xx09) {f:g}; "
                                + rescale), notes
    if units in UNITS_TAG_MAP:
        quantity, unit = UNITS_TAG_MAP[units]
        if units == "PROPCNTS":
            notes.append("Units PROPCNTS (proportional to counts): read as counts; calibrate on the same "
                         "reconstruction")
        return ValueMapping(slope, intercept, quantity, unit, f"Units {units}; {rescale}"), notes
    if units:
        meaning = UNITS_TAG_MEANING.get(units, "not recognised")
        notes.append(f"Units '{units}' ({meaning}) has no quantity in the library: values read as 'unknown'"
                     + ("; multiply by the frame duration for counts" if units == "CPS" else ""))
    else:
        notes.append("Units (0054,1001) is absent and no RealWorldValueMapping is present: the meaning of the "
                     "values is unknown. Pass default_quantity='counts' (or the right quantity) if you know it, "
                     "then calibrate")
    if default_quantity is not None:
        get_quantity(default_quantity)
        unit = get_quantity(default_quantity).unit
        notes.append(f"quantity '{default_quantity}' set by the caller (default_quantity), not by the file")
        return ValueMapping(slope, intercept, default_quantity, unit, f"caller default; {rescale}"), notes
    return ValueMapping(slope, intercept, "unknown", "unknown", f"unknown units; {rescale}"), notes


# ----------------------------------------------------------------------------------------------------------
# readers
# ----------------------------------------------------------------------------------------------------------

def _is_nm_or_pt(sources: list[DicomSource]) -> bool:
    h = sources[0].header
    return get_str(h, "Modality") in ("NM", "PT") or str(get_value(h, "SOPClassUID", "")) in (
        NM_IMAGE_STORAGE, PET_IMAGE_STORAGE)


def _is_volume_series(sources: list[DicomSource]) -> bool:
    return _is_nm_or_pt(sources) and image_kind(sources[0].header) == "reconstruction"


def _is_projection_series(sources: list[DicomSource]) -> bool:
    return _is_nm_or_pt(sources) and image_kind(sources[0].header) in ("projections", "planar")


def projection_error(name: str, kind: str) -> InputFormatError:
    return InputFormatError(
        f"{name} holds NM {kind} (raw camera {'projections' if kind == 'projections' else 'planar images'}), "
        "not a reconstructed SPECT volume. Reconstruct them first (e.g. with the SlicerSPECTRecon extension or "
        "PyTomography, with attenuation, scatter and collimator modelling), then load the reconstruction. "
        "VoxelDosimetryLib.io.dicom_nm.read_nm_projections reads the projections and their metadata.")


def read_nm_metadata(path: str | os.PathLike, series_uid: str | None = None) -> NMMetadata:
    """NMMetadata of an NM/PT file, or of the NM/PT series in a folder or .zip (its first slice)."""
    path = Path(path)
    if is_single_file(path):
        header = single_file_header(path)
        return nm_metadata_from_dataset(header, str(path))
    with DicomCollection(path) as collection:
        collection.check_usable("NM/PT")
        uid, sources = select_series(collection.series(), series_uid, path, _is_nm_or_pt, "NM/PT")
        if len(sources) > 1:
            stack = stack_geometry(sources, what=f"series {uid}")
            return _stacked_metadata(stack.sources, str(path))
        return nm_metadata_from_dataset(sources[0].header, sources[0].name)


def _stacked_metadata(sources: list[DicomSource], source: str) -> NMMetadata:
    meta = nm_metadata_from_dataset(sources[0].header, source)
    times = [combine_date_time(get_value(s.header, "AcquisitionDate"), get_value(s.header, "AcquisitionTime"))
             for s in sources]
    times = [t for t in times if t is not None]
    if times and meta.acquisition_datetime_source == "AcquisitionDate+AcquisitionTime" and min(times) != max(times):
        earliest = min(times)
        meta = dataclasses.replace(meta, acquisition_datetime=earliest,
                                   acquisition_datetime_source="earliest AcquisitionDate+AcquisitionTime of the "
                                                               "slices",
                                   notes=meta.notes + [f"slice acquisition times span {min(times)} to {max(times)} "
                                                       "(multi-bed); the earliest is reported"])
    return meta


def read_dicom_spect(path: str | os.PathLike, series_uid: str | None = None, *,
                     default_quantity: str | None = None,
                     spacing_tolerance_mm: float = DEFAULT_SPACING_TOLERANCE_MM) -> Volume:
    """Read a reconstructed SPECT (NM multi-frame) or a PT/NM single-frame slice series -> Volume.

    `path` is an NM/PT file, a folder (searched recursively) or a .zip; `series_uid` picks a series when
    several reconstructions are present. Values are float32 in the file's units (Bq/mL for BQML, counts
    for CNTS). When the file does not state its units the quantity is 'unknown' unless `default_quantity`
    is given. Volume.metadata['nm'] holds NMMetadata.to_dict(); 'notes' the fallbacks used.
    Raises InputFormatError for projections (reconstruct them first).
    """
    path = Path(path)
    if is_single_file(path):
        header = single_file_header(path)
        if int(get_float(header, "NumberOfFrames") or 1) > 1 or (
                get_str(header, "Modality") == "NM" and image_kind(header) != "reconstruction"):
            return _read_multiframe(DicomSource(str(path), header, path=path), default_quantity)
        series_uid = series_uid or get_str(header, "SeriesInstanceUID")
        path_for_series = path.parent
    else:
        path_for_series = path
    with DicomCollection(path_for_series) as collection:
        return read_spect_from_collection(collection, path, series_uid, default_quantity=default_quantity,
                                          spacing_tolerance_mm=spacing_tolerance_mm)


def read_spect_from_collection(collection: DicomCollection, path: Any, series_uid: str | None = None, *,
                               default_quantity: str | None = None,
                               spacing_tolerance_mm: float = DEFAULT_SPACING_TOLERANCE_MM) -> Volume:
    """read_dicom_spect on an already scanned DicomCollection (`path` names the input in messages)."""
    collection.check_usable("reconstructed NM/PT")
    groups = collection.series()
    if series_uid is None and not any(_is_volume_series(s) for s in groups.values()):
        projections = [s for s in groups.values() if _is_projection_series(s)]
        if projections:
            raise projection_error(str(path), image_kind(projections[0][0].header))
    uid, sources = select_series(groups, series_uid, path, _is_volume_series, "reconstructed NM/PT")
    if not _is_nm_or_pt(sources):
        raise InputFormatError(f"Series {uid} in {path} is {get_str(sources[0].header, 'Modality')}, not NM/PT. "
                               "Use read_dicom() to load any modality.")
    if len(sources) == 1 and int(get_float(sources[0].header, "NumberOfFrames") or 1) > 1:
        return _read_multiframe(sources[0], default_quantity)
    return _read_stack(sources, str(path), uid, default_quantity, spacing_tolerance_mm)


def _read_multiframe(src: DicomSource, default_quantity: str | None) -> Volume:
    header = src.header
    kind = image_kind(header)
    if kind != "reconstruction":
        raise projection_error(src.name, kind)
    meta = nm_metadata_from_dataset(header, src.name)
    notes = list(meta.notes)
    frames = int(get_float(header, "NumberOfFrames") or 1)
    n_slices = int(get_float(header, "NumberOfSlices") or frames)
    if n_slices != frames:
        raise InputFormatError(
            f"{src.name} has {frames} frames but NumberOfSlices {n_slices}: it holds several energy windows, "
            "gates or time slots. Export one reconstruction per file (or split it) and load that.")
    det = _seq_item(header, "DetectorInformationSequence")
    iop = get_floats(det, "ImageOrientationPatient", 6) if det is not None else None
    ipp = get_floats(det, "ImagePositionPatient", 3) if det is not None else None
    if iop is None or ipp is None:
        root_iop, root_ipp = get_floats(header, "ImageOrientationPatient", 6), get_floats(header,
                                                                                          "ImagePositionPatient", 3)
        if root_iop is not None and root_ipp is not None:
            iop, ipp = root_iop, root_ipp
            notes.append("geometry from the top-level ImageOrientationPatient/ImagePositionPatient "
                         "(not in DetectorInformationSequence)")
    if iop is None or ipp is None:
        raise MissingMetadataError(
            f"{src.name} has no ImageOrientationPatient/ImagePositionPatient (neither in DetectorInformationSequence "
            "nor at the top level): the reconstruction cannot be placed in patient space or aligned with the CT. "
            "Export it from the workstation with geometry, or load it as NRRD/NIfTI with known geometry.")
    row, col = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
    if abs(row @ col) > 1e-3:
        raise InputFormatError(f"ImageOrientationPatient {iop.tolist()} of {src.name} is not orthogonal.")
    col = col - (col @ row) * row
    col /= np.linalg.norm(col)
    normal = np.cross(row, col)
    spacing_z = get_float(header, "SpacingBetweenSlices")
    if spacing_z is None or spacing_z == 0:
        spacing_z = get_float(header, "SliceThickness")
        if spacing_z is None or spacing_z <= 0:
            raise MissingMetadataError(f"{src.name} has neither SpacingBetweenSlices nor SliceThickness: the slice "
                                       "spacing is unknown. Load it from a format that records it.")
        notes.append("slice spacing from SliceThickness (SpacingBetweenSlices absent)")
    ps = get_floats(header, "PixelSpacing", 2)
    if ps is None:
        raise MissingMetadataError(f"{src.name} has no PixelSpacing: the voxel size is unknown.")
    ds = src.read()
    stored = pixel_array(ds, src.name)
    if stored.ndim == 2:
        stored = stored[None]
    slice_vector = get_value(header, "SliceVector")
    if slice_vector is not None and len(slice_vector) == frames:
        order = np.argsort(np.asarray(slice_vector, dtype=int), kind="stable")
        stored = stored[order]
    mapping, map_notes = value_mapping(ds, default_quantity)
    notes.extend(map_notes)
    values = stored.astype(np.float64) * mapping.slope + mapping.intercept
    origin = np.asarray(ipp, dtype=float)
    if spacing_z < 0:
        # Negative SpacingBetweenSlices (GE): frame k lies at IPP + k*spacing*normal, i.e. against the normal.
        # Reverse the frames so the returned grid is right-handed with a positive spacing.
        origin = origin + (frames - 1) * spacing_z * normal
        values = values[::-1]
        notes.append(f"SpacingBetweenSlices is negative ({spacing_z:g} mm): frames run against row x column; "
                     "they were reversed so the volume is right-handed")
    try:
        grid = Grid(values.shape, (float(ps[1]), float(ps[0]), abs(spacing_z)), tuple(origin),
                    np.column_stack([row, col, normal]))
    except InputFormatError as exc:
        raise InputFormatError(f"{src.name} has unusable geometry: {exc} Fix PixelSpacing / ImageOrientationPatient "
                               "or re-export the reconstruction.") from None
    meta = dataclasses.replace(meta, notes=notes)
    return _make_volume(values, grid, mapping, meta, src.name)


def _read_stack(sources: list[DicomSource], path: str, uid: str, default_quantity: str | None,
                spacing_tolerance_mm: float) -> Volume:
    stack = stack_geometry(sources, spacing_tolerance_mm, what=f"series {uid} in {path}")
    meta = _stacked_metadata(stack.sources, path)
    notes = list(meta.notes) + list(stack.notes)
    values = None  # allocated once the first slice has shown that Rows x Columns are real
    mappings = []
    for k, src in enumerate(stack.sources):
        ds = src.read()
        stored = pixel_array(ds, src.name)
        if stored.shape != stack.grid.shape[1:]:
            raise InputFormatError(f"{src.name} holds pixels of shape {stored.shape}, expected "
                                   f"{stack.grid.shape[1:]}.")
        if values is None:
            values = np.empty(stack.grid.shape, dtype=np.float64)
        mapping, map_notes = value_mapping(ds, default_quantity)
        for n in map_notes:
            if n not in notes:
                notes.append(n)
        mappings.append(mapping)
        values[k] = stored.astype(np.float64) * mapping.slope + mapping.intercept
    kinds = {(m.quantity, m.unit) for m in mappings}
    if len(kinds) > 1:
        raise InputFormatError(f"The slices of series {uid} disagree on their units ({sorted(kinds)}); "
                               "re-export the series.")
    slopes = sorted({m.slope for m in mappings})
    if len(slopes) > 1:
        notes.append(f"per-slice rescale slopes applied ({slopes[0]:g} to {slopes[-1]:g})")
    meta = dataclasses.replace(meta, notes=notes)
    return _make_volume(values, stack.grid, mappings[0], meta, path)


def _make_volume(values: np.ndarray, grid: Grid, mapping: ValueMapping, meta: NMMetadata, source: str) -> Volume:
    check_unit_for_quantity(mapping.quantity, mapping.unit)
    if mapping.unit != get_quantity(mapping.quantity).unit and mapping.quantity != "unknown":
        from VoxelDosimetryLib.volume.units import conversion_factor
        values = values * conversion_factor(mapping.unit, get_quantity(mapping.quantity).unit)
        unit = get_quantity(mapping.quantity).unit
    else:
        unit = mapping.unit
    metadata = {
        "reader": "VoxelDosimetryLib.io.dicom_nm",
        "source": {"path": source, "format": "dicom"},
        "Modality": meta.modality,
        "PatientPosition": meta.patient_position,
        "StudyInstanceUID": meta.study_instance_uid,
        "SeriesInstanceUID": meta.series_instance_uid,
        "FrameOfReferenceUID": meta.frame_of_reference_uid,
        "Manufacturer": meta.manufacturer,
        "ManufacturerModelName": meta.model,
        "SeriesDateTime": iso(meta.series_datetime),
        "AcquisitionDateTime": iso(meta.acquisition_datetime),
        "value_mapping": mapping.source,
        "nm": meta.to_dict(),
        "missing": list(meta.missing),
        "notes": list(meta.notes),
    }
    return Volume(np.ascontiguousarray(values, dtype=np.float32), grid=grid, quantity=mapping.quantity, unit=unit,
                  metadata=metadata)


def read_nm_projections(path: str | os.PathLike, series_uid: str | None = None) -> tuple[np.ndarray, NMMetadata]:
    """NM projection frames -> (array[energy window, projection, row, col], NMMetadata).

    The projection axis runs over (detector, rotation, angular view) in that nesting order, recorded in
    `NMMetadata.projection_order` as 1-based (detector, rotation, view) tuples; energy windows follow
    EnergyWindowInformationSequence order. Values are the stored counts (the stored integer type; float32
    times RescaleSlope when a slope other than 1 is present). Rows and columns are as stored in DICOM.
    """
    path = Path(path)
    if is_single_file(path):
        header = single_file_header(path)
        src = DicomSource(str(path), header, path=path)
        return _read_projection_source(src)
    with DicomCollection(path) as collection:
        collection.check_usable("NM projection")
        _, sources = select_series(collection.series(), series_uid, path, _is_projection_series, "NM projection")
        if len(sources) != 1:
            raise InputFormatError(f"The NM projection series in {path} has {len(sources)} files; expected one "
                                   "multi-frame file. Pass the file itself.")
        return _read_projection_source(sources[0])


def _read_projection_source(src: DicomSource) -> tuple[np.ndarray, NMMetadata]:
    header = src.header
    if get_str(header, "Modality") != "NM":
        raise InputFormatError(f"{src.name} is {get_str(header, 'Modality')}, not NM projections.")
    meta = nm_metadata_from_dataset(header, src.name)
    if meta.kind == "reconstruction":
        raise InputFormatError(f"{src.name} is a reconstructed volume ({'/'.join(meta.image_type)}), not "
                               "projections; read it with read_dicom_spect.")
    if "GATED" in meta.image_type or any("GATED" in v for v in meta.image_type):
        raise InputFormatError(f"{src.name} holds gated projections (time slots), which are not supported; "
                               "sum the gates on the workstation or export an ungated acquisition.")
    frames = meta.number_of_frames or 1

    def vector(keyword: str) -> np.ndarray:
        v = get_value(header, keyword)
        if v is None:
            return np.ones(frames, dtype=int)
        arr = np.asarray(v, dtype=int).reshape(-1)
        if arr.size != frames:
            raise InputFormatError(f"{src.name}: {keyword} has {arr.size} entries for {frames} frames.")
        return arr

    energy, detector, rotation, view = (vector("EnergyWindowVector"), vector("DetectorVector"),
                                        vector("RotationVector"), vector("AngularViewVector"))
    keys = sorted(set(zip(detector.tolist(), rotation.tolist(), view.tolist())))
    n_e = int(energy.max())
    index = {k: i for i, k in enumerate(keys)}
    ds = src.read()
    stored = pixel_array(ds, src.name)
    if stored.ndim == 2:
        stored = stored[None]
    out = np.zeros((n_e, len(keys)) + stored.shape[1:], dtype=stored.dtype)
    filled = np.zeros((n_e, len(keys)), dtype=int)
    for f in range(frames):
        e, p = energy[f] - 1, index[(detector[f], rotation[f], view[f])]
        out[e, p] = stored[f]
        filled[e, p] += 1
    if np.any(filled != 1):
        raise InputFormatError(f"{src.name}: the frame vectors do not give each (energy window, detector, rotation, "
                               "view) exactly one frame; the file is inconsistent.")
    slope = get_float(header, "RescaleSlope")
    if slope is not None and slope != 1.0:
        out = out.astype(np.float32) * np.float32(slope)
        meta.notes.append(f"RescaleSlope {slope:g} applied to the projections")
    meta.projection_order = [tuple(int(x) for x in k) for k in keys]
    if meta.number_of_views is None:
        meta.number_of_views = len({k[2] for k in keys})
    return out, meta
