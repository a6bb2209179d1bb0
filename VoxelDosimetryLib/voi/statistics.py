"""segment_statistics: per-segment dose statistics and DVHs on the dose grid (docs/SEGMENT_DOSE.md).

Labels are resampled onto the dose grid by nearest neighbour; masses use the mean density over each dose voxel
(physics/voxel_mass.py, the same CT-on-grid as `run` and `compare`). Mean dose is
mass-weighted (Kim et al. 2023, Eq. 2); min/max/median/std and the DVH metrics are volume-weighted (every voxel
of a segment has the same volume), as in SlicerRT.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError, UnitError
from VoxelDosimetryLib.geometry.resample import resample_to
from VoxelDosimetryLib.geometry.voxel_average import inside_mask
from VoxelDosimetryLib.physics.voxel_mass import WATER_DENSITY_G_CM3, density_on_grid
from VoxelDosimetryLib.qc import collect_qc
from VoxelDosimetryLib.volume import Grid, Volume
from VoxelDosimetryLib.voi.dvh import (DVH, cumulative_dvh, dose_at_volume_ml, dose_at_volume_percent,
                                       volume_at_dose, volume_percent_at_dose)
from VoxelDosimetryLib.voi.label_names import default_label_name, label_names_from_metadata, normalise_names
from VoxelDosimetryLib.voi.segment_checks import DEFAULT_SPECT_FWHM_MM, segment_qc
from VoxelDosimetryLib.voi.table import SegmentTable, dose_suffix

DEFAULT_DX_PERCENT = (2, 10, 30, 50, 70, 90, 98)
DENSITY_FROM_CT = "CT (Schneider 2000 HU->density)"
DENSITY_FROM_VOLUME = "density volume"
DENSITY_ASSUMED = "assumed 1.0 g/cm3 (no CT)"

STATUS_OK = "ok"
STATUS_EMPTY = "empty"
STATUS_PARTLY_OUTSIDE = "partly outside image"
STATUS_OUTSIDE = "outside image"


def number_text(value: float) -> str:
    """Short text of a metric parameter for column names: 2 -> '2', 2.5 -> '2.5'."""
    return f"{float(value):g}"


# ------------------------------------------------------------------------------------------ inputs

def _checked_dose(dose: Volume) -> Volume:
    if not isinstance(dose, Volume):
        raise InputFormatError(f"dose must be a Volume, got {type(dose).__name__}.")
    dose.require_quantity("dose", "dose_rate")
    return dose.to_canonical_unit()


def _label_array(labels: Volume) -> np.ndarray:
    """The label values as integers; UnitError/InputFormatError for non-label volumes."""
    if not isinstance(labels, Volume):
        raise InputFormatError(f"labels must be a Volume, got {type(labels).__name__}.")
    if labels.quantity not in ("labels", "mask"):
        raise UnitError(f"The label map has quantity {labels.quantity!r} ({labels.unit}); segment statistics need "
                        "integer labels. Read it with quantity='labels' (read_volume(path, quantity='labels'); the "
                        "CLI's --labels does this).")
    array = labels.array
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise InputFormatError("The label map holds non-integer or non-finite values; label maps hold whole "
                                   "numbers (0 = background). Check that the right file was given as labels.")
    if array.size and array.min() < 0:
        raise InputFormatError(f"The label map holds negative values (min {array.min()}); labels are 0 (background) "
                               "or positive whole numbers.")
    if array.size and array.max() > np.iinfo(np.int32).max:
        raise InputFormatError(f"Label values above {np.iinfo(np.int32).max} are not supported.")
    return array.astype(np.int32, copy=False)


def _label_counts(array: np.ndarray) -> dict[int, int]:
    values, counts = np.unique(array[array > 0], return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


def _labels_on_grid(labels: Volume, array: np.ndarray, grid: Grid) -> np.ndarray:
    if labels.grid == grid:
        return array
    as_int = Volume(array, grid=labels.grid, quantity="labels")
    return resample_to(as_int, grid, mode="nearest").array.astype(np.int32, copy=False)


def _density_on_grid(grid: Grid, ct: Volume | None, density: Volume | None) -> tuple[np.ndarray, str, np.ndarray]:
    """(density g/cm3 on `grid`, source text, mask of voxels covered by the CT/density image)."""
    source = density if density is not None else ct
    if source is None:
        return np.full(grid.shape, WATER_DENSITY_G_CM3), DENSITY_ASSUMED, np.ones(grid.shape, bool)
    source.require_quantity("density" if density is not None else "ct")
    text = DENSITY_FROM_VOLUME if density is not None else DENSITY_FROM_CT
    return density_on_grid(source, grid).array, text, inside_mask(grid, source.grid)


def _requested_labels(names: Mapping[int, str], present: Sequence[int]) -> list[int]:
    return sorted((set(names) | set(present)) - {0})


# --------------------------------------------------------------------------------------------- rows

def _metrics(dvh: DVH, values: np.ndarray, masses: np.ndarray, s: str, dx_percent: Sequence[float],
             dx_cc: Sequence[float], vx: Sequence[float], notes: list) -> dict:
    total_mass = float(masses.sum())
    row = {
        # Kim et al. 2023 Eq. 2: D = sum_i(m_i D_i) / m_total
        f"mean_{s}": float(np.dot(masses, values) / total_mass) if total_mass > 0 else None,
        f"mean_volume_{s}": float(values.mean()),
        f"min_{s}": float(values.min()), f"max_{s}": float(values.max()),
        f"median_{s}": float(np.median(values)), f"std_{s}": float(values.std()),
    }
    if total_mass <= 0:
        notes.append("zero mass: the mass-weighted mean is undefined")
    for x in dx_percent:
        row[f"d{number_text(x)}_{s}"] = dose_at_volume_percent(dvh, x)
    for x in dx_cc:
        value = dose_at_volume_ml(dvh, x)
        row[f"d{number_text(x)}cc_{s}"] = value
        if value is None:
            notes.append(f"D{number_text(x)}cc undefined: the segment holds only {dvh.total_volume_ml:.4g} mL")
    for x in vx:
        row[f"v{number_text(x)}{s}_ml"] = volume_at_dose(dvh, x)
        row[f"v{number_text(x)}{s}_pct"] = volume_percent_at_dose(dvh, x)
    return row


def _empty_metrics(s: str, dx_percent: Sequence[float], dx_cc: Sequence[float], vx: Sequence[float]) -> dict:
    keys = [f"{k}_{s}" for k in ("mean", "mean_volume", "min", "max", "median", "std")]
    keys += [f"d{number_text(x)}_{s}" for x in dx_percent] + [f"d{number_text(x)}cc_{s}" for x in dx_cc]
    keys += [f"v{number_text(x)}{s}_{u}" for x in vx for u in ("ml", "pct")]
    return dict.fromkeys(keys)


def _status(native_voxels: int, fraction_inside: float, dose_voxels: int) -> tuple[str, str]:
    if native_voxels == 0:
        return STATUS_EMPTY, "no voxel with this label in the label map"
    if fraction_inside == 0:
        return STATUS_OUTSIDE, "the segment lies entirely outside the dose image"
    if dose_voxels == 0:
        return STATUS_EMPTY, (f"{native_voxels} label-map voxels but none on the dose grid (the segment is smaller "
                              "than a dose voxel)")
    if fraction_inside < 1:
        return STATUS_PARTLY_OUTSIDE, (f"{100 * fraction_inside:.1f}% of the segment lies inside the dose image; "
                                       "statistics cover that part only")
    return STATUS_OK, ""


def _check_parameters(dx_percent, dx_cc, vx_gy) -> tuple[tuple, tuple, tuple]:
    dx_percent, dx_cc, vx_gy = (tuple(float(x) for x in seq) for seq in (dx_percent, dx_cc, vx_gy))
    if any(not 0 <= x <= 100 for x in dx_percent):
        raise InputFormatError(f"D_x% values must lie between 0 and 100; got {list(dx_percent)}.")
    if any(not (np.isfinite(x) and x > 0) for x in dx_cc):
        raise InputFormatError(f"D_x cc volumes must be positive numbers of mL; got {list(dx_cc)}.")
    if any(not np.isfinite(x) for x in vx_gy):
        raise InputFormatError(f"V_x doses must be finite; got {list(vx_gy)}.")
    return dx_percent, dx_cc, vx_gy


def segment_statistics(dose: Volume, labels: Volume, ct: Volume | None = None,
                       names: Mapping[int, str] | None = None,
                       dx_percent: Sequence[float] = DEFAULT_DX_PERCENT, dx_cc: Sequence[float] = (),
                       vx_gy: Sequence[float] = (), density: Volume | None = None,
                       spect_fwhm_mm: float | None = DEFAULT_SPECT_FWHM_MM) -> SegmentTable:
    """Per-segment statistics of a dose (Gy) or dose-rate (Gy/s) map; one row per label value (0 excluded).

    ct: CT in HU for voxel masses (Schneider 2000 density); density: a density map (g/cm3) used instead; with
    neither, 1.0 g/cm3. names: {label: name}, completing the names the label volume carries (Slicer segment
    fields); other labels are called label_<n>. Labels named but absent get status 'empty'. dx_percent: D_x%
    values (%), dx_cc: D_x cc volumes (mL), vx_gy: V_x doses (in the dose unit, Gy or Gy/s).
    QC warnings on the segments (voi/segment_checks.py); spect_fwhm_mm: SPECT resolution for the partial-volume
    check (None skips it).
    """
    dose = _checked_dose(dose)
    dx_percent, dx_cc, vx_gy = _check_parameters(dx_percent, dx_cc, vx_gy)
    label_array = _label_array(labels)
    all_names = label_names_from_metadata(labels.metadata)
    all_names.update(normalise_names(names or {}))
    grid = dose.grid
    s = dose_suffix(dose.quantity)

    native_counts = _label_counts(label_array)
    same_grid = labels.grid == grid
    inside_counts = native_counts if same_grid else _label_counts(
        np.where(inside_mask(labels.grid, grid), label_array, 0))
    on_grid = _labels_on_grid(labels, label_array, grid).reshape(-1)
    rho, density_source, covered = _density_on_grid(grid, ct, density)
    masses_all = rho.reshape(-1) * grid.voxel_volume_ml
    covered = covered.reshape(-1)
    dose_flat = dose.array.reshape(-1)

    labelled = np.flatnonzero(on_grid > 0)
    order = labelled[np.argsort(on_grid[labelled], kind="stable")]
    present, starts, counts = np.unique(on_grid[order], return_index=True, return_counts=True)
    where = {int(v): (int(a), int(c)) for v, a, c in zip(present, starts, counts)}
    if order.size and not np.all(np.isfinite(dose_flat[order])):
        raise InputFormatError("The dose image holds NaN or infinite values inside the segments; fix or mask them.")

    rows, dvhs = [], {}
    for label in _requested_labels(all_names, list(native_counts)):
        native = native_counts.get(label, 0)
        fraction = inside_counts.get(label, 0) / native if native else 0.0
        start, count = where.get(label, (0, 0))
        status, note = _status(native, fraction, count)
        notes = [note] if note else []
        row = {"label": label, "name": all_names.get(label, default_label_name(label)), "status": status,
               "fraction_inside": fraction if native else None, "voxels": count,
               "label_map_volume_ml": native * labels.voxel_volume_ml, "volume_ml": count * grid.voxel_volume_ml,
               "mass_g": None}
        if count:
            index = order[start:start + count]
            values = dose_flat[index].astype(np.float64)
            masses = masses_all[index]
            dvhs[label] = cumulative_dvh(values, grid.voxel_volume_ml, unit=dose.unit)
            row["mass_g"] = float(masses.sum())
            row.update(_metrics(dvhs[label], values, masses, s, dx_percent, dx_cc, vx_gy, notes))
            if values.min() < 0:
                notes.append(f"holds negative values (min {values.min():.4g} {dose.unit})")
            outside_ct = int(count - covered[index].sum())
            if outside_ct:
                notes.append(f"{outside_ct} voxels outside the CT: taken as air there, as the dose engines do (no "
                             "tissue mass; their dose is not meaningful)")
        else:
            row.update(_empty_metrics(s, dx_percent, dx_cc, vx_gy))
        row["density_source"] = density_source
        row["note"] = "; ".join(notes)
        rows.append(row)
    with collect_qc() as found:  # shown to the user as they happen, and kept with each row
        segment_qc(rows, on_grid, grid, ct if density is None else None, density_source != DENSITY_ASSUMED,
                   spect_fwhm_mm)
    for row in rows:
        row["qc"] = " ".join(w.code for w in found if w.details.get("label") == row["label"])

    metadata = {
        "dose": {"quantity": dose.quantity, "unit": dose.unit, "grid": grid.to_dict()},
        "labels": {"grid": labels.grid.to_dict(), "resampled_to_dose_grid": not same_grid,
                   "resampling": "nearest neighbour"},
        "density_source": density_source,
        "mean": "mass-weighted, Kim et al. 2023 Eq. 2 (mean_volume_* is the plain voxel mean)",
        "dvh": "volume-weighted; cumulative curve with a knot at every distinct voxel value, D/V metrics by linear "
               "interpolation between knots (SlicerRT DoseVolumeHistogram convention)",
        "dx_percent": list(dx_percent), "dx_cc": list(dx_cc), "vx": list(vx_gy),
        "qc": found.to_list(),
    }
    return SegmentTable(rows=rows, dvhs=dvhs, quantity=dose.quantity, unit=dose.unit, metadata=metadata)
