"""The dose-method registry: the one place the CLI, the pipeline and the Slicer module learn which methods exist.

A method registers a `DoseMethod` (name, description, what it needs, a compute function and its options as
`DoseOption` schemas: name, type, default, allowed values, unit, help). Built-in methods register when
`VoxelDosimetryLib.dose` is imported; installed packages add methods through the `voxeldosimetry.dose_methods`
entry-point group, loaded on first use of the registry (docs/DOSE_METHODS.md).
"""
from __future__ import annotations

import difflib
import importlib.metadata
import types
from dataclasses import dataclass, field
from dataclasses import replace as _replace
from typing import Any, Callable, Optional

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError, UnitError, VoxelDosimetryError
from VoxelDosimetryLib.qc import qc_warn
from VoxelDosimetryLib.volume import Volume
from VoxelDosimetryLib.volume.numbers import parse_number
from VoxelDosimetryLib.volume.units import canonical_unit


class UnknownDoseMethodError(VoxelDosimetryError, KeyError):
    """The requested dose method is not registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass
class DoseRequest:
    """Inputs of one dose calculation.

    `source` is an activity concentration (Bq/mL → dose rate in Gy/s) or a TIA concentration (Bq·s/mL → dose in
    Gy) on the CT grid; `ct` is in HU. `histories`, `seed` and `device` matter only to stochastic/GPU methods.
    `max_negative_fraction`: the value policy's limit on negative activity (None: the default, 10 %).
    `options`: the method's options by name (its DoseOption schema); compute_dose converts and checks them and
    fills the defaults before the method sees them. `density`: the CT's density (g/cm³), made once by compute_dose's
    value policy; methods read it through density_volume() instead of converting the CT again.
    """

    source: Volume
    ct: Volume
    nuclide: str = "Lu-177"
    device: str = "auto"
    seed: int = 0
    histories: Optional[int] = None
    options: dict = field(default_factory=dict)
    max_negative_fraction: Optional[float] = None
    progress: Optional[Callable[[float, str], None]] = None
    cancel: Optional[Callable[[], bool]] = None
    density: Optional[Volume] = None

    def density_volume(self) -> Volume:
        """The CT's density (Schneider curve, g/cm³): the one compute_dose made, else made now (a direct call)."""
        if self.density is None:
            from VoxelDosimetryLib.physics import ct_to_density

            return ct_to_density(self.ct)
        return self.density

    def report(self, fraction: float, message: str) -> None:
        if self.progress is not None:
            self.progress(fraction, message)


@dataclass
class DoseResult:
    """Dose (Gy) or dose rate (Gy/s) on the CT grid, optional relative uncertainty, and run information."""

    dose: Volume
    uncertainty: Optional[Volume] = None
    info: dict = field(default_factory=dict)


OPTION_TYPES = ("str", "float", "int", "bool")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


@dataclass(frozen=True)
class DoseOption:
    """One option a dose method reads from DoseRequest.options: its schema, shown by the CLI, `info` and Slicer.

    type: "str" | "float" | "int" | "bool". default: the value used when the option is not given (None: no
    value; the method decides). choices: the allowed values (str choices are case-sensitive). unit: the unit of a
    number ("mm", "g/cm3"; "" for plain numbers); text with a compatible unit ('0.4 cm') is converted.
    minimum/maximum: inclusive bounds of a number.
    """

    name: str
    type: str
    default: Any
    choices: tuple = ()
    unit: str = ""
    help: str = ""
    minimum: Optional[float] = None
    maximum: Optional[float] = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise VoxelDosimetryError(f"A dose option name must be an identifier such as 'component'; got "
                                      f"{self.name!r}.")
        if self.type not in OPTION_TYPES:
            raise VoxelDosimetryError(f"Dose option {self.name!r}: type must be one of {OPTION_TYPES}; got "
                                      f"{self.type!r}.")
        object.__setattr__(self, "choices", tuple(self.choices))
        if self.default is not None:  # a default the option itself refuses is a programming error
            try:
                object.__setattr__(self, "default", self.convert(self.default))
            except InputFormatError as exc:
                raise VoxelDosimetryError(f"Dose option {self.name!r} has an invalid default: {exc}") from None

    @property
    def flag(self) -> str:
        """The command-line flag: '--track-length-photons' for track_length_photons."""
        return "--" + self.name.replace("_", "-")

    def allowed_text(self) -> str:
        """The allowed values in words: 'electron|total', 'true|false', 'a number >= 0 in g/cm3', 'text'."""
        if self.choices:
            return "|".join(str(c) for c in self.choices)
        if self.type == "bool":
            return "true|false"
        if self.type == "str":
            return "text"
        text = "a whole number" if self.type == "int" else "a number"
        bounds = ([f">= {self.minimum:g}"] if self.minimum is not None else []) + (
            [f"<= {self.maximum:g}"] if self.maximum is not None else [])
        if bounds:
            text += " " + " and ".join(bounds)
        return text + (f" in {self.unit}" if self.unit else "")

    def convert(self, value: Any, label: Optional[str] = None) -> Any:
        """`value` (native or text, e.g. '1e-1', '10 %', 'yes') as this option's type, checked against its choices
        and bounds; InputFormatError naming `label` (default: the option name), the value and what is allowed."""
        label = label or self.name
        if self.type == "bool":
            converted = _to_bool(value)
            if converted is None:
                raise InputFormatError(f"{label} must be true or false (also yes/no, 1/0); got {value!r}.")
        elif self.type in ("int", "float"):
            unit = _number_unit(self.unit)
            converted = parse_number(value, name=label, unit=unit, integer=self.type == "int",
                                     minimum=self.minimum, maximum=self.maximum,
                                     example=self._example() if self.choices else None)
        else:
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not self.choices:
                value = str(value)  # a YAML number given for a text option such as a file name
            if not isinstance(value, str):
                raise InputFormatError(f"{label} must be text ({self.allowed_text()}); got {value!r}.")
            converted = value
        if self.choices and converted not in self.choices:
            hint = ""
            if isinstance(converted, str):
                close = difflib.get_close_matches(converted, [str(c) for c in self.choices], n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
            allowed = ", ".join(repr(c) for c in self.choices)
            raise InputFormatError(f"{label} must be one of {allowed}; got {value!r}{hint}.")
        return converted

    def _example(self) -> str:
        return " or ".join(str(c) for c in self.choices[:2])

    def describe(self) -> dict:
        """JSON-able schema of this option."""
        return {"name": self.name, "flag": self.flag, "type": self.type, "default": self.default,
                "choices": list(self.choices), "unit": self.unit, "help": self.help, "minimum": self.minimum,
                "maximum": self.maximum, "allowed": self.allowed_text()}


def _to_bool(value: Any) -> Optional[bool]:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and int(value) in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def _number_unit(unit: str) -> Optional[str]:
    """The parse_number unit of an option: '1' for plain numbers (so '10 %' is 0.1), None for a unit the unit
    registry does not know (plain numbers only)."""
    if not unit:
        return "1"
    try:
        canonical_unit(unit)
    except UnitError:
        return None
    return unit


@dataclass(frozen=True)
class DoseMethod:
    """A registered dose method: its name, description, compute function and option schema (DoseOption tuple)."""

    name: str
    description: str
    compute: Callable[[DoseRequest], DoseResult]
    stochastic: bool = False
    provides_uncertainty: bool = False
    options: tuple = ()  # DoseOption per option compute() reads from DoseRequest.options; any other name is refused
    # state outside the request that the result depends on (e.g. the kernel files a kernel method may use): a short
    # text that changes when that state changes; the pipeline's step cache keys the dose step with it. Called with
    # the request's options when it takes an argument (files the options name), else with none.
    fingerprint: Optional[Callable[..., str]] = None

    def __post_init__(self) -> None:
        options = tuple(self.options)
        for option in options:
            if not isinstance(option, DoseOption):
                raise VoxelDosimetryError(f"Dose method {self.name!r}: options must be DoseOption instances "
                                          f"(name, type, default, ...); got {option!r}.")
        names = [option.name for option in options]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise VoxelDosimetryError(f"Dose method {self.name!r} declares option(s) {duplicates} twice.")
        object.__setattr__(self, "options", options)

    def state(self, options: Optional[dict] = None) -> Optional[str]:
        """The method's fingerprint for these options (None when it declares none)."""
        if self.fingerprint is None:
            return None
        import inspect

        try:
            takes_options = bool(inspect.signature(self.fingerprint).parameters)
        except (TypeError, ValueError):
            takes_options = False
        return self.fingerprint(dict(options or {})) if takes_options else self.fingerprint()

    @property
    def option_names(self) -> tuple:
        return tuple(option.name for option in self.options)

    def option(self, name: str) -> DoseOption:
        """The DoseOption called `name` (KeyError if this method has none)."""
        for option in self.options:
            if option.name == name:
                return option
        raise KeyError(name)

    def resolve_options(self, options: Optional[dict], where: str = "options") -> dict:
        """Every option of this method with its value: given values converted and checked, defaults filled.

        Unknown names, wrong types, values outside the choices or bounds: one InputFormatError naming each
        problem (option, value, what is allowed). `where` names the options in messages ("options",
        "dose.options"); "--" names them as command-line flags (--component).
        """
        options = {} if options is None else options
        if not isinstance(options, dict):
            raise InputFormatError(f"Dose method {self.name!r}: {where} must be a mapping of option names to "
                                   f"values; got {options!r}.")
        self.check_names(options, where)
        problems = []
        resolved = {}
        for option in self.options:
            if option.name not in options or (options[option.name] is None and option.default is None):
                resolved[option.name] = option.default  # None for an option without a default: not set
                continue
            label = option.flag if where == "--" else f"{where}.{option.name}"
            try:
                resolved[option.name] = option.convert(options[option.name], label)
            except InputFormatError as exc:
                problems.append(str(exc).rstrip("."))
        if problems:
            raise InputFormatError(f"Dose method {self.name!r}: " + "; ".join(problems) + ".")
        return resolved

    def check_names(self, options: dict, where: str = "options") -> None:
        """InputFormatError for option names this method does not know (a typo would otherwise be ignored)."""
        unknown = sorted(set(options) - set(self.option_names), key=str)
        if unknown:
            known = ", ".join(self.option_names) if self.options else "none"
            raise InputFormatError(f"Dose method {self.name!r} has no {where} {unknown}; its options: {known}.")

    def check_options(self, options: dict, where: str = "options") -> None:
        """resolve_options without the result: InputFormatError for unknown names or invalid values."""
        self.resolve_options(options, where)

    def describe(self) -> dict:
        """JSON-able description: name, description, stochastic, provides_uncertainty, options (list of dicts)."""
        return {"name": self.name, "description": self.description, "stochastic": self.stochastic,
                "provides_uncertainty": self.provides_uncertainty,
                "options": [option.describe() for option in self.options]}


_REGISTRY: dict[str, DoseMethod] = {}
ENTRY_POINT_GROUP = "voxeldosimetry.dose_methods"
_plugins_loaded = False


def register_dose_method(method: DoseMethod, replace: bool = False) -> DoseMethod:
    """Add `method`; re-registering a name needs replace=True (guards against two plug-ins colliding)."""
    if not isinstance(method, DoseMethod):
        raise VoxelDosimetryError(f"register_dose_method needs a DoseMethod; got {type(method).__name__}.")
    if method.name in _REGISTRY and not replace:
        raise VoxelDosimetryError(f"A dose method named {method.name!r} is already registered; "
                                  "choose another name or pass replace=True.")
    _REGISTRY[method.name] = method
    return method


def _entry_points() -> list:
    found = importlib.metadata.entry_points()
    if hasattr(found, "select"):  # Python 3.10+
        return list(found.select(group=ENTRY_POINT_GROUP))
    return list(found.get(ENTRY_POINT_GROUP, ()))  # Python 3.9: a dict of group -> entry points


def load_dose_method_plugins(force: bool = False) -> list[str]:
    """Load the `voxeldosimetry.dose_methods` entry points once (again with force=True); the names registered.

    An entry point loads to a DoseMethod, a callable returning one (or several, or None when it registers
    itself), or a module that registers its methods on import. A plug-in that fails is reported (QC warning
    `dose_plugin_failed`) and skipped: the built-in methods stay available.
    """
    global _plugins_loaded
    if _plugins_loaded and not force:
        return []
    _plugins_loaded = True  # before loading: a plug-in that uses the registry must not recurse
    before = set(_REGISTRY)
    try:
        entry_points = _entry_points()
    except Exception as exc:  # noqa: BLE001 - broken package metadata must not break the built-in methods
        qc_warn("dose_plugin_failed", f"The dose-method plug-ins ({ENTRY_POINT_GROUP} entry points) could not be "
                f"listed: {exc}. The built-in methods are available.", error=repr(exc))
        return []
    for entry_point in entry_points:
        try:
            _register_plugin(entry_point.load())
        except Exception as exc:  # noqa: BLE001 - one broken plug-in must not break the others
            qc_warn("dose_plugin_failed",
                    f"The dose-method plug-in {entry_point.name!r} ({entry_point.value}) failed to load and is "
                    f"skipped: {type(exc).__name__}: {exc}. The built-in methods are available; fix or uninstall "
                    "the plug-in package.", entry_point=entry_point.name, value=entry_point.value, error=repr(exc))
    return sorted(set(_REGISTRY) - before)


def _register_plugin(loaded: Any) -> None:
    if isinstance(loaded, types.ModuleType):
        return  # the module registered its methods when it was imported
    if not isinstance(loaded, DoseMethod) and callable(loaded):
        loaded = loaded()
    if loaded is None:
        return  # the callable registered its methods itself
    methods = list(loaded) if isinstance(loaded, (list, tuple)) else [loaded]
    if not all(isinstance(m, DoseMethod) for m in methods):
        raise VoxelDosimetryError(f"the entry point gave {loaded!r}, not a DoseMethod (or a callable returning one)")
    for method in methods:
        if _REGISTRY.get(method.name) is not method:  # a method that registered itself and is also returned
            register_dose_method(method)


def get_dose_method(name: str) -> DoseMethod:
    load_dose_method_plugins()
    if name not in _REGISTRY:
        raise UnknownDoseMethodError(f"Unknown dose method {name!r}; available: {', '.join(sorted(_REGISTRY))}.")
    return _REGISTRY[name]


def available_dose_methods() -> list[DoseMethod]:
    load_dose_method_plugins()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def compute_dose(method: str, request: DoseRequest) -> DoseResult:
    """Validate the request, apply the value policy to its source, run the named method and check its result.

    Every method, present and future, goes through here (dose/value_policy.py, docs/RELIABILITY.md): non-finite
    source or CT voxels are refused, small negative source voxels zeroed (QC warning), activity in air outside the
    body reported, and the result refused if it holds non-finite or negative values. The method's options are
    resolved first (DoseMethod.resolve_options: unknown names and invalid values refused, defaults filled); the
    method receives a copy of the request holding them, the caller's request is not changed.
    """
    from VoxelDosimetryLib.dose.value_policy import check_result, checked_request

    chosen = get_dose_method(method)
    request.source.require_quantity("activity_concentration", "tia_concentration")
    request.ct.require_quantity("ct")
    request.source.require_same_grid(request.ct, "activity (or TIA) and CT volumes")
    request = _replace(request, options=chosen.resolve_options(request.options))  # defaults filled
    checked, policy = checked_request(request)
    result = chosen.compute(checked)
    return check_result(result, checked, policy, chosen.name)
