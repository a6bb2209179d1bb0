"""PipelineConfig: everything `run_pipeline` needs, read from a YAML/JSON file or a case folder (docs/PIPELINE.md).

Relative paths resolve against `data_root` when it is set (config field or `--data-root`; `$VARS` and `~` are
expanded), else against the folder of the config file (`base_dir`). A config file may name a case folder
(`case: path`); its settings then override the case's.
"""
from __future__ import annotations

import copy
import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from VoxelDosimetryLib.errors import InputFormatError

REGISTRATION_KINDS = ("rigid", "affine", "bspline", "none")
DOSE_ORDERS = ("tia_then_dose", "dose_rate_then_integrate")
DOSE_GRIDS = ("spect", "ct")
SPECT_QUANTITIES = ("counts", "activity_concentration", "activity")
AUTO_MODEL = "auto"
DEFAULT_DX_PERCENT = (2, 10, 30, 50, 70, 90, 98)


@dataclass
class TimepointInput:
    """One imaging time: hours after injection, its SPECT and (when it has its own) its CT.

    spect_quantity: what the SPECT file holds when it does not say (counts | activity_concentration | activity).
    calibration: SpectCalibration values for this timepoint only (override the config's `calibration`).
    """

    time_h: float
    spect: str
    ct: str | None = None
    spect_quantity: str | None = None
    calibration: dict = field(default_factory=dict)


@dataclass
class RegistrationSettings:
    """kind: rigid | affine | bspline | none; backend: simpleitk | elastix; options: register_ct options."""

    kind: str = "rigid"
    backend: str = "simpleitk"
    seed: int = 0
    options: dict = field(default_factory=dict)


@dataclass
class IntegrationSettings:
    """model: a kinetics.tia model name or "auto" (1 timepoint: hanscheid; more: trapezoid_fit_tail)."""

    model: str = AUTO_MODEL
    options: dict = field(default_factory=dict)


@dataclass
class DoseSettings:
    """method: a registered dose method; order: tia_then_dose | dose_rate_then_integrate."""

    method: str = "led"
    order: str = "tia_then_dose"
    histories: int | None = None
    seed: int = 0
    device: str = "auto"
    options: dict = field(default_factory=dict)


@dataclass
class SegmentSettings:
    """labels: label map file (none: an automatic 'body' segment); names: a names file or {label: name}."""

    labels: str | None = None
    names: Any = None
    dx_percent: list = field(default_factory=lambda: list(DEFAULT_DX_PERCENT))
    dx_cc: list = field(default_factory=list)
    vx_gy: list = field(default_factory=list)


_SECTIONS = {"registration": RegistrationSettings, "time_integration": IntegrationSettings, "dose": DoseSettings,
             "segments": SegmentSettings}


@dataclass
class PipelineConfig:
    """Inputs and settings of one pipeline run. Times in hours after injection; paths as given (see resolve)."""

    ct: str
    timepoints: list[TimepointInput]
    case_id: str = "case"
    nuclide: str = "Lu-177"
    reference_timepoint: int = 0
    spect_quantity: str | None = None
    calibration: dict = field(default_factory=dict)
    dose_grid: str = "spect"
    registration: RegistrationSettings = field(default_factory=RegistrationSettings)
    time_integration: IntegrationSettings = field(default_factory=IntegrationSettings)
    dose: DoseSettings = field(default_factory=DoseSettings)
    segments: SegmentSettings = field(default_factory=SegmentSettings)
    administered_activity_bq: float | None = None
    truth_organ_tia_bq_s: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    data_root: str | None = None
    base_dir: str | None = None

    def __post_init__(self) -> None:
        """Accept plain values too: timepoints as mappings, sections as mappings, registration as a kind name."""
        if not isinstance(self.timepoints, list):
            raise InputFormatError("'timepoints' must be a list of {time_h, spect[, ct]} entries.")
        self.timepoints = [_timepoint(entry, i) for i, entry in enumerate(self.timepoints)]
        for name in _SECTIONS:
            setattr(self, name, _section(name, getattr(self, name)))
        for key in ("calibration", "truth_organ_tia_bq_s", "notes"):
            setattr(self, key, dict(getattr(self, key) or {}))

    # ------------------------------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: dict, base_dir: str | Path | None = None) -> "PipelineConfig":
        """Build from plain values (as in a YAML/JSON file); unknown keys raise InputFormatError."""
        if not isinstance(data, dict):
            raise InputFormatError(f"A pipeline config is a mapping of settings; got {type(data).__name__}.")
        data = copy.deepcopy(data)
        if "case" in data:
            return _config_over_case(data, base_dir)
        _reject_unknown(data, [f.name for f in fields(cls)], "the pipeline config")
        for key in ("ct", "timepoints"):
            if data.get(key) in (None, "", []):
                raise InputFormatError(f"The pipeline config needs {key!r} (see docs/PIPELINE.md), or 'case: FOLDER'.")
        if base_dir is not None and data.get("base_dir") is None:
            data["base_dir"] = str(base_dir)
        config = cls(**data)
        config.check_settings()
        return config

    @classmethod
    def from_file(cls, path: str | Path, data_root: str | Path | None = None) -> "PipelineConfig":
        """Read a .yaml/.yml (PyYAML) or .json config; relative paths resolve against its folder or data_root."""
        path = Path(path)
        if not path.is_file():
            raise InputFormatError(f"Config file {path} not found; give a .yaml/.json config or a case folder.")
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError as exc:  # pragma: no cover - PyYAML is a dependency
                raise InputFormatError("Reading YAML configs needs PyYAML: pip install PyYAML (or use JSON).") from exc
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise InputFormatError(f"{path} is not valid YAML: {exc}") from exc
        elif path.suffix.lower() == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputFormatError(f"{path} is not valid JSON: {exc}.") from exc
        else:
            raise InputFormatError(f"{path.name}: pipeline configs are .yaml, .yml or .json files.")
        if data_root is not None:
            data = dict(data or {}, data_root=str(data_root))
        return cls.from_dict(data or {}, base_dir=path.parent.resolve())

    @classmethod
    def from_case(cls, folder: str | Path) -> "PipelineConfig":
        """A config for a case folder (docs/CASE_FORMAT.md) with default settings; paths become absolute.

        Per-timepoint CTs come from case notes `timepoint_cts` (one file per timepoint), SPECT calibration
        values from notes `calibration`, the true organ TIA (generated cases) from notes `true_organ_tia_bq_s`.
        """
        from VoxelDosimetryLib.io.case import read_case

        case = read_case(folder)
        root = Path(folder).resolve()
        notes = dict(case.notes or {})
        cts = notes.get("timepoint_cts") or [None] * len(case.timepoints)
        if len(cts) != len(case.timepoints):
            raise InputFormatError(f"{root}/case.json: notes.timepoint_cts lists {len(cts)} CTs for "
                                   f"{len(case.timepoints)} timepoints; give one per timepoint (null: the case CT).")
        timepoints = [TimepointInput(time_h=tp.time_h, spect=str(root / tp.spect),
                                     ct=None if ct in (None, case.ct) else str(root / ct))
                      for tp, ct in zip(case.timepoints, cts)]
        segments = SegmentSettings(labels=str(root / case.labels) if case.labels else None,
                                   names=dict(case.label_names) if case.label_names else None)
        config = cls(ct=str(root / case.ct), timepoints=timepoints, case_id=case.id, nuclide=case.nuclide,
                     calibration=dict(notes.get("calibration") or {}), segments=segments,
                     administered_activity_bq=case.administered_activity_bq,
                     truth_organ_tia_bq_s=dict(notes.get("true_organ_tia_bq_s") or {}),
                     notes={"case_folder": str(root)}, base_dir=str(root))
        config.check_settings()
        return config

    def to_dict(self) -> dict:
        """Plain JSON/YAML values; from_dict(to_dict()) gives an equal config."""
        return json.loads(json.dumps(asdict(self), default=str))

    def with_changes(self, **sections: dict) -> "PipelineConfig":
        """A copy with settings changed: top-level fields by name, sections by a dict of their fields,
        e.g. with_changes(dose={"method": "mc"}, time_integration={"model": "bi_exp"})."""
        updates = {}
        for name, value in sections.items():
            if name in _SECTIONS and isinstance(value, dict):
                _reject_unknown(value, [f.name for f in fields(_SECTIONS[name])], f"the '{name}' section")
                updates[name] = replace(getattr(self, name), **value)
            else:
                updates[name] = value
        changed = replace(self, **updates)
        changed.check_settings()
        return changed

    # ------------------------------------------------------------------------------------------ paths
    def resolve(self, path: str | None) -> Path | None:
        """An input path as a Path: `$VARS`/`~` expanded; relative to data_root, else base_dir, else cwd."""
        if path in (None, ""):
            return None
        expanded = Path(os.path.expanduser(os.path.expandvars(str(path))))
        if expanded.is_absolute():
            return expanded
        if self.data_root:
            root = os.path.expanduser(os.path.expandvars(str(self.data_root)))
            if "$" in root:
                raise InputFormatError(f"data_root {self.data_root!r} names an environment variable that is not "
                                       "set; set it or pass --data-root DIR.")
            base = Path(root)
            if not base.is_absolute() and self.base_dir:
                base = Path(self.base_dir) / base
            return base / expanded
        return (Path(self.base_dir) if self.base_dir else Path.cwd()) / expanded

    def timepoint_ct(self, index: int) -> Path:
        """The CT of timepoint `index` (its own, or the reference CT)."""
        own = self.timepoints[index].ct
        return self.resolve(own) if own else self.resolve(self.ct)

    # ------------------------------------------------------------------------------------------ checks
    def model_for_run(self) -> str:
        """The time-integration model used: "auto" becomes hanscheid (1 timepoint) or trapezoid_fit_tail."""
        model = self.time_integration.model
        if model == AUTO_MODEL:
            return "hanscheid" if len(self.timepoints) == 1 else "trapezoid_fit_tail"
        return model

    def check_settings(self) -> None:
        """Raise InputFormatError naming every invalid setting (files are checked by check_files)."""
        from VoxelDosimetryLib.kinetics.tia import MIN_POINTS, MODELS
        from VoxelDosimetryLib.physics import get_nuclide

        problems = []
        get_nuclide(self.nuclide)  # UnknownNuclideError with suggestions
        times = []
        for i, tp in enumerate(self.timepoints):
            try:
                times.append(float(tp.time_h))
            except (TypeError, ValueError):
                problems.append(f"timepoints[{i}].time_h must be a number of hours; got {tp.time_h!r}")
            quantity = tp.spect_quantity
            if quantity is not None and quantity not in SPECT_QUANTITIES:
                problems.append(f"timepoints[{i}].spect_quantity must be one of {SPECT_QUANTITIES}; got {quantity!r}")
        if not self.timepoints:
            problems.append("no timepoints are listed")
        if any(t <= 0 for t in times):
            problems.append(f"timepoint times must be > 0 h after injection; got {times}")
        if times != sorted(times) or len(set(times)) != len(times):
            problems.append(f"timepoint times must be strictly increasing; got {times}")
        if not 0 <= int(self.reference_timepoint) < max(1, len(self.timepoints)):
            problems.append(f"reference_timepoint must index a timepoint (0..{len(self.timepoints) - 1}); "
                            f"got {self.reference_timepoint}")
        elif self.timepoints and self.timepoints[self.reference_timepoint].ct not in (None, self.ct):
            problems.append("the reference timepoint's CT must be the config's 'ct' (the reference CT); set "
                            "'ct' to it or choose another reference_timepoint")
        if self.spect_quantity is not None and self.spect_quantity not in SPECT_QUANTITIES:
            problems.append(f"spect_quantity must be one of {SPECT_QUANTITIES}; got {self.spect_quantity!r}")
        if self.dose_grid not in DOSE_GRIDS:
            problems.append(f"dose_grid must be one of {DOSE_GRIDS}; got {self.dose_grid!r}")
        if self.registration.kind not in REGISTRATION_KINDS:
            problems.append(f"registration must be one of {REGISTRATION_KINDS}; got {self.registration.kind!r}")
        model = self.time_integration.model
        if model != AUTO_MODEL and model not in MODELS:
            problems.append(f"time_integration.model must be 'auto' or one of {list(MODELS)}; got {model!r}")
        elif self.timepoints and not problems:
            resolved = self.model_for_run()
            n = len(self.timepoints)
            if n < MIN_POINTS[resolved] or (resolved == "hanscheid" and n != 1):
                needed = "exactly 1" if resolved == "hanscheid" else MIN_POINTS[resolved]
                problems.append(f"model {resolved!r} needs {needed} timepoint(s); this config has {n}. Choose another "
                                "model (or 'auto')")
        if self.dose.order not in DOSE_ORDERS:
            problems.append(f"dose.order must be one of {DOSE_ORDERS}; got {self.dose.order!r}")
        if self.dose.histories is not None and not (int(self.dose.histories) == self.dose.histories
                                                    and self.dose.histories > 0):
            problems.append(f"dose.histories must be a positive integer; got {self.dose.histories!r}")
        if self.administered_activity_bq is not None and not float(self.administered_activity_bq) > 0:
            problems.append(f"administered_activity_bq must be positive; got {self.administered_activity_bq}")
        if problems:
            raise InputFormatError("Invalid pipeline config: " + "; ".join(problems) + ".")
        from VoxelDosimetryLib.dose import get_dose_method

        get_dose_method(self.dose.method)  # UnknownDoseMethodError listing the registered methods

    def check_files(self) -> None:
        """Raise InputFormatError naming every input file that does not exist."""
        wanted = [("ct", self.ct)] + [(f"timepoints[{i}].spect", tp.spect) for i, tp in enumerate(self.timepoints)]
        wanted += [(f"timepoints[{i}].ct", tp.ct) for i, tp in enumerate(self.timepoints) if tp.ct]
        wanted += [("segments.labels", self.segments.labels)] if self.segments.labels else []
        if isinstance(self.segments.names, str):
            wanted.append(("segments.names", self.segments.names))
        missing = [f"{name}: {self.resolve(path)}" for name, path in wanted if not self.resolve(path).exists()]
        if missing:
            hint = " (relative paths resolve against data_root)" if self.data_root else \
                " (relative paths resolve against the config file's folder; set data_root or --data-root otherwise)"
            raise InputFormatError("Input file(s) not found: " + "; ".join(missing) + hint + ".")


def _timepoint(entry, index: int) -> TimepointInput:
    if isinstance(entry, TimepointInput):
        return entry
    if not isinstance(entry, dict):
        raise InputFormatError(f"timepoints[{index}] must be a mapping with time_h and spect; got {entry!r}.")
    _reject_unknown(entry, [f.name for f in fields(TimepointInput)], f"timepoints[{index}]")
    if "time_h" not in entry or "spect" not in entry:
        raise InputFormatError(f"timepoints[{index}] needs time_h (hours after injection) and spect (a file).")
    return TimepointInput(**{**entry, "calibration": dict(entry.get("calibration") or {})})


def _section(name: str, value):
    section_type = _SECTIONS[name]
    if isinstance(value, section_type):
        return value
    if name == "registration" and isinstance(value, str):
        value = {"kind": value}
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise InputFormatError(f"'{name}' must be a mapping of settings; got {value!r}.")
    _reject_unknown(value, [f.name for f in fields(section_type)], f"the '{name}' section")
    return section_type(**value)


def _reject_unknown(data: dict, allowed: list, where: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise InputFormatError(f"Unknown key(s) {unknown} in {where}; allowed: {sorted(allowed)} "
                               "(see docs/PIPELINE.md).")


def _merge(base: dict, update: dict) -> dict:
    """`update` over `base`: nested mappings merge, everything else (lists included) replaces."""
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _config_over_case(data: dict, base_dir: str | Path | None) -> PipelineConfig:
    """`case: FOLDER` plus settings: the case's config with the file's settings merged over it."""
    holder = PipelineConfig(ct="", timepoints=[], data_root=data.get("data_root"),
                            base_dir=None if base_dir is None else str(base_dir))
    folder = holder.resolve(data.pop("case"))
    if isinstance(data.get("registration"), str):
        data["registration"] = {"kind": data["registration"]}
    merged = _merge(PipelineConfig.from_case(folder).to_dict(), data)
    merged["base_dir"] = str(base_dir) if base_dir is not None else merged.get("base_dir")
    return PipelineConfig.from_dict(merged)
