"""Timepoint registration: known rigid motion recovered on the phantom, transforms saved, SPECT moved conserving activity."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from VoxelDosimetryLib import Volume
from VoxelDosimetryLib.errors import InputFormatError, UnitError, VoxelDosimetryError
from VoxelDosimetryLib.geometry import resample_to
from VoxelDosimetryLib.kinetics.registration import (
    RegistrationResult, affine_parts, apply_to_spect, apply_to_volume, covering_grid, read_transform, register_ct,
    write_transform,
)
from VoxelDosimetryLib.kinetics.registration_elastix import elastix_available
from VoxelDosimetryLib.kinetics.registration_quality import dice, displacement_stats, rotation_angle_deg
from VoxelDosimetryLib.physics.body_mask import body_mask_volume
from VoxelDosimetryLib.simulate import build_virtual_patient


def _rigid(angles_deg, translation_mm, center=(0.0, 0.0, 0.0)) -> sitk.Euler3DTransform:
    transform = sitk.Euler3DTransform()
    transform.SetCenter(center)
    transform.SetRotation(*[math.radians(a) for a in angles_deg])
    transform.SetTranslation(translation_mm)
    return transform


def _moved(volume: Volume, truth: sitk.Transform, **kwargs) -> Volume:
    """The image of `volume` after the patient moved by `truth` (so that registration should return `truth`)."""
    return resample_to(volume, volume, transform=truth.GetInverse(), **kwargs)


@pytest.fixture(scope="module")
def phantom():
    return build_virtual_patient(voxel_mm=6.0, seed=1)


@pytest.fixture(scope="module")
def truth():
    return _rigid((2.0, -3.0, 4.0), (5.0, -3.0, 6.0), center=(10.0, 20.0, 0.0))


@pytest.fixture(scope="module")
def moving_ct(phantom, truth):
    ct = phantom.ct.replace(array=phantom.ct.array.astype(np.float32))
    return _moved(ct, truth, default_value=-1000.0)


@pytest.fixture(scope="module")
def registered(phantom, moving_ct):
    return register_ct(phantom.ct, moving_ct, seed=0)


def test_recovers_a_known_rigid_transform(phantom, truth, registered):
    error = displacement_stats(registered.transform, body_mask_volume(phantom.ct), reference=truth)
    assert error["max_mm"] <= 1.0, error
    recovered, _ = affine_parts(registered.transform)
    expected, _ = affine_parts(truth)
    assert rotation_angle_deg(recovered.T @ expected) <= 0.5
    quality = registered.quality
    assert quality["dice_body_after"] > quality["dice_body_before"]
    assert quality["dice_body_after"] > 0.97
    assert quality["final_metric_value"] < quality["start_metric_value"]  # MI is negated: lower is better
    assert quality["iterations"] > 0 and "step" in quality["stop_condition"].lower()
    moved = displacement_stats(truth, body_mask_volume(phantom.ct))
    assert quality["displacement_mean_mm"] == pytest.approx(moved["mean_mm"], abs=1.0)
    assert quality["warnings"] == []
    report = json.loads(json.dumps(registered.to_dict()))
    assert report["kind"] == "rigid" and report["backend"] == "simpleitk"
    assert report["transform"]["type"] == "Euler3DTransform"
    assert report["transform"]["rotation_angle_deg"] == pytest.approx(rotation_angle_deg(expected), abs=0.5)


def test_same_seed_gives_the_same_transform(phantom, moving_ct, registered):
    again = register_ct(phantom.ct, moving_ct, seed=0)
    # equal to rounding (threaded sums may differ in the last bits); another seed samples other voxels
    assert np.allclose(again.transform.GetParameters(), registered.transform.GetParameters(), rtol=0, atol=1e-9)
    other = register_ct(phantom.ct, moving_ct, seed=7)
    assert not np.allclose(other.transform.GetParameters(), registered.transform.GetParameters(), rtol=0, atol=1e-9)


def test_inputs_are_not_modified(phantom, moving_ct, registered):
    fixed_before, moving_before = phantom.ct.array.copy(), moving_ct.array.copy()
    activity = phantom.true_activity(3600.0)
    activity_before = activity.array.copy()
    register_ct(phantom.ct, moving_ct, seed=0, iterations=3, shrink_factors=(4,), smoothing_sigmas_mm=(0.0,))
    apply_to_spect(activity, registered, phantom.ct)
    assert np.array_equal(phantom.ct.array, fixed_before)
    assert np.array_equal(moving_ct.array, moving_before)
    assert np.array_equal(activity.array, activity_before)


def test_apply_to_spect_conserves_total_activity(phantom, truth, registered):
    activity = _moved(phantom.true_activity(24 * 3600.0), truth, mode="activity")
    reference = covering_grid(phantom.ct.grid, (4.8, 4.8, 4.8))
    out = apply_to_spect(activity, registered, reference)
    assert out.grid == reference and out.quantity == "activity_concentration"
    total_in = activity.array.sum() * activity.voxel_volume_ml
    assert out.array.sum() * out.voxel_volume_ml == pytest.approx(total_in, rel=1e-9)
    # the liver's activity returns to the fixed frame's liver
    liver = resample_to(phantom.labels, reference, mode="nearest").array == 1
    original = resample_to(phantom.true_activity(24 * 3600.0), reference, mode="activity")
    assert out.array[liver].sum() == pytest.approx(original.array[liver].sum(), rel=0.05)


def test_apply_to_spect_with_a_non_invertible_transform_conserves_activity(phantom):
    fixed_grid = phantom.ct.grid
    image = sitk.Image(list(fixed_grid.size_xyz), sitk.sitkUInt8)
    image.SetSpacing(fixed_grid.spacing)
    image.SetOrigin(fixed_grid.origin)
    bspline = sitk.BSplineTransformInitializer(image, [3, 3, 3], order=3)
    parameters = np.random.default_rng(0).normal(0.0, 2.0, bspline.GetNumberOfParameters())
    bspline.SetParameters(parameters.tolist())
    composite = sitk.CompositeTransform([_rigid((1.0, 0.0, 2.0), (4.0, 0.0, -3.0)), bspline])
    result = RegistrationResult(composite, {}, "simpleitk", "bspline")
    activity = phantom.true_activity(3600.0)
    out = apply_to_spect(activity, result, covering_grid(fixed_grid, (8.0, 8.0, 8.0)))
    assert out.array.sum() * out.voxel_volume_ml == pytest.approx(activity.array.sum() * activity.voxel_volume_ml,
                                                                  rel=1e-9)
    assert np.all(np.isfinite(out.array)) and out.array.min() >= 0


def test_apply_to_volume_keeps_labels_integer_and_fills_ct_with_air(phantom, truth, registered, moving_ct):
    labels = apply_to_volume(phantom.labels, registered, phantom.ct)  # labels switch to nearest neighbour
    assert labels.array.dtype == phantom.labels.array.dtype
    assert set(np.unique(labels.array)) <= set(np.unique(phantom.labels.array))
    ct = apply_to_volume(moving_ct, registered, phantom.ct)
    assert ct.grid == phantom.ct.grid and ct.quantity == "ct"
    body = body_mask_volume(phantom.ct).array > 0
    error_after = np.abs(ct.array[body] - phantom.ct.array[body]).mean()
    error_before = np.abs(moving_ct.array[body] - phantom.ct.array[body]).mean()
    ideal = resample_to(moving_ct, phantom.ct, transform=truth, default_value=-1000.0)  # edges interpolated twice
    error_ideal = np.abs(ideal.array[body] - phantom.ct.array[body]).mean()
    assert error_after < min(0.5 * error_before, 1.1 * error_ideal), (error_before, error_after, error_ideal)
    assert ct.array.min() >= -1000.0  # voxels from outside the moving CT are air


@pytest.mark.parametrize("suffix", [".tfm", ".h5"])
def test_transform_file_round_trip(tmp_path, registered, suffix):
    path = write_transform(registered, tmp_path / f"t{suffix}")
    back = read_transform(path)
    assert isinstance(back, sitk.Euler3DTransform)
    assert np.allclose(back.GetParameters(), registered.transform.GetParameters(), atol=1e-12)
    assert np.allclose(back.GetFixedParameters(), registered.transform.GetFixedParameters(), atol=1e-12)


def test_composite_transform_round_trip(tmp_path):
    image = sitk.Image([10, 10, 10], sitk.sitkUInt8)
    bspline = sitk.BSplineTransformInitializer(image, [2, 2, 2], order=3)
    bspline.SetParameters(np.linspace(-1, 1, bspline.GetNumberOfParameters()).tolist())
    composite = sitk.CompositeTransform([_rigid((1, 2, 3), (4, 5, 6)), bspline])
    for suffix in (".tfm", ".h5"):
        back = read_transform(write_transform(composite, tmp_path / f"c{suffix}"))
        for point in [(1.0, 2.0, 3.0), (5.0, 7.5, 2.5)]:
            assert np.allclose(back.TransformPoint(point), composite.TransformPoint(point), atol=1e-9)


def test_transform_file_errors(tmp_path):
    with pytest.raises(InputFormatError, match=".tfm"):
        write_transform(sitk.Euler3DTransform(), tmp_path / "t.nrrd")
    with pytest.raises(FileNotFoundError):
        read_transform(tmp_path / "missing.tfm")
    bad = tmp_path / "bad.tfm"
    bad.write_text("not a transform\n")
    with pytest.raises(InputFormatError, match="write_transform"):
        read_transform(bad)


def test_inputs_must_be_ct(phantom):
    activity = phantom.true_activity(3600.0)
    with pytest.raises(UnitError, match="CT in HU"):
        register_ct(phantom.ct, activity)
    with pytest.raises(UnitError, match="fixed"):
        register_ct(activity, phantom.ct)


def test_bad_arguments_are_refused(phantom):
    with pytest.raises(InputFormatError, match="kind"):
        register_ct(phantom.ct, phantom.ct, kind="elastic")
    with pytest.raises(InputFormatError, match="backend"):
        register_ct(phantom.ct, phantom.ct, backend="ants")
    with pytest.raises(InputFormatError, match="seed"):
        register_ct(phantom.ct, phantom.ct, seed=-1)
    with pytest.raises(InputFormatError, match="shrink_factor"):
        register_ct(phantom.ct, phantom.ct, shrink_factor=2)
    with pytest.raises(InputFormatError, match="one entry per pyramid level"):
        register_ct(phantom.ct, phantom.ct, shrink_factors=(4, 2), smoothing_sigmas_mm=(1.0,))
    with pytest.raises(InputFormatError, match="rigid"):
        register_ct(phantom.ct, phantom.ct, initial_transform=sitk.AffineTransform((1, 0, 0, 0, 2, 0, 0, 0, 1),
                                                                                     (0, 0, 0)))
    nan_ct = phantom.ct.replace(array=np.where(phantom.ct.array > 0, np.nan, phantom.ct.array.astype(float)))
    with pytest.raises(InputFormatError, match="NaN"):
        register_ct(phantom.ct, nan_ct)


def test_initial_transform_seeds_the_rigid_stage(phantom, truth, moving_ct):
    start = _rigid((1.5, -2.5, 3.5), (4.0, -2.0, 5.0))
    result = register_ct(phantom.ct, moving_ct, initial_transform=start)
    assert result.quality["stages"][0]["method"] == "initial_transform"
    assert displacement_stats(result.transform, body_mask_volume(phantom.ct), reference=truth)["max_mm"] <= 1.0


def test_bspline_runs_and_improves_overlap(phantom, moving_ct, tmp_path):
    result = register_ct(phantom.ct, moving_ct, kind="bspline", shrink_factors=(2, 1),
                         smoothing_sigmas_mm=(1.0, 0.0), bspline_iterations=5, bspline_max_samples=2000,
                         bspline_grid_mm=100.0)
    assert isinstance(result.transform, sitk.CompositeTransform)
    assert [s["stage"] for s in result.quality["stages"] if "iterations" in s] == ["rigid", "bspline"]
    assert result.quality["dice_body_after"] > result.quality["dice_body_before"]
    back = read_transform(write_transform(result, tmp_path / "b.h5"))
    assert np.allclose(back.TransformPoint((1.0, 2.0, 3.0)), result.transform.TransformPoint((1.0, 2.0, 3.0)))


def test_affine_starts_from_rigid(phantom, truth, moving_ct):
    result = register_ct(phantom.ct, moving_ct, kind="affine", iterations=60)
    assert isinstance(result.transform, sitk.AffineTransform)
    assert [s["stage"] for s in result.quality["stages"] if "iterations" in s] == ["rigid", "affine"]
    assert displacement_stats(result.transform, body_mask_volume(phantom.ct), reference=truth)["p95_mm"] <= 1.5


def test_body_mask_fills_lungs_and_drops_the_table():
    ct = np.full((20, 30, 30), -1000.0)
    ct[2:18, 5:25, 5:25] = 40.0            # body
    ct[6:14, 9:15, 9:15] = -800.0          # lung inside the body
    ct[2:18, 27:29, 2:28] = 200.0          # table under the body, separated by air
    mask = body_mask_volume(Volume(ct, quantity="ct", unit="HU")).array.astype(bool)
    assert mask[10, 12, 12]                 # lung counted as body
    assert not mask[10, 28, 15]             # table dropped (smaller component)
    assert mask.sum() == 16 * 20 * 20


def test_dice_and_displacement_of_a_translation():
    a = np.zeros((4, 4, 4), bool)
    a[:2] = True
    assert dice(a, a) == 1.0 and dice(a, ~a) == 0.0 and dice(np.zeros(3), np.zeros(3)) == 1.0
    mask = Volume(np.ones((5, 6, 7), np.uint8), spacing=(2, 3, 4), quantity="mask", unit="label")
    stats = displacement_stats(sitk.TranslationTransform(3, (3.0, 4.0, 12.0)), mask)
    assert stats["mean_mm"] == pytest.approx(13.0) and stats["max_mm"] == pytest.approx(13.0)


def test_covering_grid_keeps_spacing_and_covers_the_frame(oblique_direction):
    frame = Volume(np.zeros((30, 40, 50)), spacing=(1.0, 1.5, 3.0), origin=(5, -5, 10), direction=oblique_direction,
                   quantity="ct", unit="HU").grid
    grid = covering_grid(frame, (4.0, 4.0, 4.0))
    assert grid.spacing == (4.0, 4.0, 4.0)
    assert np.allclose(grid.direction, frame.direction)
    centre = lambda g: g.index_to_world((np.asarray(g.size_xyz) - 1) / 2.0)  # noqa: E731
    assert np.allclose(centre(grid), centre(frame))
    extent = np.asarray(grid.size_xyz) * 4.0
    assert np.all(extent >= np.asarray(frame.size_xyz) * np.asarray(frame.spacing))
    assert np.all(extent - 4.0 < np.asarray(frame.size_xyz) * np.asarray(frame.spacing))


@pytest.mark.skipif(elastix_available(), reason="itk-elastix is installed")
def test_elastix_backend_says_how_to_install(phantom):
    with pytest.raises(VoxelDosimetryError, match="pip install itk-elastix"):
        register_ct(phantom.ct, phantom.ct, backend="elastix")


@pytest.mark.skipif(not elastix_available(), reason="itk-elastix is not installed (optional backend)")
def test_elastix_backend_recovers_the_rigid_transform(phantom, truth, moving_ct):
    result = register_ct(phantom.ct, moving_ct, backend="elastix")
    assert result.backend == "elastix" and isinstance(result.transform, sitk.Euler3DTransform)
    assert displacement_stats(result.transform, body_mask_volume(phantom.ct), reference=truth)["max_mm"] <= 1.0
