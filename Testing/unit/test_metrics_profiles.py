"""Line profiles through the reference maximum, an LPS point or an index."""
from __future__ import annotations

import numpy as np
import pytest

from VoxelDosimetryLib import Volume
from VoxelDosimetryLib.errors import GridMismatchError, InputFormatError
from VoxelDosimetryLib.metrics import line_profiles


@pytest.fixture
def pair(oblique_direction):
    array = np.random.default_rng(2).random((5, 6, 7))
    array[3, 2, 4] = 10.0  # the maximum at (i, j, k) = (4, 2, 3)
    reference = Volume(array, spacing=(2.0, 3.0, 4.0), origin=(10, -20, 5), direction=oblique_direction,
                       quantity="dose", unit="Gy")
    test = reference.with_array(array * 2000.0).replace(unit="mGy")  # 2 x reference, in mGy
    return test, reference


def test_default_point_is_the_reference_maximum(pair):
    test, reference = pair
    p = line_profiles(test, reference)
    assert p["point_index"] == (4, 2, 3)
    assert np.allclose(p["point_lps_mm"], reference.grid.index_to_world([4, 2, 3]))
    assert np.array_equal(p["x"]["reference"], reference.array[3, 2, :])
    assert np.array_equal(p["y"]["reference"], reference.array[3, :, 4])
    assert np.array_equal(p["z"]["reference"], reference.array[:, 2, 4])
    assert np.allclose(p["z"]["test"], 2 * reference.array[:, 2, 4])  # converted to the reference unit (Gy)
    assert np.allclose(p["x"]["offset_mm"], (np.arange(7) - 4) * 2.0)
    assert np.allclose(p["z"]["offset_mm"], (np.arange(5) - 3) * 4.0)
    # the LPS points of a profile step along the grid's direction columns
    assert np.allclose(p["y"]["lps_mm"][1] - p["y"]["lps_mm"][0], reference.direction[:, 1] * 3.0)


def test_point_from_lps_or_index(pair):
    test, reference = pair
    lps = reference.grid.index_to_world([1.2, 4.9, 0.1])
    assert line_profiles(test, reference, point_lps=lps)["point_index"] == (1, 5, 0)
    assert line_profiles(test, reference, point_index=(6, 0, 4))["point_index"] == (6, 0, 4)
    with pytest.raises(InputFormatError, match="outside"):
        line_profiles(test, reference, point_index=(7, 0, 0))
    with pytest.raises(InputFormatError, match="outside"):
        line_profiles(test, reference, point_lps=reference.grid.index_to_world([-3, 0, 0]))


def test_profiles_need_the_same_grid(pair):
    test, reference = pair
    other = Volume(np.zeros((5, 6, 7)), spacing=(1, 1, 1), quantity="dose")
    with pytest.raises(GridMismatchError):
        line_profiles(other, reference)
