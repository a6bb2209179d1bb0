"""Dose methods and their registry (importing this package registers the built-in methods)."""
from __future__ import annotations

from VoxelDosimetryLib.dose.registry import (
    ENTRY_POINT_GROUP, OPTION_TYPES, DoseMethod, DoseOption, DoseRequest, DoseResult, UnknownDoseMethodError,
    available_dose_methods, compute_dose, get_dose_method, load_dose_method_plugins, register_dose_method,
)
from VoxelDosimetryLib.dose import kernel_methods, led, monte_carlo  # noqa: F401  (register the built-in methods)

__all__ = ["ENTRY_POINT_GROUP", "OPTION_TYPES", "DoseMethod", "DoseOption", "DoseRequest", "DoseResult",
           "UnknownDoseMethodError", "available_dose_methods", "compute_dose", "get_dose_method",
           "load_dose_method_plugins", "register_dose_method"]
