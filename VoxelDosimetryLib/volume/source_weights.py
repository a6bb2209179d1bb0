"""One check for every source map (activity, TIA or relative weights) before it is sampled or scaled."""
from __future__ import annotations

from typing import Any

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError


def checked_source_weights(values: Any, what: str = "The activity/TIA map", allow_all_zero: bool = False) -> np.ndarray:
    """`values` as a float64 array (a copy when the dtype changes; never written to).

    Raises InputFormatError, naming `what` and the fix, for NaN/infinite or negative values, and for an all-zero map
    unless `allow_all_zero`.
    """
    w = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(w)):
        bad = int(w.size - np.count_nonzero(np.isfinite(w)))
        raise InputFormatError(f"{what} holds {bad} NaN or infinite values; clean it (e.g. numpy.nan_to_num) first.")
    if w.size and w.min() < 0:
        raise InputFormatError(f"{what} has negative values (min {w.min():.4g}); clip them to 0 "
                               "(e.g. numpy.clip(a, 0, None)) first: sources are sampled in proportion to their value.")
    if not allow_all_zero and not float(w.sum()) > 0:
        raise InputFormatError(f"{what} sums to zero: there is nothing to simulate or scale.")
    return w
