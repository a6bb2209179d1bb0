"""SegmentTable: per-segment rows plus DVHs, written as CSV, JSON, a long-format DVH CSV or aligned text."""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from VoxelDosimetryLib.voi.dvh import DVH
from VoxelDosimetryLib.io.safe_write import atomic_output, write_text_atomic

DEFAULT_DVH_SAMPLES = 200


def dose_suffix(quantity: str) -> str:
    """Column-name suffix for the dose quantity: 'gy' (dose) or 'gy_per_s' (dose rate)."""
    return "gy_per_s" if quantity == "dose_rate" else "gy"


def _plain(value: Any) -> Any:
    """A JSON/CSV-safe value: numpy scalars to Python, non-finite floats to None (never NaN in outputs)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class SegmentTable:
    """Rows (one dict per segment, keys = columns), DVHs by label, the dose quantity/unit and provenance."""

    rows: list[dict]
    dvhs: dict[int, DVH]
    quantity: str = "dose"
    unit: str = "Gy"
    metadata: dict = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        names: list[str] = []
        for row in self.rows:
            names.extend(k for k in row if k not in names)
        return names

    def row(self, label: int) -> dict:
        """The row of one label value; KeyError when the table has none."""
        for row in self.rows:
            if row["label"] == int(label):
                return row
        raise KeyError(f"label {label} is not in the table")

    def names(self) -> dict[int, str]:
        return {row["label"]: row["name"] for row in self.rows}

    # ---------------------------------------------------------------------------------------------- outputs
    def to_csv(self, path: str | Path) -> Path:
        """One row per segment; empty cells where a value is undefined."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        columns = self.columns
        with atomic_output(path) as staged, open(staged, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            for row in self.rows:
                writer.writerow(["" if _plain(row.get(c)) is None else _plain(row.get(c)) for c in columns])
        return path

    def to_dict(self) -> dict:
        return {"quantity": self.quantity, "unit": self.unit, "columns": self.columns,
                "rows": [{k: _plain(v) for k, v in row.items()} for row in self.rows],
                "metadata": json.loads(json.dumps(self.metadata, default=str))}

    def to_json_text(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, self.to_json_text() + "\n")
        return path

    def dvh_dose_points(self, samples: int = DEFAULT_DVH_SAMPLES) -> np.ndarray:
        """A dose axis common to every DVH: `samples` + 1 points from min(0, lowest value) to the highest value."""
        if not self.dvhs:
            return np.zeros(1)
        low = min(0.0, min(float(d.knot_doses[0]) for d in self.dvhs.values()))
        high = max(d.max_dose for d in self.dvhs.values())
        return np.linspace(low, high if high > low else low + 1.0, int(samples) + 1)

    def dvh_to_csv(self, path: str | Path, samples: int = DEFAULT_DVH_SAMPLES) -> Path:
        """Long-format DVH table: one row per segment and dose point, on one dose axis shared by all segments.

        Columns: label, name, dose_<unit> (bin lower edge), cumulative_volume_ml / _pct (volume receiving >= the
        dose), differential_volume_ml / _pct (volume in [this dose, next dose); the last point holds everything
        at or above it). Segments without voxels on the dose grid have no DVH and no rows.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        dose_column = ("dose_rate_" if self.quantity == "dose_rate" else "dose_") + dose_suffix(self.quantity)
        points = self.dvh_dose_points(samples)
        names = self.names()
        with atomic_output(path) as staged, open(staged, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["label", "name", dose_column, "cumulative_volume_ml", "cumulative_volume_pct",
                             "differential_volume_ml", "differential_volume_pct"])
            for label in sorted(self.dvhs):
                table = self.dvhs[label].tabulate(points)
                for i in range(points.size):
                    writer.writerow([label, names.get(label, ""), repr(float(table["dose"][i])),
                                     repr(float(table["cumulative_ml"][i])), repr(float(table["cumulative_pct"][i])),
                                     repr(float(table["differential_ml"][i])),
                                     repr(float(table["differential_pct"][i]))])
        return path

    def to_text(self, columns: list[str] | None = None) -> str:
        """The table as aligned text (4 significant digits), for the terminal."""
        columns = columns or self.columns

        def cell(value: Any) -> str:
            value = _plain(value)
            if value is None:
                return "-"
            if isinstance(value, float):
                return f"{value:.4g}"
            return str(value)

        cells = [[cell(row.get(c)) for c in columns] for row in self.rows]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
        for r in cells:
            lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
        return "\n".join(lines)
