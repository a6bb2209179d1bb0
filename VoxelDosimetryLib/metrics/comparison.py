"""compare_doses: every agreement metric of a test dose map against a reference, whole mask and per segment."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from VoxelDosimetryLib.errors import GridMismatchError, InputFormatError, UnitError, VoxelDosimetryError
from VoxelDosimetryLib.metrics.agreement import ensemble_noise, lin_ccc, mae_percent, nrmse, pearson_r
from VoxelDosimetryLib.metrics.bland_altman import bland_altman, bland_altman_summary
from VoxelDosimetryLib.metrics.masks import label_values, segment_mean
from VoxelDosimetryLib.metrics.profiles import line_profiles
from VoxelDosimetryLib.physics.body_mask import BODY_THRESHOLD_HU, body_mask
from VoxelDosimetryLib.physics.voxel_mass import ct_on_grid, voxel_mass_g
from VoxelDosimetryLib.volume import Volume, get_quantity

DOSE_QUANTITIES = ("dose", "dose_rate")
DEFAULT_THRESHOLD_FRACTION = 0.01

DEFINITIONS = {
    "mae_percent": "1/n sum |D_test - D_ref| / D_ref x 100 (Kim et al. 2022, Eq. 3); paper: n datasets of one "
                   "organ's mass-weighted mean dose. Here per segment (n = 1) and over the segments whose "
                   "reference mean exceeds the threshold (n = those segments).",
    "voxel_mae_percent": "Eq. 3 of Kim et al. applied per voxel, over mask voxels with reference > threshold "
                         "(an extension: the paper averages organ doses, not voxels).",
    "nrmse": "sqrt(mean (test - ref)^2) / sqrt(mean ref^2) over the VOI voxels (Li et al. 2022, Sec. 2.5.2); "
             "a fraction.",
    "ensemble_noise_percent": "sqrt(mean_j var_m(x_m[j]) [M-1]) / mean_j mu_j x 100 over M realisations "
                              "(Li et al. 2022, Sec. 2.5.3); whole map over mask voxels with reference > threshold.",
    "pearson_r": "Pearson correlation of voxel values in the mask.",
    "lin_ccc": "Lin's concordance correlation coefficient (Lin 1989), 1/n moments, voxels in the mask.",
    "bland_altman": "bias = mean(test - ref), sd = sample SD (n - 1), limits of agreement = bias +- 1.96 sd "
                    "(Bland & Altman 1986).",
    "segment_mean": "mass-weighted mean sum m_i D_i / m_total with Schneider density (mean over each dose voxel) "
                    "x voxel volume (Kim et al. 2022, Eq. 2) when a CT is given, else the voxel mean.",
    "relative_error": "100 (test - ref) / ref (%) where ref > threshold inside the mask, 0 elsewhere.",
}


@dataclass
class ComparisonResult:
    """Outcome of compare_doses: JSON-friendly `metrics` and `per_segment` rows, error `maps` (Volumes), and
    what the figures need (harmonised maps, analysis mask, profiles, Bland-Altman arrays)."""

    metrics: dict
    per_segment: list
    maps: dict
    test: Volume
    reference: Volume
    mask: np.ndarray
    profiles: dict
    voxel_bland_altman: dict
    segment_bland_altman: dict | None = None
    notes: list = field(default_factory=list)


def harmonise_dose(volume: Volume, reference: Volume, what: str, resample: bool) -> Volume:
    """`volume` in the reference's quantity, unit and grid; raises UnitError / GridMismatchError otherwise."""
    if volume.quantity != reference.quantity:
        raise UnitError(f"The {what} holds {volume.quantity!r} ({volume.unit}) but the reference holds "
                        f"{reference.quantity!r} ({reference.unit}); compare dose with dose or dose rate with "
                        "dose rate (state the quantity when reading a file that does not, e.g. --quantity dose).")
    volume = volume.to_unit(reference.unit)
    return _on_reference_grid(volume, reference, what, resample, mode="linear")


def _check_grid(volume: Volume, reference: Volume, what: str, resample: bool) -> None:
    """GridMismatchError when `volume` is off the reference grid and resampling was not asked for."""
    problem = volume.grid.mismatch(reference.grid)
    if problem is not None and not resample:
        raise GridMismatchError(f"The {what} is on another voxel grid than the reference ({problem}). Resample it "
                                "onto the reference grid: pass --resample (resample=True), or use "
                                "VoxelDosimetryLib.geometry.resample_to.")


def _on_reference_grid(volume: Volume, reference: Volume, what: str, resample: bool, mode: str) -> Volume:
    _check_grid(volume, reference, what, resample)
    if volume.grid.mismatch(reference.grid) is None:
        return volume
    from VoxelDosimetryLib.geometry import resample_to

    return resample_to(volume, reference, mode=mode)


def _canonical_reference(reference: Volume) -> Volume:
    if reference.quantity not in DOSE_QUANTITIES:
        raise UnitError(f"The reference holds {reference.quantity!r} ({reference.unit}); compare needs "
                        f"{' or '.join(DOSE_QUANTITIES)} maps. State the quantity when reading the file "
                        "(e.g. --quantity dose).")
    return reference.to_canonical_unit()


def _optional(metric, *args, notes: list, name: str):
    """metric(*args), or None (with a note) when the metric is undefined for these values."""
    try:
        return metric(*args)
    except VoxelDosimetryError as exc:
        notes.append(f"{name}: {exc}")
        return None


def _segment_row(label: int, name: str, seg: np.ndarray, t: np.ndarray, r: np.ndarray, mass: np.ndarray | None,
                 voxel_ml: float, ensemble: list, notes: list) -> dict:
    ref_mean = segment_mean(r, seg, mass)
    test_mean = segment_mean(t, seg, mass)
    row = {"label": label, "name": name, "n_voxels": int(seg.sum()), "volume_ml": float(seg.sum() * voxel_ml),
           "mass_g": None if mass is None else float(mass[seg].sum()),
           "reference_mean": ref_mean, "test_mean": test_mean, "difference": test_mean - ref_mean,
           "difference_percent": None, "mae_percent": None}
    if ref_mean > 0:
        row["difference_percent"] = 100.0 * (test_mean - ref_mean) / ref_mean
        row["mae_percent"] = mae_percent([test_mean], [ref_mean])  # Kim et al. 2022, Eq. 3 with n = 1
    failures: list = []
    row["nrmse"] = _optional(nrmse, t, r, seg, notes=failures, name="nrmse")
    row["pearson_r"] = _optional(pearson_r, t, r, seg, notes=failures, name="pearson_r")
    row["lin_ccc"] = _optional(lin_ccc, t, r, seg, notes=failures, name="lin_ccc")
    row["ensemble_noise_percent"] = (_optional(ensemble_noise, ensemble, seg, notes=failures,
                                               name="ensemble_noise_percent") if ensemble else None)
    undefined = ([] if ref_mean > 0 else ["difference_percent", "mae_percent"]) + [f.split(":")[0] for f in failures]
    if undefined:
        notes.append(f"segment {name}: {', '.join(undefined)} left empty (undefined: reference <= 0 or constant "
                     "in the segment)")
    return row


def compare_doses(test: Volume, reference: Volume, labels: Volume | None = None, ct: Volume | None = None,
                  names: dict | None = None, threshold_fraction: float = DEFAULT_THRESHOLD_FRACTION, *,
                  realisations: Sequence[Volume] | None = None, resample: bool = False,
                  point_lps: Sequence[float] | None = None,
                  point_index: Sequence[int] | None = None) -> ComparisonResult:
    """Compare a test dose (or dose-rate) map with a reference map on the reference grid.

    Mask: the body (physics.body_mask: CT > -500 HU, largest component, holes filled) when `ct` is given, else
    every voxel. Relative quantities (relative error
    map, voxel MAE%, ensemble noise) use mask voxels with reference > threshold_fraction x reference maximum in
    the mask. `labels` adds per-segment rows (mass-weighted means with a CT). `realisations`: further
    realisations of the test method (the test itself is the first) for ensemble noise. `resample=True`
    resamples test (linear), realisations and labels (nearest) onto the reference grid and puts the CT on it
    as `run` and `voi` do (physics.voxel_mass: voxel-averaged HU for the mask, mean density for the masses);
    otherwise a grid mismatch raises GridMismatchError. Units are converted (e.g. mGy -> Gy).
    """
    if not 0.0 <= float(threshold_fraction) < 1.0:
        raise InputFormatError(f"threshold_fraction must be in [0, 1) (fraction of the reference maximum); "
                               f"got {threshold_fraction}.")
    reference = _canonical_reference(reference)
    test = harmonise_dose(test, reference, "test dose map", resample)
    ensemble = [test] + [harmonise_dose(v, reference, f"test realisation {m + 2}", resample)
                         for m, v in enumerate(realisations or [])]
    if len(ensemble) < 2:
        ensemble = []
    notes: list = []
    mass = None
    if ct is not None:
        ct.require_quantity("ct")
        _check_grid(ct, reference, "CT", resample)
        mask = body_mask(ct_on_grid(ct, reference.grid))  # the CT on the dose grid as in `run` and `voi`
        mask_text = f"body: CT > {BODY_THRESHOLD_HU:g} HU, largest component, holes filled"
        mass = voxel_mass_g(ct, reference.grid)
    else:
        mask = np.ones(reference.shape, dtype=bool)
        mask_text = "all voxels (no CT given)"
    if not mask.any():
        raise InputFormatError("The body mask is empty (no CT voxel above -500 HU); check the CT is in HU.")

    t = test.array.astype(np.float64)
    r = reference.array.astype(np.float64)
    for what, values in (("test", t), ("reference", r)):
        if not np.all(np.isfinite(values)):
            raise InputFormatError(f"The {what} dose map holds NaN or infinite voxels; fix them before comparing.")
    reference_max = float(r[mask].max())
    if reference_max <= 0:
        raise InputFormatError("The reference dose is <= 0 everywhere in the mask; nothing to compare against.")
    threshold = float(threshold_fraction) * reference_max
    dose_mask = mask & (r > threshold)

    difference = np.where(mask, t - r, 0.0)
    relative = np.zeros_like(r)
    np.divide(100.0 * (t - r), r, out=relative, where=dose_mask)  # defined only above the threshold
    meta = {"threshold": threshold, "threshold_fraction": float(threshold_fraction), "mask": mask_text}
    maps = {
        "difference": Volume(difference.astype(np.float32), grid=reference.grid, quantity=reference.quantity,
                             unit=reference.unit, metadata={**meta, "description": "test - reference inside the "
                                                                                     "mask, 0 outside"}),
        "relative_error": Volume(relative.astype(np.float32), grid=reference.grid, quantity="relative_error", unit="%",
                                 metadata={**meta, "description": "relative error (%): 100 (test - reference) / "
                                                                  "reference where reference > threshold inside the "
                                                                  "mask, 0 elsewhere"}),
    }

    voxel_ba = bland_altman(t[mask], r[mask])
    metrics = {
        "quantity": reference.quantity, "unit": reference.unit,
        "grid": reference.grid.to_dict(), "mask": mask_text, "n_voxels_mask": int(mask.sum()),
        "threshold_fraction": float(threshold_fraction), "threshold": threshold,
        "n_voxels_above_threshold": int(dose_mask.sum()),
        "reference_max": reference_max, "test_max": float(t[mask].max()),
        "reference_mean": float(r[mask].mean()), "test_mean": float(t[mask].mean()),
        "mean_difference": float(difference[mask].mean()), "max_abs_difference": float(np.abs(difference).max()),
        "voxel_mae_percent": mae_percent(t, r, dose_mask),
        "nrmse": _optional(nrmse, t, r, mask, notes=notes, name="NRMSE"),
        "pearson_r": _optional(pearson_r, t, r, mask, notes=notes, name="Pearson r"),
        "lin_ccc": lin_ccc(t, r, mask),
        "bland_altman_voxels": bland_altman_summary(voxel_ba),
        "n_realisations": len(ensemble) or 1,
        "ensemble_noise_percent": (_optional(ensemble_noise, ensemble, dose_mask, notes=notes,
                                             name="ensemble noise") if ensemble else None),
    }

    rows: list = []
    segment_ba = None
    if labels is not None:
        labels = _on_reference_grid(labels, reference, "label map", resample, mode="nearest")
        names = {int(k): str(v) for k, v in (names or {}).items()}
        label_array = labels.array
        for label in label_values(labels):
            seg = label_array == label
            rows.append(_segment_row(label, names.get(label, f"label_{label}"), seg, t, r, mass,
                                     reference.voxel_volume_ml, ensemble, notes))
        dosed = [row for row in rows if row["reference_mean"] > threshold]
        metrics["n_segments"] = len(rows)
        metrics["n_segments_above_threshold"] = len(dosed)
        metrics["segment_mean_weighting"] = "mass" if mass is not None else "volume"
        metrics["mae_percent_segments"] = (mae_percent([p["test_mean"] for p in dosed],
                                                       [p["reference_mean"] for p in dosed]) if dosed else None)
        if len(rows) >= 2:
            segment_ba = bland_altman([row["test_mean"] for row in rows], [row["reference_mean"] for row in rows])
            metrics["bland_altman_segments"] = bland_altman_summary(segment_ba)
            if all(row["reference_mean"] + row["test_mean"] > 0 for row in rows):
                metrics["bland_altman_segments_percent"] = bland_altman_summary(bland_altman(
                    [row["test_mean"] for row in rows], [row["reference_mean"] for row in rows], percent=True))

    profiles = line_profiles(test, reference, point_lps=point_lps, point_index=point_index)
    metrics["profile_point_index"] = list(profiles["point_index"])
    metrics["profile_point_lps_mm"] = profiles["point_lps_mm"]
    metrics["definitions"] = DEFINITIONS
    metrics["notes"] = notes
    return ComparisonResult(metrics=metrics, per_segment=rows, maps=maps, test=test, reference=reference, mask=mask,
                            profiles=profiles, voxel_bland_altman=voxel_ba, segment_bland_altman=segment_ba,
                            notes=notes)


def quantity_label(volume: Volume) -> str:
    """'dose (Gy)' style axis label."""
    return f"{get_quantity(volume.quantity).description} ({volume.unit})"
