"""Optional Elastix backend for register_ct (needs `pip install itk-elastix`; `itk` is imported only here, lazily).

Rigid and affine results become the equivalent SimpleITK Euler3D / Affine transforms; B-spline results (rigid then
B-spline maps) become a displacement field on the fixed CT grid computed by transformix. Elastix transforms map
fixed points to moving points, the same convention as SimpleITK.
"""
from __future__ import annotations

import time

import numpy as np
import SimpleITK as sitk

from VoxelDosimetryLib.errors import InputFormatError, VoxelDosimetryError
from VoxelDosimetryLib.volume import Volume


def _import_itk():
    try:
        import itk  # noqa: F401  (itk-elastix registers its filters on the itk namespace)

        itk.ParameterObject  # raises AttributeError when itk is installed without elastix
    except (ImportError, AttributeError) as exc:
        raise VoxelDosimetryError("The elastix registration backend needs the itk-elastix package: "
                                  "`pip install itk-elastix`, or use backend='simpleitk'.") from exc
    return itk


def elastix_available() -> bool:
    try:
        _import_itk()
    except VoxelDosimetryError:
        return False
    return True


def _to_itk(itk, volume: Volume, hu_range=None, dtype=np.float32):
    array = volume.array.astype(dtype)
    if hu_range is not None:
        array = np.clip(array, hu_range[0], hu_range[1])  # metric image only, as for SimpleITK
    image = itk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing([float(s) for s in volume.spacing])
    image.SetOrigin([float(o) for o in volume.origin])
    image.SetDirection(itk.GetMatrixFromArray(np.ascontiguousarray(volume.direction, dtype=np.float64)))
    return image


def _parameter_map(itk, parameters, name: str, opts: dict, seed: int):
    levels = len(opts["shrink_factors"])
    pmap = parameters.GetDefaultParameterMap(name, levels, float(opts.get("bspline_grid_mm", 50.0)))
    schedule = [str(int(s)) for s in opts["shrink_factors"] for _ in range(3)]
    pmap["FixedImagePyramidSchedule"] = schedule
    pmap["MovingImagePyramidSchedule"] = schedule
    pmap["NumberOfHistogramBins"] = [str(int(opts["histogram_bins"]))]
    pmap["MaximumNumberOfIterations"] = [str(int(opts["bspline_iterations"] if name == "bspline"
                                                 else opts["iterations"]))]
    pmap["RandomSeed"] = [str(int(seed))]
    pmap["WriteResultImage"] = ["false"]
    if name != "bspline":
        method = "CenterOfGravity" if opts["initializer"] == "moments" else "GeometricalCenter"
        pmap["AutomaticTransformInitialization"] = ["false" if opts["initializer"] == "identity" else "true"]
        pmap["AutomaticTransformInitializationMethod"] = [method]
    return pmap


def _parameter(result, index: int, key: str, default=()) -> tuple:
    """Values of `key` in parameter map `index` as strings; `default` when the map lacks it."""
    try:
        values = tuple(result.GetParameter(index, key))
    except (KeyError, RuntimeError, IndexError):
        return tuple(default)
    return values or tuple(default)


def _floats(result, index: int, key: str) -> list[float]:
    return [float(v) for v in _parameter(result, index, key)]


def _linear_transform(result) -> sitk.Transform:
    name = _parameter(result, 0, "Transform", ("?",))[0]
    parameters = _floats(result, 0, "TransformParameters")
    center = _floats(result, 0, "CenterOfRotationPoint")
    if name == "EulerTransform":
        euler = sitk.Euler3DTransform()
        euler.SetCenter(center)
        euler.SetComputeZYX(_parameter(result, 0, "ComputeZYX", ("false",))[0] == "true")
        euler.SetRotation(*parameters[:3])
        euler.SetTranslation(parameters[3:6])
        return euler
    if name == "AffineTransform":
        return sitk.AffineTransform(parameters[:9], parameters[9:12], center)
    raise VoxelDosimetryError(f"Unexpected elastix transform {name!r}; report this with the elastix log.")


def _displacement_transform(itk, moving_image, result) -> sitk.Transform:
    field = itk.transformix_deformation_field(moving_image, result)
    image = sitk.GetImageFromArray(np.asarray(itk.array_from_image(field), dtype=np.float64), isVector=True)
    image.SetSpacing(tuple(float(s) for s in field.GetSpacing()))
    image.SetOrigin(tuple(float(o) for o in field.GetOrigin()))
    image.SetDirection(tuple(np.asarray(itk.array_from_matrix(field.GetDirection()), float).reshape(-1)))
    return sitk.DisplacementFieldTransform(image)


def register_with_elastix(fixed: Volume, moving: Volume, kind: str, seed: int, opts: dict,
                          initial_transform=None, progress=None) -> tuple[sitk.Transform, list[dict]]:
    """(transform fixed -> moving, stage summaries) from elastix; inputs are CT in HU (already checked)."""
    itk = _import_itk()
    if initial_transform is not None:
        raise InputFormatError("initial_transform is not supported with the elastix backend; drop it or use "
                               "backend='simpleitk'.")
    from VoxelDosimetryLib.physics.body_mask import body_mask_volume

    fixed_image = _to_itk(itk, fixed, opts["hu_range"])
    moving_image = _to_itk(itk, moving, opts["hu_range"])
    parameters = itk.ParameterObject.New()
    names = {"rigid": ("rigid",), "affine": ("affine",), "bspline": ("rigid", "bspline")}[kind]
    for name in names:
        parameters.AddParameterMap(_parameter_map(itk, parameters, name, opts, seed))
    kwargs = {"parameter_object": parameters, "log_to_console": False}
    if opts["metric_mask"] == "body":
        kwargs["fixed_mask"] = _to_itk(itk, body_mask_volume(fixed), dtype=np.uint8)
    if progress is not None:
        progress(0.05, f"elastix {' + '.join(names)} registration")
    start = time.perf_counter()
    try:
        _, result = itk.elastix_registration_method(fixed_image, moving_image, **kwargs)
    except RuntimeError as exc:
        raise VoxelDosimetryError(f"Elastix registration failed ({str(exc).strip()[-300:]}); check that the CTs "
                                  "overlap, or use backend='simpleitk'.") from exc
    transform = _displacement_transform(itk, moving_image, result) if kind == "bspline" else _linear_transform(result)
    stages = [{"stage": f"elastix {name}", "final_metric_value": None,
               "max_iterations_per_level": int(opts["bspline_iterations"] if name == "bspline" else opts["iterations"]),
               "stop_condition": "see the elastix log (not exposed by itk-elastix)"}
              for name in names]
    stages[-1]["elapsed_s"] = round(time.perf_counter() - start, 3)
    return transform, stages
