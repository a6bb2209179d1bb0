"""The Volume type: a (z, y, x) numpy array with LPS geometry, a quantity and a unit."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from VoxelDosimetryLib.errors import GridMismatchError, InputFormatError, QuantityMismatchError
from VoxelDosimetryLib.volume.units import check_unit_for_quantity, conversion_factor, get_quantity

# Geometry tolerances used to decide whether two grids are "the same" (mm and direction cosines).
GRID_TOLERANCE_MM = 1e-3
DIRECTION_TOLERANCE = 1e-5


def _as_vec3(values: Sequence[float], name: str) -> tuple[float, float, float]:
    arr = np.asarray(values, dtype=float).reshape(-1)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise InputFormatError(f"{name} must be three finite numbers (x, y, z); got {values!r}.")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


@dataclass(frozen=True)
class Grid:
    """A voxel grid: shape (z, y, x), spacing (x, y, z) mm, origin (x, y, z) mm LPS, direction 3x3.

    `direction[:, i]` is the LPS unit vector of index axis i (i = 0 for x/columns, 1 for y/rows,
    2 for z/slices), the same convention as SimpleITK and DICOM.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise InputFormatError(f"A grid needs a 3-D shape (z, y, x) with at least one voxel per axis; got {self.shape}.")
        spacing = _as_vec3(self.spacing, "spacing")
        if min(spacing) <= 0:
            raise InputFormatError(f"Voxel spacing must be positive (mm); got {spacing}.")
        origin = _as_vec3(self.origin, "origin")
        direction = np.array(self.direction, dtype=float).reshape(3, 3)
        if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
            raise InputFormatError("The direction matrix must be orthonormal (rotation or reflection); "
                                   f"got {direction.tolist()}.")
        direction.setflags(write=False)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "direction", direction)

    @property
    def size_xyz(self) -> tuple[int, int, int]:
        return (self.shape[2], self.shape[1], self.shape[0])

    @property
    def voxel_volume_ml(self) -> float:
        """Voxel volume in mL (cm³)."""
        return float(np.prod(self.spacing)) / 1000.0

    def index_to_world(self, ijk: Any) -> np.ndarray:
        """Continuous index (i=x, j=y, k=z), shape (..., 3) -> LPS point(s) in mm."""
        ijk = np.asarray(ijk, dtype=float)
        return np.asarray(self.origin) + (ijk * np.asarray(self.spacing)) @ self.direction.T

    def world_to_index(self, lps_mm: Any) -> np.ndarray:
        """LPS point(s) in mm, shape (..., 3) -> continuous index (i=x, j=y, k=z)."""
        p = np.asarray(lps_mm, dtype=float) - np.asarray(self.origin)
        return (p @ self.direction) / np.asarray(self.spacing)

    def mismatch(self, other: "Grid", tol_mm: float = GRID_TOLERANCE_MM) -> str | None:
        """A sentence describing how this grid differs from `other`, or None when they match."""
        if self.shape != other.shape:
            return f"shapes differ (z, y, x): {self.shape} vs {other.shape}"
        if not np.allclose(self.spacing, other.spacing, atol=tol_mm, rtol=0):
            return f"spacings differ (x, y, z mm): {self.spacing} vs {other.spacing}"
        if not np.allclose(self.origin, other.origin, atol=tol_mm, rtol=0):
            return f"origins differ (LPS mm): {self.origin} vs {other.origin}"
        if not np.allclose(self.direction, other.direction, atol=DIRECTION_TOLERANCE, rtol=0):
            return f"directions differ: {self.direction.tolist()} vs {other.direction.tolist()}"
        return None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Grid) and self.mismatch(other) is None

    def __hash__(self) -> int:  # grids compare with a tolerance; hash only the exact shape
        return hash(self.shape)

    def to_dict(self) -> dict:
        return {"shape_zyx": list(self.shape), "spacing_mm": list(self.spacing),
                "origin_lps_mm": list(self.origin), "direction": self.direction.reshape(-1).tolist()}


class Volume:
    """A 3-D image: `array` in (z, y, x) order plus its Grid, quantity and unit.

    Volumes are treated as immutable: every operation returns a new Volume and never writes into
    the caller's array. `metadata` holds provenance (file, DICOM tags, timing) as plain JSON values.
    """

    __slots__ = ("array", "grid", "quantity", "unit", "metadata")

    def __init__(self, array: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                 origin: Sequence[float] = (0.0, 0.0, 0.0), direction: Any = None,
                 quantity: str = "unknown", unit: str | None = None, metadata: dict | None = None,
                 grid: Grid | None = None) -> None:
        arr = np.asarray(array)
        if arr.ndim != 3:
            raise InputFormatError(f"A Volume needs a 3-D array in (z, y, x) order; got {arr.ndim} dimensions "
                                   f"with shape {arr.shape}. Add a singleton axis for a single slice.")
        if arr.dtype.kind not in "biuf":
            raise InputFormatError(f"Volume arrays must be numeric (bool, int or float); got dtype {arr.dtype}.")
        q = get_quantity(quantity)
        unit = q.unit if unit is None else unit
        check_unit_for_quantity(quantity, unit)
        if grid is None:
            grid = Grid(arr.shape, spacing, origin, np.eye(3) if direction is None else direction)
        elif tuple(arr.shape) != grid.shape:
            raise GridMismatchError(f"Array shape {arr.shape} does not match the grid shape {grid.shape}.")
        object.__setattr__(self, "array", arr)
        object.__setattr__(self, "grid", grid)
        object.__setattr__(self, "quantity", quantity)
        object.__setattr__(self, "unit", unit)
        object.__setattr__(self, "metadata", dict(metadata or {}))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Volume is immutable; use with_array(), to_unit() or replace() for a new one.")

    # geometry shortcuts
    @property
    def shape(self) -> tuple[int, int, int]:
        return self.grid.shape

    @property
    def spacing(self) -> tuple[float, float, float]:
        return self.grid.spacing

    @property
    def origin(self) -> tuple[float, float, float]:
        return self.grid.origin

    @property
    def direction(self) -> np.ndarray:
        return self.grid.direction

    @property
    def voxel_volume_ml(self) -> float:
        return self.grid.voxel_volume_ml

    def replace(self, **changes: Any) -> "Volume":
        """A copy with some of array, quantity, unit, metadata or grid changed."""
        kwargs = {"array": self.array, "grid": self.grid, "quantity": self.quantity, "unit": self.unit,
                  "metadata": self.metadata}
        kwargs.update(changes)
        return Volume(**kwargs)

    def with_array(self, array: np.ndarray, quantity: str | None = None, unit: str | None = None) -> "Volume":
        """A Volume on the same grid holding `array` (with a new quantity/unit when given)."""
        quantity = self.quantity if quantity is None else quantity
        if unit is None:
            unit = self.unit if quantity == self.quantity else get_quantity(quantity).unit
        return Volume(array, grid=self.grid, quantity=quantity, unit=unit, metadata=self.metadata)

    def to_unit(self, unit: str) -> "Volume":
        """The same values expressed in `unit` (e.g. 'MBq/mL' -> 'Bq/mL'); float64 when scaled."""
        factor = conversion_factor(self.unit, unit)
        array = self.array if factor == 1.0 else self.array.astype(np.float64) * factor
        return Volume(array, grid=self.grid, quantity=self.quantity, unit=unit, metadata=self.metadata)

    def to_canonical_unit(self) -> "Volume":
        return self.to_unit(get_quantity(self.quantity).unit)

    def require_quantity(self, *quantities: str) -> None:
        if self.quantity not in quantities:
            raise QuantityMismatchError(
                f"Expected a volume of quantity {' or '.join(quantities)}, got {self.quantity!r} ({self.unit}). Give "
                "a volume of that quantity; a file that does not say what it holds is labelled when read "
                "(read_volume(path, quantity=...)).", expected=quantities, found=(self.quantity, self.unit))

    def require_same_grid(self, other: "Volume", what: str = "volumes") -> None:
        """Raise GridMismatchError naming the difference when `other` is on another grid."""
        problem = self.grid.mismatch(other.grid)
        if problem is not None:
            raise GridMismatchError(f"The {what} are on different voxel grids: {problem}. "
                                    "Resample one onto the other first (VoxelDosimetryLib.geometry.resample_to).")

    def summary(self) -> dict:
        """A JSON-friendly description: geometry, quantity, unit, value range."""
        a = self.array
        finite = np.isfinite(a) if a.dtype.kind == "f" else np.ones(a.shape, bool)
        vals = a[finite]
        out = {"quantity": self.quantity, "unit": self.unit, "dtype": str(a.dtype), **self.grid.to_dict(),
               "min": float(vals.min()) if vals.size else None, "max": float(vals.max()) if vals.size else None,
               "non_finite_voxels": int(a.size - vals.size)}
        if self.quantity in ("activity_concentration", "tia_concentration"):
            out["total_" + ("activity_bq" if self.quantity == "activity_concentration" else "tia_bq_s")] = float(
                self.to_canonical_unit().array[finite].sum() * self.voxel_volume_ml)
        return out

    def __repr__(self) -> str:
        return (f"Volume(shape_zyx={self.shape}, spacing_mm={self.spacing}, origin_lps_mm={self.origin}, "
                f"quantity={self.quantity!r}, unit={self.unit!r}, dtype={self.array.dtype})")
