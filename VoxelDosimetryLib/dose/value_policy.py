"""The value policy at the dose boundary: what `compute_dose` checks before and after every method.

Before: the CT must be finite; the source goes through the shared source policy (volume/source_values.py:
NaN/inf refused, small negatives zeroed with a QC warning, large negative mass refused); activity in air outside
the body (density below 0.1 g/cm³ and outside the body mask; reconstruction overshoot, misregistration) is
reported as the fraction of the total (QC warning `activity_in_air`). It stays a source (its photons reach
tissue), but no dose is reported in those voxels: air is not tissue, and D = E/m with m ≈ 0 gives absurd numbers.
After: a non-finite or clearly negative result is an internal error, never written; round-off negatives of
fast-Fourier methods (|value| ≤ 1e-6 of the maximum) are set to 0 and counted; dose (and its uncertainty) in the
air voxels above is set to 0. docs/RELIABILITY.md states the policy.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from VoxelDosimetryLib.errors import VoxelDosimetryError
from VoxelDosimetryLib.physics import ct_to_density
from VoxelDosimetryLib.physics.body_mask import body_mask
from VoxelDosimetryLib.qc import qc_warn
from VoxelDosimetryLib.volume import Volume
from VoxelDosimetryLib.volume.source_values import checked_source, first_voxel_text, require_finite

# DblurDoseNet (Li et al. 2022, §2.3.2) treats voxels below 0.1 g/cm³ as air: no tissue dose is reported there.
AIR_DENSITY_G_CM3 = 0.1
# Negative results within this fraction of the maximum are floating-point round-off (FFT convolution), not physics.
ROUNDOFF_RELATIVE = 1e-6
# Statistical uncertainty of stochastic methods: median over voxels above 10 % of the maximum dose (the measure of
# the MC efficiency issue); above 10 % voxel doses are noise-dominated, 5 % is the usual clinical target.
HIGH_DOSE_FRACTION = 0.10
MAX_MEDIAN_UNCERTAINTY = 0.10
TARGET_UNCERTAINTY = 0.05


class DoseResultError(VoxelDosimetryError, RuntimeError):
    """A dose method returned non-finite or negative values: an internal error; nothing is written."""


@dataclass
class PolicyRecord:
    """What the policy did to one request: the source summary and the air voxels (z, y, x bool)."""

    source: dict
    air: np.ndarray = field(repr=False)
    activity_in_air_fraction: float = 0.0

    def to_info(self) -> dict:
        return {**self.source, "air_voxels": int(self.air.sum()),
                "activity_in_air_fraction": self.activity_in_air_fraction,
                "air_density_g_cm3": AIR_DENSITY_G_CM3}


def air_outside_body(ct: Volume, density: Volume | None = None) -> np.ndarray:
    """Voxels below 0.1 g/cm³ that lie outside the body mask (z, y, x bool); `density` the CT's, if already made."""
    rho = (ct_to_density(ct) if density is None else density).array
    return (rho < AIR_DENSITY_G_CM3) & ~body_mask(ct)


def checked_request(request):
    """The request with the source policy applied, and a PolicyRecord for check_result."""
    require_finite(request.ct, "The CT")
    what = "The activity map" if request.source.quantity == "activity_concentration" else "The TIA map"
    source, summary = checked_source(request.source, what, request.max_negative_fraction)
    density = ct_to_density(request.ct)  # once per request: the methods reuse it (DoseRequest.density_volume)
    air = air_outside_body(request.ct, density)
    values = source.array
    total = float(values.sum(dtype=np.float64))
    in_air = float(values[air].sum(dtype=np.float64)) if air.any() else 0.0
    fraction = in_air / total if total > 0 else 0.0
    if in_air > 0:
        qc_warn("activity_in_air",
                f"{100 * fraction:.3g} % of the {'activity' if 'activity' in what else 'TIA'} lies in air outside "
                f"the body (density below {AIR_DENSITY_G_CM3} g/cm3; e.g. {first_voxel_text(source, air & (values > 0))}): "
                "reconstruction overshoot or misregistration. It is kept as a source, but no dose is reported in "
                "those voxels (set to 0).", fraction_of_total=fraction, voxels=int(np.count_nonzero(air & (values > 0))))
    return replace(request, source=source, density=density), PolicyRecord(summary, air, fraction)


def _checked(volume: Volume, method: str, what: str, air: np.ndarray) -> tuple[Volume, int]:
    array = volume.array
    finite = np.isfinite(array)
    if not finite.all():
        raise DoseResultError(f"Internal error: dose method {method!r} returned {int((~finite).sum())} non-finite "
                              f"{what} voxel(s), the first at {first_voxel_text(volume, ~finite)}; nothing was "
                              "written. Please report this with the inputs.")
    peak = float(array.max()) if array.size else 0.0
    floor = -ROUNDOFF_RELATIVE * max(peak, 0.0)
    if array.size and float(array.min()) < floor:
        raise DoseResultError(f"Internal error: dose method {method!r} returned negative {what} (minimum "
                              f"{float(array.min()):.4g} {volume.unit}, the first at "
                              f"{first_voxel_text(volume, array < floor)}); nothing was written. Please report this "
                              "with the inputs.")
    roundoff = array < 0
    clean = roundoff | air
    if not clean.any():
        return volume, 0
    return volume.with_array(np.where(clean, np.zeros((), dtype=array.dtype), array)), int(roundoff.sum())


def check_result(result, request, record: PolicyRecord, method: str):
    """The result checked (internal error for NaN/negative values) with dose and uncertainty set to 0 in air."""
    dose, roundoff = _checked(result.dose, method, result.dose.quantity.replace("_", " "), record.air)
    uncertainty = result.uncertainty
    if uncertainty is not None:
        uncertainty, _ = _checked(uncertainty, method, "uncertainty", record.air)
    info = dict(result.info)
    info["value_policy"] = {**record.to_info(), "roundoff_negatives_zeroed": roundoff}
    if uncertainty is not None:
        info["value_policy"].update(check_statistical_uncertainty(dose, uncertainty, method))
    return replace(result, dose=dose, uncertainty=uncertainty, info=info)


def uncertainty_summary(dose: Volume, uncertainty: Volume) -> dict:
    """Median and 90th percentile of the relative uncertainty over the voxels above 10 % of the maximum dose, and
    their count; the median is None when there is no dose."""
    values = dose.array
    peak = float(values.max()) if values.size else 0.0
    if not peak > 0:
        return {"median_relative_uncertainty": None}
    relevant = uncertainty.array[values > HIGH_DOSE_FRACTION * peak]
    return {"median_relative_uncertainty": float(np.median(relevant)),
            "p90_relative_uncertainty": float(np.percentile(relevant, 90)), "uncertainty_voxels": int(relevant.size)}


def check_statistical_uncertainty(dose: Volume, uncertainty: Volume, method: str) -> dict:
    """uncertainty_summary (the median over the voxels above 10 % of the maximum dose is the MC efficiency measure
    of docs/MONTE_CARLO.md), with the QC warning `dose_uncertainty_high` when the median is above 10 %."""
    summary = uncertainty_summary(dose, uncertainty)
    median = summary["median_relative_uncertainty"]
    if median is not None and median > MAX_MEDIAN_UNCERTAINTY:
        factor = (median / TARGET_UNCERTAINTY) ** 2
        qc_warn("dose_uncertainty_high",
                f"The {method} dose is noisy: the median relative uncertainty over the voxels above "
                f"{100 * HIGH_DOSE_FRACTION:g} % of the maximum dose is {100 * median:.0f} %, so voxel values, maxima "
                f"and DVH tails are not reliable. Run about {factor:.0f} times more histories for "
                f"{100 * TARGET_UNCERTAINTY:g} % (the uncertainty falls as 1/sqrt(histories)).",
                method=method, median_relative_uncertainty=median, voxels=summary["uncertainty_voxels"],
                threshold=MAX_MEDIAN_UNCERTAINTY)
    return summary
