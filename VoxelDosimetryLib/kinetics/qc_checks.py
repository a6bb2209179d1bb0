"""Kinetics QC checks: implausible scan times, clearance slower than physical decay, implausible total activity.

Each check emits a non-blocking QC warning (VoxelDosimetryLib.qc, docs/RELIABILITY.md) and returns whether the
input looked plausible; none changes a result. Codes: `scan_time_implausible`, `times_look_like_days`,
`effective_half_life_exceeds_physical`, `activity_total_implausible`. Times are in s after injection.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from VoxelDosimetryLib.physics.nuclides import get_nuclide
from VoxelDosimetryLib.qc import qc_warn
from VoxelDosimetryLib.volume.volume import Volume

HOUR_S = 3600.0
# Quantitative SPECT acquisitions last 15-30 min and dosimetry protocols image from hours after injection
# (Ljungberg et al. 2016, MIRD Pamphlet 26, J Nucl Med 57:151): a scan < 10 min after injection means a wrong
# injection time or a time unit error.
EARLIEST_SCAN_S = 600.0
# After 10 physical half-lives 2^-10 < 0.1 % of the activity is left: nothing left to image.
MAX_HALF_LIVES = 10.0
# Times in days typed as hours: every time below 15 (two weeks in days), while the half-life is more than 5x the
# last time (protocols sample the clearance over about one half-life or more, MIRD 26: Lu-177 out to 4-7 d).
DAYS_MAX_VALUE = 15.0
DAYS_HALF_LIFE_RATIO = 5.0
# In-field total activity against the decay-corrected administered activity: it cannot exceed 100 % (+50 % for
# calibration error; quantitative SPECT is accurate to ~10 %, Dewaraja et al. 2012, MIRD Pamphlet 23, J Nucl Med
# 53:1310); below 5 % (the reliability issue's bound) usually means a unit or calibration error (e.g. kBq read as
# Bq, counts declared as Bq/mL) or a field of view missing the uptake. Very late scans of fast-clearing tracers
# can hold less: the warning then says to check, it never changes a result.
ACTIVITY_FRACTION_LIMITS = (0.05, 1.5)
# Voxel fits clamped to physical decay: warn when those voxels hold >= 25 % of the TIA. Noise, and an uptake phase
# under a mono-exponential, clamp some voxels (up to 11 % of the TIA on the project's demo case); a wrong
# radionuclide, wrong times or a calibration drift between scans clamp most of them.
CLAMPED_TIA_FRACTION = 0.25
# Fallback reasons of kinetics.tia_models meaning "the fitted clearance was slower than physical decay".
SLOWER_THAN_PHYSICAL = ("slower_than_physical_decay", "tail_slower_than_physical_decay", "washout_at_physical_decay")


def _hours(times_s: Sequence[float]) -> list[float]:
    return [round(float(t) / HOUR_S, 6) for t in times_s]


def check_scan_times(times_s: Sequence[float], nuclide: str) -> bool:
    """`scan_time_implausible` (a scan < 10 min after injection or > 10 half-lives) and `times_look_like_days`.

    times_s: scan times after injection (s), already checked finite, > 0 and increasing (check_times).
    """
    nuc = get_nuclide(nuclide)
    times = np.asarray(times_s, dtype=float).reshape(-1)
    if times.size == 0:
        return True
    half_life_h = nuc.half_life_s / HOUR_S
    ok = True
    if times[0] < EARLIEST_SCAN_S:
        ok = False
        qc_warn("scan_time_implausible",
                f"Timepoint 1 is only {times[0]:g} s ({times[0] / HOUR_S:.3g} h) after injection: quantitative "
                "scans start hours after injection. It was used as given. Check the injection time and the time "
                "unit (the CLI takes hours after injection, --time-h; the library takes seconds).",
                times_h=_hours(times), time_s=float(times[0]), earliest_plausible_s=EARLIEST_SCAN_S,
                nuclide=nuc.name)
    late = np.flatnonzero(times > MAX_HALF_LIVES * nuc.half_life_s)
    if late.size:
        ok = False
        i = int(late[0])
        qc_warn("scan_time_implausible",
                f"Timepoint {i + 1} is {times[i] / HOUR_S:g} h after injection, more than {MAX_HALF_LIVES:g} "
                f"half-lives of {nuc.name} ({half_life_h:g} h): less than 0.1 % of the activity is left to image. "
                "It was used as given. Check the injection date/time, the time unit and the radionuclide.",
                times_h=_hours(times), time_s=float(times[i]), half_life_h=half_life_h,
                half_lives=float(times[i] / nuc.half_life_s), nuclide=nuc.name)
    last_h = float(times[-1]) / HOUR_S
    if last_h < DAYS_MAX_VALUE and half_life_h > DAYS_HALF_LIFE_RATIO * last_h:
        ok = False
        values = ", ".join(f"{t:g}" for t in _hours(times))
        qc_warn("times_look_like_days",
                f"All scan times are below {DAYS_MAX_VALUE:g} h ({values} h) while {nuc.name}'s half-life is "
                f"{half_life_h:g} h: the times look like days, not hours. They were used as hours. If they are "
                "days, multiply them by 24; if the imaging really stopped that early, the tail after the last "
                "scan is extrapolated over most of the decay.",
                times_h=_hours(times), half_life_h=half_life_h, nuclide=nuc.name,
                as_days_h=[round(24.0 * t, 6) for t in _hours(times)])
    return ok


def unconstrained_half_life_s(times_s: Sequence[float], activity: Sequence[float]) -> float | None:
    """Effective half-life (s) of a log-linear fit to the points from the maximum on; inf when they do not fall,
    None with fewer than 2 positive points there."""
    t = np.asarray(times_s, dtype=float).reshape(-1)
    a = np.asarray(activity, dtype=float).reshape(-1)
    start = int(np.argmax(a))
    t, a = t[start:], a[start:]
    keep = a > 0
    if int(keep.sum()) < 2:
        return None
    slope = -float(np.polyfit(t[keep], np.log(a[keep]), 1)[0])  # ln A = ln A0 - lam t
    return math.log(2.0) / slope if slope > 0 else math.inf


def check_tac_clearance(times_s: Sequence[float], activity: Sequence[float], nuclide: str,
                        what: str = "the time-activity curve") -> bool:
    """`effective_half_life_exceeds_physical` when the curve falls slower than physical decay after its maximum.

    The fits keep every decay constant >= the physical one, so such data get physical decay instead.
    """
    nuc = get_nuclide(nuclide)
    t_eff = unconstrained_half_life_s(times_s, activity)
    if t_eff is None or t_eff <= nuc.half_life_s:
        return True
    eff_h = None if math.isinf(t_eff) else t_eff / HOUR_S
    eff_text = "infinite (the activity does not fall)" if eff_h is None else f"{eff_h:.4g} h"
    qc_warn("effective_half_life_exceeds_physical",
            f"After its maximum, {what} falls slower than physical decay: effective half-life {eff_text} > "
            f"{nuc.name}'s physical {nuc.half_life_s / HOUR_S:g} h, which is impossible without new activity. The "
            "fit used physical decay (the slowest possible) instead. Check the calibration of each timepoint, the "
            "registration/segmentation at the late scans, the scan times and the radionuclide.",
            what=what, times_h=_hours(times_s), activity=[float(v) for v in activity],
            effective_half_life_h=eff_h, physical_half_life_h=nuc.half_life_s / HOUR_S, nuclide=nuc.name)
    return False


def check_voxel_clearance(model: str, fallback_voxels: Mapping[str, int], clamped_tia: float, total_tia: float,
                          fitted_voxels: int, nuclide: str) -> bool:
    """`effective_half_life_exceeds_physical` when voxels whose fitted clearance was slower than physical decay
    (clamped to it by kinetics.tia_models) hold >= 25 % of the total TIA."""
    clamped = sum(int(fallback_voxels.get(reason, 0)) for reason in SLOWER_THAN_PHYSICAL)
    if not clamped or total_tia <= 0:
        return True
    share = clamped_tia / total_tia
    if share < CLAMPED_TIA_FRACTION:
        return True
    nuc = get_nuclide(nuclide)
    qc_warn("effective_half_life_exceeds_physical",
            f"In {clamped} voxels ({100 * clamped / max(fitted_voxels, 1):.1f} % of those with activity, holding "
            f"{100 * share:.0f} % of the TIA) the {model} fit found clearance slower than {nuc.name}'s physical "
            f"decay (half-life {nuc.half_life_s / HOUR_S:g} h), which is impossible; physical decay was used there. "
            "Check the radionuclide, the calibration of each timepoint, the registration of the late scans and the "
            "scan times; with an uptake phase in the data prefer bi_exp or trapezoid_fit_tail to mono_exp.",
            model=model, clamped_voxels=clamped, voxels_with_activity=fitted_voxels, clamped_tia_fraction=share,
            threshold=CLAMPED_TIA_FRACTION, physical_half_life_h=nuc.half_life_s / HOUR_S, nuclide=nuc.name)
    return False


def total_activity_bq(volume: Volume) -> float:
    """Total activity (Bq) of an activity (Bq per voxel) or activity-concentration (Bq/mL) volume."""
    volume.require_quantity("activity", "activity_concentration")
    values = volume.to_canonical_unit().array.astype(np.float64)
    total = float(values.sum())
    return total * volume.voxel_volume_ml if volume.quantity == "activity_concentration" else total


def check_activity_total(total_bq: float, time_s: float, administered_activity_bq: float, nuclide: str,
                         where: str = "the activity map") -> bool:
    """`activity_total_implausible` when `total_bq` is outside 1-150 % of the administered activity decayed to
    `time_s` (s after injection)."""
    nuc = get_nuclide(nuclide)
    expected = float(administered_activity_bq) * math.exp(-nuc.decay_constant_per_s * float(time_s))
    if not expected > 0:
        return True
    fraction = float(total_bq) / expected
    low, high = ACTIVITY_FRACTION_LIMITS
    if low <= fraction <= high:
        return True
    qc_warn("activity_total_implausible",
            f"{where[:1].upper() + where[1:]} holds {total_bq / 1e6:.4g} MBq in total, {100 * fraction:.3g} % of the "
            f"administered {administered_activity_bq / 1e6:.4g} MBq decayed to the scan time "
            f"({time_s / HOUR_S:g} h: {expected / 1e6:.4g} MBq); plausible is {100 * low:g}-{100 * high:g} %. It was "
            "used as given. Check the SPECT calibration (sensitivity, acquisition duration), the activity unit "
            "(Bq vs kBq/MBq, per voxel vs per mL), the administered activity and the scan time.",
            where=where, total_bq=float(total_bq), expected_bq=expected, fraction=fraction,
            administered_activity_bq=float(administered_activity_bq), time_h=float(time_s) / HOUR_S,
            lower=low, upper=high, nuclide=nuc.name)
    return False


def check_activity_totals(images: Sequence[Volume], times_s: Sequence[float], nuclide: str,
                          administered_activity_bq: float | None) -> list[float]:
    """check_activity_total for each activity image at its time; returns the totals (Bq). Skipped (empty list)
    without an administered activity."""
    if administered_activity_bq is None:
        return []
    totals = []
    for i, (image, t) in enumerate(zip(images, times_s)):
        total = total_activity_bq(image)
        check_activity_total(total, float(t), administered_activity_bq, nuclide,
                             f"the activity of timepoint {i + 1} ({float(t) / HOUR_S:g} h)")
        totals.append(total)
    return totals


# Above this share of the TIA after the last scan, the result rests mostly on the extrapolation, not on data.
TAIL_DOMINATES_FRACTION = 0.5


def check_extrapolation(model: str, times_s: Sequence[float], tail_fraction: float, nuclide: str) -> bool:
    """What the integral rests on: `single_timepoint` (one scan: the model's assumption, named) and
    `tail_dominates_tia` (more than half of the TIA after the last scan, extrapolated)."""
    plausible = True
    last_h = float(times_s[-1]) / HOUR_S
    nuc = get_nuclide(nuclide)
    if len(times_s) == 1:
        plausible = False
        if model == "hanscheid":
            assumption = ("Hänscheid et al. 2018 assume an effective half-life equal to the imaging time; best near "
                          "72-96 h after injection")
        else:
            assumption = (f"'{model}' with one point rises linearly to the scan and then decays with the physical "
                          f"half-life ({nuc.half_life_s / HOUR_S:g} h) only, with no biological clearance: an upper "
                          "bound, often several times the true TIA. Prefer model 'hanscheid' for one scan")
        qc_warn("single_timepoint", f"Single timepoint at {last_h:g} h: TIA by {model}. {assumption}. Check the scan "
                                    "time after injection.", model=model, time_h=last_h)
    if model != "hanscheid" and tail_fraction > TAIL_DOMINATES_FRACTION:
        plausible = False
        qc_warn("tail_dominates_tia",
                f"{100 * tail_fraction:.0f} % of the integral lies after the last scan ({last_h:g} h) and is "
                f"extrapolated by the {model} model: the result depends mostly on that assumption. A later scan "
                "would measure it.", model=model, tail_fraction=float(tail_fraction), last_time_h=last_h,
                threshold=TAIL_DOMINATES_FRACTION)
    return plausible
