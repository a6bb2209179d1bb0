"""Bland-Altman agreement statistics: bias, SD of the differences and 95 % limits of agreement."""
from __future__ import annotations

from typing import Any

import numpy as np

from VoxelDosimetryLib.errors import GridMismatchError, InputFormatError

# 95 % limits of agreement: bias +- 1.96 SD (Bland & Altman 1986, Lancet 327:307).
LOA_Z = 1.96


def bland_altman(test_values: Any, reference_values: Any, percent: bool = False) -> dict:
    """Bland-Altman statistics of paired values (Bland & Altman 1986).

    difference d = test - reference (in the values' unit), or with percent=True
    d = 100 (test - reference) / ((test + reference) / 2) (%), which needs positive pair means.
    Returns n, bias = mean(d), sd (sample SD, n - 1), loa_lower/loa_upper = bias -+ 1.96 sd, plus the
    per-pair `mean` and `difference` arrays for plotting.
    """
    t = np.asarray(test_values, dtype=np.float64).reshape(-1)
    r = np.asarray(reference_values, dtype=np.float64).reshape(-1)
    if t.shape != r.shape:
        raise GridMismatchError(f"Bland-Altman needs paired values; got {t.size} test and {r.size} reference values.")
    if t.size < 2:
        raise InputFormatError(f"Bland-Altman needs at least 2 pairs to estimate an SD; got {t.size}.")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(r))):
        raise InputFormatError("Bland-Altman values hold NaN or infinity; fix or mask them first.")
    mean = (t + r) / 2.0
    difference = t - r
    if percent:
        if np.any(mean <= 0):
            raise InputFormatError("Percent Bland-Altman differences divide by the pair mean, and some pair means "
                                   "are <= 0; use absolute differences or drop those pairs.")
        difference = 100.0 * difference / mean
    bias = float(difference.mean())
    sd = float(difference.std(ddof=1))
    return {"n": int(t.size), "bias": bias, "sd": sd, "loa_lower": bias - LOA_Z * sd, "loa_upper": bias + LOA_Z * sd,
            "percent": bool(percent), "mean": mean, "difference": difference}


def bland_altman_summary(stats: dict) -> dict:
    """The JSON-friendly scalars of a bland_altman() result (drops the per-pair arrays)."""
    return {k: v for k, v in stats.items() if k not in ("mean", "difference")}
