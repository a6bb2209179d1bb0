"""Resampling a fine kernel to another voxel size with the absorbed energy conserved.

In a homogeneous medium the kernel is translation invariant, so the energy that a decay uniform in a coarse
source voxel deposits in a coarse target voxel is the fine kernel's energy E_f(t − s) averaged over fine source
voxels s (weighted by their overlap with the coarse source voxel) and summed over fine target voxels t (weighted
by the fraction of t inside the coarse target) — the approach of Dieudonné et al. 2010 (J Nucl Med 51:1600,
fine-resolution kernels resampled to any voxel size). Both weightings are separable per axis and each sums to 1,
so Σ energy is conserved exactly wherever the coarse kernel covers the fine one. The fine source voxel stands in
for a point, so the result is accurate when the fine voxel is several times smaller than the coarse one; the
library only resamples from kernels at least as fine on every axis.
"""
from __future__ import annotations

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.kernels.generate import odd_size, voxel_size
from VoxelDosimetryLib.kernels.kernel import DoseKernel


def _overlap(a_lo: np.ndarray, a_hi: np.ndarray, b_lo: np.ndarray, b_hi: np.ndarray) -> np.ndarray:
    """Length of [a_lo, a_hi) ∩ [b_lo, b_hi) for every pair (rows a, columns b)."""
    lo = np.maximum(a_lo[:, None], b_lo[None, :])
    hi = np.minimum(a_hi[:, None], b_hi[None, :])
    return np.clip(hi - lo, 0.0, None)


def _source_half_width(fine_mm: float, coarse_mm: float) -> int:
    """Fine voxels on each side of the centre that overlap a coarse source voxel centred on it."""
    return max(0, int(np.ceil(coarse_mm / (2 * fine_mm) - 0.5 - 1e-9)))


def coarse_half_width(n_fine: int, fine_mm: float, coarse_mm: float) -> int:
    """Coarse voxels on each side needed to hold all energy of a fine kernel of `n_fine` voxels on this axis."""
    far = (n_fine // 2 + _source_half_width(fine_mm, coarse_mm)) * fine_mm + fine_mm / 2
    return max(0, int(np.ceil(far / coarse_mm - 0.5 - 1e-9)))


def axis_operator(n_fine: int, fine_mm: float, n_coarse: int, coarse_mm: float) -> np.ndarray:
    """(n_coarse, n_fine) matrix M: energy in coarse offset j = Σ_d M[j, d] · energy at fine offset d."""
    hf, hc = n_fine // 2, n_coarse // 2
    f_off = np.arange(-hf, hf + 1)
    # fine source voxels s overlapping the coarse source voxel [-b/2, b/2): weights w_s (sum 1)
    s_max = _source_half_width(fine_mm, coarse_mm) + 1
    s = np.arange(-s_max, s_max + 1)
    w = _overlap(s * fine_mm - fine_mm / 2, s * fine_mm + fine_mm / 2, np.array([-coarse_mm / 2]),
                 np.array([coarse_mm / 2]))[:, 0] / coarse_mm
    keep = w > 0
    s, w = s[keep], w[keep]
    c_off = np.arange(-hc, hc + 1)
    c_lo, c_hi = c_off * coarse_mm - coarse_mm / 2, c_off * coarse_mm + coarse_mm / 2
    m = np.zeros((n_coarse, n_fine))
    for s_i, w_i in zip(s, w):
        t = f_off + s_i  # fine target voxel hit by offset d from source s
        frac = _overlap(c_lo, c_hi, t * fine_mm - fine_mm / 2, t * fine_mm + fine_mm / 2) / fine_mm
        m += w_i * frac
    return m


def resample_kernel(kernel: DoseKernel, voxel_mm: float | tuple, size: int | tuple | None = None) -> DoseKernel:
    """`kernel` on a new voxel size (x, y, z mm); `size` odd voxel counts (default: as far as the kernel reaches).

    Energy per decay is conserved inside the common extent; the metadata record the source kernel and the
    fraction of its energy kept (`resampled_energy_fraction`).
    """
    target = voxel_size(voxel_mm)
    if size is None:  # every coarse voxel that can receive energy: fine offsets plus the coarse source's spread
        size = tuple(2 * coarse_half_width(n, f, t) + 1
                     for n, f, t in zip(kernel.shape[::-1], kernel.spacing_mm, target))
    size_xyz = odd_size(size)
    fine_energy = kernel.values * kernel.voxel_mass_kg  # J per decay per voxel
    out = fine_energy
    for axis_zyx, axis_xyz in ((0, 2), (1, 1), (2, 0)):
        m = axis_operator(kernel.shape[axis_zyx], kernel.spacing_mm[axis_xyz], size_xyz[axis_xyz], target[axis_xyz])
        out = np.moveaxis(np.tensordot(m, np.moveaxis(out, axis_zyx, 0), axes=(1, 0)), 0, axis_zyx)
    coarse_mass = kernel.density_g_cm3 * float(np.prod(target)) * 1e-6
    values = np.clip(out, 0.0, None) / coarse_mass
    total_fine = float(fine_energy.sum())
    meta = dict(kernel.metadata)
    meta.update({"resampled_from": {"voxel_mm": list(kernel.spacing_mm), "size_xyz": list(kernel.shape[::-1]),
                                    "command": kernel.metadata.get("command")},
                 "resampled_energy_fraction": float(out.sum()) / total_fine if total_fine > 0 else 1.0})
    meta.pop("centre_relative_uncertainty", None)
    if not np.all(np.isfinite(values)):
        raise InputFormatError("Resampling produced non-finite values; the kernel is damaged.")
    return DoseKernel(values, target, kernel.nuclide, kernel.medium, kernel.density_g_cm3, kernel.component, meta)
