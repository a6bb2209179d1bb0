"""Organ-level time-activity curve fits with model selection by the (corrected) Akaike information criterion.

`fit_tac(times_s, activity_bq, nuclide)` fits sums of exponentials (every decay constant >= the physical one)
by bounded least squares (scipy, several starts), integrates each fit from 0 to infinity, and selects the model
with the lowest AICc (or AIC). Models with as many parameters as points (or more) are rejected. A curve falling
slower than physical decay, or implausible times, give QC warnings (kinetics/qc_checks.py).

AIC = n ln(SSE/n) + 2K and AICc = AIC + 2K(K+1)/(n-K-1), with K = fitted parameters + 1 (the residual
variance) - Burnham & Anderson, Model Selection and Multimodel Inference (2nd ed., 2002), §2.2 and §2.4;
applied to time-activity curves by Glatting et al. 2007 (Med Phys 34:4285) and Kletting et al. 2013 (NUKFIT,
Med Phys 40:102504). AICc is undefined when n <= K+1; such models are not selectable under AICc.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.kinetics.qc_checks import check_scan_times, check_tac_clearance
from VoxelDosimetryLib.kinetics.timepoint_checks import check_times
from VoxelDosimetryLib.physics.nuclides import get_nuclide

CRITERIA = ("aicc", "aic")
DEFAULT_MODELS = ("mono_exp", "bi_exp", "tri_exp")
# Residuals below this fraction of the largest value (RMS) count as zero, so noiseless data compare finitely.
_RELATIVE_RMS_FLOOR = 1e-9
_MAX_SCALED_RATE = 1e4  # upper bound of lambda * t_last for every rate


@dataclass(frozen=True)
class _TacModel:
    name: str
    description: str
    parameter_names: tuple  # SI names of the reported parameters
    n_parameters: int
    curve: Callable  # (tau, x) -> values, scaled units
    integral: Callable  # x -> integral 0..inf, scaled units
    to_rates: Callable  # x -> dict of scaled rates and amplitudes for reporting
    starts: Callable  # (lp, tau, y) -> list of initial x
    bounds: Callable  # lp -> (lower, upper)


def _e(rate: float, tau: np.ndarray) -> np.ndarray:
    return np.exp(-rate * tau)


def _mono_starts(lp, tau, y):
    return [[float(y.max()) * 1.5, lp * k] for k in (1.05, 2.0, 5.0, 20.0)]


def _bi_starts(lp, tau, y):
    return [[float(y.max()) * 2.0, lp * kw, d / tau[0]] for kw in (1.2, 3.0, 10.0) for d in (0.2, 2.0, 20.0)]


def _clear_starts(lp, tau, y):
    m = float(y.max())
    return [[m * 0.5, m * 0.5, lp * k1, lp * k2] for k1 in (1.1, 3.0) for k2 in (5.0, 50.0)]


def _tri_starts(lp, tau, y):
    m = float(y.max())
    return [[m, m * 0.5, lp * k1, lp * 10.0, d / tau[0]] for k1 in (1.2, 3.0) for d in (0.5, 5.0)]


_INF = np.inf
MODELS: dict[str, _TacModel] = {m.name: m for m in (
    _TacModel("mono_exp", "A0 exp(-lam t), lam >= lam_phys", ("a0", "lambda_per_s"), 2,
              lambda tau, x: x[0] * _e(x[1], tau),
              lambda x: x[0] / x[1],
              lambda x: {"a0": x[0], "lambda": x[1]},
              _mono_starts,
              lambda lp: ([0.0, lp], [_INF, _MAX_SCALED_RATE])),
    _TacModel("bi_exp", "uptake-washout A0 (exp(-lam_w t) - exp(-lam_u t)), lam_u > lam_w >= lam_phys",
              ("a0", "lambda_washout_per_s", "lambda_uptake_per_s"), 3,
              lambda tau, x: x[0] * (_e(x[1], tau) - _e(x[1] + x[2], tau)),
              lambda x: x[0] * (1.0 / x[1] - 1.0 / (x[1] + x[2])),
              lambda x: {"a0": x[0], "lambda_washout": x[1], "lambda_uptake": x[1] + x[2]},
              _bi_starts,
              lambda lp: ([0.0, lp, 1e-9], [_INF, _MAX_SCALED_RATE, _MAX_SCALED_RATE])),
    _TacModel("bi_exp_clearance", "two-phase clearance A1 exp(-lam1 t) + A2 exp(-lam2 t), lam2 > lam1 >= lam_phys",
              ("a1", "a2", "lambda_1_per_s", "lambda_2_per_s"), 4,
              lambda tau, x: x[0] * _e(x[2], tau) + x[1] * _e(x[2] + x[3], tau),
              lambda x: x[0] / x[2] + x[1] / (x[2] + x[3]),
              lambda x: {"a1": x[0], "a2": x[1], "lambda_1": x[2], "lambda_2": x[2] + x[3]},
              _clear_starts,
              lambda lp: ([0.0, 0.0, lp, 1e-9], [_INF, _INF, _MAX_SCALED_RATE, _MAX_SCALED_RATE])),
    _TacModel("tri_exp", "uptake + two-phase washout A1 exp(-lam1 t) + A2 exp(-lam2 t) - (A1+A2) exp(-lam_u t), "
              "lam_u > lam2 > lam1 >= lam_phys", ("a1", "a2", "lambda_1_per_s", "lambda_2_per_s",
                                                  "lambda_uptake_per_s"), 5,
              lambda tau, x: (x[0] * _e(x[2], tau) + x[1] * _e(x[2] + x[3], tau)
                              - (x[0] + x[1]) * _e(x[2] + x[3] + x[4], tau)),
              lambda x: x[0] / x[2] + x[1] / (x[2] + x[3]) - (x[0] + x[1]) / (x[2] + x[3] + x[4]),
              lambda x: {"a1": x[0], "a2": x[1], "lambda_1": x[2], "lambda_2": x[2] + x[3],
                         "lambda_uptake": x[2] + x[3] + x[4]},
              _tri_starts,
              lambda lp: ([0.0, 0.0, lp, 1e-9, 1e-9], [_INF, _INF, _MAX_SCALED_RATE, _MAX_SCALED_RATE,
                                                       _MAX_SCALED_RATE])),
)}


@dataclass
class TACModelFit:
    """One model's fit: SI parameters, TIA (activity unit x s), SSE, AIC, AICc (None when undefined)."""

    model: str
    n_parameters: int
    admissible: bool
    reason: str | None = None
    parameters: dict = field(default_factory=dict)
    tia: float | None = None
    sse: float | None = None
    aic: float | None = None
    aicc: float | None = None
    _scaled: Any = None  # (x, t_last, y_scale) for evaluate()

    def evaluate(self, times_s: Sequence[float]) -> np.ndarray:
        """The fitted curve at `times_s` (activity unit)."""
        if self._scaled is None:
            raise InputFormatError(f"Model {self.model!r} was not fitted ({self.reason}).")
        x, t_last, y_scale = self._scaled
        return MODELS[self.model].curve(np.asarray(times_s, dtype=float) / t_last, x) * y_scale

    def to_dict(self) -> dict:
        return {"model": self.model, "n_parameters": self.n_parameters, "admissible": self.admissible,
                "reason": self.reason, "parameters": dict(self.parameters), "tia": self.tia, "sse": self.sse,
                "aic": self.aic, "aicc": self.aicc}


@dataclass
class TACFitResult:
    """All model fits, the criterion used and the selected model (its TIA in `tia`, activity unit x s)."""

    times_s: list
    activity: list
    nuclide: str
    criterion: str
    fits: dict
    selected: str
    notes: list = field(default_factory=list)

    @property
    def selected_fit(self) -> TACModelFit:
        return self.fits[self.selected]

    @property
    def tia(self) -> float:
        return float(self.selected_fit.tia)

    def evaluate(self, times_s: Sequence[float], model: str | None = None) -> np.ndarray:
        """A fitted curve (the selected one by default) at `times_s`, e.g. for a TAC plot."""
        return self.fits[model or self.selected].evaluate(times_s)

    def to_dict(self) -> dict:
        return {"times_s": self.times_s, "activity": self.activity, "nuclide": self.nuclide,
                "criterion": self.criterion, "selected": self.selected, "tia": self.tia,
                "tia_mbq_h": self.tia / 3.6e9, "notes": list(self.notes),
                "fits": {k: v.to_dict() for k, v in self.fits.items()}}


def aic(sse: float, n: int, k: int) -> float:
    """Akaike information criterion for least squares, K = k (parameters incl. the variance)."""
    return n * math.log(sse / n) + 2 * k  # Burnham & Anderson 2002, §2.2


def aicc(sse: float, n: int, k: int) -> float | None:
    """Second-order (small-sample) AIC; None when n <= K+1."""
    if n - k - 1 <= 0:
        return None
    return aic(sse, n, k) + 2.0 * k * (k + 1) / (n - k - 1)  # Burnham & Anderson 2002, §2.4


def _fit_one(model: _TacModel, tau: np.ndarray, y: np.ndarray, lp: float) -> tuple[np.ndarray, float] | None:
    from scipy.optimize import least_squares

    lower, upper = model.bounds(lp)
    best = None
    for x0 in model.starts(lp, tau, y):
        x0 = np.clip(np.asarray(x0, dtype=float), np.asarray(lower) + 1e-12, np.asarray(upper) - 1e-12)
        try:
            res = least_squares(lambda x: model.curve(tau, x) - y, x0, bounds=(lower, upper), method="trf",
                                x_scale="jac", ftol=1e-12, xtol=1e-12, gtol=1e-12, max_nfev=400)
        except (ValueError, FloatingPointError):
            continue
        sse = float(np.sum(res.fun ** 2))
        if np.isfinite(sse) and np.all(np.isfinite(res.x)) and (best is None or sse < best[1]):
            best = (res.x, sse)
    return best


def fit_tac(times_s: Sequence[float], activity_bq: Sequence[float], nuclide: str,
            models: Sequence[str] = DEFAULT_MODELS, criterion: str = "aicc") -> TACFitResult:
    """Fit each of `models` (see MODELS) to one time-activity curve and select one by `criterion`.

    activity_bq: organ activity (Bq, or any activity unit; the TIA comes out in that unit x s), one value per
    time (s after injection). criterion 'aicc' (default) falls back to 'aic' when no model has enough points
    for AICc (noted). Unweighted least squares on values scaled by their maximum.
    """
    times = check_times(times_s)
    y = np.array(activity_bq, dtype=float).reshape(-1)
    if y.size != times.size:
        raise InputFormatError(f"{times.size} times but {y.size} activities: give one activity per time.")
    if not np.all(np.isfinite(y)):
        raise InputFormatError("The activities must be finite numbers (no NaN/inf).")
    if np.any(y < 0):
        raise InputFormatError(f"Negative activity at {int(np.sum(y < 0))} timepoint(s): organ activities must be "
                               ">= 0; check the segmentation and calibration.")
    if y.max() <= 0:
        raise InputFormatError("All activities are 0: there is no curve to fit.")
    if criterion not in CRITERIA:
        raise InputFormatError(f"criterion must be one of {CRITERIA}; got {criterion!r}.")
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise InputFormatError(f"Unknown TAC model(s) {unknown}; choose from {list(MODELS)}.")
    nuc = get_nuclide(nuclide)
    check_scan_times(times, nuc.name)  # QC warnings only
    check_tac_clearance(times, y, nuc.name)
    n = times.size
    t_last, y_scale = float(times[-1]), float(y.max())
    tau, yn = times / t_last, y / y_scale
    lp = nuc.decay_constant_per_s * t_last
    floor = n * _RELATIVE_RMS_FLOOR ** 2

    fits: dict[str, TACModelFit] = {}
    for name in dict.fromkeys(models):
        model = MODELS[name]
        p = model.n_parameters
        if n <= p:
            fits[name] = TACModelFit(name, p, False, f"{p} parameters need at least {p + 1} timepoints; got {n}")
            continue
        best = _fit_one(model, tau, yn, lp)
        if best is None:
            fits[name] = TACModelFit(name, p, False, "the fit failed from every start")
            continue
        x, sse_scaled = best
        sse = max(sse_scaled, floor)
        k = p + 1
        params = {}
        for key, value in model.to_rates(x).items():
            if key.startswith("lambda"):
                params[f"{key}_per_s"] = float(value) / t_last
                params[f"{key.replace('lambda', 'half_life')}_h"] = math.log(2) * t_last / float(value) / 3600.0
            else:
                params[key] = float(value) * y_scale
        fits[name] = TACModelFit(name, p, True, None, params, float(model.integral(x)) * y_scale * t_last,
                                 sse_scaled * y_scale ** 2, aic(sse, n, k), aicc(sse, n, k), (x, t_last, y_scale))
    return _select(times, y, nuc.name, criterion, fits)


def _select(times: np.ndarray, y: np.ndarray, nuclide: str, criterion: str, fits: dict) -> TACFitResult:
    notes = []
    admissible = {k: f for k, f in fits.items() if f.admissible}
    if not admissible:
        reasons = "; ".join(f"{k}: {f.reason}" for k, f in fits.items())
        raise InputFormatError(f"No TAC model could be fitted ({reasons}). Add timepoints or use a model with fewer "
                               "parameters (mono_exp needs 3 points).")
    used = criterion
    if criterion == "aicc":
        scored = {k: f.aicc for k, f in admissible.items() if f.aicc is not None}
        for k, f in admissible.items():
            if f.aicc is None:
                notes.append(f"{k}: AICc undefined with {len(times)} points (needs n > K+1 = {f.n_parameters + 2}); "
                             "not selectable under AICc")
        if not scored:
            used = "aic"
            notes.append("no model has enough points for AICc: selected by AIC instead")
    if used == "aic":
        scored = {k: f.aic for k, f in admissible.items()}
    selected = min(scored, key=lambda k: scored[k])
    return TACFitResult([float(t) for t in times], [float(v) for v in y], nuclide, used, fits, selected, notes)
