"""Is this CT really a CT, and this activity map really an activity map? Non-blocking QC checks (qc_warn).

A CT in Hounsfield units always holds air (about -1000 HU) around the patient or in the lungs, and fat below 0 HU;
an activity or count map is non-negative with a near-zero background and a few hot voxels. Swapped files, or a CT
stored without its rescale to HU, show these patterns. Codes: `ct_looks_like_activity`, `activity_looks_like_ct`
(docs/RELIABILITY.md).
"""
from __future__ import annotations

import numpy as np

from VoxelDosimetryLib.qc import qc_warn
from VoxelDosimetryLib.volume.volume import Volume

# Air is -1000 HU and lung about -850..-700 HU (Schneider et al. 2000, Phys Med Biol 45:459); -500 HU separates
# air/lung from tissue (the body threshold used across this library).
AIR_TISSUE_THRESHOLD_HU = -500.0
# A CT with fat (about -100 HU, Schneider 2000) holds well over 1 % negative voxels; an activity map almost none.
NON_NEGATIVE_FRACTION = 0.99
# Skewness of a map that is mostly background with a few hot organs (an activity map: > 5); a CT histogram of
# air + tissue + bone has |skewness| of order 1 (Fisher-Pearson moment coefficient).
ACTIVITY_SKEWNESS = 5.0
# A CT of a patient: >= 10 % of voxels are air/lung (<= -500 HU) and air outweighs the positive HU of bone and
# tissue by far; reconstruction noise in an activity map never reaches 50 % of its positive sum (the source policy
# of volume/source_values.py already refuses more than 10 %).
CT_AIR_FRACTION = 0.10
CT_NEGATIVE_TO_POSITIVE = 0.5


def sentence_start(text: str) -> str:
    """'the CT' -> 'The CT' (only the first letter changes)."""
    return text[:1].upper() + text[1:]


def _values(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float64).reshape(-1)


def skewness(values: np.ndarray) -> float:
    """Fisher-Pearson moment coefficient of skewness (0 for a constant array)."""
    v = _values(values)
    if v.size == 0:
        return 0.0
    centred = v - v.mean()
    sd = float(np.sqrt(np.mean(centred * centred)))
    return float(np.mean(centred ** 3) / sd ** 3) if sd > 0 else 0.0


def check_ct_plausible(ct: Volume, name: str = "the CT") -> bool:
    """Warn (`ct_looks_like_activity`) when a CT's values look like activity or counts; True when they look like HU.

    Flagged: no voxel below -500 HU (no air, no lung) and either >= 99 % of voxels >= 0 or a histogram skewed like
    a hot-spot map (skewness > 5).
    """
    stored = np.asarray(ct.to_canonical_unit().array)
    if stored.size == 0 or np.count_nonzero(stored < AIR_TISSUE_THRESHOLD_HU):
        return True  # air or lung present: a CT (the usual case, decided without copying the array)
    hu = _values(stored)
    non_negative = float(np.count_nonzero(hu >= 0)) / hu.size
    skew = skewness(hu)
    if non_negative < NON_NEGATIVE_FRACTION and skew <= ACTIVITY_SKEWNESS:
        return True
    qc_warn("ct_looks_like_activity",
            f"{sentence_start(name)} does not look like a CT in HU: no voxel is below {AIR_TISSUE_THRESHOLD_HU:g} HU "
            f"(no air or lung), {100 * non_negative:.1f} % of voxels are >= 0 and the histogram skewness is "
            f"{skew:.1f} (min {hu.min():g}, median {float(np.median(hu)):g}, max {hu.max():g}). It was used as HU. "
            "Check that the CT and the SPECT/activity files were not swapped, and that the CT carries its "
            "rescale to HU (DICOM RescaleSlope/RescaleIntercept). A file storing HU + 1000 (an attenuation map, "
            "e.g. the patient15 phantom) needs -1000 added: `voxeldosimetry dose --ct-offset-hu -1000`, "
            "`ct_offset_hu: -1000` in a pipeline config, or a corrected copy for other commands.",
            name=name, min_value=float(hu.min()), median_value=float(np.median(hu)), max_value=float(hu.max()),
            fraction_below_minus_500_hu=0.0, fraction_non_negative=non_negative, skewness=skew)
    return False


def check_activity_plausible(volume: Volume, name: str = "the activity map") -> bool:
    """Warn (`activity_looks_like_ct`) when an activity/count/dose-rate map looks like a CT; True when it does not.

    Flagged: >= 10 % of the stored values are <= -500 (air in HU) and the negative values add up to >= 50 % of
    the positive ones. The stored numbers are tested, whatever unit the file claims.
    """
    stored = np.asarray(volume.array)
    if stored.size == 0:
        return True
    air = float(np.count_nonzero(stored <= AIR_TISSUE_THRESHOLD_HU)) / stored.size
    if air < CT_AIR_FRACTION:
        return True  # the usual case, decided without copying the array
    v = _values(stored)
    positive = float(v[v > 0].sum())
    negative = float(-v[v < 0].sum())
    ratio = negative / positive if positive > 0 else (float("inf") if negative > 0 else 0.0)
    if ratio < CT_NEGATIVE_TO_POSITIVE:
        return True
    near_air = float(np.count_nonzero(np.abs(v + 1000.0) <= 100.0)) / v.size
    qc_warn("activity_looks_like_ct",
            f"{sentence_start(name)} looks like a CT, not {volume.quantity} ({volume.unit}): {100 * air:.1f} % of its "
            f"values are <= {AIR_TISSUE_THRESHOLD_HU:g} ({100 * near_air:.1f} % within 100 of -1000, air in HU) and "
            f"its negative values add up to {100 * ratio:.0f} % of the positive ones (min {v.min():g}, max "
            f"{v.max():g}). It was used as {volume.quantity}. Check that the SPECT/activity and CT files were not "
            "swapped.",
            name=name, quantity=volume.quantity, unit=volume.unit, fraction_at_or_below_minus_500=air,
            fraction_near_minus_1000=near_air, negative_to_positive_sum=ratio if np.isfinite(ratio) else None,
            min_value=float(v.min()), max_value=float(v.max()))
    return False
