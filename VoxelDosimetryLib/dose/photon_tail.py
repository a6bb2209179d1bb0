"""Photon dose beyond a voxel kernel's reach, for the kernel methods (svsv, dvk, mvsv).

A voxel kernel holds the photon dose only out to its faces (±120 mm for the shipped SPECT grids, ±48 mm for
0.98×0.98×3 mm); in soft tissue more than half of Lu-177's photon energy is absorbed farther out. The kernel is
therefore split with a smooth radial weight w(r) (0 below r0, 1 beyond r1 = the kernel's reach along its shortest
axis, r0 = r1 / 2, a cosine ramp between):

    K(r) = K_voxel(r) · (1 − w(r))  +  D_tail(r) · w(r)

with D_tail the radial point kernel of kernels/photon_tail.py, which reaches until < 0.1 % of the photon energy is
left. The first part is convolved on the dose grid as before. The second is smooth on the scale of the ramp, so
it is convolved on a coarse grid (nodes at the centres of blocks of about (r1 − r0) / 6 mm; decays spread onto
the nodes with linear weights, doses interpolated back linearly) out to the image's extent. The far field is that of an infinite
medium: near the skin it overestimates what a finite body absorbs (photons leave), as every kernel method does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from VoxelDosimetryLib.kernels.photon_tail import centred_distances_mm

BLEND_START_FRACTION = 0.5  # r0 = r1 / 2: a wide ramp keeps the coarse tail grid coarse
BLOCKS_PER_RAMP = 6  # coarse block ≈ ramp width / 6: second-order error ≲ 2 % of the dose in the ramp, < 0.5 % beyond


@dataclass(frozen=True)
class TailWindow:
    """Where the voxel kernel hands over to the radial tail: cosine ramp from r0 to r1 (mm)."""

    r0_mm: float
    r1_mm: float

    def weight(self, r_mm: np.ndarray) -> np.ndarray:
        """w(r): 0 below r0, 1 beyond r1, 0.5 − 0.5·cos(π t) between."""
        t = np.clip((np.asarray(r_mm, dtype=np.float64) - self.r0_mm) / (self.r1_mm - self.r0_mm), 0.0, 1.0)
        return 0.5 - 0.5 * np.cos(math.pi * t)

    def block_factors(self, spacing_xyz: Sequence[float]) -> tuple[int, int, int]:
        """Voxels per coarse block along (z, y, x)."""
        block_mm = (self.r1_mm - self.r0_mm) / BLOCKS_PER_RAMP
        return tuple(max(1, int(math.floor(block_mm / s))) for s in tuple(spacing_xyz)[::-1])  # type: ignore


def kernel_reach_mm(shape_zyx: Sequence[int], spacing_xyz: Sequence[float]) -> float:
    """Distance (mm) from the kernel's centre to its last voxel centre along the shortest axis."""
    return min((n // 2) * s for n, s in zip(shape_zyx, tuple(spacing_xyz)[::-1]))


def window_for(kernel_shapes: Sequence[Sequence[int]], spacing_xyz: Sequence[float]) -> TailWindow:
    """The hand-over window shared by kernels on one grid: r1 = the smallest reach among them."""
    r1 = min(kernel_reach_mm(shape, spacing_xyz) for shape in kernel_shapes)
    return TailWindow(BLEND_START_FRACTION * r1, r1)


def near_kernel(values_zyx: np.ndarray, spacing_xyz: Sequence[float], window: TailWindow) -> np.ndarray:
    """The voxel kernel's part inside the window: K · (1 − w(r)), float32 (the FFT precision)."""
    r = centred_distances_mm(values_zyx.shape, tuple(spacing_xyz)[::-1])
    return (np.asarray(values_zyx, dtype=np.float64) * (1.0 - window.weight(r))).astype(np.float32)


def _block_weights(f: int):
    """(f, 3) weights of the voxels of a block of f on the nodes (previous, own, next block centre): linear in
    the voxel centre's offset t = (o + 1/2) / f − 1/2 from its block centre."""
    import torch

    t = (torch.arange(f, dtype=torch.float64) + 0.5) / f - 0.5
    return torch.stack([torch.clamp(-t, min=0), 1 - t.abs(), torch.clamp(t, min=0)], dim=1).float()


def _to_nodes(x, f: Sequence[int]):
    """Deposit fine values on the coarse nodes with linear weights per axis (the adjoint of linear interpolation,
    so a source keeps its position to first order). Along an axis with f > 1 the nodes are the block centres
    plus one beyond each end; an axis with f = 1 keeps its voxels."""
    import torch

    for axis, k in enumerate(f):
        if k == 1:
            continue
        x = x.movedim(axis, -1)
        n = x.shape[-1]
        blocks = -(-n // k)
        x = torch.nn.functional.pad(x, (0, blocks * k - n))
        parts = x.reshape(*x.shape[:-1], blocks, k) @ _block_weights(k)  # (..., blocks, 3)
        nodes = torch.zeros(*x.shape[:-1], blocks + 2, dtype=x.dtype)
        nodes[..., 0:blocks] += parts[..., 0]
        nodes[..., 1:blocks + 1] += parts[..., 1]
        nodes[..., 2:blocks + 2] += parts[..., 2]
        x = nodes.movedim(-1, axis)
    return x


def _from_nodes(x, f: Sequence[int], shape: Sequence[int]):
    """Linear interpolation from the coarse nodes back to the fine voxels, axis by axis (the transpose of
    _to_nodes)."""
    import torch

    for axis, (k, n) in enumerate(zip(f, shape)):
        if k == 1:
            continue
        x = x.movedim(axis, -1)
        blocks = x.shape[-1] - 2
        around = torch.stack([x[..., 0:blocks], x[..., 1:blocks + 1], x[..., 2:blocks + 2]], dim=-1)
        fine = around @ _block_weights(k).T  # (..., blocks, k)
        x = fine.reshape(*fine.shape[:-2], blocks * k)[..., :n].movedim(-1, axis)
    return x


def tail_dose(decays_zyx: np.ndarray, spacing_xyz: Sequence[float], tail, window: TailWindow,
              engine, reach_mm: float | None = None) -> np.ndarray:
    """Σ_j Ã_j · D_tail(|i − j|) · w(|i − j|) for |i − j| <= reach_mm (default: the tail's whole reach) on the dose
    grid (float32, Gy or Gy/s: a small part of the dose), computed on coarse nodes.

    decays_zyx: decays (Bq or Bq·s) per voxel; tail: kernels/photon_tail.PhotonTail; engine: the FFT convolver.
    The decays are spread onto nodes at the block centres with linear weights and the nodal doses interpolated
    back linearly: both keep positions to first order, so the error is second order in the block size.
    """
    import torch

    shape = tuple(np.asarray(decays_zyx).shape)
    f = window.block_factors(spacing_xyz)
    nodes = _to_nodes(torch.as_tensor(np.asarray(decays_zyx), dtype=torch.float32), f)
    step_zyx = tuple(k * s for k, s in zip(f, tuple(spacing_xyz)[::-1]))
    reach = tail.reach_mm if reach_mm is None else min(float(reach_mm), tail.reach_mm)
    half = tuple(min(n - 1, int(math.ceil(reach / s))) for n, s in zip(nodes.shape, step_zyx))
    r = centred_distances_mm(tuple(2 * h + 1 for h in half), step_zyx)
    kernel = np.where(r <= reach, tail.dose_at(r) * window.weight(r), 0.0).astype(np.float32)
    if not np.any(kernel > 0):
        return np.zeros(shape, np.float32)
    nodal = engine.convolve(nodes.contiguous().numpy(), kernel, out_dtype="float32")
    return _from_nodes(torch.from_numpy(nodal), f, shape).contiguous().numpy()
