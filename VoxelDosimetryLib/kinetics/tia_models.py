"""Voxel-wise time-integration models, vectorised over voxels (numpy, float64).

Every model takes `times` (T,) in s after injection (checked: > 0, increasing), `values` (T, n) non-negative
activity (or dose rate) of n voxels, and the physical decay constant `lam_phys` (1/s), and returns a ModelOutput:
the integral from 0 to infinity per voxel (value x s), the part of it after the last timepoint ("tail"), boolean
masks of the voxels that needed a documented fall-back (by reason), and fitted parameter arrays.
Clearance slower than physical decay is impossible, so every fitted decay constant is kept >= lam_phys.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LOG2 = float(np.log(2.0))


@dataclass
class ModelOutput:
    """Per-voxel results of one model on one chunk of n voxels."""

    tia: np.ndarray  # (n,) integral 0..inf, value*s
    tail: np.ndarray  # (n,) integral from the last timepoint to infinity
    fallback: dict = field(default_factory=dict)  # reason -> (n,) bool
    parameters: dict = field(default_factory=dict)  # name -> (n,) float64


# ------------------------------------------------------------------------------------------------------------
# trapezoid (Kim et al. Eq. 1)
# ------------------------------------------------------------------------------------------------------------

def trapezoid_area(times: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Trapezoid integral from t=0 (with A(0)=0) to the last timepoint, per voxel."""
    t = np.concatenate([[0.0], times])
    previous = np.concatenate([np.zeros((1, values.shape[1])), values[:-1]], axis=0)
    return (0.5 * (previous + values) * np.diff(t)[:, None]).sum(axis=0)


def trapezoid(times: np.ndarray, values: np.ndarray, lam_phys: float) -> ModelOutput:
    """Trapezoid from (0, 0) through the points, then physical decay from the last point.

    Kim et al. 2022 (Nucl Med Mol Imaging) Eq. 1: sum_i (A_i + A_{i+1}) dt_i / 2 + A_last / lambda_phys,
    with A_0 = 0 at t_0 = 0 (the tail integral is read as A_last exp(-lambda (t - t_last)) from t_last).
    """
    tail = values[-1] / lam_phys
    return ModelOutput(tia=trapezoid_area(times, values) + tail, tail=tail)


# ------------------------------------------------------------------------------------------------------------
# log-linear exponential fits
# ------------------------------------------------------------------------------------------------------------

def loglinear_fit(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weighted least squares of ln A = ln A0 - lam t over the positive points of each voxel.

    Weights = A (var(ln A) ~ 1/A for Poisson-like noise). Returns (lam, n_positive, t_mean, log_mean): the fitted
    decay constant (nan where < 2 points are positive) and the weighted means of t and ln A, so that
    ln A0 = log_mean + lam * t_mean for the fitted or any fixed lam.
    """
    positive = values > 0
    w = np.where(positive, values, 0.0)
    log_v = np.log(np.where(positive, values, 1.0))
    s = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_mean = (w * times[:, None]).sum(axis=0) / s
        log_mean = (w * log_v).sum(axis=0) / s
        dt = times[:, None] - t_mean
        var = (w * dt * dt).sum(axis=0)
        cov = (w * dt * (log_v - log_mean)).sum(axis=0)
        n_positive = positive.sum(axis=0)
        lam = np.where((n_positive >= 2) & (var > 0), -cov / var, np.nan)
    return lam, n_positive, t_mean, log_mean


def _exp_integrals(ln_a0: np.ndarray, lam: np.ndarray, t_last: float) -> tuple[np.ndarray, np.ndarray]:
    """(A0/lam, A0 exp(-lam t_last)/lam) computed in the log domain."""
    tia = np.exp(np.minimum(ln_a0, 700.0)) / lam
    tail = np.exp(np.minimum(ln_a0 - lam * t_last, 700.0)) / lam
    return tia, tail


def mono_exp(times: np.ndarray, values: np.ndarray, lam_phys: float) -> ModelOutput:
    """A(t) = A0 exp(-lam t) fitted to all points (log-linear WLS); TIA = A0 / lam.

    Fall-backs (counted): lam < lam_phys (clearance slower than decay, or rising points) and voxels with a single
    positive point: lam = lam_phys with A0 refitted for that fixed slope. All-zero voxels give 0.
    """
    lam_fit, n_positive, t_mean, log_mean = loglinear_fit(times, values)
    has_data = n_positive > 0
    with np.errstate(invalid="ignore"):
        fitted = (n_positive >= 2) & (lam_fit >= lam_phys)
    lam = np.where(fitted, lam_fit, lam_phys)
    ln_a0 = np.where(has_data, log_mean + lam * t_mean, 0.0)  # fixed-slope intercept = fitted intercept
    tia, tail = _exp_integrals(ln_a0, lam, float(times[-1]))
    zero = ~has_data
    tia[zero], tail[zero] = 0.0, 0.0
    a0 = np.where(has_data, np.exp(np.minimum(ln_a0, 700.0)), 0.0)
    with np.errstate(invalid="ignore"):
        slower = has_data & (n_positive >= 2) & ~(lam_fit >= lam_phys)
    return ModelOutput(tia=tia, tail=tail,
                       fallback={"slower_than_physical_decay": slower,
                                 "single_positive_point": has_data & (n_positive < 2)},
                       parameters={"a0": a0, "lambda_eff_per_s": lam})


def trapezoid_fit_tail(times: np.ndarray, values: np.ndarray, lam_phys: float, tail_points: int = 2) -> ModelOutput:
    """Trapezoid to the last point, then A_last exp(-lam_eff (t - t_last)) with lam_eff fitted to the last points.

    lam_eff comes from a log-linear fit to the last `tail_points` (>= 2) points; where it is slower than physical
    decay (or the points rise, or < 2 are positive) the physical constant is used and the voxel counted.
    """
    k = int(tail_points)
    lam_fit, n_positive, _, _ = loglinear_fit(times[-k:], values[-k:])
    last = values[-1]
    with np.errstate(invalid="ignore"):
        fitted = (n_positive >= 2) & (lam_fit >= lam_phys)
        slower = (last > 0) & (n_positive >= 2) & ~(lam_fit >= lam_phys)
    lam = np.where(fitted, lam_fit, lam_phys)
    tail = last / lam
    return ModelOutput(tia=trapezoid_area(times, values) + tail, tail=tail,
                       fallback={"tail_slower_than_physical_decay": slower,
                                 "tail_single_positive_point": (last > 0) & (n_positive < 2)},
                       parameters={"lambda_tail_per_s": lam})


# ------------------------------------------------------------------------------------------------------------
# bi-exponential uptake-washout, Levenberg-Marquardt
# ------------------------------------------------------------------------------------------------------------

# Uptake starts, as (lambda_u - lambda_w) x t_first: slow, medium and fast uptake (multi-start, best kept).
BI_EXP_STARTS = (0.15, 1.5, 15.0)
SCREENING_ITERATIONS = 12  # iterations from every start before the best one is continued to convergence
_CLAMP = {"a": (-30.0, 10.0), "b": (-30.0, 12.0), "c": (-60.0, 60.0)}


def _bi_exp_eval(tau: np.ndarray, lp: float, p: np.ndarray) -> tuple:
    """Model pieces for p = (a, b, c) rows (3, m): w = lp + e^a, u = w + e^b, f = e^c (e^{-w tau} - e^{-u tau}).

    Arrays are laid out (T, m) so that every operation runs over contiguous voxels.
    """
    ea, eb, ec = np.exp(p[0]), np.exp(p[1]), np.exp(p[2])
    w = lp + ea
    u = w + eb
    ew = np.exp(-tau[:, None] * w)
    eu = np.exp(-tau[:, None] * u)
    g = ew - eu
    return ea, eb, ec, g, eu, ec * g


def _solve3(a: list, rhs: list) -> list:
    """Solve the symmetric 3x3 systems a (6 entries: 00 01 02 11 12 22) x = rhs, vectorised (Cramer's rule)."""
    a00, a01, a02, a11, a12, a22 = a
    c00 = a11 * a22 - a12 * a12
    c01 = a02 * a12 - a01 * a22
    c02 = a01 * a12 - a02 * a11
    det = a00 * c00 + a01 * c01 + a02 * c02
    c11 = a00 * a22 - a02 * a02
    c12 = a01 * a02 - a00 * a12
    c22 = a00 * a11 - a01 * a01
    r0, r1, r2 = rhs
    with np.errstate(divide="ignore", invalid="ignore"):
        return [(c00 * r0 + c01 * r1 + c02 * r2) / det, (c01 * r0 + c11 * r1 + c12 * r2) / det,
                (c02 * r0 + c12 * r1 + c22 * r2) / det]


def _levenberg_marquardt(tau: np.ndarray, y: np.ndarray, lp: float, p: np.ndarray, max_iterations: int,
                         tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised LM on the bi-exponential for m curves y (T, m) at scaled times tau; p (3, m); returns (p, sse).

    The working set shrinks to the voxels still improving; a voxel stops when an accepted step changes no
    (log-scale) parameter by more than `tolerance`, its residual vanishes, or its damping grows past 1e12.
    """
    m = y.shape[1]
    sse = ((_bi_exp_eval(tau, lp, p)[5] - y) ** 2).sum(axis=0)
    mu = np.full(m, 1e-3)
    ia = np.arange(m)
    pa, ya, sa, ma = p.copy(), y, sse.copy(), mu
    lows = np.array([_CLAMP[k][0] for k in "abc"])[:, None]
    highs = np.array([_CLAMP[k][1] for k in "abc"])[:, None]
    for _ in range(max_iterations):
        if ia.size == 0:
            break
        ea, eb, ec, g, eu, f = _bi_exp_eval(tau, lp, pa)
        r = f - ya
        j0 = -(ec * ea) * tau[:, None] * g
        j1 = (ec * eb) * tau[:, None] * eu
        j2 = f
        h = [(j0 * j0).sum(0), (j0 * j1).sum(0), (j0 * j2).sum(0), (j1 * j1).sum(0), (j1 * j2).sum(0),
             (j2 * j2).sum(0)]
        grad = [-(j0 * r).sum(0), -(j1 * r).sum(0), -(j2 * r).sum(0)]
        scale = np.maximum(np.maximum(h[0], h[3]), h[5]) * 1e-12 + 1e-30
        h[0] = h[0] + ma * (h[0] + scale)
        h[3] = h[3] + ma * (h[3] + scale)
        h[5] = h[5] + ma * (h[5] + scale)
        step = np.array(_solve3(h, grad))
        trial = np.clip(pa + step, lows, highs)
        sse_trial = ((_bi_exp_eval(tau, lp, trial)[5] - ya) ** 2).sum(axis=0)
        better = np.isfinite(sse_trial) & (sse_trial < sa)
        small = np.abs(trial - pa).max(axis=0) <= tolerance
        pa = np.where(better, trial, pa)
        sa = np.where(better, sse_trial, sa)
        ma = np.where(better, np.maximum(ma / 3.0, 1e-12), ma * 4.0)
        done = (better & small) | (ma > 1e12) | (sa <= 1e-28)
        if done.any():
            p[:, ia[done]], sse[ia[done]] = pa[:, done], sa[done]
            keep = ~done
            ia, pa, ya, sa, ma = ia[keep], pa[:, keep], ya[:, keep], sa[keep], ma[keep]
    p[:, ia], sse[ia] = pa, sa
    return p, sse


def bi_exp(times: np.ndarray, values: np.ndarray, lam_phys: float, max_iterations: int = 200,
           tolerance: float = 1e-9) -> ModelOutput:
    """A(t) = A0 (exp(-lam_w t) - exp(-lam_u t)), lam_u > lam_w >= lam_phys, by vectorised Levenberg-Marquardt.

    TIA = A0 (1/lam_w - 1/lam_u). Unweighted least squares on each voxel's values scaled by its maximum, times
    scaled by the last time; parameters lam_w = lam_phys + e^a, lam_u = lam_w + e^b, A0 = e^c keep the
    constraints; three uptake starts per voxel, the best kept. Voxels with fewer than 3 positive points or a
    non-finite fit fall back to the trapezoid model (counted).
    """
    n = values.shape[1]
    t_last = float(times[-1])
    n_positive = (values > 0).sum(axis=0)
    fit = n_positive >= 3
    tia, tail = np.zeros(n), np.zeros(n)
    params = {"a0": np.zeros(n), "lambda_washout_per_s": np.full(n, lam_phys),
              "lambda_uptake_per_s": np.full(n, lam_phys)}
    failed = np.zeros(n, dtype=bool)
    idx = np.nonzero(fit)[0]
    if idx.size:
        y = values[:, idx]
        scale = y.max(axis=0)
        y = y / scale
        tau = times / t_last
        lp = lam_phys * t_last
        # washout start: log-slope of the last two points, at least 1.2 x physical
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.log(y[-2] / y[-1]) / (tau[-1] - tau[-2])
        slope = np.where(np.isfinite(slope), slope, 1.5 * lp)
        a_start = np.log(np.maximum(slope - lp, 0.2 * lp))
        best_p, best_sse = None, None
        for start in BI_EXP_STARTS:
            p = np.stack([a_start, np.full(idx.size, np.log(start / tau[0])), np.zeros(idx.size)])
            g = _bi_exp_eval(tau, lp, p)[3]
            amp = (y * g).sum(axis=0) / (g * g).sum(axis=0)  # linear least squares for A0 given the rates
            p[2] = np.clip(np.log(np.maximum(amp, 1e-300)), *_CLAMP["c"])
            p, sse = _levenberg_marquardt(tau, y, lp, p, SCREENING_ITERATIONS, tolerance)
            if best_p is None:
                best_p, best_sse = p, sse
            else:
                take = sse < best_sse
                best_p[:, take], best_sse[take] = p[:, take], sse[take]
        best_p, best_sse = _levenberg_marquardt(tau, y, lp, best_p, max_iterations, tolerance)
        w = (lp + np.exp(best_p[0])) / t_last
        u = w + np.exp(best_p[1]) / t_last
        a_amp = np.exp(best_p[2]) * scale
        tia_fit = a_amp * (1.0 / w - 1.0 / u)
        tail_fit = a_amp * (np.exp(-w * t_last) / w - np.exp(-u * t_last) / u)
        ok = np.isfinite(tia_fit) & np.isfinite(tail_fit) & np.isfinite(best_sse)
        tia[idx], tail[idx] = tia_fit, tail_fit
        params["a0"][idx], params["lambda_washout_per_s"][idx], params["lambda_uptake_per_s"][idx] = a_amp, w, u
        failed[idx[~ok]] = True
    few = (n_positive > 0) & ~fit
    use_trapezoid = few | failed
    if use_trapezoid.any():
        sub = trapezoid(times, values[:, use_trapezoid], lam_phys)
        tia[use_trapezoid], tail[use_trapezoid] = sub.tia, sub.tail
        params["a0"][use_trapezoid] = 0.0
        params["lambda_washout_per_s"][use_trapezoid] = lam_phys
        params["lambda_uptake_per_s"][use_trapezoid] = lam_phys
    with np.errstate(invalid="ignore"):
        at_bound = fit & ~failed & (params["lambda_washout_per_s"] <= lam_phys * (1.0 + 1e-6))
    return ModelOutput(tia=tia, tail=tail,
                       fallback={"fewer_than_3_positive_points_trapezoid": few, "fit_failed_trapezoid": failed,
                                 "washout_at_physical_decay": at_bound},
                       parameters=params)


# ------------------------------------------------------------------------------------------------------------
# single timepoint (Hänscheid)
# ------------------------------------------------------------------------------------------------------------

def hanscheid(times: np.ndarray, values: np.ndarray, lam_phys: float,
              effective_half_life_s: float | None = None) -> ModelOutput:
    """One timepoint t: TIA = A(t) 2t/ln2 (Hänscheid et al. 2018 J Nucl Med 59:75), or, with an
    effective half-life, TIA = A(t) exp(lam_eff t) / lam_eff (mono-exponential through the point)."""
    t = float(times[0])
    lam = LOG2 / t if effective_half_life_s is None else LOG2 / float(effective_half_life_s)
    # 2t/ln2 = exp(lam t)/lam at lam = ln2/t: Hänscheid's approximation assumes T_eff = t
    tia = values[0] * np.exp(lam * t) / lam
    return ModelOutput(tia=tia, tail=values[0] / lam, parameters={})
