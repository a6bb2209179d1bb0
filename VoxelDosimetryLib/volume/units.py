"""Quantities and units carried by every Volume.

A quantity names what the voxels hold; each quantity has one canonical SI unit used inside the library
(DESIGN.md "Data model and units"). Other spellings and scaled units (MBq/mL, mGy, h) convert to it.
"""
from __future__ import annotations

from dataclasses import dataclass

from VoxelDosimetryLib.errors import UnitError


@dataclass(frozen=True)
class Quantity:
    name: str
    unit: str  # canonical unit inside the library
    description: str
    is_label: bool = False


QUANTITIES: dict[str, Quantity] = {
    q.name: q
    for q in (
        Quantity("ct", "HU", "CT number (Hounsfield units)"),
        Quantity("density", "g/cm3", "mass density"),
        Quantity("counts", "counts", "detected counts per voxel (uncalibrated SPECT)"),
        Quantity("activity_concentration", "Bq/mL", "activity concentration"),
        Quantity("activity", "Bq", "activity per voxel"),
        Quantity("tia_concentration", "Bq*s/mL", "time-integrated activity concentration"),
        Quantity("tia", "Bq*s", "time-integrated activity per voxel (number of decays)"),
        Quantity("dose_rate", "Gy/s", "absorbed dose rate"),
        Quantity("dose", "Gy", "absorbed dose"),
        Quantity("dose_per_decay", "Gy/(Bq*s)", "absorbed dose per decay (voxel S-value kernel)"),
        Quantity("energy_deposited", "MeV", "energy deposited per voxel"),
        Quantity("relative_uncertainty", "1", "relative statistical uncertainty (fraction, 1 sigma)"),
        Quantity("relative_error", "1", "signed relative difference of a test map from a reference (fraction)"),
        Quantity("labels", "label", "integer segment labels", is_label=True),
        Quantity("media", "label", "medium index per voxel", is_label=True),
        Quantity("mask", "label", "binary mask", is_label=True),
        Quantity("unknown", "unknown", "values of unstated meaning (read from a file without unit metadata)"),
    )
}

# unit spelling -> (canonical unit, factor to canonical)
_UNIT_FACTORS: dict[str, tuple[str, float]] = {
    "HU": ("HU", 1.0),
    "g/cm3": ("g/cm3", 1.0), "g/cm^3": ("g/cm3", 1.0), "g/ml": ("g/cm3", 1.0), "g/mL": ("g/cm3", 1.0),
    "kg/m3": ("g/cm3", 1e-3), "kg/m^3": ("g/cm3", 1e-3), "mg/cm3": ("g/cm3", 1e-3),
    "counts": ("counts", 1.0),
    "Bq/mL": ("Bq/mL", 1.0), "Bq/ml": ("Bq/mL", 1.0), "BQML": ("Bq/mL", 1.0), "Bq/cm3": ("Bq/mL", 1.0),
    "kBq/mL": ("Bq/mL", 1e3), "kBq/ml": ("Bq/mL", 1e3), "MBq/mL": ("Bq/mL", 1e6), "MBq/ml": ("Bq/mL", 1e6),
    "Bq": ("Bq", 1.0), "kBq": ("Bq", 1e3), "MBq": ("Bq", 1e6), "GBq": ("Bq", 1e9),
    "Bq*s/mL": ("Bq*s/mL", 1.0), "Bq.s/mL": ("Bq*s/mL", 1.0), "Bq s/mL": ("Bq*s/mL", 1.0),
    "Bq*h/mL": ("Bq*s/mL", 3600.0), "MBq*h/mL": ("Bq*s/mL", 3.6e9), "MBq*s/mL": ("Bq*s/mL", 1e6),
    "Bq*s": ("Bq*s", 1.0), "Bq.s": ("Bq*s", 1.0), "MBq*s": ("Bq*s", 1e6), "MBq*h": ("Bq*s", 3.6e9),
    "Gy/s": ("Gy/s", 1.0), "mGy/s": ("Gy/s", 1e-3), "Gy/h": ("Gy/s", 1 / 3600.0), "mGy/h": ("Gy/s", 1e-3 / 3600.0),
    "Gy": ("Gy", 1.0), "mGy": ("Gy", 1e-3), "cGy": ("Gy", 1e-2),
    "Gy/(Bq*s)": ("Gy/(Bq*s)", 1.0), "mGy/(MBq*s)": ("Gy/(Bq*s)", 1e-9), "mGy/MBq/s": ("Gy/(Bq*s)", 1e-9),
    "MeV": ("MeV", 1.0), "keV": ("MeV", 1e-3), "J": ("MeV", 1.0 / 1.602176634e-13),
    "1": ("1", 1.0), "fraction": ("1", 1.0), "%": ("1", 1e-2),
    "label": ("label", 1.0),
    "unknown": ("unknown", 1.0),
    # settings only (times, lengths, volumes): no voxel quantity uses them
    "s": ("s", 1.0), "min": ("s", 60.0), "h": ("s", 3600.0), "d": ("s", 86400.0),
    "mm": ("mm", 1.0), "cm": ("mm", 10.0), "m": ("mm", 1000.0),
    "mL": ("mL", 1.0), "ml": ("mL", 1.0), "cc": ("mL", 1.0), "cm3": ("mL", 1.0), "L": ("mL", 1000.0),
}


def canonical_unit(unit: str) -> tuple[str, float]:
    """Return (canonical unit, factor) so that value_in_canonical = value * factor."""
    key = unit.strip()
    if key in _UNIT_FACTORS:
        return _UNIT_FACTORS[key]
    raise UnitError(
        f"Unknown unit {unit!r}. Use one of: {', '.join(sorted(_UNIT_FACTORS))}."
    )


def get_quantity(name: str) -> Quantity:
    """Look up a quantity by name (see QUANTITIES)."""
    if name not in QUANTITIES:
        raise UnitError(f"Unknown quantity {name!r}. Use one of: {', '.join(QUANTITIES)}.")
    return QUANTITIES[name]


def conversion_factor(from_unit: str, to_unit: str) -> float:
    """Factor f with value_in_to_unit = value_in_from_unit * f; raises UnitError when incompatible."""
    base_from, f_from = canonical_unit(from_unit)
    base_to, f_to = canonical_unit(to_unit)
    if base_from != base_to:
        raise UnitError(f"Cannot convert {from_unit!r} to {to_unit!r}: they measure different things "
                        f"({base_from} vs {base_to}).")
    return f_from / f_to


def check_unit_for_quantity(quantity: str, unit: str) -> None:
    """Raise UnitError when `unit` cannot express `quantity`."""
    q = get_quantity(quantity)
    base, _ = canonical_unit(unit)
    if q.name == "unknown":
        return
    if base != q.unit:
        raise UnitError(f"Unit {unit!r} does not fit quantity {quantity!r} (expects {q.unit} or a scaled form of it).")


def guess_quantity_for_unit(unit: str) -> str:
    """The quantity whose canonical unit matches `unit` ('unknown' when ambiguous or unknown)."""
    try:
        base, _ = canonical_unit(unit)
    except UnitError:
        return "unknown"
    matches = [q.name for q in QUANTITIES.values() if q.unit == base and not q.is_label]
    return matches[0] if len(matches) == 1 else "unknown"
