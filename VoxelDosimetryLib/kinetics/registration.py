"""Timepoint registration: each timepoint's CT onto the reference CT; its SPECT follows with the same transform.

SimpleITK image registration (Mattes mutual information, multi-resolution pyramid, rigid Euler3D; optional
affine and B-spline stages initialised from the rigid result) or, when installed, Elastix. The transform maps
fixed (reference) points to moving points in LPS mm, the SimpleITK resampling convention used by
`geometry.resample_to`. See docs/REGISTRATION.md for the defaults and their reasons.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union

import numpy as np
import SimpleITK as sitk

from VoxelDosimetryLib.errors import InputFormatError, UnitError, VoxelDosimetryError
from VoxelDosimetryLib.geometry.resample import resample_to
from VoxelDosimetryLib.kinetics.registration_quality import body_dice, displacement_stats, rotation_angle_deg
from VoxelDosimetryLib.physics.body_mask import body_mask_volume
from VoxelDosimetryLib.physics.plausibility import check_ct_plausible
from VoxelDosimetryLib.volume import Grid, Volume, get_quantity, to_sitk
from VoxelDosimetryLib.io.safe_write import atomic_output

Progress = Callable[[float, str], None]
GridLike = Union[Grid, Volume]

KINDS = ("rigid", "affine", "bspline")
BACKENDS = ("simpleitk", "elastix")
INITIALIZERS = ("auto", "geometry", "moments", "identity")
TRANSFORM_SUFFIXES = (".tfm", ".txt", ".h5", ".hdf5")

# Defaults for low-dose CT (reasons in docs/REGISTRATION.md); override any of them through register_ct(**options).
DEFAULT_OPTIONS = {
    "shrink_factors": (4, 2, 1),           # pyramid levels, coarse to fine
    "smoothing_sigmas_mm": (2.0, 1.0, 0.0),  # Gaussian smoothing per level (mm)
    "hu_range": (-1000.0, 1500.0),         # HU clamp applied to the metric images only
    "histogram_bins": 32,                  # Mattes mutual information joint histogram bins
    "sampling": "random",                  # random | regular (regular is jittered, also seeded)
    "sampling_fraction": 0.10,             # fraction of fixed voxels sampled per level ...
    "max_samples": 100_000,                # ... capped at this many samples per level
    "iterations": 200,                     # maximum optimiser iterations per level (rigid, affine)
    "initializer": "auto",                 # auto | geometry | moments | identity (see _initial_rigid)
    "metric_mask": "body",                 # body: sample only the fixed body mask dilated by mask_margin_mm
    "mask_margin_mm": 10.0,
    "bspline_grid_mm": 80.0,               # B-spline control point spacing (mm); finer grids follow noise
    "bspline_iterations": 20,              # L-BFGS-B iterations per level (B-spline)
    "bspline_max_samples": 20_000,         # sample cap per level for the B-spline stage (its cost is per sample)
    "threads": 0,                          # registration threads (0: ITK's default, all cores)
}


@dataclass
class RegistrationResult:
    """A registration: `transform` maps fixed (reference CT) points to moving points (LPS mm)."""

    transform: sitk.Transform
    quality: dict
    backend: str
    kind: str
    options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-able report: backend, kind, transform summary, quality measures and options used."""
        return {"backend": self.backend, "kind": self.kind, "transform": describe_transform(self.transform),
                "quality": self.quality, "options": _jsonable(self.options)}


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def describe_transform(transform: sitk.Transform) -> dict:
    """Name, parameters and (for linear transforms) matrix, translation and total rotation angle."""
    out = {"type": transform.GetName()}
    if transform.IsLinear():
        matrix, offset = affine_parts(transform)
        out.update(matrix=matrix.reshape(-1).tolist(), offset_mm=offset.tolist())
        if isinstance(transform, sitk.Euler3DTransform):
            out.update(center_mm=list(transform.GetCenter()), translation_mm=list(transform.GetTranslation()),
                       angles_deg=[math.degrees(a) for a in (transform.GetAngleX(), transform.GetAngleY(),
                                                             transform.GetAngleZ())])
        if np.allclose(matrix.T @ matrix, np.eye(3), atol=1e-6):
            out["rotation_angle_deg"] = rotation_angle_deg(matrix)
    elif isinstance(transform, sitk.CompositeTransform):
        out["components"] = [describe_transform(transform.GetNthTransform(i))
                             for i in range(transform.GetNumberOfTransforms())]
    else:
        out["number_of_parameters"] = transform.GetNumberOfParameters()
    return out


def affine_parts(transform: sitk.Transform) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) with T(p) = A p + b (mm) for a linear transform."""
    if not transform.IsLinear():
        raise InputFormatError(f"{transform.GetName()} is not a linear transform; it has no single matrix.")
    step = 100.0  # mm; probe points far apart keep the finite differences exact to rounding
    origin = np.array(transform.TransformPoint((0.0, 0.0, 0.0)))
    matrix = np.column_stack([(np.array(transform.TransformPoint(tuple(step * e))) - origin) / step
                              for e in np.eye(3)])
    return matrix, origin


# ----------------------------------------------------------------------------------------------- inputs

def _options(options: dict) -> dict:
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise InputFormatError(f"Unknown registration option(s) {unknown}; use any of {sorted(DEFAULT_OPTIONS)}.")
    merged = {**DEFAULT_OPTIONS, **options}
    levels = len(merged["shrink_factors"])
    if levels == 0 or len(merged["smoothing_sigmas_mm"]) != levels or min(merged["shrink_factors"]) < 1:
        raise InputFormatError("shrink_factors and smoothing_sigmas_mm need one entry per pyramid level, shrink "
                               f"factors >= 1; got {merged['shrink_factors']} and {merged['smoothing_sigmas_mm']}.")
    low, high = merged["hu_range"]
    if not low < high:
        raise InputFormatError(f"hu_range must be (low, high) with low < high; got {merged['hu_range']}.")
    if not 0 < merged["sampling_fraction"] <= 1:
        raise InputFormatError(f"sampling_fraction must be in (0, 1]; got {merged['sampling_fraction']}.")
    if merged["sampling"] not in ("random", "regular"):
        raise InputFormatError(f"sampling must be 'random' or 'regular'; got {merged['sampling']!r}.")
    if merged["initializer"] not in INITIALIZERS:
        raise InputFormatError(f"initializer must be one of {INITIALIZERS}; got {merged['initializer']!r}.")
    if merged["metric_mask"] not in ("body", "none", None):
        raise InputFormatError(f"metric_mask must be 'body' or 'none'; got {merged['metric_mask']!r}.")
    return merged


def _require_ct(volume: Volume, role: str) -> Volume:
    if volume.quantity != "ct":
        raise UnitError(f"The {role} image must be a CT in HU (quantity 'ct'); got {volume.quantity!r} "
                               f"({volume.unit}). Load it with quantity='ct' (CLI: it is read as CT) or register "
                               "the CTs and apply the transform to the SPECT with apply_to_spect.")
    if not np.all(np.isfinite(volume.array)):
        raise InputFormatError(f"The {role} CT holds NaN or infinite voxels; replace them (e.g. with -1000 HU).")
    check_ct_plausible(volume, f"the {role} CT")  # QC warning when it looks like an activity map
    return volume.to_canonical_unit()


def _metric_image(ct: Volume, hu_range) -> sitk.Image:
    """Float32 CT clamped to `hu_range` (HU): limits metal, contrast and noise influence on the metric only."""
    return sitk.Clamp(sitk.Cast(to_sitk(ct), sitk.sitkFloat32), sitk.sitkFloat32, float(hu_range[0]),
                      float(hu_range[1]))


def _mask_image(mask: Volume, margin_mm: float) -> sitk.Image:
    image = sitk.Cast(to_sitk(mask), sitk.sitkUInt8)
    radius = [int(math.ceil(margin_mm / s)) for s in mask.spacing]
    return sitk.BinaryDilate(image, radius) if max(radius) > 0 else image


# ----------------------------------------------------------------------------------------------- stages

def _method(fixed: sitk.Image, opts: dict, seed: int, fixed_mask: sitk.Image | None) -> sitk.ImageRegistrationMethod:
    """Mattes MI registration method with the pyramid and seeded, capped sampling of `opts`."""
    method = sitk.ImageRegistrationMethod()
    if opts["threads"]:
        method.SetNumberOfThreads(int(opts["threads"]))
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=int(opts["histogram_bins"]))
    strategy = method.RANDOM if opts["sampling"] == "random" else method.REGULAR
    method.SetMetricSamplingStrategy(strategy)
    size = np.array(fixed.GetSize(), float)
    fractions = [min(float(opts["sampling_fraction"]), opts["max_samples"] / float(np.prod(np.ceil(size / s))))
                 for s in opts["shrink_factors"]]
    method.SetMetricSamplingPercentagePerLevel(fractions, int(seed) + 1)  # ITK seed 0 means "wall clock"
    if fixed_mask is not None:
        method.SetMetricFixedMask(fixed_mask)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetMetricUseFixedImageGradientFilter(False)  # only the moving image gradient is used
    method.SetShrinkFactorsPerLevel([int(s) for s in opts["shrink_factors"]])
    method.SetSmoothingSigmasPerLevel([float(s) for s in opts["smoothing_sigmas_mm"]])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return method


def _run(method: sitk.ImageRegistrationMethod, fixed: sitk.Image, moving: sitk.Image, name: str,
         progress: Progress | None, span: tuple[float, float]) -> dict:
    """Execute `method`, counting iterations per level; returns the stage summary."""
    per_level: list[int] = []
    levels = len(method.GetMetricSamplingPercentagePerLevel())

    def new_level() -> None:
        per_level.append(0)
        if progress is not None:
            fraction = span[0] + (span[1] - span[0]) * (len(per_level) - 1) / levels
            progress(fraction, f"{name}: pyramid level {len(per_level)}/{levels}")

    def iteration() -> None:
        per_level[-1] += 1

    method.AddCommand(sitk.sitkMultiResolutionIterationEvent, new_level)
    method.AddCommand(sitk.sitkIterationEvent, iteration)
    start = time.perf_counter()
    try:
        method.Execute(fixed, moving)
    except RuntimeError as exc:  # ITK raises e.g. when too few samples overlap
        raise VoxelDosimetryError(f"The {name} registration failed inside SimpleITK ({str(exc).strip()[-300:]}). "
                                  "Check that the CTs overlap (same patient, similar field of view) or start "
                                  "from a closer initial_transform.") from exc
    metric = float(method.GetMetricValue())
    return {"stage": name, "final_metric_value": metric if math.isfinite(metric) else None,
            "iterations": int(sum(per_level)), "iterations_per_level": per_level,
            "stop_condition": method.GetOptimizerStopConditionDescription(),
            "elapsed_s": round(time.perf_counter() - start, 3)}


def _linear_stage(fixed, moving, mask, start: sitk.Transform, name: str, opts, seed, progress, span):
    method = _method(fixed, opts, seed, mask)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-4,
                                                    numberOfIterations=int(opts["iterations"]),
                                                    relaxationFactor=0.5, gradientMagnitudeTolerance=1e-8)
    method.SetOptimizerScalesFromPhysicalShift()  # one step = about one mm of motion for every parameter
    transform = type(start)(start)
    method.SetInitialTransform(transform, inPlace=True)
    stage = _run(method, fixed, moving, name, progress, span)
    return transform, stage


def _bspline_stage(fixed, moving, mask, prior: sitk.Transform, opts, seed, progress, span):
    mesh = [max(1, int(round(n * s / float(opts["bspline_grid_mm"]))))
            for n, s in zip(fixed.GetSize(), fixed.GetSpacing())]
    bspline = sitk.BSplineTransformInitializer(fixed, mesh, order=3)
    method = _method(fixed, {**opts, "max_samples": opts["bspline_max_samples"]}, seed, mask)
    iterations = int(opts["bspline_iterations"])
    method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=iterations,
                                maximumNumberOfCorrections=5, maximumNumberOfFunctionEvaluations=2 * iterations,
                                costFunctionConvergenceFactor=1e7)
    method.SetMovingInitialTransform(prior)
    method.SetInitialTransform(bspline, inPlace=True)
    stage = _run(method, fixed, moving, "bspline", progress, span)
    stage["mesh_size"] = mesh
    # CompositeTransform applies its last transform first: T(p) = prior(bspline(p)).
    return sitk.CompositeTransform([prior, bspline]), stage


def _metric_value(fixed, moving, mask, transform: sitk.Transform, opts, seed) -> float | None:
    """Mattes MI (negative; lower is better) of `transform` on the given images, same sampling settings."""
    method = _method(fixed, {**opts, "shrink_factors": (1,), "smoothing_sigmas_mm": (0.0,)}, seed, mask)
    method.SetInitialTransform(transform)
    try:
        value = float(method.MetricEvaluate(fixed, moving))
    except RuntimeError:  # no overlap at all
        return None
    return value if math.isfinite(value) else None


def _rigid_from(transform: sitk.Transform, center) -> sitk.Euler3DTransform | None:
    """The Euler3D transform (rotation about `center`) equal to a linear rigid `transform`, else None."""
    matrix, offset = affine_parts(transform)
    if not np.allclose(matrix.T @ matrix, np.eye(3), atol=1e-6) or np.linalg.det(matrix) < 0:
        return None
    euler = sitk.Euler3DTransform()
    euler.SetCenter(tuple(float(c) for c in center))
    euler.SetMatrix(tuple(matrix.reshape(-1)), 1e-6)
    c = np.asarray(center, float)
    euler.SetTranslation(tuple(matrix @ c + offset - c))  # T(p) = R(p - c) + c + t
    return euler


def _initial_rigid(fixed, moving, fixed_body: sitk.Image, moving_body: sitk.Image, mask, opts, seed,
                   progress) -> tuple[sitk.Euler3DTransform, str]:
    """Starting Euler3D transform; "auto" keeps whichever candidate start has the best coarse metric value.

    identity: the scanner frames agree; geometry: image centres aligned; moments: body-mask centroids aligned.
    """
    candidates = {}
    for name in ("identity", "geometry", "moments"):
        if opts["initializer"] not in (name, "auto"):
            continue
        if name == "identity":
            transform = sitk.Euler3DTransform()
            size = np.array(fixed.GetSize(), float)
            transform.SetCenter(fixed.TransformContinuousIndexToPhysicalPoint(tuple((size - 1) / 2)))
        elif name == "geometry":
            transform = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                                          sitk.CenteredTransformInitializerFilter.GEOMETRY)
        else:
            try:
                transform = sitk.CenteredTransformInitializer(
                    sitk.Cast(fixed_body, sitk.sitkFloat32), sitk.Cast(moving_body, sitk.sitkFloat32),
                    sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS)
            except RuntimeError:  # empty body mask
                continue
        candidates[name] = sitk.Euler3DTransform(transform)
    if len(candidates) == 1:
        name = next(iter(candidates))
        return candidates[name], name
    if progress is not None:
        progress(0.0, f"choosing the start among {sorted(candidates)} by the coarse metric value")
    coarse = max(opts["shrink_factors"])
    small_fixed, small_moving = (sitk.BinShrink(image, [int(coarse)] * 3) for image in (fixed, moving))
    small_mask = None if mask is None else sitk.BinShrink(mask, [int(coarse)] * 3) > 0
    scores = {name: _metric_value(small_fixed, small_moving, small_mask, t, opts, seed)
              for name, t in candidates.items()}
    valid = {name: score for name, score in scores.items() if score is not None}
    best = min(valid, key=valid.get) if valid else "geometry"
    return candidates[best], best


# ----------------------------------------------------------------------------------------------- public API

def register_ct(fixed: Volume, moving: Volume, kind: str = "rigid", backend: str = "simpleitk", seed: int = 0,
                progress: Progress | None = None, initial_transform: sitk.Transform | None = None,
                **options) -> RegistrationResult:
    """Register `moving` CT (HU) onto `fixed` CT (HU); the result maps fixed points to moving points.

    kind: "rigid" (Euler3D), "affine" (rigid, then affine) or "bspline" (rigid, then B-spline deformable).
    backend: "simpleitk" or "elastix" (needs `pip install itk-elastix`). seed fixes the metric sampling so the
    same inputs give the same transform. initial_transform: a starting point (rigid for kind "rigid"; any
    linear transform for "affine"; any transform for "bspline", where a non-rigid one replaces the rigid stage).
    options: see DEFAULT_OPTIONS. progress(fraction, message) is called at each stage and pyramid level.
    Inputs are not modified.
    """
    if kind not in KINDS:
        raise InputFormatError(f"Unknown registration kind {kind!r}; use one of {KINDS}.")
    if backend not in BACKENDS:
        raise InputFormatError(f"Unknown registration backend {backend!r}; use one of {BACKENDS}.")
    if int(seed) != seed or seed < 0:
        raise InputFormatError(f"seed must be a non-negative integer; got {seed!r}.")
    opts = _options(options)
    fixed = _require_ct(fixed, "fixed (reference)")
    moving = _require_ct(moving, "moving")
    start = time.perf_counter()
    fixed_body, moving_body = body_mask_volume(fixed), body_mask_volume(moving)
    if backend == "elastix":
        from VoxelDosimetryLib.kinetics.registration_elastix import register_with_elastix

        transform, stages = register_with_elastix(fixed, moving, kind, seed, opts, initial_transform, progress)
    else:
        transform, stages = _register_simpleitk(fixed, moving, fixed_body, moving_body, kind, seed, opts,
                                                initial_transform, progress)
    if progress is not None:
        progress(0.95, "measuring registration quality")
    quality = registration_quality(fixed_body, moving_body, transform, stages)
    quality["elapsed_s"] = round(time.perf_counter() - start, 3)
    if progress is not None:
        progress(1.0, f"registration done: Dice {quality['dice_body_before']:.3f} -> {quality['dice_body_after']:.3f}")
    return RegistrationResult(transform, quality, backend, kind, {**opts, "seed": int(seed)})


def _register_simpleitk(fixed_ct, moving_ct, fixed_body, moving_body, kind, seed, opts, initial_transform,
                        progress):
    fixed = _metric_image(fixed_ct, opts["hu_range"])
    moving = _metric_image(moving_ct, opts["hu_range"])
    fixed_body_image = sitk.Cast(to_sitk(fixed_body), sitk.sitkUInt8)
    moving_body_image = sitk.Cast(to_sitk(moving_body), sitk.sitkUInt8)
    mask = _mask_image(fixed_body, opts["mask_margin_mm"]) if opts["metric_mask"] == "body" else None
    if mask is not None and not np.any(fixed_body.array):
        mask = None  # no body found (e.g. a phantom without air): sample the whole image
    stages: list[dict] = []
    rigid = None
    prior = None  # a user transform that replaces the rigid stage (non-rigid start)
    if initial_transform is None:
        rigid, start_name = _initial_rigid(fixed, moving, fixed_body_image, moving_body_image, mask, opts, seed,
                                           progress)
        stages.append({"stage": "initializer", "method": start_name})
    else:
        center = _body_centre(fixed_body_image)
        rigid = _rigid_from(initial_transform, center) if initial_transform.IsLinear() else None
        if rigid is None:
            if kind == "rigid":
                raise InputFormatError("initial_transform must be rigid (rotation + translation) for kind 'rigid'; "
                                       f"got {initial_transform.GetName()}. Use kind 'affine' or 'bspline'.")
            if kind == "affine" and not initial_transform.IsLinear():
                raise InputFormatError(f"initial_transform must be linear for kind 'affine'; got "
                                       f"{initial_transform.GetName()}.")
            prior = initial_transform
        stages.append({"stage": "initializer", "method": "initial_transform"})
    second = kind != "rigid"
    rigid_span = (0.0, 0.45 if second else 0.9)
    transform = None
    if rigid is not None:
        transform, stage = _linear_stage(fixed, moving, mask, rigid, "rigid", opts, seed, progress, rigid_span)
        stages.append(stage)
    else:
        transform = prior
    if kind == "affine":
        affine = sitk.AffineTransform(3)
        matrix, offset = affine_parts(transform)
        center = np.array(transform.GetCenter()) if hasattr(transform, "GetCenter") else _body_centre(fixed_body_image)
        affine.SetCenter(tuple(center))
        affine.SetMatrix(tuple(matrix.reshape(-1)))
        affine.SetTranslation(tuple(matrix @ center + offset - center))
        transform, stage = _linear_stage(fixed, moving, mask, affine, "affine", opts, seed, progress, (0.45, 0.9))
        stages.append(stage)
    elif kind == "bspline":
        transform, stage = _bspline_stage(fixed, moving, mask, transform, opts, seed, progress, (0.45, 0.9))
        stages.append(stage)
    stages.append({"stage": "full_resolution_metric",
                   "metric_value_start": _metric_value(fixed, moving, mask, prior if rigid is None else rigid,
                                                       opts, seed),
                   "metric_value_final": _metric_value(fixed, moving, mask, transform, opts, seed)})
    return transform, stages


def _body_centre(body: sitk.Image) -> np.ndarray:
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(body)
    if 1 in stats.GetLabels():
        return np.array(stats.GetCentroid(1))
    size = np.array(body.GetSize(), float)
    return np.array(body.TransformContinuousIndexToPhysicalPoint(tuple((size - 1) / 2)))


def registration_quality(fixed_body: Volume, moving_body: Volume, transform: sitk.Transform,
                         stages: list[dict]) -> dict:
    """Quality report: final metric, iterations, stop condition, body Dice before/after, body displacement."""
    dice_before, _ = body_dice(fixed_body, moving_body)
    dice_after, overlap = body_dice(fixed_body, moving_body, transform)
    moved = displacement_stats(transform, fixed_body)
    optimised = [s for s in stages if "iterations" in s]
    last = ([s for s in stages if "stop_condition" in s] or [{}])[-1]
    full = next((s for s in stages if s.get("stage") == "full_resolution_metric"), {})
    quality = {
        "metric": "mattes_mutual_information (negative; lower is better)",
        "final_metric_value": full.get("metric_value_final", last.get("final_metric_value")),
        "start_metric_value": full.get("metric_value_start"),
        "iterations": int(sum(s["iterations"] for s in optimised)) if optimised else None,
        "stop_condition": last.get("stop_condition"),
        "dice_body_before": dice_before,
        "dice_body_after": dice_after,
        "body_overlap_fraction": overlap,
        "displacement_mean_mm": moved["mean_mm"],
        "displacement_p95_mm": moved["p95_mm"],
        "displacement_max_mm": moved["max_mm"],
        "body_voxels": int(np.count_nonzero(fixed_body.array)),
        "stages": stages,
        "warnings": [],
    }
    if quality["dice_body_after"] < 0.9:
        quality["warnings"].append(f"Body Dice after registration is {quality['dice_body_after']:.3f} (< 0.9): "
                                   "check the overlay; try another initializer or kind, or a closer initial transform.")
    if overlap < 0.5:
        quality["warnings"].append(f"Only {100 * overlap:.0f}% of the fixed body maps inside the moving CT: check "
                                   "that both CTs cover the same region and the overlay.")
    if quality["dice_body_after"] < quality["dice_body_before"] - 0.01:
        quality["warnings"].append("Body overlap got worse than without registration: the result is doubtful; "
                                   "check the overlay before using it.")
    return _jsonable(quality)


def _reference_grid(reference: GridLike) -> Grid:
    return reference.grid if isinstance(reference, Volume) else reference


def _transform_of(result) -> sitk.Transform:
    return result.transform if isinstance(result, RegistrationResult) else result


def apply_to_spect(spect: Volume, result: RegistrationResult, reference: GridLike) -> Volume:
    """The SPECT (activity or TIA) moved into the fixed frame on `reference`'s grid, conserving total activity.

    The transform is the CT registration's (each SPECT follows its own CT). Non-invertible parts (B-spline) are
    replaced by a displacement field with a numerical inverse, which the activity-conserving resampler needs.
    """
    grid = _reference_grid(reference)
    transform = invertible_transform(_transform_of(result), grid, spect.grid)
    return resample_to(spect, grid, mode="activity", transform=transform)


def apply_to_volume(volume: Volume, result, reference: GridLike, mode: str = "linear") -> Volume:
    """Any other volume (CT, density, dose, labels) moved into the fixed frame on `reference`'s grid.

    Label quantities always use nearest neighbour. Voxels mapped from outside the volume get -1000 HU for CT
    (air) and 0 otherwise.
    """
    if get_quantity(volume.quantity).is_label:
        mode = "nearest"
    default = -1000.0 if volume.quantity == "ct" else 0.0
    return resample_to(volume, _reference_grid(reference), mode=mode, default_value=default,
                       transform=_transform_of(result))


def invertible_transform(transform: sitk.Transform, target: Grid, source: Grid) -> sitk.Transform:
    """`transform` when ITK can invert it, else the same mapping as a displacement field with a numerical inverse.

    The field covers both grids (target points go forward, source points backward) so the activity-conserving
    resampler can tell which source voxels land inside the target.
    """
    try:
        transform.GetInverse()
        return transform
    except RuntimeError:
        pass
    grid = _field_grid(target, source)
    field = sitk.TransformToDisplacementField(transform, sitk.sitkVectorFloat64, list(grid.size_xyz), grid.origin,
                                              grid.spacing, tuple(grid.direction.reshape(-1)))
    inverse = sitk.InvertDisplacementField(field, maximumNumberOfIterations=50, maxErrorToleranceThreshold=0.01,
                                           meanErrorToleranceThreshold=0.0001, enforceBoundaryCondition=True)
    displacement = sitk.DisplacementFieldTransform(field)
    displacement.SetInverseDisplacementField(inverse)
    return displacement


def _field_grid(target: Grid, source: Grid, max_points: int = 4_000_000, pad_voxels: int = 2) -> Grid:
    """A grid in `target`'s orientation covering both grids' extents, coarsened to at most `max_points` voxels."""
    corners = np.array([[i, j, k] for i in (-0.5, source.size_xyz[0] - 0.5) for j in (-0.5, source.size_xyz[1] - 0.5)
                        for k in (-0.5, source.size_xyz[2] - 0.5)])
    in_target = target.world_to_index(source.index_to_world(corners))
    low = np.minimum(in_target.min(axis=0), 0.0) - pad_voxels
    high = np.maximum(in_target.max(axis=0), np.asarray(target.size_xyz) - 1.0) + pad_voxels
    extent = high - low
    step = max(1.0, (float(np.prod(extent + 1)) / max_points) ** (1.0 / 3.0))
    size = np.ceil(extent / step).astype(int) + 1
    return Grid((int(size[2]), int(size[1]), int(size[0])), tuple(np.asarray(target.spacing) * step),
                tuple(target.index_to_world(low)), target.direction)


def write_transform(result, path) -> Path:
    """Write the transform (a RegistrationResult or sitk.Transform) to .tfm/.txt (text) or .h5/.hdf5."""
    path = Path(path)
    if path.suffix.lower() not in TRANSFORM_SUFFIXES:
        raise InputFormatError(f"Transform files need one of the extensions {TRANSFORM_SUFFIXES}; got {path.name!r}.")
    with atomic_output(path) as staged:
        sitk.WriteTransform(_transform_of(result), str(staged))
    return path


def read_transform(path) -> sitk.Transform:
    """Read a transform written by write_transform (or any ITK transform file); maps fixed to moving points."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Transform file {path} does not exist; check the path.")
    try:
        transform = sitk.ReadTransform(str(path))
    except RuntimeError as exc:
        raise InputFormatError(f"{path} is not a readable ITK transform file ({str(exc).strip()[-200:]}); write it "
                               "with write_transform or `voxeldosimetry register --out-transform`.") from exc
    return transform.Downcast() if hasattr(transform, "Downcast") else transform


def covering_grid(frame: Grid, spacing) -> Grid:
    """A grid in `frame`'s orientation with voxel `spacing` (x, y, z mm) that covers `frame`'s extent (centred)."""
    spacing = np.asarray(spacing, float)
    extent = np.asarray(frame.size_xyz, float) * np.asarray(frame.spacing)
    size = np.maximum(1, np.ceil(extent / spacing - 1e-6)).astype(int)
    centre = frame.index_to_world((np.asarray(frame.size_xyz, float) - 1) / 2)
    origin = centre - frame.direction @ ((size - 1) * spacing / 2)
    return Grid((int(size[2]), int(size[1]), int(size[0])), tuple(spacing), tuple(origin), frame.direction)
