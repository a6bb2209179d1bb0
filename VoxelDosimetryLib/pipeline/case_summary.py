"""Summary of a loaded case: geometry, activity per timepoint and per segment, CT-derived media."""
from __future__ import annotations

import numpy as np

from VoxelDosimetryLib.geometry import resample_to
from VoxelDosimetryLib.physics import get_nuclide
from VoxelDosimetryLib.io.case import Case
from VoxelDosimetryLib.volume import Volume


def total_activity_bq(volume: Volume) -> float:
    """Total activity (Bq) of an activity-concentration volume."""
    volume.require_quantity("activity_concentration")
    return float(volume.to_unit("Bq/mL").array.sum(dtype=np.float64) * volume.voxel_volume_ml)


def segment_activity_bq(activity: Volume, labels: Volume, names: dict[str, str]) -> dict[str, float]:
    """Activity (Bq) inside each labelled segment; `activity` must be on the labels' grid."""
    activity.require_same_grid(labels, "activity and label volumes")
    bq = activity.to_unit("Bq/mL").array.astype(np.float64) * activity.voxel_volume_ml
    sums = np.bincount(labels.array.reshape(-1).astype(np.int64), weights=bq.reshape(-1))
    return {name: float(sums[int(label)]) if int(label) < sums.size else 0.0 for label, name in names.items()}


def summarize_case(case: Case, spects_on_ct: list[Volume], labels: Volume | None) -> dict:
    """Per-timepoint totals (Bq, % of administered, decay-corrected %) and segment activities."""
    nuclide = get_nuclide(case.nuclide)
    rows = []
    for tp, spect in zip(case.timepoints, spects_on_ct):
        total = total_activity_bq(spect)
        row = {"time_h": tp.time_h, "total_activity_bq": total}
        if case.administered_activity_bq:
            remaining = case.administered_activity_bq * np.exp(-nuclide.decay_constant_per_s * tp.time_s)
            row["percent_of_administered"] = 100.0 * total / case.administered_activity_bq
            row["percent_of_decayed_administered"] = 100.0 * total / remaining
        if labels is not None:
            row["segments_bq"] = segment_activity_bq(spect, labels, case.label_names)
        rows.append(row)
    return {"case": case.id, "nuclide": nuclide.name, "half_life_h": nuclide.half_life_s / 3600.0,
            "administered_activity_bq": case.administered_activity_bq, "timepoints": rows}


def spects_on_ct_grid(case: Case, ct: Volume) -> list[Volume]:
    """Every timepoint's SPECT resampled onto the CT grid, conserving activity."""
    return [resample_to(case.load_spect(i), ct, mode="activity") for i in range(len(case.timepoints))]
