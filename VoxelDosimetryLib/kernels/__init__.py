"""Voxel S-value (dose-voxel) kernels: the file format, generation with the project's Monte Carlo engine,
energy-conserving resampling, the user cache and the shipped Lu-177 set."""
from __future__ import annotations

from VoxelDosimetryLib.kernels.kernel import COMPONENTS, DoseKernel, read_kernel, write_kernel

__all__ = ["COMPONENTS", "DoseKernel", "read_kernel", "write_kernel"]
