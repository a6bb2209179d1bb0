"""Voxel-wise time integration of activity (-> TIA) or dose rate (-> dose) over 1-N timepoints.

`integrate_activity(images, times_s, nuclide, model)` and `integrate_dose_rate(...)` check the inputs
(timepoint_checks), run a model from tia_models chunk by chunk over the voxels (bounded memory), never output
NaN/inf, and return a TIAResult with the integral Volume, an info dict (model, fall-back voxel counts, tail
fraction, totals) and fitted parameter maps. MODELS lists the model names with short descriptions (the CLI and
the Slicer panel read it). QC warnings (kinetics/qc_checks.py, physics/plausibility.py): implausible scan times,
images that look like a CT, voxel fits slower than physical decay. See docs/TIME_INTEGRATION.md.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.kinetics import tia_models
from VoxelDosimetryLib.kinetics.qc_checks import (
    SLOWER_THAN_PHYSICAL, check_extrapolation, check_scan_times, check_voxel_clearance,
)
from VoxelDosimetryLib.kinetics.timepoint_checks import (INTEGRAL_QUANTITY, check_point_count, check_times,
                                                         check_timepoint_images, describe_timepoint,
                                                         negative_summary)
from VoxelDosimetryLib.physics.nuclides import get_nuclide
from VoxelDosimetryLib.physics.plausibility import check_activity_plausible
from VoxelDosimetryLib.volume.units import get_quantity
from VoxelDosimetryLib.volume.volume import Volume

MODELS: dict[str, str] = {
    "trapezoid": "trapezoid from (0, 0) through the timepoints + physical-decay tail after the last "
                 "(Kim et al. 2022 Eq. 1)",
    "trapezoid_fit_tail": "trapezoid + tail from a mono-exponential fitted to the last points (effective decay, "
                          "never slower than physical)",
    "mono_exp": "A0 exp(-lam_eff t) fitted to all points (lam_eff >= physical); TIA = A0/lam_eff; >= 2 points",
    "bi_exp": "uptake-washout A0 (exp(-lam_w t) - exp(-lam_u t)), lam_u > lam_w >= physical, "
              "Levenberg-Marquardt; >= 3 points",
    "hanscheid": "single timepoint: TIA = A(t) 2t/ln2 (Hanscheid et al. 2018), or A(t) exp(lam_eff t)/lam_eff "
                 "with an effective half-life",
}

_MODEL_FUNCTIONS: dict[str, Callable] = {
    "trapezoid": tia_models.trapezoid, "trapezoid_fit_tail": tia_models.trapezoid_fit_tail,
    "mono_exp": tia_models.mono_exp, "bi_exp": tia_models.bi_exp, "hanscheid": tia_models.hanscheid,
}
MIN_POINTS = {"trapezoid": 1, "trapezoid_fit_tail": 2, "mono_exp": 2, "bi_exp": 3, "hanscheid": 1}
MODEL_OPTIONS = {"trapezoid": (), "trapezoid_fit_tail": ("tail_points",), "mono_exp": (),
                 "bi_exp": ("max_iterations", "tolerance"), "hanscheid": ("effective_half_life_s",)}
COMMON_OPTIONS = ("negative_policy", "max_negative_fraction", "chunk_voxels", "keep_parameters", "progress")
DEFAULT_CHUNK_VOXELS = 1 << 17


@dataclass
class TIAResult:
    """tia: Volume (tia_concentration Bq*s/mL, tia Bq*s, or dose Gy for dose-rate input).

    info: model, fall-back voxel counts by reason, tail fraction, totals, timing. parameters: fitted parameter
    maps (z, y, x) float32 named with their unit ('a0' in the input unit, 0 where nothing was fitted;
    'lambda_*_per_s' in 1/s, the physical constant where a fall-back applied).
    """

    tia: Volume
    info: dict
    parameters: dict = field(default_factory=dict)


def model_names() -> tuple[str, ...]:
    return tuple(MODELS)


def integrate_activity(images: Sequence[Volume], times_s: Sequence[float], nuclide: str, model: str = "trapezoid",
                       **options: Any) -> TIAResult:
    """Time-integrated activity from activity images (Bq/mL or Bq per voxel) at `times_s` after injection.

    options: negative_policy 'zero' (default: the shared value policy of volume/source_values.py, small negatives
    set to 0 and counted, more than max_negative_fraction (default 0.10) of the positive sum refused) or 'error';
    chunk_voxels (voxels per chunk, default 131072); keep_parameters (default True); progress(fraction, text);
    tail_points (trapezoid_fit_tail, default 2); max_iterations, tolerance (bi_exp);
    effective_half_life_s (hanscheid).
    """
    return _integrate(images, times_s, nuclide, model, ("activity_concentration", "activity"), options)


def integrate_dose_rate(images: Sequence[Volume], times_s: Sequence[float], nuclide: str, model: str = "trapezoid",
                        **options: Any) -> TIAResult:
    """Absorbed dose (Gy) from dose-rate images (Gy/s) at `times_s`, with the same models and options as
    integrate_activity (the tail uses the nuclide's physical decay)."""
    return _integrate(images, times_s, nuclide, model, ("dose_rate",), options)


def _check_options(model: str, options: dict, n_points: int, half_life_s: float) -> dict:
    if model not in MODELS:
        raise InputFormatError(f"Unknown time-integration model {model!r}; choose one of: {', '.join(MODELS)}.")
    allowed = COMMON_OPTIONS + MODEL_OPTIONS[model]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InputFormatError(f"Option(s) {unknown} do not apply to model {model!r}; it accepts {list(allowed)}.")
    check_point_count(n_points, MIN_POINTS[model], model, exact=(model == "hanscheid"))
    model_options = {k: options[k] for k in MODEL_OPTIONS[model] if options.get(k) is not None}
    if model == "trapezoid_fit_tail":
        k = model_options.setdefault("tail_points", 2)
        if int(k) != k or not 2 <= k <= n_points:
            raise InputFormatError(f"tail_points must be an integer from 2 to the number of timepoints ({n_points}); "
                                   f"got {k}.")
        model_options["tail_points"] = int(k)
    if model == "hanscheid" and "effective_half_life_s" in model_options:
        teff = float(model_options["effective_half_life_s"])
        if not math.isfinite(teff) or teff <= 0:
            raise InputFormatError(f"effective_half_life_s must be a positive number of seconds; got {teff!r}.")
        if teff > half_life_s * (1 + 1e-9):
            raise InputFormatError(f"The effective half-life {teff / 3600:g} h is longer than the physical half-life "
                                   f"{half_life_s / 3600:g} h: clearance cannot be slower than physical decay. "
                                   "Give an effective half-life <= the physical one.")
        model_options["effective_half_life_s"] = teff
    if model == "bi_exp":
        if int(model_options.get("max_iterations", 1)) < 1:
            raise InputFormatError("max_iterations must be >= 1.")
    return model_options


def _integrate(images: Sequence[Volume], times_s: Sequence[float], nuclide: str, model: str,
               quantities: Sequence[str], options: dict) -> TIAResult:
    started = time.perf_counter()
    if isinstance(images, Volume):
        images = [images]
    images = list(images)
    times = check_times(times_s, len(images))
    nuc = get_nuclide(nuclide)
    check_scan_times(times, nuc.name)  # QC warnings only
    lam = nuc.decay_constant_per_s
    model_options = _check_options(model, options, len(times), nuc.half_life_s)
    chunk = int(options.get("chunk_voxels") or DEFAULT_CHUNK_VOXELS)
    if chunk < 1:
        raise InputFormatError(f"chunk_voxels must be >= 1; got {chunk}.")
    keep_parameters = bool(options.get("keep_parameters", True))
    progress = options.get("progress")
    volumes = check_timepoint_images(images, times, quantities)
    for i, volume in enumerate(volumes):
        check_activity_plausible(volume, f"the image of {describe_timepoint(i, times[i])}")  # QC warning only
    volumes, negatives = negative_summary(volumes, times, options.get("negative_policy") or "zero",
                                          options.get("max_negative_fraction"))

    func = _MODEL_FUNCTIONS[model]
    flat = [v.array.reshape(-1) for v in volumes]
    n = flat[0].size
    result = np.empty(n, dtype=np.float32)
    parameters: dict[str, np.ndarray] = {}
    fallback: dict[str, int] = {}
    totals = {"tia": 0.0, "tail": 0.0, "zero_voxels": 0, "nonfinite": 0, "clamped_tia": 0.0}
    for begin in range(0, n, chunk):
        end = min(begin + chunk, n)
        block = np.stack([f[begin:end] for f in flat]).astype(np.float64)
        out = func(times, block, lam, **model_options)
        bad = ~(np.isfinite(out.tia) & np.isfinite(out.tail))
        if bad.any():  # safety net: never output NaN/inf; fall back to the trapezoid, counted
            sub = tia_models.trapezoid(times, block[:, bad], lam)
            out.tia[bad], out.tail[bad] = sub.tia, sub.tail
            totals["nonfinite"] += int(bad.sum())
        result[begin:end] = out.tia
        if not np.all(np.isfinite(result[begin:end])):
            raise InputFormatError(f"The {model} integral exceeds the float32 range (max {float(out.tia.max()):g}): "
                                   "the input values are implausibly large; check their unit.")
        totals["tia"] += float(out.tia.sum())
        totals["tail"] += float(out.tail.sum())
        totals["zero_voxels"] += int(np.count_nonzero(block.max(axis=0) <= 0))
        for reason, mask in out.fallback.items():
            fallback[reason] = fallback.get(reason, 0) + int(np.count_nonzero(mask))
            if reason in SLOWER_THAN_PHYSICAL:
                totals["clamped_tia"] += float(out.tia[mask].sum())
        if keep_parameters:
            for name, values in out.parameters.items():
                target = parameters.setdefault(name, np.zeros(n, dtype=np.float32))
                target[begin:end] = np.where(np.isfinite(values), values, 0.0)
        if progress is not None:
            progress(end / n, f"{model}: {end}/{n} voxels")

    check_voxel_clearance(model, fallback, totals["clamped_tia"], totals["tia"], n - totals["zero_voxels"], nuc.name)
    first = volumes[0]
    out_quantity = INTEGRAL_QUANTITY[first.quantity]
    out_unit = get_quantity(out_quantity).unit
    info = _info(model, nuc, times, first, out_quantity, out_unit, n, totals, fallback, negatives, chunk,
                 model_options)
    check_extrapolation(model, times, info["tail_fraction"], nuc.name)
    if out_quantity == "dose":
        info["max_dose_gy"] = float(result.max())
    info["elapsed_s"] = round(time.perf_counter() - started, 3)
    metadata = dict(first.metadata)
    metadata["time_integration"] = {k: info[k] for k in ("model", "nuclide", "times_s", "input_quantity",
                                                         "fallback_voxels", "tail_fraction")}
    tia = Volume(result.reshape(first.shape), grid=first.grid, quantity=out_quantity, unit=out_unit,
                 metadata=metadata)
    maps = {name: values.reshape(first.shape) for name, values in parameters.items()}
    return TIAResult(tia=tia, info=info, parameters=maps)


def _info(model: str, nuc: Any, times: np.ndarray, first: Volume, out_quantity: str, out_unit: str, n: int,
          totals: dict, fallback: dict, negatives: dict, chunk: int, model_options: dict) -> dict:
    info: dict[str, Any] = {
        "model": model, "model_description": MODELS[model], "model_options": dict(model_options),
        "nuclide": nuc.name, "physical_half_life_s": nuc.half_life_s,
        "times_s": [float(t) for t in times], "times_h": [float(t) / 3600.0 for t in times],
        "input_quantity": first.quantity, "input_unit": first.unit,
        "output_quantity": out_quantity, "output_unit": out_unit,
        "voxels": n, "zero_voxels": totals["zero_voxels"], "fallback_voxels": fallback,
        "nonfinite_fit_voxels_trapezoid": totals["nonfinite"],
        "tail_fraction": totals["tail"] / totals["tia"] if totals["tia"] > 0 else 0.0,
        **negatives, "chunk_voxels": chunk,
    }
    if out_quantity == "tia_concentration":
        total = totals["tia"] * first.voxel_volume_ml
    elif out_quantity == "tia":
        total = totals["tia"]
    else:
        total = None
    if total is not None:
        info["total_tia_bq_s"] = total
        info["total_tia_mbq_h"] = total / 3.6e9
    else:
        info["mean_dose_gy"] = totals["tia"] / n
    return info
