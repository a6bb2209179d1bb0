"""write_report: a Markdown comparison report with PNG figures, metrics.json and NRRD error maps beside it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from VoxelDosimetryLib.metrics.comparison import ComparisonResult, quantity_label
from VoxelDosimetryLib.metrics.figures import plot_bland_altman, plot_profiles, plot_scatter, plot_slices
from VoxelDosimetryLib.io.safe_write import write_text_atomic

METRICS_FILE = "metrics.json"
RELATIVE_ERROR_FILE = "relative_error.nrrd"
DIFFERENCE_FILES = {"dose": "difference_gy.nrrd", "dose_rate": "difference_gy_per_s.nrrd"}
FIGURE_FILES = ("scatter.png", "bland_altman_voxels.png", "bland_altman_segments.png", "profiles.png", "slices.png")


def report_files(out_md_path) -> list[Path]:
    """Every file write_report may write for a report at `out_md_path` (the report itself first)."""
    folder = Path(out_md_path).parent
    names = [METRICS_FILE, RELATIVE_ERROR_FILE, *DIFFERENCE_FILES.values(), *FIGURE_FILES]
    return [Path(out_md_path)] + [folder / name for name in names]


def to_json_value(value):
    """numpy scalars/arrays and tuples -> plain JSON values (recursively)."""
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def metrics_document(result: ComparisonResult) -> dict:
    """The content of metrics.json: whole-mask metrics plus the per-segment rows."""
    return to_json_value({**result.metrics, "per_segment": result.per_segment})


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _summary_table(m: dict) -> list:
    unit = m["unit"]
    ba = m["bland_altman_voxels"]
    rows = [("voxels in mask", m["n_voxels_mask"], ""), ("reference max", m["reference_max"], unit),
            ("test max", m["test_max"], unit), ("mean difference (test - reference)", m["mean_difference"], unit),
            ("max absolute difference", m["max_abs_difference"], unit),
            (f"voxel MAE (reference > {_fmt(m['threshold'])} {unit})", m["voxel_mae_percent"], "%"),
            ("NRMSE", None if m["nrmse"] is None else 100 * m["nrmse"], "%"), ("Pearson r", m["pearson_r"], ""),
            ("Lin's CCC", m["lin_ccc"], ""), ("Bland-Altman bias (voxels)", ba["bias"], unit),
            ("Bland-Altman SD (voxels)", ba["sd"], unit),
            ("95 % limits of agreement (voxels)", f"{_fmt(ba['loa_lower'])} to {_fmt(ba['loa_upper'])}", unit)]
    if m.get("ensemble_noise_percent") is not None:
        rows.append((f"ensemble noise ({m['n_realisations']} realisations)", m["ensemble_noise_percent"], "%"))
    if m.get("mae_percent_segments") is not None:
        rows.append((f"MAE over segments (Eq. 3, n = {m['n_segments']})", m["mae_percent_segments"], "%"))
    if "bland_altman_segments" in m:
        s = m["bland_altman_segments"]
        rows.append(("Bland-Altman bias (segment means)", s["bias"], unit))
        rows.append(("95 % limits of agreement (segment means)", f"{_fmt(s['loa_lower'])} to {_fmt(s['loa_upper'])}",
                     unit))
    lines = ["| metric | value | unit |", "|---|---|---|"]
    lines += [f"| {name} | {_fmt(value)} | {u} |" for name, value, u in rows]
    return lines


def _segment_table(rows: list, unit: str, weighting: str) -> list:
    lines = [f"Segment means are {weighting}-weighted; units {unit}.", "",
             "| label | name | volume (mL) | mass (g) | reference mean | test mean | difference | difference % | "
             "MAE % | NRMSE % | r | CCC | noise % |", "|" + "---|" * 13]
    for row in rows:
        cells = [row["label"], row["name"], row["volume_ml"], row["mass_g"], row["reference_mean"], row["test_mean"],
                 row["difference"], row["difference_percent"], row["mae_percent"],
                 None if row["nrmse"] is None else 100 * row["nrmse"], row["pearson_r"], row["lin_ccc"],
                 row["ensemble_noise_percent"]]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    return lines


def write_report(result: ComparisonResult, out_md_path, title: str | None = None) -> Path:
    """Write the Markdown report and, in the same folder, PNG figures, metrics.json and the error maps
    (difference_gy.nrrd or difference_gy_per_s.nrrd, relative_error.nrrd in % of the reference). Returns the
    report path. File names other than the report's are fixed: use one folder per report."""
    from VoxelDosimetryLib.io import write_volume

    out_md = Path(out_md_path)
    folder = out_md.parent
    folder.mkdir(parents=True, exist_ok=True)
    m = result.metrics
    unit = m["unit"]
    mask = result.mask
    t = result.test.array.astype(np.float64)
    r = result.reference.array.astype(np.float64)

    difference_file = DIFFERENCE_FILES[m["quantity"]]
    write_volume(result.maps["difference"], folder / difference_file)
    write_volume(result.maps["relative_error"], folder / RELATIVE_ERROR_FILE)

    figures = [("Test vs reference voxel values", plot_scatter(t[mask], r[mask], folder / "scatter.png", unit,
                                                               "voxels in the mask")),
               ("Bland-Altman plot, voxels", plot_bland_altman(result.voxel_bland_altman, folder /
                                                              "bland_altman_voxels.png", unit, "voxels in the mask"))]
    if result.segment_bland_altman is not None:
        figures.append(("Bland-Altman plot, segment mean doses",
                        plot_bland_altman(result.segment_bland_altman, folder / "bland_altman_segments.png", unit,
                                          "segment means")))
    figures.append(("Line profiles", plot_profiles(result.profiles, folder / "profiles.png")))
    figures.append(("Slices: reference, test, difference",
                    plot_slices(result.test.array, result.reference.array, result.maps["difference"].array,
                                result.profiles["point_index"], result.reference.spacing,
                                result.reference.direction, unit,
                                folder / "slices.png")))

    document = metrics_document(result)
    write_text_atomic(folder / METRICS_FILE, json.dumps(document, indent=2, allow_nan=False))

    lines = [f"# {title or 'Dose map comparison'}", "",
             f"Quantity: {quantity_label(result.reference)}. Mask: {m['mask']} ({m['n_voxels_mask']} voxels). "
             f"Relative metrics use mask voxels with reference > {_fmt(m['threshold'])} {unit} "
             f"({100 * m['threshold_fraction']:g} % of the reference maximum; {m['n_voxels_above_threshold']} voxels).",
             "", "## Summary", ""] + _summary_table(m)
    if result.per_segment:
        lines += ["", "## Segments", ""] + _segment_table(result.per_segment, unit, m["segment_mean_weighting"])
    lines += ["", "## Figures", ""]
    for caption, path in figures:
        lines += [f"![{caption}]({Path(path).name})", "", f"*{caption}*", ""]
    lines += ["## Files", "", f"- [{METRICS_FILE}]({METRICS_FILE}): every number above, JSON",
              f"- [{difference_file}]({difference_file}): test - reference ({unit}) inside the mask, 0 outside",
              f"- [{RELATIVE_ERROR_FILE}]({RELATIVE_ERROR_FILE}): 100 (test - reference) / reference (quantity "
              "'relative_error', unit '%') where reference > threshold, 0 elsewhere", "", "## Definitions", ""]
    lines += [f"- **{name}**: {text}" for name, text in m["definitions"].items()]
    if result.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in result.notes]
    write_text_atomic(out_md, "\n".join(lines) + "\n")
    return out_md
