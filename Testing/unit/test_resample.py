"""Resampling onto another grid: linear, nearest for labels, activity-conserving."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from VoxelDosimetryLib import Volume
from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.geometry import resample_to
from VoxelDosimetryLib.volume import Grid


def test_identity_resampling_returns_same_values(oblique_direction):
    rng = np.random.default_rng(0)
    vol = Volume(rng.random((6, 7, 8)), spacing=(2, 3, 4), origin=(5, -5, 10), direction=oblique_direction,
                 quantity="dose", unit="Gy")
    out = resample_to(vol, vol)
    assert np.allclose(out.array, vol.array)
    assert out.grid == vol.grid and out.unit == "Gy"


def test_linear_interpolation_of_a_linear_ramp_is_exact():
    z, y, x = np.meshgrid(np.arange(10), np.arange(10), np.arange(10), indexing="ij")
    vol = Volume((2.0 * x + 3.0 * z).astype(float), spacing=(1, 1, 1), quantity="ct", unit="HU")
    target = Grid((4, 4, 4), (1.5, 1.5, 1.5), (1.25, 1.25, 1.25))
    out = resample_to(vol, target)
    k, j, i = np.meshgrid(*[np.arange(4)] * 3, indexing="ij")
    expected = 2.0 * (1.25 + 1.5 * i) + 3.0 * (1.25 + 1.5 * k)
    assert np.allclose(out.array, expected)


def test_labels_stay_integers_and_need_nearest():
    labels = Volume(np.arange(27, dtype=np.uint8).reshape(3, 3, 3), quantity="labels")
    out = resample_to(labels, Grid((6, 6, 6), (0.5, 0.5, 0.5), (-0.25, -0.25, -0.25)), mode="nearest")
    assert out.array.dtype == np.uint8
    assert set(np.unique(out.array)) == set(range(27))
    with pytest.raises(InputFormatError, match="nearest"):
        resample_to(labels, labels, mode="linear")


@pytest.mark.parametrize("quantity,unit", [("activity_concentration", "Bq/mL"), ("activity", "MBq")])
def test_activity_resampling_conserves_total(quantity, unit):
    rng = np.random.default_rng(3)
    source = Volume(rng.gamma(2.0, 50.0, (24, 26, 28)), spacing=(2.0, 2.0, 2.0), origin=(0, 0, 0),
                    quantity=quantity, unit=unit)
    # coarser target grid that covers the whole source, with a shifted origin and another spacing
    target = Grid((13, 14, 15), (4.8, 4.8, 4.8), (-3.0, -4.0, -2.5))
    out = resample_to(source, target, mode="activity")
    per_ml = quantity == "activity_concentration"  # concentrations integrate with the voxel volume
    total_in = source.array.sum() * (source.voxel_volume_ml if per_ml else 1.0)
    total_out = out.array.sum() * (out.voxel_volume_ml if per_ml else 1.0)
    assert total_out == pytest.approx(total_in, rel=1e-9)
    assert out.array.min() >= 0
    # plain linear interpolation does not conserve it
    linear = resample_to(source, target, mode="linear")
    if per_ml:
        assert abs(linear.array.sum() * linear.voxel_volume_ml / total_in - 1) > 1e-3


def test_activity_resampling_with_a_transform_conserves_total():
    source = Volume(np.zeros((20, 20, 20)), spacing=(2, 2, 2), quantity="activity_concentration")
    arr = source.array.copy()
    arr[8:12, 8:12, 8:12] = 100.0
    source = source.replace(array=arr)
    transform = sitk.Euler3DTransform((20, 20, 20), 0.1, 0.0, 0.2, (3.0, -2.0, 1.0))
    out = resample_to(source, Grid((16, 16, 16), (3, 3, 3), (-2, -2, -2)), mode="activity", transform=transform)
    assert out.array.sum() * out.voxel_volume_ml == pytest.approx(arr.sum() * 0.008, rel=1e-9)


def test_activity_mode_rejects_nan_and_wrong_quantity():
    bad = Volume(np.full((3, 3, 3), np.nan), quantity="activity_concentration")
    with pytest.raises(InputFormatError, match="NaN"):
        resample_to(bad, bad, mode="activity")
    ct = Volume(np.zeros((3, 3, 3)), quantity="ct")
    with pytest.raises(InputFormatError, match="linear"):
        resample_to(ct, ct, mode="activity")
    with pytest.raises(InputFormatError, match="Unknown resampling mode"):
        resample_to(ct, ct, mode="cubic")
