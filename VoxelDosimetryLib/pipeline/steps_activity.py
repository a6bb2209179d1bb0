"""Pipeline activity: read a timepoint's SPECT, calibrate it to Bq/mL and move it onto the dose grid."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from VoxelDosimetryLib.errors import InputFormatError, UnitError
from VoxelDosimetryLib.geometry.resample import resample_to
from VoxelDosimetryLib.io import read_volume
from VoxelDosimetryLib.kinetics.quantification import SpectCalibration, calibrate_counts
from VoxelDosimetryLib.kinetics.registration import apply_to_spect
from VoxelDosimetryLib.physics.nuclides import canonical_nuclide_name
from VoxelDosimetryLib.volume import Grid, Volume
from VoxelDosimetryLib.volume.source_values import require_finite


def read_spect(path: Path, quantity: str | None) -> Volume:
    """The SPECT as counts, activity (Bq) or activity concentration; `quantity` states it when the file doesn't.

    What the file declares wins: a `spect_quantity` that contradicts it is refused (docs/RELIABILITY.md §9).
    """
    volume = read_volume(path)
    if quantity is not None and volume.quantity not in ("unknown", quantity):
        raise UnitError(f"{path} declares {volume.quantity} ({volume.unit}), but the config's spect_quantity says "
                        f"{quantity}. Settings only fill in what a file does not say: drop spect_quantity for this "
                        "timepoint, or fix the file's declaration (voxeldosimetry convert IN OUT --relabel ...).")
    if volume.quantity == "unknown" and quantity is not None:
        volume = read_volume(path, quantity=quantity)
    if volume.quantity == "unknown":
        raise UnitError(f"{path} does not say whether it holds counts or Bq/mL; set spect_quantity: counts (with "
                        "calibration values) or activity_concentration in the config (or the timepoint entry).")
    if volume.quantity not in ("counts", "activity", "activity_concentration"):
        raise UnitError(f"{path} holds {volume.quantity} ({volume.unit}); a timepoint's SPECT must hold counts, Bq "
                        "or Bq/mL. Check the file given as 'spect'.")
    require_finite(volume, f"The SPECT {path}")  # the shared value policy: count and first voxel in LPS mm
    return volume


def calibration_for(spect: Volume, values: dict, nuclide: str) -> SpectCalibration:
    """SpectCalibration from the SPECT's metadata (DICOM) and the config's values (these win)."""
    calibration = SpectCalibration.from_metadata(spect.metadata, require_complete=False, **values)
    wanted = canonical_nuclide_name(nuclide)
    if calibration.source.get("nuclide") == "dicom" and calibration.nuclide != wanted:
        raise InputFormatError(f"The SPECT says the radionuclide is {calibration.nuclide} but the config says "
                               f"{wanted}; correct 'nuclide' in the config.")
    if calibration.nuclide is None:
        calibration = calibration.replace(nuclide=wanted)
    calibration.validate()
    return calibration


def activity_concentration(spect: Volume, values: dict, nuclide: str) -> tuple[Volume, list[str]]:
    """(Bq/mL volume on the SPECT's own grid, description lines of the calibration used)."""
    if spect.quantity == "counts":
        calibration = calibration_for(spect, values, nuclide)
        return calibrate_counts(spect, calibration), calibration.describe()
    if spect.quantity == "activity":  # Bq per voxel -> Bq/mL
        per_ml = spect.to_canonical_unit().array.astype(np.float64) / spect.voxel_volume_ml
        volume = spect.with_array(per_ml.astype(np.float32), quantity="activity_concentration", unit="Bq/mL")
        return volume, ["activity per voxel (Bq) divided by the voxel volume: no calibration needed"]
    if values:
        note = "already in Bq/mL: the calibration values in the config were not applied"
    else:
        note = "already in Bq/mL: no calibration needed"
    return calibrate_counts(spect, SpectCalibration()), [note]


def total_bq(volume: Volume) -> float:
    """Total activity (Bq) of an activity-concentration volume."""
    return float(volume.to_canonical_unit().array.astype(np.float64).sum() * volume.voxel_volume_ml)


def on_dose_grid(activity: Volume, grid: Grid, transform: sitk.Transform | None) -> Volume:
    """Activity moved onto the dose grid conserving the total inside it; `transform` maps dose-grid (reference
    CT) points to this timepoint's points (a registration result), None when the frames agree."""
    if transform is not None:
        moved = apply_to_spect(activity, transform, grid)
    elif activity.grid == grid:
        moved = activity
    else:
        moved = resample_to(activity, grid, mode="activity")
    array = np.asarray(moved.array, dtype=np.float32)
    return moved.with_array(array)
