"""Dose methods and their registry (importing this package registers the built-in methods)."""
from __future__ import annotations

from VoxelDosimetryLib.dose.registry import (
    DoseMethod, DoseRequest, DoseResult, UnknownDoseMethodError, available_dose_methods, compute_dose,
    get_dose_method, register_dose_method,
)
from VoxelDosimetryLib.dose import led, monte_carlo  # noqa: F401  (register "led" and "mc")

__all__ = ["DoseMethod", "DoseRequest", "DoseResult", "UnknownDoseMethodError", "available_dose_methods",
           "compute_dose", "get_dose_method", "register_dose_method"]
