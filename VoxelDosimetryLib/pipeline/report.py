"""report.md of a pipeline run: inputs, steps with times, TIA per segment, segment dose table, DVH, warnings."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from VoxelDosimetryLib import __version__
from VoxelDosimetryLib.io.safe_write import write_text_atomic

DOSE_COLUMNS = (("name", "segment"), ("volume_ml", "volume (mL)"), ("mass_g", "mass (g)"),
                ("tia_mbq_h", "TIA (MBq·h)"), ("mean_gy", "mean (Gy)"), ("median_gy", "median (Gy)"),
                ("d90_gy", "D90 (Gy)"), ("d10_gy", "D10 (Gy)"), ("max_gy", "max (Gy)"))


def _number(value) -> str:
    if value in (None, ""):
        return "–"
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    if isinstance(value, (int, float)):
        return f"{value:.4g}"
    return str(value)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_number(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return lines + [""]


def _inputs(config, records: dict) -> list[str]:
    lines = ["## Inputs", "", f"- case: `{config.case_id}`, nuclide {config.nuclide}"
             + (f", administered {config.administered_activity_bq / 1e6:.6g} MBq"
                if config.administered_activity_bq else ""),
             f"- reference CT: `{config.resolve(config.ct)}`"]
    if config.segments.labels:
        lines.append(f"- labels: `{config.resolve(config.segments.labels)}`")
    lines += [f"- {key}: {value}" for key, value in sorted(config.notes.items())]
    lines.append("")
    rows = []
    for tp in config.timepoints:
        tag = f"{float(tp.time_h):g}h"
        info = records.get(f"activity_{tag}", {}).get("info", {})
        rows.append([f"{float(tp.time_h):g}", f"`{Path(str(config.resolve(tp.spect))).name}`",
                     f"`{Path(str(config.resolve(tp.ct))).name}`" if tp.ct else "reference CT",
                     info.get("spect_quantity", "?"), "; ".join(info.get("calibration", [])[:2]),
                     info.get("total_native_bq", 0.0) / 1e6, info.get("total_on_dose_grid_bq", 0.0) / 1e6])
    lines += _table(["time (h)", "SPECT", "CT", "holds", "calibration", "total (MBq)", "on dose grid (MBq)"], rows)
    grid = records.get("dose_grid", {}).get("info", {}).get("grid", {})
    lines += [f"Settings: registration `{config.registration.kind}`, dose grid `{config.dose_grid}` "
              f"({'x'.join(str(n) for n in grid.get('shape_zyx', []))} voxels (z, y, x) of "
              f"{'x'.join(f'{s:.3g}' for s in grid.get('spacing_mm', []))} mm), time integration "
              f"`{config.model_for_run()}`, dose method `{config.dose.method}`, order `{config.dose.order}`"
              + (f", {config.dose.histories} histories" if config.dose.histories else "") + ".", ""]
    return lines


def _registration(records: dict) -> list[str]:
    rows = []
    for name, record in records.items():
        if name.startswith("register_"):
            quality, transform = record["info"].get("quality", {}), record["info"].get("transform", {})
            offset = transform.get("translation_mm") or transform.get("offset_mm") or []
            rows.append([name[len("register_"):], ", ".join(f"{v:.2f}" for v in offset),
                         quality.get("dice_body_before"), quality.get("dice_body_after")])
    if not rows:
        return []
    return ["## Registration", ""] + _table(["timepoint", "translation (mm, x y z)", "body Dice before",
                                             "body Dice after"], rows)


def _steps(records: dict, total: float | None) -> list[str]:
    rows = [[name, record["status"], record["elapsed_s"]] for name, record in records.items()]
    lines = ["## Steps", ""] + _table(["step", "status", "time (s)"], rows)
    if total is not None:
        lines.insert(-1, f"| total |  | {total:.4g} |")
    return lines


def _tia(activity_rows: list[dict], truth: dict) -> list[str]:
    if not activity_rows:
        return []
    time_columns = [c for c in activity_rows[0] if c.startswith("activity_")]
    header = ["segment"] + [c[len("activity_"):-len("_mbq")] + " (MBq)" for c in time_columns] + ["TIA (MBq·h)"]
    with_truth = any(row["name"] in truth for row in activity_rows)
    if with_truth:
        header += ["true TIA (MBq·h)", "difference (%)"]
    rows = []
    for row in activity_rows:
        tia = float(row["tia_mbq_h"])
        cells = [row["name"]] + [float(row[c]) for c in time_columns] + [tia]
        if with_truth:
            true = truth.get(row["name"])
            cells += [true / 3.6e9 if true else None,
                      100.0 * (tia * 3.6e9 - true) / true if true else None]
        rows.append(cells)
    return ["## Time-integrated activity per segment", ""] + _table(header, rows)


def _doses(rows: list[dict]) -> list[str]:
    shown = [r for r in rows if r.get("voxels")]
    body = [[r.get(key) if key != "name" else str(r.get(key)) for key, _ in DOSE_COLUMNS] for r in shown]
    lines = ["## Absorbed dose per segment", "", "Mean dose is mass-weighted (Kim et al. 2023, Eq. 2); full table: "
             "`tables/segments.csv`.", ""] + _table([title for _, title in DOSE_COLUMNS], body)
    empty = [r["name"] for r in rows if not r.get("voxels")]
    if empty:
        lines.insert(-1, f"Segments without voxels on the dose grid: {', '.join(empty)}.")
    return lines


def write_report(path: Path, config, records: dict, result, activity_rows: list[dict]) -> Path:
    """Write the Markdown report of a run (relative links to the figure and tables)."""
    lines = [f"# Dosimetry report: {config.case_id}", "",
             f"VoxelDosimetry {__version__}, {datetime.now().isoformat(timespec='seconds')}. "
             "Machine-readable record: `run.json`.", ""]
    lines += _inputs(config, records)
    lines += _steps(records, result.timings.get("total"))
    lines += _registration(records)
    lines += _tia(activity_rows, config.truth_organ_tia_bq_s or {})
    lines += _doses(result.segment_rows)
    lines += ["## Dose-volume histograms", "", "![Cumulative DVH](tables/dvh.png)", "",
              "Data: `tables/dvh.csv` (long format, one row per segment and dose point).", ""]
    lines += ["## Warnings", ""] + ([f"- {w}" for w in result.warnings] or ["None."]) + [""]
    out_dir = Path(result.out_dir)
    lines += ["## Output files", ""] + [f"- `{name}`: `{_relative(Path(p), out_dir)}`"
                                         for name, p in sorted(result.outputs.items())] + [""]
    write_text_atomic(path, "\n".join(lines))
    return path


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
