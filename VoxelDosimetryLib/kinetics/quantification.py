"""SPECT calibration: reconstructed counts -> activity concentration (Bq/mL), with every value visible.

activity concentration (Bq/mL) = counts / (S x 1e-6 x T_counts x V_voxel) x F_acq x F_ref, where
S is the system sensitivity (cps/MBq), T_counts the time the counts were collected over (s; the duration of
one projection view when the reconstruction's counts are per view, the total time when they are summed over
all views), V_voxel the voxel volume (mL), F_acq the decay-during-acquisition factor and F_ref the decay
correction back to a reference time. Images already in Bq/mL (DICOM Units BQML) pass through unchanged.
See docs/CALIBRATION.md.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError, MissingMetadataError, UnitError, UnknownNuclideError
from VoxelDosimetryLib.io.datetime_parse import parse_datetime
from VoxelDosimetryLib.physics.nuclides import canonical_nuclide_name, get_nuclide
from VoxelDosimetryLib.volume.volume import Volume

# Where each calibration value came from.
SOURCES = ("user", "dicom", "default")

# The CLI option (and Python keyword) that supplies each value, named in MissingMetadataError messages.
CLI_OPTION = {
    "sensitivity_cps_per_mbq": "--sensitivity-cps-per-mbq",
    "counts_duration_s": "--counts-duration-s",
    "acquisition_duration_s": "--acquisition-duration-s",
    "acquisition_start": "--acquisition-start",
    "reference_time": "--reference-time",
    "nuclide": "--nuclide",
}

# DICOM RadionuclideCodeSequence CodeMeaning spells elements out ('^177^Lutetium').
_ELEMENT_SYMBOLS = {
    "lutetium": "Lu", "yttrium": "Y", "iodine": "I", "technetium": "Tc", "gallium": "Ga", "terbium": "Tb",
    "indium": "In", "fluorine": "F", "holmium": "Ho", "rhenium": "Re", "samarium": "Sm", "actinium": "Ac",
    "radium": "Ra", "thallium": "Tl", "copper": "Cu", "zirconium": "Zr", "lead": "Pb", "bismuth": "Bi",
}


def nuclide_from_dicom(text: str | None) -> str | None:
    """Canonical nuclide name from a DICOM radionuclide code meaning ('^177^Lutetium' -> 'Lu-177'), or None."""
    if not text:
        return None
    try:
        return canonical_nuclide_name(text)
    except UnknownNuclideError:
        pass
    mass = re.search(r"(\d{1,3})(m(?![a-z]))?", text)  # '^99m^Technetium': metastable 'm' after the mass
    word = re.search(r"([A-Za-z]{3,})", text)
    if mass and word and word.group(1).lower() in _ELEMENT_SYMBOLS:
        try:
            return canonical_nuclide_name(f"{_ELEMENT_SYMBOLS[word.group(1).lower()]}-{mass.group(1)}"
                                          f"{mass.group(2) or ''}")
        except UnknownNuclideError:
            return None
    return None


def decay_during_acquisition_factor(decay_constant_per_s: float, duration_s: float) -> float:
    """Activity at acquisition start / mean activity during an acquisition of `duration_s` (dimensionless)."""
    x = decay_constant_per_s * duration_s
    if x < 1e-8:
        return 1.0 + x / 2.0
    # counts = S * integral_0^T A0 exp(-lambda t) dt = S * A0 (1 - exp(-lambda T)) / lambda  =>  F = lambda T / (1 - exp(-lambda T))
    return x / -math.expm1(-x)


@dataclass(frozen=True)
class SpectCalibration:
    """How reconstructed SPECT counts become Bq/mL; every value visible, with where it came from.

    sensitivity_cps_per_mbq: system (planar) sensitivity S in counts per second per MBq.
    counts_duration_s: the time (s) the voxel counts were collected over: one projection view's duration for
        reconstructions whose counts are per view (e.g. PyTomography/SlicerSPECTRecon OSEM), the total
        acquisition time for counts summed over all views.
    decay_correct_during_acquisition: correct for decay during the acquisition, giving the activity at its
        start (factor lambda*T/(1-exp(-lambda*T)), T = acquisition_duration_s).
    acquisition_duration_s: total acquisition time T (s), first view start to last view end.
    acquisition_start: acquisition start date-time (needed with reference_time).
    reference_time: decay-correct the activity back to this date-time (e.g. injection); None = no correction.
        Images for time integration must NOT be decay-corrected (activity at scan time is integrated).
    nuclide: radionuclide name (needed by either decay correction).
    source: field name -> 'user' | 'dicom' | 'default'. notes: how DICOM-derived values were obtained.
    Change values with replace(), which marks them 'user'.
    """

    sensitivity_cps_per_mbq: float | None = None
    counts_duration_s: float | None = None
    decay_correct_during_acquisition: bool = False
    acquisition_duration_s: float | None = None
    acquisition_start: _dt.datetime | None = None
    reference_time: _dt.datetime | None = None
    nuclide: str | None = None
    source: dict = field(default_factory=dict)
    notes: tuple = ()

    VALUE_FIELDS = ("sensitivity_cps_per_mbq", "counts_duration_s", "decay_correct_during_acquisition",
                    "acquisition_duration_s", "acquisition_start", "reference_time", "nuclide")

    def __post_init__(self) -> None:
        object.__setattr__(self, "acquisition_start", parse_datetime(self.acquisition_start, "acquisition_start"))
        object.__setattr__(self, "reference_time", parse_datetime(self.reference_time, "reference_time"))
        if self.nuclide is not None:
            object.__setattr__(self, "nuclide", canonical_nuclide_name(self.nuclide))
        for name in ("sensitivity_cps_per_mbq", "counts_duration_s", "acquisition_duration_s"):
            value = getattr(self, name)
            if value is None:
                continue
            value = float(value)
            if not math.isfinite(value) or value <= 0:
                raise InputFormatError(f"{name} must be a positive finite number; got {getattr(self, name)!r}. "
                                       f"Set it with {CLI_OPTION[name]}.")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "decay_correct_during_acquisition", bool(self.decay_correct_during_acquisition))
        source = {name: "default" for name in self.VALUE_FIELDS}
        source.update(self.source or {})
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "notes", tuple(self.notes))

    # construction ------------------------------------------------------------------------------------------
    @classmethod
    def from_metadata(cls, metadata: Any = None, require_complete: bool = True, **overrides: Any) -> "SpectCalibration":
        """Fill what DICOM NM metadata provides, then apply `overrides` (source 'user'; None = not given).

        `metadata`: Volume.metadata (with its 'nm' entry from the DICOM reader), an NMMetadata, its to_dict(),
        or None. DICOM never holds the sensitivity, so it is always a user value. Raises MissingMetadataError
        naming each missing value and its CLI option unless `require_complete` is False.
        """
        unknown = sorted(set(overrides) - set(cls.VALUE_FIELDS))
        if unknown:
            raise InputFormatError(f"Unknown calibration value(s) {unknown}; use {list(cls.VALUE_FIELDS)}.")
        values, source, notes = _values_from_nm(_nm_dict(metadata))
        reference = overrides.get("reference_time")
        if isinstance(reference, str) and reference.strip().lower() == "injection":
            injection = values.pop("injection_time", None)
            if injection is None:
                raise MissingMetadataError(
                    "reference_time='injection' was asked for but the metadata has no injection date-time "
                    "(RadiopharmaceuticalStartDateTime). Give the date-time itself with --reference-time "
                    "(reference_time='2024-05-01T10:30:00').")
            overrides["reference_time"] = injection
            notes.append("reference time = injection date-time from DICOM (RadiopharmaceuticalStartDateTime)")
        values.pop("injection_time", None)
        for name, value in overrides.items():
            if value is not None:
                values[name] = value
                source[name] = "user"
        calibration = cls(**values, source=source, notes=tuple(notes))
        if require_complete:
            calibration.validate()
        return calibration

    def replace(self, **changes: Any) -> "SpectCalibration":
        """A copy with some values changed; changed values are marked 'user'."""
        source = dict(self.source)
        source.update({name: "user" for name in changes if name in self.VALUE_FIELDS})
        return dataclasses.replace(self, source=source, **changes)

    # checks and factors ------------------------------------------------------------------------------------
    def missing(self) -> list[str]:
        """Names of the values still needed for calibrate_counts()."""
        needed = ["sensitivity_cps_per_mbq", "counts_duration_s"]
        if self.decay_correct_during_acquisition:
            needed += ["acquisition_duration_s", "nuclide"]
        if self.reference_time is not None:
            needed += ["acquisition_start", "nuclide"]
        return [n for n in dict.fromkeys(needed) if getattr(self, n) is None]

    def validate(self) -> None:
        """Raise MissingMetadataError naming each missing value and the CLI option that supplies it."""
        missing = self.missing()
        if missing:
            items = "; ".join(f"{n} (tia: {CLI_OPTION[n]})" for n in missing)
            raise MissingMetadataError(
                f"SPECT calibration needs values that neither the input nor the metadata provide: {items}. "
                "Supply them: in a pipeline config under 'calibration:' (e.g. calibration: {sensitivity_cps_per_mbq: "
                "6.0, counts_duration_s: 25}), with the tia options shown, or in Python SpectCalibration(...). The "
                "sensitivity S (cps/MBq) comes from a phantom calibration of your camera; counts_duration_s is the "
                "time the counts refer to.")

    def decay_constant_per_s(self) -> float:
        if self.nuclide is None:
            raise MissingMetadataError(f"Decay correction needs the radionuclide; give it with {CLI_OPTION['nuclide']}.")
        return get_nuclide(self.nuclide).decay_constant_per_s

    def acquisition_decay_factor(self) -> float:
        """lambda*T/(1-exp(-lambda*T)) when decay_correct_during_acquisition, else 1."""
        if not self.decay_correct_during_acquisition:
            return 1.0
        return decay_during_acquisition_factor(self.decay_constant_per_s(), float(self.acquisition_duration_s))

    def reference_decay_factor(self) -> float:
        """exp(lambda * (acquisition_start - reference_time)) when a reference time is set, else 1."""
        if self.reference_time is None:
            return 1.0
        if self.acquisition_start is None:
            raise MissingMetadataError(f"Decay correction to the reference time needs the acquisition start; give "
                                       f"it with {CLI_OPTION['acquisition_start']}.")
        start, ref = self.acquisition_start, self.reference_time
        if (start.tzinfo is None) != (ref.tzinfo is None):
            raise InputFormatError("acquisition_start and reference_time must both have a time zone or both not.")
        elapsed = (start - ref).total_seconds()
        return math.exp(self.decay_constant_per_s() * elapsed)  # A(t_ref) = A(t_acq) exp(lambda (t_acq - t_ref))

    def bq_per_ml_per_count(self, voxel_volume_ml: float) -> float:
        """Bq/mL that one count in one voxel stands for, including the decay factors."""
        self.validate()
        bq_per_count = 1.0 / (self.sensitivity_cps_per_mbq * 1e-6 * self.counts_duration_s)
        return bq_per_count / voxel_volume_ml * self.acquisition_decay_factor() * self.reference_decay_factor()

    # reporting -------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON values (date-times as ISO strings)."""
        out: dict[str, Any] = {}
        for name in self.VALUE_FIELDS:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, _dt.datetime) else value
        out["source"] = dict(self.source)
        out["notes"] = list(self.notes)
        return out

    def describe(self) -> list[str]:
        """One line per value with its source, for people."""
        lines = []
        for name in self.VALUE_FIELDS:
            value = getattr(self, name)
            shown = "MISSING" if value is None and name in self.missing() else value
            if isinstance(shown, _dt.datetime):
                shown = shown.isoformat(sep=" ")
            lines.append(f"{name}: {shown} ({self.source.get(name, 'default')})")
        return lines + [f"note: {n}" for n in self.notes]


def _nm_dict(metadata: Any) -> dict:
    """The NMMetadata fields as a dict from a Volume.metadata, an NMMetadata or its to_dict()."""
    if metadata is None:
        return {}
    if hasattr(metadata, "to_dict") and hasattr(metadata, "frame_duration_s"):
        return metadata.to_dict()
    if isinstance(metadata, dict):
        if isinstance(metadata.get("nm"), dict):
            return metadata["nm"]
        if "frame_duration_s" in metadata or "radionuclide" in metadata:
            return metadata
        return {}
    raise InputFormatError(f"from_metadata needs Volume.metadata, an NMMetadata or a dict; got {type(metadata).__name__}.")


def _values_from_nm(nm: dict) -> tuple[dict, dict, list[str]]:
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    notes: list[str] = []
    frame = nm.get("frame_duration_s")
    if frame:
        values["counts_duration_s"] = float(frame)
        source["counts_duration_s"] = "dicom"
        notes.append(f"counts_duration_s = ActualFrameDuration {float(frame):g} s, the duration of one projection "
                     "view: right for reconstructions whose counts are per view; give --counts-duration-s with "
                     "the total time when the counts are summed over all views")
        views = nm.get("number_of_views")
        if views:
            rotations = nm.get("number_of_rotations") or 1
            values["acquisition_duration_s"] = float(frame) * int(views) * int(rotations)
            source["acquisition_duration_s"] = "dicom"
            notes.append(f"acquisition_duration_s = {int(views)} views x {int(rotations)} rotation(s) x "
                         f"{float(frame):g} s (camera motion between views not included)")
    start = nm.get("acquisition_datetime")
    if start:
        values["acquisition_start"] = parse_datetime(start, "acquisition_datetime")
        source["acquisition_start"] = "dicom"
    injection = nm.get("radiopharmaceutical_start_datetime")
    if injection:
        values["injection_time"] = parse_datetime(injection, "radiopharmaceutical_start_datetime")
    nuclide = nuclide_from_dicom(nm.get("radionuclide"))
    if nuclide is not None:
        values["nuclide"] = nuclide
        source["nuclide"] = "dicom"
    elif nm.get("radionuclide"):
        notes.append(f"DICOM radionuclide {nm.get('radionuclide')!r} not recognised; give --nuclide")
    return values, source, notes


def calibrate_counts(counts: Volume, calibration: SpectCalibration) -> Volume:
    """Counts Volume -> activity_concentration Volume (Bq/mL, float32); metadata['calibration'] records how.

    A Volume already holding activity concentration passes through unchanged (canonical unit Bq/mL), with
    metadata['calibration'] saying so. The input is never modified.
    """
    if not isinstance(counts, Volume):
        raise TypeError(f"calibrate_counts needs a Volume; got {type(counts).__name__}.")
    if not isinstance(calibration, SpectCalibration):
        raise TypeError("calibration must be a SpectCalibration (SpectCalibration.from_metadata(volume.metadata, ...)).")
    if counts.quantity == "activity_concentration":
        out = counts.to_canonical_unit()
        meta = dict(out.metadata)
        meta["calibration"] = {"pass_through": True,
                               "note": "values already in Bq/mL: the SPECT calibration was not applied"}
        return out.replace(metadata=meta)
    if counts.quantity != "counts":
        hint = (" The file does not say what it holds: load it with quantity='counts' (CLI --quantity counts)."
                if counts.quantity == "unknown" else "")
        raise UnitError(f"calibrate_counts needs a counts volume (or one already in Bq/mL); got quantity "
                        f"{counts.quantity!r} ({counts.unit}).{hint}")
    finite = np.isfinite(counts.array)
    if not finite.all():
        raise InputFormatError(f"The counts volume holds {int(finite.size - finite.sum())} NaN/inf voxels; replace "
                               "them (e.g. by 0 outside the reconstructed field of view) before calibrating.")
    factor = calibration.bq_per_ml_per_count(counts.voxel_volume_ml)
    array = (counts.array.astype(np.float64) * factor).astype(np.float32)
    meta = dict(counts.metadata)
    meta["calibration"] = {**calibration.to_dict(), "pass_through": False,
                           "bq_per_ml_per_count": factor,
                           "acquisition_decay_factor": calibration.acquisition_decay_factor(),
                           "reference_decay_factor": calibration.reference_decay_factor(),
                           "decay_corrected_to_reference": calibration.reference_time is not None,
                           "voxel_volume_ml": counts.voxel_volume_ml}
    return Volume(array, grid=counts.grid, quantity="activity_concentration", unit="Bq/mL", metadata=meta)
