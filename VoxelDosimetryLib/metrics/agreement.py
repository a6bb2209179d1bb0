"""Voxel agreement metrics between a test and a reference map: MAE%, NRMSE, ensemble noise, Pearson r, Lin's CCC.

Every function takes numpy arrays or Volumes (values compared element by element) and an optional boolean
mask selecting the elements to use. Inputs are never modified; results are plain floats, never NaN: an
undefined metric raises InputFormatError naming the reason.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from VoxelDosimetryLib.errors import GridMismatchError, InputFormatError
from VoxelDosimetryLib.volume import Volume


def _values(data: Any) -> np.ndarray:
    array = data.array if isinstance(data, Volume) else data
    return np.asarray(array, dtype=np.float64)


def _select(data: Any, mask: Any, what: str) -> np.ndarray:
    """The finite float64 values of `data` inside `mask` (all elements when mask is None), flattened."""
    values = _values(data)
    if mask is not None:
        mask = np.asarray(mask.array if isinstance(mask, Volume) else mask).astype(bool)
        if mask.shape != values.shape:
            raise GridMismatchError(f"The mask shape {mask.shape} differs from the {what} shape {values.shape}; "
                                    "build the mask on the same grid.")
        values = values[mask]
    values = values.reshape(-1)
    if values.size == 0:
        raise InputFormatError(f"No {what} values to compare: the mask is empty. Check the mask or threshold.")
    if not np.all(np.isfinite(values)):
        raise InputFormatError(f"The {what} holds NaN or infinite values inside the mask; fix or mask them first.")
    return values


def paired_values(test: Any, reference: Any, mask: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(test, reference) values inside `mask` as flat float64 arrays; shapes must match."""
    t, r = _values(test), _values(reference)
    if t.shape != r.shape:
        raise GridMismatchError(f"Test shape {t.shape} differs from reference shape {r.shape}; resample the test "
                                "onto the reference grid first (voxeldosimetry compare --resample).")
    return _select(t, mask, "test"), _select(r, mask, "reference")


def mae_percent(test: Any, reference: Any, mask: Any = None) -> float:
    """Mean absolute percentage error of test vs reference (%), over the selected elements.

    MAE(%) = 1/n sum_n |D_test - D_ref| / D_ref x 100 (Kim et al. 2022, Eq. 3). In the paper each element is
    one dataset's organ mean dose (Eq. 2) and n = 22 datasets, per organ; pass such arrays for the paper's
    value. Applied to voxels, restrict the mask to reference values > 0 (e.g. above 1 % of the maximum).
    """
    t, r = paired_values(test, reference, mask)
    if np.any(r <= 0):
        raise InputFormatError(f"MAE% divides by the reference, but {int(np.count_nonzero(r <= 0))} selected "
                               "reference values are <= 0; restrict the mask to reference values above a threshold.")
    return float(np.mean(np.abs(t - r) / r) * 100.0)  # Kim et al. 2022, Eq. 3


def nrmse(test: Any, reference: Any, mask: Any = None) -> float:
    """Normalised root mean square error (fraction, x100 for %), over the voxels of the VOI (mask).

    NRMSE = sqrt(1/n_p sum_j (x^_j - x_j)^2) / sqrt(1/n_p sum_j x_j^2), x = reference ("true"),
    x^ = test (Li et al. 2022, DblurDoseNet, Sec. 2.5.2).
    """
    t, r = paired_values(test, reference, mask)
    denominator = float(np.sqrt(np.mean(r ** 2)))
    if denominator == 0:
        raise InputFormatError("NRMSE is undefined: the reference is zero everywhere in the mask; choose a VOI "
                               "with dose.")
    return float(np.sqrt(np.mean((t - r) ** 2))) / denominator  # Li et al. 2022, Sec. 2.5.2


def ensemble_noise(realisations: Sequence[Any], mask: Any = None) -> float:
    """Ensemble noise (%) of M >= 2 realisations of the same estimate (e.g. Poisson-noise SPECT replicates).

    Noise = sqrt(1/n_p sum_j [1/(M-1) sum_m (x^_m[j] - mu_j)^2]) / (1/n_p sum_j mu_j) x 100 %, with
    mu_j = 1/M sum_m x^_m[j], over the n_p voxels of the VOI (Li et al. 2022, DblurDoseNet, Sec. 2.5.3).
    """
    if len(realisations) < 2:
        raise InputFormatError(f"Ensemble noise needs at least 2 realisations of the test method; got "
                               f"{len(realisations)}. Add replicates (e.g. --test-realisation R2).")
    shapes = {_values(r).shape for r in realisations}
    if len(shapes) != 1:
        raise GridMismatchError(f"The realisations have different shapes {sorted(shapes)}; put them on one grid.")
    stack = np.stack([_select(r, mask, f"realisation {m + 1}") for m, r in enumerate(realisations)])
    mu = stack.mean(axis=0)
    mean_mu = float(mu.mean())
    if mean_mu <= 0:
        raise InputFormatError("Ensemble noise is undefined: the mean of the realisations in the VOI is <= 0; "
                               "choose a VOI with dose.")
    variance = stack.var(axis=0, ddof=1)  # 1/(M-1) sum_m (x_m[j] - mu_j)^2
    return float(np.sqrt(variance.mean()) / mean_mu * 100.0)  # Li et al. 2022, Sec. 2.5.3


def pearson_r(test: Any, reference: Any, mask: Any = None) -> float:
    """Pearson correlation coefficient of the paired voxel values (dimensionless, -1..1)."""
    t, r = paired_values(test, reference, mask)
    dt, dr = t - t.mean(), r - r.mean()
    denominator = float(np.sqrt(np.sum(dt ** 2) * np.sum(dr ** 2)))
    if denominator == 0:
        raise InputFormatError("Pearson r is undefined when the test or reference values are constant in the "
                               "mask; use a mask with varying dose.")
    return float(np.clip(np.sum(dt * dr) / denominator, -1.0, 1.0))  # clip only removes round-off beyond +-1


def lin_ccc(test: Any, reference: Any, mask: Any = None) -> float:
    """Lin's concordance correlation coefficient (dimensionless, -1..1).

    rho_c = 2 s_xy / (s_x^2 + s_y^2 + (mean_x - mean_y)^2) with 1/n moments (Lin 1989, Biometrics 45:255,
    sample estimate r_c). Two identical constant maps (0/0) count as perfect concordance, 1.
    """
    t, r = paired_values(test, reference, mask)
    mt, mr = t.mean(), r.mean()
    covariance = float(np.mean((t - mt) * (r - mr)))
    denominator = float(np.mean((t - mt) ** 2) + np.mean((r - mr) ** 2) + (mt - mr) ** 2)
    if denominator == 0:
        return 1.0
    return 2.0 * covariance / denominator  # Lin 1989, sample concordance correlation coefficient r_c
