"""A generated multi-timepoint case on a real CT with organ labels (e.g. TotalSegmentator output).

Organs named in `kinetics` (default: Lu-177 DOTATATE-like kidneys, liver, spleen, a tumour sphere placed inside
the liver and a low body background) get uniform activity following OrganKinetics; SPECTs are simulated with
resolution blur and Poisson noise (simulate_spect). Later timepoints are imaged after a known rigid shift of the
patient: their CT is the reference CT moved by that shift and their SPECT sees the moved activity, so
registration has work to do. Truth (activity per timepoint and TIA, in the reference CT frame) is saved.
Kinetic values are illustrative, chosen for testing, not clinical reference data.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Mapping, Sequence, Union

import numpy as np
from scipy import ndimage

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.geometry.resample import resample_to
from VoxelDosimetryLib.io import read_volume
from VoxelDosimetryLib.physics.body_mask import body_mask
from VoxelDosimetryLib.physics import get_nuclide
from VoxelDosimetryLib.io.case import Case, Timepoint, write_case
from VoxelDosimetryLib.io.timepoints import check_timepoint_times
from VoxelDosimetryLib.simulate.spect import simulate_spect
from VoxelDosimetryLib.simulate.virtual_patient import OrganKinetics
from VoxelDosimetryLib.volume import Grid, Volume

TUMOUR = "tumour"
BACKGROUND = "background"
# name -> (fraction of administered activity, biological half-life h, uptake half-life h); illustrative values
# with DOTATATE-like ordering of effective half-lives (tumour > liver ~ spleen > kidneys > background).
DOTATATE_KINETICS: dict[str, OrganKinetics] = {
    "kidney_left": OrganKinetics(0.012, 80.0, 1.0),
    "kidney_right": OrganKinetics(0.012, 80.0, 1.0),
    "liver": OrganKinetics(0.040, 200.0, 2.0),
    "spleen": OrganKinetics(0.012, 150.0, 2.0),
    TUMOUR: OrganKinetics(0.010, 500.0, 6.0),
    BACKGROUND: OrganKinetics(0.100, 12.0, 0.1),
}
# Patient shift (LPS mm) at the 2nd, 3rd, 4th... timepoint relative to the first (cycled when more).
DEFAULT_MISREGISTRATION_MM = ((2.0, -3.0, 1.5), (-2.5, 2.0, 3.0), (3.0, 1.5, -2.5))
SENSITIVITY_CPS_PER_MBQ = 6.0
ACQUISITION_S = 1500.0
INJECTION = datetime(2026, 1, 5, 9, 0, 0)
PathOrVolume = Union[str, Path, Volume]


def _ct(ct: PathOrVolume) -> Volume:
    volume = read_volume(ct) if not isinstance(ct, Volume) else ct
    if volume.quantity == "unknown":
        volume = volume.replace(quantity="ct", unit="HU")
    volume.require_quantity("ct")
    return volume.to_canonical_unit()


def _labels(labels: PathOrVolume, ct: Volume) -> Volume:
    volume = read_volume(labels, quantity="labels") if not isinstance(labels, Volume) else labels
    if volume.grid != ct.grid:
        volume = resample_to(volume, ct.grid, mode="nearest", default_value=0)
    return volume


def _names(names) -> dict[int, str]:
    from VoxelDosimetryLib.voi import read_label_names
    from VoxelDosimetryLib.voi.label_names import normalise_names

    if isinstance(names, (str, Path)):
        return read_label_names(names)
    return normalise_names(names or {}, "names")


def _shifts(misregistration_mm, count: int) -> list[np.ndarray]:
    """One shift (x, y, z mm) per timepoint; the first is zero (the reference)."""
    if misregistration_mm is None:
        return [np.zeros(3)] * count
    if isinstance(misregistration_mm, (int, float)):
        unit = [np.asarray(v) / np.linalg.norm(v) for v in DEFAULT_MISREGISTRATION_MM]
        later = [float(misregistration_mm) * unit[i % len(unit)] for i in range(count - 1)]
    elif misregistration_mm is DEFAULT_MISREGISTRATION_MM:
        later = [np.asarray(DEFAULT_MISREGISTRATION_MM[i % 3], float) for i in range(count - 1)]
    else:
        later = [np.asarray(v, float).reshape(3) for v in misregistration_mm]
        if len(later) != count - 1:
            raise InputFormatError(f"misregistration_mm needs one (x, y, z) shift per timepoint after the first "
                                   f"({count - 1}); got {len(later)}.")
    return [np.zeros(3)] + later


def _moved(grid: Grid, shift_mm: np.ndarray) -> Grid:
    """The same grid with the patient moved by `shift_mm`: anatomy at p now appears at p + shift."""
    return Grid(grid.shape, grid.spacing, tuple(np.asarray(grid.origin) + shift_mm), grid.direction)


def spect_grid_covering(ct_grid: Grid, voxel_mm: float) -> Grid:
    """An axis-aligned (identity direction, as scanners write SPECT) grid of `voxel_mm` covering the CT."""
    corners = np.array([[i, j, k] for i in (-0.5, ct_grid.size_xyz[0] - 0.5) for j in (-0.5, ct_grid.size_xyz[1] - 0.5)
                        for k in (-0.5, ct_grid.size_xyz[2] - 0.5)])
    world = ct_grid.index_to_world(corners)
    low, high = world.min(axis=0), world.max(axis=0)
    size = np.ceil((high - low) / voxel_mm - 1e-6).astype(int)
    origin = (low + high) / 2.0 - (size - 1) * voxel_mm / 2.0
    return Grid((int(size[2]), int(size[1]), int(size[0])), (voxel_mm,) * 3, tuple(origin))


def _tumour_mask(host: np.ndarray, grid: Grid, radius_mm: float) -> tuple[np.ndarray, float]:
    """A sphere at the host organ's deepest point, radius capped at 70% of that depth so it stays inside."""
    depth = ndimage.distance_transform_edt(host, sampling=tuple(reversed(grid.spacing)))
    centre = np.unravel_index(int(np.argmax(depth)), host.shape)
    radius = min(float(radius_mm), 0.7 * float(depth[centre]))
    k, j, i = np.meshgrid(*[np.arange(n) for n in host.shape], indexing="ij")
    offsets = np.stack([(i - centre[2]) * grid.spacing[0], (j - centre[1]) * grid.spacing[1],
                        (k - centre[0]) * grid.spacing[2]], axis=-1) @ grid.direction.T
    return (np.sum(offsets * offsets, axis=-1) <= radius * radius) & host, radius


def _regions(ct: Volume, labels: np.ndarray, names: dict[int, str], kinetics: Mapping[str, OrganKinetics],
             tumour_radius_mm: float, tumour_in: str) -> tuple[list, np.ndarray, dict]:
    """[(name, mask, kinetics)], the label array with the tumour added, and notes."""
    by_name = {name: label for label, name in names.items()}
    organs = [n for n in kinetics if n not in (TUMOUR, BACKGROUND)]
    needed = organs + ([tumour_in] if TUMOUR in kinetics else [])
    missing = [n for n in needed if n not in by_name or not np.any(labels == by_name[n])]
    if missing:
        raise InputFormatError(f"Organ(s) {missing} are not labelled in the label map (by name); the names hold "
                               f"e.g. {sorted(by_name)[:12]}. Give kinetics for organs that are present.")
    labels = labels.copy()
    regions, notes = [], {}
    if TUMOUR in kinetics:
        host = labels == by_name[tumour_in]
        tumour, radius = _tumour_mask(host, ct.grid, tumour_radius_mm)
        tumour_label = max(list(names) + [int(labels.max())]) + 1
        labels[tumour] = tumour_label
        notes.update(tumour_label=tumour_label, tumour_radius_mm=radius, tumour_host=tumour_in)
    for name in organs:
        regions.append((name, labels == by_name[name], kinetics[name]))
    if TUMOUR in kinetics:
        regions.append((TUMOUR, labels == notes["tumour_label"], kinetics[TUMOUR]))
    if BACKGROUND in kinetics:
        occupied = np.zeros(labels.shape, bool)
        for _, mask, _ in regions:
            occupied |= mask
        regions.append((BACKGROUND, body_mask(ct) & ~occupied, kinetics[BACKGROUND]))
    return regions, labels, notes


def build_case_from_ct(ct: PathOrVolume, labels: PathOrVolume, names, out_folder: str | Path,
                       times_h: Sequence[float] = (4, 24, 96, 168), kinetics: Mapping[str, OrganKinetics] | None = None,
                       spect_voxel_mm: float = 4.8, seed: int = 0, misregistration_mm=DEFAULT_MISREGISTRATION_MM,
                       administered_activity_bq: float = 7.4e9, nuclide: str = "Lu-177", spect_fwhm_mm: float = 10.0,
                       spect_unit: str = "Bq/mL", tumour_radius_mm: float = 15.0, tumour_in: str = "liver",
                       case_id: str = "ct-based-case") -> Case:
    """Write a case folder built on a real CT (HU) and its label map; returns the Case (read back validated).

    names: {label: name} or a names file (e.g. TotalSegmentator class_map_total.json). kinetics: {organ name |
    "tumour" | "background": OrganKinetics}; default DOTATATE_KINETICS. misregistration_mm: None (no motion), a
    length in mm (default directions) or one (x, y, z) shift per timepoint after the first. spect_unit:
    "Bq/mL" or "counts" (counts per voxel for ACQUISITION_S at SENSITIVITY_CPS_PER_MBQ, values in case notes
    'calibration'). Truth: activity_true_<t>h.nrrd (Bq/mL) and tia_true.nrrd (Bq*s/mL) in the reference CT
    frame, organ TIAs (Bq*s) in notes 'true_organ_tia_bq_s'.
    """
    if spect_unit not in ("Bq/mL", "counts"):
        raise InputFormatError(f"spect_unit must be 'Bq/mL' or 'counts'; got {spect_unit!r}.")
    if not spect_voxel_mm > 0 or spect_fwhm_mm < 0 or not administered_activity_bq > 0:
        raise InputFormatError("spect_voxel_mm and administered_activity_bq must be > 0 and spect_fwhm_mm >= 0.")
    times = check_timepoint_times(times_h)
    ct = _ct(ct)
    label_volume = _labels(labels, ct)
    names = _names(names)
    kinetics = dict(DOTATATE_KINETICS if kinetics is None else kinetics)
    decay = get_nuclide(nuclide).decay_constant_per_s
    regions, label_array, notes = _regions(ct, label_volume.array.astype(np.int32), names, kinetics,
                                           tumour_radius_mm, tumour_in)
    voxel_ml = ct.voxel_volume_ml
    tia = np.zeros(ct.shape, np.float64)
    true_tia = {}
    for name, mask, kin in regions:
        true_tia[name] = float(kin.tia_bq_s(administered_activity_bq, decay))
        tia[mask] = true_tia[name] / (int(mask.sum()) * voxel_ml)

    spect_grid = spect_grid_covering(ct.grid, spect_voxel_mm)
    shifts = _shifts(misregistration_mm, len(times))
    dtype = np.int16 if ct.array.min() >= -32768 and ct.array.max() <= 32767 else np.float32
    reference_ct = ct.with_array(np.round(ct.array).astype(dtype))
    label_dtype = np.uint8 if label_array.max() < 256 else np.uint16
    all_names = {**names, **({notes["tumour_label"]: TUMOUR} if "tumour_label" in notes else {})}
    present = set(np.unique(label_array).tolist()) - {0}
    volumes = {"ct.nrrd": reference_ct,
               "labels.nrrd": label_volume.with_array(label_array.astype(label_dtype), quantity="labels"),
               "tia_true.nrrd": ct.with_array(tia.astype(np.float32), quantity="tia_concentration", unit="Bq*s/mL")}
    timepoints, timepoint_cts = [], []
    counts_per_bq_ml = SENSITIVITY_CPS_PER_MBQ * 1e-6 * ACQUISITION_S * spect_grid.voxel_volume_ml
    for i, (time_h, shift) in enumerate(zip(times, shifts)):
        concentration = np.zeros(ct.shape, np.float64)
        for name, mask, kin in regions:
            concentration[mask] = float(kin.activity_bq(time_h * 3600.0, administered_activity_bq, decay)) / (
                int(mask.sum()) * voxel_ml)
        truth = ct.with_array(concentration.astype(np.float32), quantity="activity_concentration", unit="Bq/mL")
        truth = truth.replace(metadata={"time_after_injection_s": time_h * 3600.0, "truth": "generated kinetics",
                                        "frame": "reference CT (before the timepoint's shift)"})
        moved = truth.replace(grid=_moved(ct.grid, shift))
        spect = simulate_spect(moved, spect_grid, fwhm_mm=spect_fwhm_mm,
                               sensitivity_cps_per_mbq=SENSITIVITY_CPS_PER_MBQ, duration_s=ACQUISITION_S,
                               seed=seed + 1 + i)
        if spect_unit == "counts":
            counts = np.round(spect.array.astype(np.float64) * counts_per_bq_ml).astype(np.float32)
            spect = spect.with_array(counts, quantity="counts", unit="counts")
        acquired = (INJECTION + timedelta(hours=time_h)).isoformat()
        tag = f"{time_h:g}h"
        tp = Timepoint(time_h=time_h, spect=f"spect_{tag}.nrrd", activity_true=f"activity_true_{tag}.nrrd",
                       acquisition_datetime=acquired)
        volumes[tp.spect] = spect.replace(metadata={**spect.metadata, "acquisition_datetime": acquired})
        volumes[tp.activity_true] = truth
        if np.any(shift != 0):
            timepoint_cts.append(f"ct_{tag}.nrrd")
            volumes[timepoint_cts[-1]] = reference_ct.replace(grid=_moved(ct.grid, shift))
        else:
            timepoint_cts.append("ct.nrrd")
        timepoints.append(tp)

    case_notes = {
        "generator": "VoxelDosimetryLib.simulate.build_case_from_ct", "seed": seed,
        "true_organ_tia_bq_s": true_tia, "timepoint_cts": timepoint_cts,
        "misregistration_mm": [[float(v) for v in s] for s in shifts],
        "kinetics": {name: {"fraction": k.fraction, "biological_half_life_h": k.biological_half_life_h,
                            "uptake_half_life_h": k.uptake_half_life_h} for name, k in kinetics.items()},
        "spect": f"Gaussian PSF {spect_fwhm_mm:g} mm FWHM, {spect_voxel_mm:g} mm voxels, "
                 f"{SENSITIVITY_CPS_PER_MBQ:g} cps/MBq, {ACQUISITION_S:g} s, Poisson noise, {spect_unit}",
        **notes,
    }
    if spect_unit == "counts":
        case_notes["calibration"] = {"sensitivity_cps_per_mbq": SENSITIVITY_CPS_PER_MBQ,
                                     "counts_duration_s": ACQUISITION_S}
    case = Case(id=case_id, nuclide=get_nuclide(nuclide).name, timepoints=timepoints,
                injection_datetime=INJECTION.isoformat(), administered_activity_bq=float(administered_activity_bq),
                labels="labels.nrrd", label_names={str(k): v for k, v in sorted(all_names.items()) if k in present},
                tia="tia_true.nrrd", notes=case_notes)
    return write_case(case, out_folder, volumes)
