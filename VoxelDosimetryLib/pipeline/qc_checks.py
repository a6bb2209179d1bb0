"""Pipeline-level QC checks (non-blocking warnings, docs/RELIABILITY.md), called by pipeline/run.py.

- `check_activity_total`: a timepoint's total activity against the decay-corrected administered activity
  (`activity_total_implausible`; the core lives in kinetics/qc_checks.py so `tia` and `dose` can use it too);
- `check_dose_grid`: a dose grid coarser than 6 mm (`dose_grid_coarse`);
- `check_activity_inside_ct`: SPECT activity outside the CT's field of view (`activity_outside_ct`).
Each returns whether the input looked plausible and never changes a result.
"""
from __future__ import annotations

import numpy as np

from VoxelDosimetryLib.geometry.voxel_average import inside_mask
from VoxelDosimetryLib.kinetics import qc_checks as kinetics_qc
from VoxelDosimetryLib.qc import qc_warn
from VoxelDosimetryLib.volume import Grid, Volume

# Dose voxels up to about half the SPECT resolution (~10 mm FWHM for Lu-177) carry all the information the
# activity has; clinical voxel dosimetry uses 4-5 mm voxels (Dewaraja et al. 2012, MIRD Pamphlet 23, J Nucl Med
# 53:1310). Coarser grids average organ edges and small lesions into their surroundings.
MAX_DOSE_VOXEL_MM = 6.0
# Activity lost outside the CT: above 1 % it exceeds a small part of the ~10 % accuracy of quantitative SPECT
# (MIRD 23), the same 1 % the pipeline allows for activity falling off the dose grid.
MAX_ACTIVITY_OUTSIDE_CT = 0.01


def check_activity_total(total_bq: float, time_h: float, administered_activity_bq: float | None, nuclide: str,
                         where: str = "the SPECT") -> bool:
    """`activity_total_implausible` when `total_bq` (a timepoint's calibrated SPECT total, in its own field of
    view) is outside 1-150 % of `administered_activity_bq` decayed to `time_h` (h after injection).

    Skipped (True) when the administered activity is unknown. Pipeline: call once per timepoint with the
    activity step's `total_native_bq`, the timepoint's time_h, config.administered_activity_bq and config.nuclide.
    """
    if administered_activity_bq is None:
        return True
    return kinetics_qc.check_activity_total(float(total_bq), float(time_h) * kinetics_qc.HOUR_S,
                                            float(administered_activity_bq), nuclide, where)


def check_dose_grid(grid: Grid, max_voxel_mm: float = MAX_DOSE_VOXEL_MM) -> bool:
    """`dose_grid_coarse` when any voxel side of the dose grid is above `max_voxel_mm` (default 6 mm)."""
    spacing = [float(s) for s in grid.spacing]
    if max(spacing) <= max_voxel_mm:
        return True
    text = " x ".join(f"{s:g}" for s in spacing)
    qc_warn("dose_grid_coarse",
            f"The dose grid has {text} mm voxels, coarser than {max_voxel_mm:g} mm: organ edges and lesions smaller "
            "than a few voxels are averaged with their surroundings, so segment means, maxima and DVHs are "
            "blurred. It was used as given. Use a finer SPECT reconstruction grid, or `dose_grid: ct` in the "
            "config to compute on the CT grid.",
            spacing_mm=spacing, max_voxel_mm=max_voxel_mm)
    return False


def fraction_outside(activity: Volume, ct_grid: Grid) -> float:
    """Share of the positive activity of `activity` in voxels whose centres lie outside `ct_grid`'s image."""
    values = np.clip(np.asarray(activity.array, dtype=np.float64), 0.0, None)
    total = float(values.sum())
    if total <= 0:
        return 0.0
    inside = inside_mask(activity.grid, ct_grid)
    return float(values[~inside].sum()) / total


def check_activity_inside_ct(activity: Volume, ct: Volume, where: str = "the SPECT") -> float:
    """`activity_outside_ct` when more than 1 % of the activity lies outside the CT's field of view.

    `activity` (Bq/mL or Bq per voxel, on its own grid) and `ct` must be in the same frame: a timepoint's native
    SPECT with its own CT, or with the reference CT when the timepoint is not registered. Returns the fraction.
    """
    fraction = fraction_outside(activity, ct.grid)
    if fraction > MAX_ACTIVITY_OUTSIDE_CT:
        qc_warn("activity_outside_ct",
                f"{100 * fraction:.1f} % of the activity in {where} lies outside the CT's field of view. There the "
                "dose is computed in air (or not at all) and no segment can hold it. Check that the CT covers the "
                "SPECT (scan range, reconstruction diameter) and that both are in the same frame.",
                where=where, fraction_outside=fraction, threshold=MAX_ACTIVITY_OUTSIDE_CT,
                activity_grid=activity.grid.to_dict(), ct_grid=ct.grid.to_dict())
    return fraction
