"""Single-timepoint time integration (Hänscheid et al. 2018), for whole images or organ values.

TIA ~= A(t) 2t/ln2 (Hänscheid H, Lapa C, Buck AK, Lassmann M, Werner RA. J Nucl Med 2018;59:75-81): the
mono-exponential integral A(t) exp(lam t)/lam evaluated at lam = ln2/t, i.e. assuming the effective half-life
equals the imaging time; it is least sensitive to the true half-life when t is near it (about 3-5 days for
Lu-177 DOTATATE in kidneys and tumours). With a known effective half-life T_eff the exact mono-exponential
integral through the point is used: TIA = A(t) exp(lam_eff t)/lam_eff, lam_eff = ln2/T_eff.
"""
from __future__ import annotations

import math

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.kinetics.tia import TIAResult, _integrate
from VoxelDosimetryLib.physics.nuclides import get_nuclide
from VoxelDosimetryLib.volume.volume import Volume


def hanscheid_tia(image: Volume, time_s: float, nuclide: str, effective_half_life_s: float | None = None,
                  **options) -> TIAResult:
    """TIA (or dose for a dose-rate image) from one image at `time_s` after injection (see module docstring).

    options as for integrate_activity (negative_policy, chunk_voxels, progress). The effective half-life must
    not exceed the physical half-life of `nuclide`.
    """
    quantities = ("activity_concentration", "activity", "dose_rate")
    return _integrate([image], [time_s], nuclide, "hanscheid", quantities,
                      {**options, "effective_half_life_s": effective_half_life_s})


def hanscheid_tia_value(activity: float, time_s: float, effective_half_life_s: float | None = None,
                        nuclide: str | None = None) -> float:
    """The same estimate for one number (e.g. an organ's activity in Bq -> TIA in Bq*s)."""
    if not (math.isfinite(time_s) and time_s > 0):
        raise InputFormatError(f"time_s must be > 0 s after injection; got {time_s!r}.")
    if not math.isfinite(activity):
        raise InputFormatError(f"activity must be a finite number; got {activity!r}.")
    if effective_half_life_s is None:
        return activity * 2.0 * time_s / math.log(2.0)  # Hänscheid et al. 2018 J Nucl Med 59:75
    if not (math.isfinite(effective_half_life_s) and effective_half_life_s > 0):
        raise InputFormatError(f"effective_half_life_s must be > 0; got {effective_half_life_s!r}.")
    if nuclide is not None and effective_half_life_s > get_nuclide(nuclide).half_life_s * (1 + 1e-9):
        raise InputFormatError("The effective half-life is longer than the physical half-life: clearance cannot be "
                               "slower than physical decay.")
    lam = math.log(2.0) / effective_half_life_s
    return activity * math.exp(lam * time_s) / lam
