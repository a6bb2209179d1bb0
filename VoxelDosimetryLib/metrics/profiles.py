"""Line profiles of a test and a reference map through one voxel, along the grid's x, y and z index axes."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.volume import Volume

AXES = ("x", "y", "z")


def profile_point_index(reference: Volume, point_lps: Sequence[float] | None = None,
                        point_index: Sequence[int] | None = None) -> tuple[int, int, int]:
    """Voxel index (i=x, j=y, k=z) of the profile point: the given index, the voxel nearest the given LPS
    point (mm), or by default the reference maximum (first one when tied)."""
    if point_lps is not None and point_index is not None:
        raise InputFormatError("Give either point_lps or point_index for the profiles, not both.")
    size = reference.grid.size_xyz
    if point_index is not None:
        ijk = tuple(int(v) for v in point_index)
        where = f"index {ijk}"
    elif point_lps is not None:
        ijk = tuple(int(v) for v in np.round(reference.grid.world_to_index(np.asarray(point_lps, dtype=float))))
        where = f"LPS point {tuple(point_lps)} mm (index {ijk})"
    else:
        k, j, i = np.unravel_index(int(np.argmax(reference.array)), reference.shape)
        return (int(i), int(j), int(k))
    if len(ijk) != 3 or not all(0 <= v < n for v, n in zip(ijk, size)):
        raise InputFormatError(f"The profile {where} lies outside the reference grid (size x, y, z = {size}); "
                               "give a point inside the image.")
    return ijk


def line_profiles(test: Volume, reference: Volume, point_lps: Sequence[float] | None = None,
                  point_index: Sequence[int] | None = None) -> dict:
    """Test and reference values along x, y and z through one voxel (see profile_point_index).

    Returns {"point_index": (i, j, k), "point_lps_mm": [x, y, z], "unit": reference unit, and per axis
    "x"/"y"/"z": {"offset_mm": signed distance from the point (mm), "lps_mm": (n, 3) points,
    "test": values, "reference": values}}. Both maps must share the grid (and unit) already.
    """
    reference.require_same_grid(test, "test and reference dose maps")
    i, j, k = profile_point_index(reference, point_lps, point_index)
    test_values = test.to_unit(reference.unit).array
    out: dict = {"point_index": (i, j, k), "point_lps_mm": reference.grid.index_to_world([i, j, k]).tolist(),
                 "unit": reference.unit}
    size = reference.grid.size_xyz
    for axis, name in enumerate(AXES):
        n = size[axis]
        ijk = np.tile(np.array([i, j, k], dtype=float), (n, 1))
        ijk[:, axis] = np.arange(n)
        steps = np.arange(n) - (i, j, k)[axis]
        sel = [slice(k, k + 1), slice(j, j + 1), slice(i, i + 1)]  # array order (z, y, x)
        sel[2 - axis] = slice(None)
        out[name] = {"offset_mm": steps * reference.spacing[axis],
                     "lps_mm": reference.grid.index_to_world(ijk),
                     "test": np.asarray(test_values[tuple(sel)], dtype=np.float64).reshape(-1),
                     "reference": np.asarray(reference.array[tuple(sel)], dtype=np.float64).reshape(-1)}
    return out
