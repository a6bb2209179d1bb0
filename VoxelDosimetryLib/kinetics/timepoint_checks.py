"""Guard rails shared by the time-integration functions: times, point counts, grids, quantities, NaN, negatives.

Every check raises a typed error naming the problem, the timepoint involved and the fix.
Negative voxels (reconstruction noise) follow a documented policy: 'zero' sets them to 0 and counts them in
the result info; 'error' refuses them. NaN/inf voxels are always refused.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from VoxelDosimetryLib.errors import GridMismatchError, InputFormatError, UnitError
from VoxelDosimetryLib.io.timepoints import check_timepoint_times
from VoxelDosimetryLib.volume.source_values import checked_source, require_finite
from VoxelDosimetryLib.volume.volume import Volume

# input quantity -> quantity of its time integral
INTEGRAL_QUANTITY = {"activity_concentration": "tia_concentration", "activity": "tia", "dose_rate": "dose"}
NEGATIVE_POLICIES = ("zero", "error")


def describe_timepoint(index: int, time_s: float | None = None) -> str:
    """'timepoint 2 (24 h)' for messages; `index` is 0-based."""
    when = "" if time_s is None else f" ({time_s / 3600.0:g} h)"
    return f"timepoint {index + 1}{when}"


def check_times(times_s: Sequence[float], n_images: int | None = None) -> np.ndarray:
    """Times after injection (s) as a float64 array: finite, > 0, strictly increasing, one per image.

    The rules and messages are io.timepoints.check_timepoint_times (the one timepoint check), in hours.
    """
    try:
        times = np.array(times_s, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InputFormatError(f"Times must be numbers in seconds after injection; got {times_s!r}.") from exc
    check_timepoint_times(times / 3600.0, n_images=n_images)
    return times


def check_point_count(n_points: int, needed: int, model: str, exact: bool = False) -> None:
    """Refuse a model that has more parameters than there are timepoints."""
    if exact and n_points != needed:
        raise InputFormatError(f"Model {model!r} uses exactly {needed} timepoint(s); got {n_points}. Choose a "
                               "multi-timepoint model (e.g. 'trapezoid') for several images.")
    if n_points < needed:
        raise InputFormatError(f"Model {model!r} needs at least {needed} timepoints; got {n_points}. Add "
                               "timepoints or choose a model with fewer parameters (e.g. 'trapezoid', or "
                               "'hanscheid' for a single image).")


def check_timepoint_images(images: Sequence[Volume], times_s: np.ndarray,
                           quantities: Sequence[str]) -> list[Volume]:
    """Images in canonical units, one quantity, one grid, finite; errors name the timepoint at fault."""
    if isinstance(images, Volume):
        images = [images]
    images = list(images)
    out = []
    for i, image in enumerate(images):
        where = describe_timepoint(i, times_s[i] if i < len(times_s) else None)
        if not isinstance(image, Volume):
            raise InputFormatError(f"The image of {where} is a {type(image).__name__}, not a Volume; load it with "
                                   "VoxelDosimetryLib.io.read_volume.")
        if image.quantity not in quantities:
            hint = ""
            if image.quantity == "counts":
                hint = (" Calibrate it first (kinetics.quantification.calibrate_counts, CLI "
                        "--sensitivity-cps-per-mbq S --counts-duration-s D).")
            elif image.quantity == "unknown":
                hint = " The file does not say what it holds: set the quantity when loading (CLI --quantity)."
            raise UnitError(f"The image of {where} holds {image.quantity!r} ({image.unit}); this integration "
                            f"needs {' or '.join(quantities)}.{hint}")
        if image.quantity != images[0].quantity:
            raise UnitError(f"The image of {where} holds {image.quantity!r} but timepoint 1 holds "
                            f"{images[0].quantity!r}: all timepoints must hold the same quantity.")
        problem = image.grid.mismatch(images[0].grid)
        if problem is not None:
            raise GridMismatchError(f"The image of {where} is not on the grid of timepoint 1: {problem}. Register "
                                    "and resample every timepoint onto one grid first (`voxeldosimetry register`, "
                                    "or VoxelDosimetryLib.geometry.resample_to(image, reference, mode='activity')).")
        check_not_decay_corrected(image, where)
        image = image.to_canonical_unit()
        require_finite(image, f"The image of {where}")  # the shared value policy: count and first voxel
        out.append(image)
    return out


def check_not_decay_corrected(image: Volume, where: str) -> None:
    """Refuse images decay-corrected to the injection: time integration needs the activity at scan time."""
    calibration = image.metadata.get("calibration")
    nm = image.metadata.get("nm")
    corrected = isinstance(calibration, dict) and bool(calibration.get("decay_corrected_to_reference"))
    admin = isinstance(nm, dict) and str(nm.get("decay_correction") or "").upper() == "ADMIN"
    if corrected or admin:
        raise InputFormatError(f"The image of {where} is decay-corrected to the injection/reference time; time "
                               "integration needs the activity present at scan time (physical decay is part of "
                               "the curve). Recalibrate without a reference time, or undo the correction.")


def negative_summary(images: Sequence[Volume], times_s: np.ndarray, policy: str,
                     max_negative_fraction: float | None = None) -> tuple[list[Volume], dict]:
    """Apply the shared source value policy (volume/source_values.py) to every timepoint image.

    policy 'zero': small negatives set to 0 and counted (QC warning), too much negative activity refused;
    'error': any negative voxel refused. Returns (the cleaned images, info entries).
    """
    if policy not in NEGATIVE_POLICIES:
        raise InputFormatError(f"negative_policy must be one of {NEGATIVE_POLICIES}; got {policy!r}.")
    limit = 0.0 if policy == "error" else max_negative_fraction
    cleaned, counts, minima = [], [], []
    for i, image in enumerate(images):
        volume, summary = checked_source(image, f"The image of {describe_timepoint(i, times_s[i])}", limit)
        cleaned.append(volume)
        counts.append(summary["negative_voxels_zeroed"])
        minima.append(summary["most_negative_value"])
    return cleaned, {"negative_policy": policy, "negative_voxels_set_to_zero": counts, "most_negative_value": minima}
