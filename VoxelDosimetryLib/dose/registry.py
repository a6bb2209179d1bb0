"""The dose-method registry: the one place the CLI, the pipeline and the Slicer module learn which methods exist.

A method registers a `DoseMethod` (name, description, what it needs, and a compute function). Built-in methods
register when `VoxelDosimetryLib.dose` is imported; network bundles and plug-ins register the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from VoxelDosimetryLib.errors import InputFormatError, VoxelDosimetryError
from VoxelDosimetryLib.volume import Volume


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

    def report(self, fraction: float, message: str) -> None:
        if self.progress is not None:
            self.progress(fraction, message)


@dataclass
class DoseResult:
    """Dose (Gy) or dose rate (Gy/s) on the CT grid, optional relative uncertainty, and run information."""

    dose: Volume
    uncertainty: Optional[Volume] = None
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DoseMethod:
    name: str
    description: str
    compute: Callable[[DoseRequest], DoseResult]
    stochastic: bool = False
    provides_uncertainty: bool = False
    options: tuple = ()  # the option names compute() reads from DoseRequest.options; any other name is refused

    def check_options(self, options: dict, where: str = "options") -> None:
        """InputFormatError for option names this method does not know (a typo would otherwise be ignored)."""
        unknown = sorted(set(options) - set(self.options), key=str)
        if unknown:
            known = ", ".join(self.options) if self.options else "none"
            raise InputFormatError(f"Dose method {self.name!r} has no {where} {unknown}; its options: {known}.")


_REGISTRY: dict[str, DoseMethod] = {}


def register_dose_method(method: DoseMethod, replace: bool = False) -> DoseMethod:
    """Add `method`; re-registering a name needs replace=True (guards against two plug-ins colliding)."""
    if method.name in _REGISTRY and not replace:
        raise VoxelDosimetryError(f"A dose method named {method.name!r} is already registered; "
                                  "choose another name or pass replace=True.")
    _REGISTRY[method.name] = method
    return method


def get_dose_method(name: str) -> DoseMethod:
    if name not in _REGISTRY:
        raise UnknownDoseMethodError(f"Unknown dose method {name!r}; available: {', '.join(sorted(_REGISTRY))}.")
    return _REGISTRY[name]


def available_dose_methods() -> list[DoseMethod]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def compute_dose(method: str, request: DoseRequest) -> DoseResult:
    """Validate the request, apply the value policy to its source, run the named method and check its result.

    Every method, present and future, goes through here (dose/value_policy.py, docs/RELIABILITY.md): non-finite
    source or CT voxels are refused, small negative source voxels zeroed (QC warning), activity in air outside the
    body reported, and the result refused if it holds non-finite or negative values.
    """
    from VoxelDosimetryLib.dose.value_policy import check_result, checked_request

    chosen = get_dose_method(method)
    request.source.require_quantity("activity_concentration", "tia_concentration")
    request.ct.require_quantity("ct")
    request.source.require_same_grid(request.ct, "activity (or TIA) and CT volumes")
    chosen.check_options(request.options)
    checked, policy = checked_request(request)
    result = chosen.compute(checked)
    return check_result(result, checked, policy, chosen.name)
