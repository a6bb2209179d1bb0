"""Schneider et al. 2000 (Phys Med Biol 45:459) HU -> density and HU -> tissue composition, as shipped by GATE.

The tables live in `physics/data/schneider2000_densities.csv` and `schneider2000_materials.csv` (numbers from
opengate/data/Schneider2000{Densities,Materials}Table.txt; see docs/PHYSICS_DATA.md).

Out-of-range policy (no silent clipping): values outside the table are clamped to the table ends, counted, and
logged through the `logging` module at INFO. HU below the lowest node are routine (air at -1024 HU, scanner
padding at -3024 HU); HU above the highest node (metal, contrast, reconstruction artefacts) get the end density
because the curve is not extrapolated, and the HU->density conversion reports them as the QC warning
`ct_hu_clamped` (VoxelDosimetryLib.qc). Non-finite HU raise InputFormatError.
Call with `return_report=True` to get the counts as an HURangeReport.
"""
from __future__ import annotations

import csv
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.qc import qc_warn

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent / "data"
DENSITIES_FILE = DATA_DIR / "schneider2000_densities.csv"
MATERIALS_FILE = DATA_DIR / "schneider2000_materials.csv"
SCHNEIDER_SOURCE = "Schneider, Bortfeld & Schlegel 2000, Phys Med Biol 45:459 (tables as distributed with GATE)"


@dataclass(frozen=True)
class HURangeReport:
    """How many values fell outside a table's [low, high] range and were clamped to its ends."""

    n_values: int
    n_below: int
    n_above: int
    low: float
    high: float
    min_value: float | None
    max_value: float | None

    @property
    def n_out_of_range(self) -> int:
        return self.n_below + self.n_above

    def to_dict(self) -> dict[str, Any]:
        return {"n_values": self.n_values, "n_below_range": self.n_below, "n_above_range": self.n_above,
                "range": [self.low, self.high], "min_value": self.min_value, "max_value": self.max_value}


def range_report(values: np.ndarray, low: float, high: float, *, high_inclusive: bool = True) -> HURangeReport:
    """Count values below `low` and above `high` (or >= high when high_inclusive is False)."""
    v = np.asarray(values)
    above = (v > high) if high_inclusive else (v >= high)
    return HURangeReport(n_values=int(v.size), n_below=int(np.count_nonzero(v < low)),
                         n_above=int(np.count_nonzero(above)), low=float(low), high=float(high),
                         min_value=float(v.min()) if v.size else None, max_value=float(v.max()) if v.size else None)


def log_range_report(report: HURangeReport, what: str) -> None:
    """Log clamped values at INFO. The user-facing warning for densities above the table is the QC warning
    `ct_hu_clamped` (warn_hu_clamped); composition bins above the table are metal anyway."""
    if report.n_below:
        logger.info("%s: %d of %d values below the table start %.6g (lowest %.6g) were clamped to it.", what,
                    report.n_below, report.n_values, report.low, report.min_value)
    if report.n_above:
        logger.info("%s: %d of %d values beyond the table end %.6g (highest %.6g) were clamped to it; the table "
                    "is not extrapolated (metal or artefacts?).", what, report.n_above, report.n_values,
                    report.high, report.max_value)


def check_finite(values: np.ndarray, what: str) -> np.ndarray:
    """`values` as a float array; InputFormatError when any value is NaN or infinite."""
    arr = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise InputFormatError(f"{what}: {bad} of {arr.size} values are NaN or infinite. Replace them first "
                               "(e.g. with -1000 HU for air outside the body) before converting.")
    return arr


def interpolate_density(hu: Any, nodes_hu: np.ndarray, nodes_density: np.ndarray, *, what: str = "HU->density",
                        return_report: bool = False):
    """Piecewise-linear HU -> density through the given nodes, clamped (counted and logged) outside them."""
    arr = check_finite(hu, what)
    report = range_report(arr, float(nodes_hu[0]), float(nodes_hu[-1]))
    log_range_report(report, what)
    warn_hu_clamped(report, float(nodes_density[-1]))
    density = np.interp(arr, nodes_hu, nodes_density)  # np.interp holds the end values outside the nodes
    return (density, report) if return_report else density


def warn_hu_clamped(report: HURangeReport, top_density: float) -> None:
    """QC warning `ct_hu_clamped` when CT values above the curve's end were given its end density.

    Only the high end warns: HU below the first node (air at -1024 HU, scanner padding at -3024 HU) are air, and
    the clamped air density is right for them. Above it (metal, contrast, artefacts) the density is underestimated.
    """
    if not report.n_above:
        return
    n = max(report.n_values, 1)
    qc_warn("ct_hu_clamped",
            f"{100 * report.n_above / n:.3g} % of the CT voxels ({report.n_above} of {report.n_values}) lie above "
            f"{report.high:g} HU (highest {report.max_value:g} HU), the end of the HU->density curve, and were given "
            f"its end density {top_density:g} g/cm3 (the curve is not extrapolated). Check the CT there for metal, "
            "contrast or artefacts; masses and doses in those voxels are less reliable.",
            n_voxels=report.n_values, n_above=report.n_above, n_below=report.n_below,
            fraction_above=report.n_above / n, fraction_below=report.n_below / n,
            hu_range=[report.low, report.high], min_hu=report.min_value, max_hu=report.max_value,
            end_density_g_cm3=top_density)


# ------------------------------------------------------------------------------------------------ tables
def _read_csv_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [row for row in csv.reader(line for line in fh if line.strip() and not line.lstrip().startswith("#"))]


@dataclass(frozen=True, eq=False)
class DensityTable:
    """Schneider HU -> density nodes (piecewise-linear). Arrays are read-only."""

    hu: np.ndarray
    density_g_cm3: np.ndarray
    source: str = SCHNEIDER_SOURCE


@dataclass(frozen=True, eq=False)
class CompositionTable:
    """Schneider composition bins: bin i covers [hu_low[i], hu_high[i]); mass_percent[i, j] for elements[j].

    27 rows: Air, Lung, 5 adipose/adrenal/small-intestine mixtures, soft tissue, connective tissue, 15
    marrow/bone mixtures, dental amalgam, titanium implants, and the closing MetallImplants row [3000, 3001).
    """

    hu_low: np.ndarray
    hu_high: np.ndarray
    elements: tuple[str, ...]
    mass_percent: np.ndarray
    names: tuple[str, ...]
    source: str = SCHNEIDER_SOURCE

    def __len__(self) -> int:
        return len(self.names)

    def mass_fractions(self, index: int) -> dict[str, float]:
        """Non-zero elemental mass fractions of bin `index`, renormalised to sum to 1."""
        w = self.mass_percent[index]
        total = float(w.sum())
        return {el: float(v) / total for el, v in zip(self.elements, w) if v > 0}


@functools.lru_cache(maxsize=1)
def schneider_density_table() -> DensityTable:
    """The Schneider 2000 HU -> density nodes (9 nodes, -1000..3000 HU)."""
    rows = _read_csv_rows(DENSITIES_FILE)
    data = np.array([[float(a), float(b)] for a, b in rows[1:]])  # rows[0] is the header
    hu, rho = data[:, 0].copy(), data[:, 1].copy()
    hu.setflags(write=False)
    rho.setflags(write=False)
    return DensityTable(hu, rho)


@functools.lru_cache(maxsize=1)
def schneider_composition_table() -> CompositionTable:
    """The Schneider 2000 composition bins (27 rows, lower bounds -1050..3000 HU)."""
    rows = _read_csv_rows(MATERIALS_FILE)
    header = rows[0]
    elements = tuple(header[1:-1])
    hu_low = np.array([float(r[0]) for r in rows[1:]])
    percent = np.array([[float(v) for v in r[1:-1]] for r in rows[1:]])
    names = tuple(r[-1].strip() for r in rows[1:])
    hu_high = np.append(hu_low[1:], hu_low[-1] + 1.0)  # the last bin spans [HU, HU+1)
    for a in (hu_low, hu_high, percent):
        a.setflags(write=False)
    return CompositionTable(hu_low, hu_high, elements, percent, names)


# ------------------------------------------------------------------------------------------ conversions
def hu_to_density(hu: Any, *, return_report: bool = False):
    """Schneider 2000 HU -> mass density (g/cm3), vectorised, float64; input is not modified.

    Piecewise-linear through the nodes (-1000 HU: 0.00121 ... 100 HU: 1.1199, 101 HU: 1.0762 ... 3000 HU: 2.8).
    Values outside [-1000, 3000] HU take the end densities (air, 2.8 g/cm3); they are counted and logged (see
    the module docstring). With return_report=True returns (density, HURangeReport).
    """
    t = schneider_density_table()
    return interpolate_density(hu, t.hu, t.density_g_cm3, what="Schneider HU->density",
                               return_report=return_report)


def composition_bin(hu: Any, *, return_report: bool = False):
    """Index (int16) of the Schneider composition bin holding each HU value (bin i = [hu_low[i], hu_high[i])).

    HU below -1050 go to Air (bin 0); HU >= 3001 go to the last bin (titanium); both are counted and logged.
    """
    t = schneider_composition_table()
    arr = check_finite(hu, "Schneider composition bin")
    report = range_report(arr, float(t.hu_low[0]), float(t.hu_high[-1]), high_inclusive=False)
    log_range_report(report, "Schneider composition bin")
    idx = np.clip(np.searchsorted(t.hu_low, arr, side="right") - 1, 0, len(t) - 1).astype(np.int16)
    return (idx, report) if return_report else idx
