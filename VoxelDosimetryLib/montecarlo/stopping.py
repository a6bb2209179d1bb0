"""When a Monte Carlo run stops: after a number of decays (as always), or earlier when the dose is precise enough
(an uncertainty goal, as GATE 10's DoseActor offers) or when a time limit is reached.

The uncertainty is the batch estimate (engine.py): B equal batches of b decays, d_b the energy per decay of
batch b in a voxel, σ²(mean) = (mean(d_b²) − mean(d_b)²) / (B − 1). With a goal or a time limit the run is cut
into equal batches (50 000 decays or 1 % of the voxel count, at most the chunk, at least 10 within the decay cap)
and, from the 10th batch on, checked after a batch once a second or 5 % of the run time has passed:

- the goal counts the voxels of `goal_mask` (by default the body tissue: the dose method passes body mask ∩
  density ≥ 0.1 g/cm³, so activity in air cannot set the maximum) whose mean dose is at least 10 % of the mask's
  maximum; the run stops when the median of their relative σ is at or below the goal;
- the time limit stops after the batch during which it passed (never before 10 batches: the σ estimate needs them);
- the decay cap (`histories`, rounded down to whole batches) stops it otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError

MIN_BATCHES = 10
MIN_BATCH_DECAYS = 50_000  # smaller transport chunks run slower (per-step overhead, docs/BENCHMARKS.md)
# σ is estimated after a batch once CHECK_INTERVAL_S or CHECK_FRACTION of the run time has passed since the last
# estimate (a median over the goal voxels costs about as much as a small batch), and always after the last batch
CHECK_INTERVAL_S = 1.0
CHECK_FRACTION = 0.05
RELEVANT_FRACTION = 0.1  # voxels at >= 10 % of the maximum dose count for the goal (issue #10)


@dataclass
class StopRule:
    """uncertainty_goal: relative σ (0.02 = 2 %) of the median relevant voxel; time_limit_s: wall seconds;
    goal_mask: (z, y, x) bool of the voxels the goal looks at (None: every voxel)."""

    uncertainty_goal: Optional[float] = None
    time_limit_s: Optional[float] = None
    goal_mask: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        goal = self.uncertainty_goal
        if goal is not None and not (isinstance(goal, (int, float)) and math.isfinite(goal) and 0 < goal < 1):
            raise InputFormatError(f"The uncertainty goal is a relative standard error between 0 and 1 (0.02 = 2 "
                                   f"%); got {goal!r}.")
        limit = self.time_limit_s
        if limit is not None and not (isinstance(limit, (int, float)) and math.isfinite(limit) and limit > 0):
            raise InputFormatError(f"The time limit must be a positive number of seconds; got {limit!r}.")

    @property
    def adaptive(self) -> bool:
        return self.uncertainty_goal is not None or self.time_limit_s is not None

    @staticmethod
    def batch_decays(histories: int, chunk: int, n_voxels: int = 0) -> int:
        """Decays per batch: small, so that a goal is not overshot by much, but at least 1 % of the voxel count
        (each batch ends with a pass over every voxel's tallies), at most the transport chunk and small enough for
        10 batches within the cap."""
        if histories < MIN_BATCHES:
            raise InputFormatError(f"The decay cap must allow {MIN_BATCHES} batches; got {histories}.")
        wanted = max(MIN_BATCH_DECAYS, int(n_voxels) // 100)
        return max(1, min(int(chunk), histories // MIN_BATCHES, wanted))

    def goal_index(self, shape: tuple, device):
        """Flat indices of the goal voxels as a torch tensor (None: all voxels)."""
        import torch

        if self.goal_mask is None:
            return None
        mask = np.asarray(self.goal_mask, dtype=bool)
        if mask.shape != tuple(shape):
            raise InputFormatError(f"The uncertainty-goal mask {mask.shape} does not match the grid {tuple(shape)}.")
        return torch.from_numpy(np.flatnonzero(mask)).to(device)

    @staticmethod
    def median_sigma(s1, s2, batches: int, decays: int, index, inverse_mass=None) -> float:
        """Median relative σ of the voxels (within `index`) whose mean dose is at least 10 % of the maximum; inf if
        none. s1, s2: energy tallies; `inverse_mass` (1/voxel mass, same layout as s1) turns energy into dose for
        that cut (None: equal masses)."""
        import torch

        a = s1 if index is None else s1[index]
        b = s2 if index is None else s2[index]
        mean = a / decays
        dose = mean if inverse_mass is None else mean * (inverse_mass if index is None else inverse_mass[index])
        peak = float(dose.max()) if dose.numel() else 0.0
        if peak <= 0:
            return math.inf
        keep = dose >= RELEVANT_FRACTION * peak
        var = torch.clamp(b[keep] / batches - mean[keep] ** 2, min=0.0) / (batches - 1)
        return float(np.median((torch.sqrt(var) / mean[keep]).cpu().numpy()))  # numpy: the mean of the middle two

    def reason_to_stop(self, sigma: Optional[float], elapsed_s: float, batches: int) -> Optional[str]:
        """Why to stop now, or None; `sigma` None when it was not estimated after this batch."""
        if batches < MIN_BATCHES:
            return None
        if self.uncertainty_goal is not None and sigma is not None and sigma <= self.uncertainty_goal:
            return "uncertainty_goal"
        if self.time_limit_s is not None and elapsed_s >= self.time_limit_s:
            return "time_limit"
        return None
