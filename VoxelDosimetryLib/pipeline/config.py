"""PipelineConfig: everything `run_pipeline` needs, read from a YAML/JSON file or a case folder (docs/PIPELINE.md).

Relative paths resolve against `data_root` when it is set (config field or `--data-root`; `$VARS` and `~` are
expanded), else against the folder of the config file (`base_dir`). A config file may name a case folder
(`case: path`); its settings then override the case's. Numbers may be written in any notation ('7.4e9', '1e4')
and, where a setting has a unit, with a unit of their own ('7.4 GBq', '1 d'); see volume/numbers.py.
Construction never raises for bad settings: check_settings() reports every problem in one InputFormatError.
"""
from __future__ import annotations

import copy
import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from VoxelDosimetryLib.errors import InputFormatError, UnknownNuclideError
from VoxelDosimetryLib.io.timepoints import timepoint_time_problems
from VoxelDosimetryLib.volume.numbers import collect_number

REGISTRATION_KINDS = ("rigid", "affine", "bspline", "none")
DOSE_ORDERS = ("tia_then_dose", "dose_rate_then_integrate")
DOSE_GRIDS = ("spect", "ct")
SPECT_QUANTITIES = ("counts", "activity_concentration", "activity")
AUTO_MODEL = "auto"
DEFAULT_DX_PERCENT = (2, 10, 30, 50, 70, 90, 98)
SEED = dict(integer=True, minimum=0, example="42")
# numeric settings: field -> parse_number options (units as in the field names)
_NUMBERS = {
    "config": {"administered_activity_bq": dict(unit="Bq", positive=True, optional=True),
               "reference_timepoint": dict(integer=True, minimum=0, example="0"),
               "max_negative_fraction": dict(minimum=0, optional=True, example="0.1"),
               "ct_offset_hu": dict(example="-1000")},
    "registration": {"seed": SEED},
    "dose": {"histories": dict(integer=True, positive=True, optional=True), "seed": SEED},
}
_NUMBER_LISTS = {"dx_percent": dict(minimum=0, maximum=100, example="90"), "dx_cc": dict(unit="mL", positive=True),
                 "vx_gy": dict(unit="Gy", minimum=0)}
CALIBRATION_NUMBERS = {"sensitivity_cps_per_mbq": dict(positive=True, example="6.0"),
                       "counts_duration_s": dict(unit="s", positive=True),
                       "acquisition_duration_s": dict(unit="s", positive=True)}


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
    max_negative_fraction: float | None = None
    ct_offset_hu: float = 0.0
    truth_organ_tia_bq_s: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    data_root: str | None = None
    base_dir: str | None = None

    def __post_init__(self) -> None:
        """Accept plain values too: timepoints as mappings, sections as mappings, registration as a kind name,
        numbers as text. Problems are kept for check_settings (bad values stay as given)."""
        problems: list[str] = []
        if not isinstance(self.timepoints, list):
            problems.append(f"'timepoints' must be a list of {{time_h, spect[, ct]}} entries; got {self.timepoints!r}")
            self.timepoints = []
        entries = [_timepoint(entry, i, problems) for i, entry in enumerate(self.timepoints)]
        self.timepoints = [tp for tp in entries if tp is not None]
        for name in _SECTIONS:
            setattr(self, name, _section(name, getattr(self, name), problems))
        for key in ("calibration", "truth_organ_tia_bq_s", "notes"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, dict):
                problems.append(f"'{key}' must be a mapping; got {value!r}")
                value = None
            setattr(self, key, dict(value or {}))
        self.calibration = _calibration(self.calibration, "calibration", problems)
        for key, options in _NUMBERS["config"].items():
            setattr(self, key, collect_number(getattr(self, key), problems, name=key, **options))
        self.truth_organ_tia_bq_s = {
            organ: collect_number(value, problems, name=f"truth_organ_tia_bq_s.{organ}", unit="Bq*s", minimum=0)
            for organ, value in self.truth_organ_tia_bq_s.items()}
        self._problems = problems

    # ------------------------------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: dict, base_dir: str | Path | None = None) -> "PipelineConfig":
        """Build from plain values (as in a YAML/JSON file); every problem (unknown keys included) is raised
        together in one InputFormatError."""
        if not isinstance(data, dict):
            raise InputFormatError(f"A pipeline config is a mapping of settings; got {type(data).__name__}.")
        data = copy.deepcopy(data)
        if "case" in data:
            return _config_over_case(data, base_dir)
        problems: list[str] = []
        data = _known(data, [f.name for f in fields(cls)], "the pipeline config", problems)
        data.setdefault("ct", "")
        data.setdefault("timepoints", [])
        if base_dir is not None and data.get("base_dir") is None:
            data["base_dir"] = str(base_dir)
        config = cls(**data)
        config._problems[:0] = problems
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
        problems: list[str] = []
        updates = _known(sections, [f.name for f in fields(self)], "with_changes()", problems)
        for name, value in updates.items():
            if name in _SECTIONS and isinstance(value, dict):
                value = _known(value, [f.name for f in fields(_SECTIONS[name])], f"the '{name}' section", problems)
                updates[name] = replace(getattr(self, name), **value)
        changed = replace(self, **updates)
        changed._problems[:0] = problems
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

    def _same_path(self, a: str, b: str) -> bool:
        """True when two configured paths name the same file (`./ct.nrrd` and `ct.nrrd`)."""
        try:
            return os.path.realpath(self.resolve(a)) == os.path.realpath(self.resolve(b))
        except InputFormatError:
            return False

    def input_paths(self) -> list[Path]:
        """Every input file or folder of a run (the pipeline never writes into or over any of them)."""
        paths = [self.resolve(self.ct)] + [self.resolve(tp.spect) for tp in self.timepoints]
        paths += [self.resolve(tp.ct) for tp in self.timepoints if tp.ct]
        if self.segments.labels:
            paths.append(self.resolve(self.segments.labels))
        if isinstance(self.segments.names, str):
            paths.append(self.resolve(self.segments.names))
        return list(dict.fromkeys(p for p in paths if p is not None))

    # ------------------------------------------------------------------------------------------ checks
    def model_for_run(self) -> str:
        """The time-integration model used: "auto" becomes hanscheid (1 timepoint) or trapezoid_fit_tail."""
        model = self.time_integration.model
        if model == AUTO_MODEL:
            return "hanscheid" if len(self.timepoints) == 1 else "trapezoid_fit_tail"
        return model

    def check_settings(self) -> None:
        """Raise one InputFormatError naming every invalid setting (files are checked by check_files)."""
        from VoxelDosimetryLib.dose import UnknownDoseMethodError, get_dose_method
        from VoxelDosimetryLib.kinetics.tia import MIN_POINTS, MODELS
        from VoxelDosimetryLib.physics import get_nuclide

        problems = list(self._problems)
        if not self.ct:
            problems.append("'ct' (the reference CT file) is missing; give ct: FILE (see docs/PIPELINE.md) or "
                            "'case: FOLDER'")
        try:
            get_nuclide(str(self.nuclide))
        except UnknownNuclideError as exc:
            problems.append(str(exc).rstrip("."))
        n = len(self.timepoints)
        for i, tp in enumerate(self.timepoints):
            if tp.spect_quantity is not None and not _one_of(tp.spect_quantity, SPECT_QUANTITIES):
                problems.append(f"timepoints[{i}].spect_quantity must be one of {SPECT_QUANTITIES}; "
                                f"got {tp.spect_quantity!r}")
        times = [tp.time_h for tp in self.timepoints]
        if not self.timepoints:
            problems.append("no timepoints are listed; give timepoints: [{time_h: 24, spect: FILE}, ...]")
        elif all(isinstance(t, float) for t in times):  # numbers that did not parse are already reported
            problems += timepoint_time_problems(times, labels=[f"timepoints[{i}].time_h" for i in range(n)])
        ref = self.reference_timepoint
        if isinstance(ref, int) and self.timepoints:
            if not ref < n:
                problems.append(f"reference_timepoint must index a timepoint (0..{n - 1}); got {ref}")
            elif self.timepoints[ref].ct not in (None, self.ct) and not self._same_path(self.timepoints[ref].ct, self.ct):
                problems.append("the reference timepoint's CT must be the config's 'ct' (the reference CT); set "
                                "'ct' to it or choose another reference_timepoint")
        if self.spect_quantity is not None and not _one_of(self.spect_quantity, SPECT_QUANTITIES):
            problems.append(f"spect_quantity must be one of {SPECT_QUANTITIES}; got {self.spect_quantity!r}")
        if not _one_of(self.dose_grid, DOSE_GRIDS):
            problems.append(f"dose_grid must be one of {DOSE_GRIDS}; got {self.dose_grid!r}")
        if not _one_of(self.registration.kind, REGISTRATION_KINDS):
            problems.append(f"registration must be one of {REGISTRATION_KINDS}; got {self.registration.kind!r}")
        model = self.time_integration.model
        if model != AUTO_MODEL and not _one_of(model, MODELS):
            problems.append(f"time_integration.model must be 'auto' or one of {list(MODELS)}; got {model!r}")
        elif self.timepoints:
            resolved = self.model_for_run()
            if n < MIN_POINTS[resolved] or (resolved == "hanscheid" and n != 1):
                needed = "exactly 1" if resolved == "hanscheid" else MIN_POINTS[resolved]
                problems.append(f"model {resolved!r} needs {needed} timepoint(s); this config has {n}. Choose another "
                                "model (or 'auto')")
        if not _one_of(self.dose.order, DOSE_ORDERS):
            problems.append(f"dose.order must be one of {DOSE_ORDERS}; got {self.dose.order!r}")
        from VoxelDosimetryLib.kinetics.registration import BACKENDS

        if not _one_of(self.registration.backend, BACKENDS):
            problems.append(f"registration.backend must be one of {BACKENDS}; got {self.registration.backend!r}")
        if not _is_device_name(self.dose.device):
            problems.append(f"dose.device must be auto, cpu, cuda or cuda:N; got {self.dose.device!r}")
        try:
            method = get_dose_method(str(self.dose.method))
            # typed by the method's option schema (docs/DOSE_METHODS.md): '1e-1', '10 %', 'yes' become values
            resolved = method.resolve_options(self.dose.options, "dose.options")
            self.dose.options = {name: resolved[name] for name in self.dose.options}
        except UnknownDoseMethodError as exc:
            problems.append(f"dose.method: {str(exc).rstrip('.')}")
        except InputFormatError as exc:
            problems.append(str(exc).rstrip("."))
        if len(problems) == 1:
            raise InputFormatError(f"Invalid pipeline config: {problems[0]}.")
        if problems:
            raise InputFormatError(f"Invalid pipeline config, {len(problems)} problems:\n"
                                   + "\n".join(f"- {p}" for p in problems))

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


def _timepoint(entry, index: int, problems: list) -> TimepointInput | None:
    """A TimepointInput with its numbers parsed (None when `entry` is not a mapping); problems are appended."""
    where = f"timepoints[{index}]"
    if isinstance(entry, dict):
        entry = _known(entry, [f.name for f in fields(TimepointInput)], where, problems)
        missing = [key for key in ("time_h", "spect") if entry.get(key) in (None, "")]
        if missing:
            problems.append(f"{where} needs time_h (hours after injection) and spect (a file); "
                            f"{' and '.join(missing)} missing")
        entry = TimepointInput(**{"time_h": None, "spect": "", **entry})
    if not isinstance(entry, TimepointInput):
        problems.append(f"{where} must be a mapping with time_h and spect; got {entry!r}")
        return None
    if entry.time_h is not None:
        entry.time_h = collect_number(entry.time_h, problems, name=f"{where}.time_h", unit="h")  # > 0: io.timepoints
    if entry.calibration is not None and not isinstance(entry.calibration, dict):
        problems.append(f"{where}.calibration must be a mapping; got {entry.calibration!r}")
        entry.calibration = {}
    entry.calibration = _calibration(dict(entry.calibration or {}), f"{where}.calibration", problems)
    return entry


def _calibration(values: dict, where: str, problems: list) -> dict:
    """SpectCalibration values with numbers parsed; unknown keys and non-yes/no flags are appended to problems."""
    from VoxelDosimetryLib.kinetics.quantification import SpectCalibration

    values = _known(values, list(SpectCalibration.VALUE_FIELDS), where, problems)
    for key, options in CALIBRATION_NUMBERS.items():
        if values.get(key) is not None:
            values[key] = collect_number(values[key], problems, name=f"{where}.{key}", **options)
    flag = values.get("decay_correct_during_acquisition")
    if flag is not None and not isinstance(flag, bool):
        problems.append(f"{where}.decay_correct_during_acquisition must be true or false; got {flag!r}")
    return values


def _section(name: str, value, problems: list):
    """The settings section `name` with its numbers parsed; problems are appended (defaults replace bad parts)."""
    section_type = _SECTIONS[name]
    if name == "registration" and isinstance(value, str):
        value = {"kind": value}
    if value is None:
        value = {}
    if isinstance(value, dict):
        value = section_type(**_known(value, [f.name for f in fields(section_type)], f"the '{name}' section", problems))
    elif not isinstance(value, section_type):
        problems.append(f"'{name}' must be a mapping of settings; got {value!r}")
        value = section_type()
    for key, options in _NUMBERS.get(name, {}).items():
        setattr(value, key, collect_number(getattr(value, key), problems, name=f"{name}.{key}", **options))
    if name == "segments":
        for key, options in _NUMBER_LISTS.items():
            items = getattr(value, key)
            items = list(items) if isinstance(items, (list, tuple)) else [] if items is None else [items]
            setattr(value, key, [collect_number(item, problems, name=f"segments.{key}[{j}]", **options)
                                 for j, item in enumerate(items)])
    if hasattr(value, "options") and not isinstance(value.options, dict):
        problems.append(f"{name}.options must be a mapping; got {value.options!r}")
        value.options = {}
    if hasattr(value, "options") and name != "dose":  # dose options are typed by the method (check_settings)
        value.options = _option_numbers(value.options, f"{name}.options", problems)
    if name == "segments" and value.names is not None and not isinstance(value.names, (str, dict)):
        problems.append(f"segments.names must be a names file or a mapping {{label number: name}} such as "
                        f"{{1: liver, 2: spleen}}; got {value.names!r}")
        value.names = None
    return value


# Option names ending so carry that unit (e.g. effective_half_life_s: '1 d' -> 86400).
_OPTION_UNITS = (("_s", "s"), ("_h", "h"), ("_mm", "mm"), ("_ml", "mL"), ("_bq", "Bq"))


def _option_numbers(options: dict, where: str, problems: list) -> dict:
    """Method options with numbers written as text ('3e0', '1e1', '1 d') parsed, as every other setting; text
    that is not a number (a choice such as 'moments') is passed on unchanged."""
    parsed = {}
    for key, value in options.items():
        if isinstance(value, str) and value.strip()[:1] in "+-.0123456789":
            unit = next((u for suffix, u in _OPTION_UNITS if str(key).endswith(suffix)), None)
            number = collect_number(value, problems, name=f"{where}.{key}", unit=unit)
            value = int(number) if isinstance(number, float) and number.is_integer() and unit is None else number
        parsed[key] = value
    return parsed


def _is_device_name(device) -> bool:
    """auto | cpu | cuda | cuda:N (whether the device exists is checked where it is used)."""
    name = str(device).strip().lower()
    return name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit())


def _known(data: dict, allowed: list, where: str, problems: list) -> dict:
    """`data` without unknown keys; each unknown key is appended to `problems` with the allowed ones."""
    unknown = sorted(set(data) - set(allowed), key=str)
    if unknown:
        problems.append(f"Unknown key(s) {unknown} in {where}; allowed: {sorted(allowed)} (see docs/PIPELINE.md)")
    return {key: value for key, value in data.items() if key in allowed}


def _one_of(value, choices) -> bool:
    return isinstance(value, str) and value in choices


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
