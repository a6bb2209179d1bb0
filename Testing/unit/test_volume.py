"""Volume and Grid: geometry, units, immutability, SimpleITK conversion."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from VoxelDosimetryLib import Volume
from VoxelDosimetryLib.errors import GridMismatchError, InputFormatError, UnitError
from VoxelDosimetryLib.volume import Grid, from_sitk, to_sitk
from VoxelDosimetryLib.volume.units import conversion_factor, guess_quantity_for_unit


def make_volume(direction=None, dtype=np.float32, quantity="activity_concentration", unit="Bq/mL") -> Volume:
    rng = np.random.default_rng(1)
    array = (rng.random((5, 7, 9)) * 1000).astype(dtype)
    return Volume(array, spacing=(1.5, 2.0, 3.25), origin=(-100.0, 20.5, 300.0), direction=direction,
                  quantity=quantity, unit=unit)


def test_geometry_index_world_round_trip(oblique_direction):
    vol = make_volume(oblique_direction)
    ijk = np.array([[0, 0, 0], [8, 6, 4], [2.5, 1.25, 3.0]])
    world = vol.grid.index_to_world(ijk)
    assert np.allclose(world[0], vol.origin)
    # one step along i moves spacing_x along the first direction column
    step = vol.grid.index_to_world([1, 0, 0]) - np.asarray(vol.origin)
    assert np.allclose(step, 1.5 * oblique_direction[:, 0])
    assert np.allclose(vol.grid.world_to_index(world), ijk)


def test_geometry_matches_simpleitk(oblique_direction):
    vol = make_volume(oblique_direction)
    image = to_sitk(vol)
    for ijk in [(0, 0, 0), (8, 6, 4), (3, 2, 1)]:
        assert np.allclose(image.TransformIndexToPhysicalPoint(ijk), vol.grid.index_to_world(ijk))
    assert image.GetSize() == (9, 7, 5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.uint8, np.int32])
def test_sitk_round_trip_is_lossless(dtype, oblique_direction):
    vol = make_volume(oblique_direction, dtype=dtype)
    back = from_sitk(to_sitk(vol))
    assert back.array.dtype == vol.array.dtype
    assert np.array_equal(back.array, vol.array)
    assert back.grid == vol.grid
    assert np.allclose(back.direction, vol.direction, atol=1e-12)
    assert (back.quantity, back.unit) == (vol.quantity, vol.unit)


def test_from_sitk_rejects_2d_and_vector_images():
    with pytest.raises(InputFormatError, match="3-D"):
        from_sitk(sitk.Image([4, 4], sitk.sitkFloat32))
    with pytest.raises(InputFormatError, match="scalar"):
        from_sitk(sitk.Image([4, 4, 4], sitk.sitkVectorFloat32, 3))


def test_volume_is_immutable_and_does_not_touch_input():
    array = np.ones((2, 3, 4))
    vol = Volume(array, quantity="dose", unit="mGy")
    with pytest.raises(AttributeError):
        vol.unit = "Gy"
    gy = vol.to_unit("Gy")
    assert np.allclose(gy.array, 1e-3) and gy.unit == "Gy"
    assert np.all(array == 1.0) and vol.unit == "mGy"


def test_unit_checks():
    with pytest.raises(UnitError, match="does not fit"):
        Volume(np.zeros((2, 2, 2)), quantity="dose", unit="Bq/mL")
    with pytest.raises(UnitError, match="Unknown quantity"):
        Volume(np.zeros((2, 2, 2)), quantity="dosage")
    with pytest.raises(UnitError, match="different things"):
        conversion_factor("Gy", "Bq")
    assert conversion_factor("MBq/mL", "Bq/mL") == 1e6
    assert conversion_factor("mGy/(MBq*s)", "Gy/(Bq*s)") == pytest.approx(1e-9)
    assert guess_quantity_for_unit("BQML") == "activity_concentration"
    assert guess_quantity_for_unit("label") == "unknown"  # several label quantities share the unit


def test_bad_arrays_and_geometry_are_rejected():
    with pytest.raises(InputFormatError, match="3-D"):
        Volume(np.zeros((4, 4)))
    with pytest.raises(InputFormatError, match="positive"):
        Volume(np.zeros((2, 2, 2)), spacing=(1, 0, 1))
    with pytest.raises(InputFormatError, match="orthonormal"):
        Volume(np.zeros((2, 2, 2)), direction=np.diag([1.0, 2.0, 1.0]))
    with pytest.raises(InputFormatError, match="numeric"):
        Volume(np.array([[["a"]]]))


def test_grid_mismatch_names_the_difference():
    a = make_volume()
    b = a.replace(grid=Grid(a.shape, a.spacing, (0.0, 0.0, 0.0)))
    with pytest.raises(GridMismatchError, match="origins differ"):
        a.require_same_grid(b, "CT and SPECT")
    c = Volume(np.zeros((5, 7, 8)))
    with pytest.raises(GridMismatchError, match="shapes differ"):
        a.require_same_grid(c)
    a.require_same_grid(a.replace(grid=Grid(a.shape, a.spacing, np.add(a.origin, 1e-5))))


def test_summary_reports_total_activity():
    vol = Volume(np.full((2, 2, 2), 3.0), spacing=(10, 10, 10), quantity="activity_concentration", unit="kBq/mL")
    summary = vol.summary()
    assert summary["total_activity_bq"] == pytest.approx(8 * 3000.0 * 1.0)
    assert summary["non_finite_voxels"] == 0
