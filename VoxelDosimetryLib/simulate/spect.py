"""Simulated quantitative SPECT: resolution blur, voxel grid change and Poisson counting noise."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.geometry import resample_to
from VoxelDosimetryLib.volume import Grid, Volume

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def simulate_spect(activity: Volume, spect_grid: Grid, fwhm_mm: float = 10.0, sensitivity_cps_per_mbq: float = 6.0,
                   duration_s: float = 1500.0, seed: int | None = 0) -> Volume:
    """SPECT image (Bq/mL) of a true activity map: Gaussian PSF of `fwhm_mm`, activity-conserving
    resampling to `spect_grid`, and Poisson noise for `duration_s` of acquisition at the given sensitivity
    (seed None: no noise). Total activity is preserved in expectation, except what the blur carries
    beyond the edges of the source grid.
    """
    activity.require_quantity("activity_concentration")
    if fwhm_mm < 0 or duration_s <= 0 or sensitivity_cps_per_mbq <= 0:
        raise InputFormatError("fwhm_mm must be >= 0 and duration_s, sensitivity_cps_per_mbq > 0.")
    bq_per_ml = activity.to_unit("Bq/mL").array.astype(np.float64)
    sigma_vox = [fwhm_mm * FWHM_TO_SIGMA / s for s in reversed(activity.spacing)]  # (z, y, x) order
    blurred = activity.with_array(gaussian_filter(bq_per_ml, sigma_vox, mode="constant"), unit="Bq/mL")
    image = resample_to(blurred, spect_grid, mode="activity")
    result = image.array
    if result.size and result.min() < -1e-9 * max(float(result.max()), 1.0):
        raise InputFormatError("The true activity map holds negative values; SPECT cannot be simulated from it.")
    result = np.maximum(result, 0.0)  # removes float round-off of order 1e-16 only (checked above)
    if seed is not None:
        counts_per_bq_per_ml = sensitivity_cps_per_mbq * 1e-6 * duration_s * spect_grid.voxel_volume_ml
        counts = np.random.default_rng(seed).poisson(result * counts_per_bq_per_ml)
        result = counts / counts_per_bq_per_ml
    metadata = {**activity.metadata, "simulated": {"fwhm_mm": fwhm_mm, "sensitivity_cps_per_mbq": sensitivity_cps_per_mbq,
                                                    "duration_s": duration_s, "seed": seed}}
    return Volume(result.astype(np.float32), grid=spect_grid, quantity="activity_concentration", unit="Bq/mL",
                  metadata=metadata)
