"""Dose-volume histograms of one segment and the D/V metrics read from them.

The cumulative curve has one knot per distinct voxel value (or per bin edge when `bins` is given):
V(d_k) = volume receiving >= d_k. Metrics interpolate linearly between knots, as SlicerRT's DVH module
does on its binned table (vtkSlicerDoseVolumeHistogramModuleLogic ComputeDMetrics / ComputeVMetrics);
with a knot at every distinct value the result no longer depends on a bin width. Volumes are voxel
volumes (every voxel of the segment weighs the same), as in SlicerRT. See docs/SEGMENT_DOSE.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError


@dataclass(frozen=True, eq=False)
class DVH:
    """Cumulative DVH of one segment.

    knot_doses: ascending dose (Gy) or dose-rate (Gy/s) values; knot_voxels: number of voxels whose value
    is >= the knot (non-increasing, knot_voxels[0] = total_voxels); voxel_volume_ml: volume of one voxel.
    """

    knot_doses: np.ndarray
    knot_voxels: np.ndarray
    total_voxels: int
    voxel_volume_ml: float
    unit: str = "Gy"

    @property
    def total_volume_ml(self) -> float:
        return self.total_voxels * self.voxel_volume_ml

    @property
    def max_dose(self) -> float:
        return float(self.knot_doses[-1])

    def voxels_at_or_above(self, doses: Any) -> np.ndarray:
        """Number of voxels receiving >= each dose, read as a step function of the knots (exact for exact knots)."""
        doses = np.asarray(doses, dtype=float)
        padded = np.append(self.knot_voxels, 0.0)
        # knots[i-1] < dose <= knots[i] -> the voxels at or above knot i (below the first knot: all of them)
        return padded[np.searchsorted(self.knot_doses, doses, side="left")]

    def tabulate(self, dose_points: Any) -> dict[str, np.ndarray]:
        """Cumulative and differential DVH at ascending `dose_points` (bin lower edges).

        cumulative_ml: volume receiving >= the point; differential_ml: volume in [point_i, point_i+1), the last
        point collecting everything at or above it, so the differential column sums to the total volume when the
        first point is at or below the minimum value.
        """
        points = np.asarray(dose_points, dtype=float)
        cumulative = self.voxels_at_or_above(points)
        differential = cumulative - np.append(cumulative[1:], 0.0)
        return {"dose": points, "cumulative_ml": cumulative * self.voxel_volume_ml,
                "cumulative_pct": 100.0 * cumulative / self.total_voxels,
                "differential_ml": differential * self.voxel_volume_ml,
                "differential_pct": 100.0 * differential / self.total_voxels}


def _finite_values(dose_values: Any) -> np.ndarray:
    values = np.asarray(dose_values, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise InputFormatError("A DVH needs at least one voxel value; the segment is empty.")
    if not np.all(np.isfinite(values)):
        raise InputFormatError("The dose values hold NaN or infinite voxels; fix or mask them before the DVH.")
    return values


def _bin_edges(values: np.ndarray, bins: Any) -> np.ndarray:
    low, high = min(0.0, float(values.min())), float(values.max())
    if np.isscalar(bins):
        count = int(bins)
        if count < 1:
            raise InputFormatError(f"bins must be a positive number of bins or ascending edges; got {bins!r}.")
        return np.linspace(low, high if high > low else low + 1.0, count + 1)
    edges = np.asarray(bins, dtype=float).reshape(-1)
    if edges.size < 2 or not np.all(np.diff(edges) > 0) or not np.all(np.isfinite(edges)):
        raise InputFormatError("DVH bin edges must be at least two finite, strictly ascending values.")
    if edges[0] > values.min():
        raise InputFormatError(f"The first DVH bin edge {edges[0]:g} lies above the minimum value {values.min():g}; "
                               "start the edges at or below it (e.g. at 0).")
    return edges


def cumulative_dvh(dose_values: Any, voxel_volume_ml: float, bins: Any = None, unit: str = "Gy") -> DVH:
    """Cumulative DVH of one segment's voxel values (Gy or Gy/s), each voxel `voxel_volume_ml` mL.

    bins=None (default): a knot at every distinct value (bin-free, exact). bins=N or ascending edges: knots
    at bin edges as in SlicerRT's binned table (N bins from min(0, minimum) to the maximum).
    """
    if not (np.isfinite(voxel_volume_ml) and voxel_volume_ml > 0):
        raise InputFormatError(f"The voxel volume must be a positive number of mL; got {voxel_volume_ml!r}.")
    values = np.sort(_finite_values(dose_values))
    if bins is None:
        knots, first_index = np.unique(values, return_index=True)
    else:
        knots = _bin_edges(values, bins)
        first_index = np.searchsorted(values, knots, side="left")
    voxels = (values.size - first_index).astype(np.float64)
    return DVH(knot_doses=knots, knot_voxels=voxels, total_voxels=int(values.size),
               voxel_volume_ml=float(voxel_volume_ml), unit=unit)


def _dose_at_voxels(dvh: DVH, voxels: float) -> float | None:
    """Dose received by at least `voxels` voxels, interpolated linearly between knots (SlicerRT D metric)."""
    if voxels > dvh.total_voxels or voxels < 0:
        return None
    knot_voxels, knot_doses = dvh.knot_voxels, dvh.knot_doses
    # first knot whose volume is <= the requested volume (knot volumes are non-increasing)
    j = int(np.searchsorted(-knot_voxels, -voxels, side="left"))
    if j == 0:
        return float(knot_doses[0])
    if j == knot_voxels.size:  # smaller than the volume at the last knot: the maximum (SlicerRT does the same)
        return float(knot_doses[-1])
    v0, v1 = knot_voxels[j - 1], knot_voxels[j]
    d0, d1 = knot_doses[j - 1], knot_doses[j]
    return float(d0 + (d1 - d0) * (voxels - v0) / (v1 - v0))


def dose_at_volume_percent(dvh: DVH, percent: float) -> float | None:
    """D_x%: minimum dose to the hottest `percent` % of the segment volume (Gy or Gy/s)."""
    if not 0.0 <= percent <= 100.0:
        raise InputFormatError(f"D_x% needs x between 0 and 100; got {percent!r}.")
    return _dose_at_voxels(dvh, percent * dvh.total_voxels / 100.0)


def dose_at_volume_ml(dvh: DVH, volume_ml: float) -> float | None:
    """D_x cc: minimum dose to the hottest `volume_ml` mL; None when the segment is smaller than that."""
    if not volume_ml > 0:
        raise InputFormatError(f"D_x cc needs a positive volume in mL; got {volume_ml!r}.")
    return _dose_at_voxels(dvh, volume_ml / dvh.voxel_volume_ml)


def _voxels_at_dose(dvh: DVH, dose: float) -> float:
    if not np.isfinite(dose):
        raise InputFormatError(f"V_x needs a finite dose; got {dose!r}.")
    return float(np.interp(dose, dvh.knot_doses, dvh.knot_voxels, left=dvh.total_voxels, right=0.0))


def volume_at_dose(dvh: DVH, dose: float) -> float:
    """V_x: volume (mL) receiving >= `dose`, interpolated linearly on the cumulative curve (SlicerRT V metric)."""
    return _voxels_at_dose(dvh, dose) * dvh.voxel_volume_ml


def volume_percent_at_dose(dvh: DVH, dose: float) -> float:
    """V_x in % of the segment volume."""
    return 100.0 * _voxels_at_dose(dvh, dose) / dvh.total_voxels
