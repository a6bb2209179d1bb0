"""Pipeline tables: per-segment dose statistics with TIA, per-segment activity per timepoint, DVH CSV and plot."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

from VoxelDosimetryLib.voi import SegmentTable, plot_dvh, segment_statistics
from VoxelDosimetryLib.voi.label_names import default_label_name
from VoxelDosimetryLib.volume import Volume
from VoxelDosimetryLib.io.safe_write import atomic_output

BQ_S_PER_MBQ_H = 3.6e9


def segment_sums(concentration: Volume, labels_on_grid: Volume) -> dict[int, float]:
    """{label: sum of concentration x voxel volume} (Bq for Bq/mL, Bq*s for Bq*s/mL); labels on the same grid."""
    concentration.require_same_grid(labels_on_grid, "activity (or TIA) and label volumes")
    values = concentration.to_canonical_unit().array.astype(np.float64).reshape(-1) * concentration.voxel_volume_ml
    labels = labels_on_grid.array.reshape(-1).astype(np.int64)
    sums = np.bincount(labels, weights=values)
    return {int(label): float(sums[label]) for label in np.flatnonzero(np.bincount(labels)) if label > 0}


def dose_table(dose: Volume, labels: Volume, ct: Volume, names: dict[int, str], tia: Volume,
               labels_on_grid: Volume, dx_percent: Sequence[float], dx_cc: Sequence[float],
               vx_gy: Sequence[float]) -> SegmentTable:
    """segment_statistics on the dose grid, with each segment's TIA added as `tia_mbq_h` (MBq*h) after `mass_g`.

    `ct` is the reference CT at its own resolution: masses come from it exactly as `voxeldosimetry voi --ct`
    computes them (physics/voxel_mass.py), so both give the same numbers."""
    table = segment_statistics(dose, labels, ct=ct, names=names, dx_percent=dx_percent, dx_cc=dx_cc,
                               vx_gy=vx_gy)
    tia_sums = segment_sums(tia, labels_on_grid)
    rows = []
    for row in table.rows:
        out = {}
        for key, value in row.items():
            out[key] = value
            if key == "mass_g":
                out["tia_mbq_h"] = tia_sums[row["label"]] / BQ_S_PER_MBQ_H if row["label"] in tia_sums else None
        rows.append(out)
    table.rows = rows
    return table


def write_segment_activity(path: Path, activities: Sequence[Volume], times_h: Sequence[float], tia: Volume,
                           labels_on_grid: Volume, names: dict[int, str]) -> list[dict]:
    """CSV: one row per segment with its activity (MBq) at each timepoint and its TIA (MBq*h); returns rows."""
    per_time = [segment_sums(a, labels_on_grid) for a in activities]
    tia_sums = segment_sums(tia, labels_on_grid)
    rows = []
    for label in sorted(tia_sums):
        row = {"label": label, "name": names.get(label, default_label_name(label))}
        for t, sums in zip(times_h, per_time):
            row[f"activity_{t:g}h_mbq"] = sums.get(label, 0.0) / 1e6
        row["tia_mbq_h"] = tia_sums[label] / BQ_S_PER_MBQ_H
        rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["label", "name"] + [f"activity_{t:g}h_mbq" for t in times_h] + ["tia_mbq_h"]
    with atomic_output(path) as staged, open(staged, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def write_table_outputs(table: SegmentTable, csv_path: Path, json_path: Path, dvh_csv: Path, dvh_png: Path,
                        title: str) -> None:
    table.to_csv(csv_path)
    table.to_json(json_path)
    table.dvh_to_csv(dvh_csv)
    plot_dvh(table, dvh_png, title=title)
