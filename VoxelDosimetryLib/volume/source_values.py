"""The one value policy for source maps (activity, TIA, dose rate to integrate), shared by every dose method and `tia`.

- Non-finite voxels (NaN, ±inf) are refused: SourceValueError naming how many and the first one (index and LPS mm).
- Negative voxels: small negatives, typical of reconstruction noise, are set to 0, counted, and reported as the QC
  warning `negative_voxels_zeroed`; a map whose negative sum exceeds `max_negative_fraction` of its positive sum
  (default 10 %) is refused, because clipping would then change the total activity noticeably.
  `max_negative_fraction=0` refuses any negative voxel.
The input volume is never modified (a new volume is returned when voxels are zeroed). docs/RELIABILITY.md.
"""
from __future__ import annotations

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.qc import qc_warn
from VoxelDosimetryLib.volume.volume import Volume

# A negative sum above this fraction of the positive sum is not noise: refuse (override per call or --max-negative-fraction).
MAX_NEGATIVE_FRACTION = 0.10


class SourceValueError(InputFormatError):
    """A source map holds values no dose can be computed from (NaN/inf, or too much negative activity)."""


def first_voxel_text(volume: Volume, mask: np.ndarray) -> str:
    """'voxel (x, y, z) = index at L, P, S mm' of the first True voxel of `mask` (z, y, x order)."""
    k, j, i = (int(v) for v in np.argwhere(mask)[0])
    lps = volume.grid.index_to_world([i, j, k])
    return f"voxel (i, j, k) = ({i}, {j}, {k}) at LPS ({lps[0]:.1f}, {lps[1]:.1f}, {lps[2]:.1f}) mm"


def require_finite(volume: Volume, what: str) -> None:
    """Raise SourceValueError when `volume` holds NaN or infinite values (how many, and where the first is)."""
    finite = np.isfinite(volume.array)
    if finite.all():
        return
    bad = int(finite.size - np.count_nonzero(finite))
    raise SourceValueError(f"{what} holds {bad} NaN or infinite voxel(s), the first at {first_voxel_text(volume, ~finite)}. "
                           "Fix the reconstruction or set those voxels to 0 before computing dose.")


def checked_source(volume: Volume, what: str, max_negative_fraction: float | None = None) -> tuple[Volume, dict]:
    """`volume` with the value policy applied, and a summary for run records.

    Returns (volume with small negatives set to 0, {"negative_voxels_zeroed", "negative_fraction_of_positive",
    "most_negative_value"}). Raises SourceValueError for non-finite values or too much negative activity.
    """
    limit = MAX_NEGATIVE_FRACTION if max_negative_fraction is None else float(max_negative_fraction)
    if not (np.isfinite(limit) and limit >= 0):
        raise InputFormatError(f"max_negative_fraction must be a number >= 0; got {max_negative_fraction!r}.")
    require_finite(volume, what)
    array = volume.array
    negative = array < 0
    count = int(np.count_nonzero(negative))
    summary = {"negative_voxels_zeroed": 0, "negative_fraction_of_positive": 0.0, "most_negative_value": 0.0}
    if count == 0:
        return volume, summary
    negative_sum = float(-array[negative].sum(dtype=np.float64))
    positive_sum = float(array[array > 0].sum(dtype=np.float64))
    fraction = negative_sum / positive_sum if positive_sum > 0 else float("inf")
    lowest = float(array.min())
    if fraction > limit or positive_sum <= 0:
        shown = "all of its non-zero voxels are negative" if positive_sum <= 0 else \
            f"its negative voxels sum to {100 * fraction:.3g} % of the positive ones"
        raise SourceValueError(
            f"{what} has {count} negative voxel(s) (minimum {lowest:.4g} {volume.unit}, the first at "
            f"{first_voxel_text(volume, negative)}) and {shown}, more than the {100 * limit:g} % treated as "
            "reconstruction noise. Check the image and its unit (is it really an activity map?); to accept it, "
            "raise max_negative_fraction (CLI --max-negative-fraction).")
    summary = {"negative_voxels_zeroed": count, "negative_fraction_of_positive": fraction,
               "most_negative_value": lowest}
    qc_warn("negative_voxels_zeroed",
            f"{what}: {count} negative voxel(s) (minimum {lowest:.4g} {volume.unit}, {100 * fraction:.3g} % of the "
            "positive sum) were set to 0 as reconstruction noise.",
            what=what, voxels=count, negative_fraction_of_positive=fraction, most_negative_value=lowest)
    cleaned = np.where(negative, np.zeros((), dtype=array.dtype), array)
    return volume.with_array(cleaned), summary
