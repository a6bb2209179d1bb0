"""HU -> mass density calibration curves: Schneider 2000 by default, or a user's scanner curve from a CSV file.

CSV format (docs/PHYSICS_DATA.md): two columns, HU and density in g/cm3, separated by a comma, semicolon, tab or
spaces; lines starting with '#' and blank lines are ignored; one header line (any non-numeric first row) is
optional. HU must be strictly increasing (at least 2 points); densities finite and > 0. Densities may decrease
between nodes (Schneider's own curve drops at 100/101 HU) unless `require_monotonic_density=True`.
Between nodes the curve is piecewise linear; outside them it holds the end values, with the count logged.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError, UnitError
from VoxelDosimetryLib.physics.plausibility import check_ct_plausible
from VoxelDosimetryLib.physics.schneider import (
    HURangeReport,
    SCHNEIDER_SOURCE,
    interpolate_density,
    schneider_density_table,
)
from VoxelDosimetryLib.volume.volume import Volume
from VoxelDosimetryLib.io.safe_write import write_text_atomic

_SPLIT = re.compile(r"[,;\t ]+")


class HUDensityCurve:
    """A validated, immutable piecewise-linear HU -> density (g/cm3) curve."""

    __slots__ = ("_hu", "_density", "name", "source")

    def __init__(self, hu: Sequence[float], density_g_cm3: Sequence[float], *, name: str = "custom",
                 source: str = "", require_monotonic_density: bool = False) -> None:
        h = np.array(hu, dtype=float).reshape(-1)
        d = np.array(density_g_cm3, dtype=float).reshape(-1)
        if h.size != d.size:
            raise InputFormatError(f"HU->density curve {name!r}: {h.size} HU values but {d.size} densities; give "
                                   "one density per HU value.")
        if h.size < 2:
            raise InputFormatError(f"HU->density curve {name!r} needs at least 2 points; got {h.size}.")
        for i in range(h.size):
            _check_point(h[i], d[i], h[i - 1] if i else None, d[i - 1] if i else None,
                         f"HU->density curve {name!r}, point {i + 1}", require_monotonic_density)
        h.setflags(write=False)
        d.setflags(write=False)
        object.__setattr__(self, "_hu", h)
        object.__setattr__(self, "_density", d)
        object.__setattr__(self, "name", str(name))
        object.__setattr__(self, "source", str(source))

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("HUDensityCurve is immutable; build a new one.")

    @property
    def hu(self) -> np.ndarray:
        return self._hu

    @property
    def density_g_cm3(self) -> np.ndarray:
        return self._density

    @property
    def hu_range(self) -> tuple[float, float]:
        return float(self._hu[0]), float(self._hu[-1])

    def __len__(self) -> int:
        return int(self._hu.size)

    def __repr__(self) -> str:
        return f"HUDensityCurve({self.name!r}, {len(self)} points, HU {self.hu_range[0]:g}..{self.hu_range[1]:g})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, HUDensityCurve) and np.array_equal(self._hu, other._hu)
                and np.array_equal(self._density, other._density))

    def __hash__(self) -> int:
        return hash((self._hu.tobytes(), self._density.tobytes()))

    # constructors ----------------------------------------------------------------------------------------
    @classmethod
    def schneider2000(cls) -> "HUDensityCurve":
        """Schneider et al. 2000 (Phys Med Biol 45:459) curve as shipped by GATE."""
        t = schneider_density_table()
        return cls(t.hu, t.density_g_cm3, name="schneider2000", source=SCHNEIDER_SOURCE)

    @classmethod
    def from_csv(cls, path: str | Path, *, require_monotonic_density: bool = False) -> "HUDensityCurve":
        """Read a two-column (HU, density g/cm3) CSV; errors name the file and line number."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise InputFormatError(f"Cannot read the HU->density calibration file {path}: {exc.strerror or exc}. "
                                   "Check the path.") from exc
        hu: list[float] = []
        rho: list[float] = []
        first_line_done = False
        for lineno, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            fields = [f for f in _SPLIT.split(line) if f]
            where = f"{path}, line {lineno}"
            if len(fields) != 2:
                if not first_line_done and not _numeric(fields[0]):
                    first_line_done = True  # a header such as "HU,density_g_cm3" (any width)
                    continue
                raise InputFormatError(f"{where}: expected two columns (HU, density g/cm3), found {len(fields)}: "
                                       f"{raw.strip()!r}.")
            if not (_numeric(fields[0]) and _numeric(fields[1])):
                if not first_line_done:
                    first_line_done = True  # header line
                    continue
                raise InputFormatError(f"{where}: {raw.strip()!r} is not two numbers (HU, density g/cm3). Only the "
                                       "first non-comment line may be a header; start comments with '#'.")
            first_line_done = True
            h, d = float(fields[0]), float(fields[1])
            _check_point(h, d, hu[-1] if hu else None, rho[-1] if rho else None, where, require_monotonic_density)
            hu.append(h)
            rho.append(d)
        if len(hu) < 2:
            raise InputFormatError(f"{path}: a HU->density calibration needs at least 2 points; found {len(hu)}. "
                                   "Give one 'HU, density' pair per line.")
        return cls(hu, rho, name=path.stem, source=str(path),
                   require_monotonic_density=require_monotonic_density)

    # use ------------------------------------------------------------------------------------------------------
    def __call__(self, hu: Any) -> np.ndarray:
        """Density (g/cm3, float64) at the given HU; out-of-range HU clamped, counted and logged."""
        return interpolate_density(hu, self._hu, self._density, what=f"HU->density ({self.name})")

    def evaluate(self, hu: Any) -> tuple[np.ndarray, HURangeReport]:
        """(density, HURangeReport) for the given HU."""
        return interpolate_density(hu, self._hu, self._density, what=f"HU->density ({self.name})",
                                   return_report=True)

    def to_csv(self, path: str | Path) -> Path:
        """Write the curve in the format from_csv() reads (with a '#' provenance line and a header)."""
        path = Path(path)
        lines = [f"# HU->density calibration curve {self.name!r}" + (f"; source: {self.source}" if self.source else ""),
                 "hu,density_g_cm3"]
        lines += [f"{h:.10g},{d:.10g}" for h, d in zip(self._hu, self._density)]
        return write_text_atomic(path, "\n".join(lines) + "\n")

    def to_dict(self) -> dict:
        return {"name": self.name, "source": self.source, "hu": self._hu.tolist(),
                "density_g_cm3": self._density.tolist()}


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_point(h: float, d: float, prev_h: float | None, prev_d: float | None, where: str,
                 require_monotonic_density: bool) -> None:
    if not np.isfinite(h) or not np.isfinite(d):
        raise InputFormatError(f"{where}: HU and density must be finite numbers; got HU={h}, density={d}.")
    if d <= 0:
        raise InputFormatError(f"{where}: density must be > 0 g/cm3; got {d}. Densities are in g/cm3 (water = 1.0); "
                               "use e.g. 0.0012 for air.")
    if prev_h is not None and h <= prev_h:
        raise InputFormatError(f"{where}: HU values must be strictly increasing; {h:g} follows {prev_h:g}. Sort the "
                               "rows by HU and remove duplicates.")
    if require_monotonic_density and prev_d is not None and d < prev_d:
        raise InputFormatError(f"{where}: density {d:g} g/cm3 is below the previous point's {prev_d:g} g/cm3, but a "
                               "monotonic curve was required (require_monotonic_density=True).")


def ct_to_density(ct_volume: Volume, curve: HUDensityCurve | None = None) -> Volume:
    """Mass density volume (quantity 'density', g/cm3, float32) from a CT volume in HU.

    `curve` defaults to Schneider 2000. The output metadata records the curve name and how many voxels were
    outside the curve's HU range ('hu_below_range_voxels', 'hu_above_range_voxels'). The input is not modified.
    QC warnings: `ct_looks_like_activity` (physics/plausibility.py), `ct_hu_clamped` (physics/schneider.py).
    """
    if not isinstance(ct_volume, Volume):
        raise TypeError(f"ct_to_density needs a Volume; got {type(ct_volume).__name__}.")
    if ct_volume.quantity != "ct":
        hint = (" It already holds densities: use it directly." if ct_volume.quantity == "density" else
                " Load the CT with quantity 'ct' (unit HU), e.g. Volume(..., quantity='ct') or "
                "volume.replace(quantity='ct', unit='HU') if the values really are Hounsfield units.")
        raise UnitError(f"ct_to_density needs a CT volume (quantity 'ct', unit HU); got quantity "
                        f"{ct_volume.quantity!r} ({ct_volume.unit}).{hint}")
    if ct_volume.unit != "HU":  # pragma: no cover - 'ct' only admits HU today
        ct_volume = ct_volume.to_unit("HU")
    curve = HUDensityCurve.schneider2000() if curve is None else curve
    if not isinstance(curve, HUDensityCurve):
        raise TypeError("curve must be a HUDensityCurve (HUDensityCurve.from_csv(path) or .schneider2000()).")
    check_ct_plausible(ct_volume)  # QC warning when the "CT" looks like an activity map
    density, report = curve.evaluate(ct_volume.array)
    out = ct_volume.with_array(density.astype(np.float32), quantity="density", unit="g/cm3")
    meta = dict(out.metadata)
    meta.update({"density_curve": curve.name, "density_curve_source": curve.source,
                 "hu_below_range_voxels": report.n_below, "hu_above_range_voxels": report.n_above})
    return out.replace(metadata=meta)
