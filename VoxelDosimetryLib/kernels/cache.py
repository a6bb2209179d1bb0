"""The user's kernel cache: generated kernels kept under a key of every generation parameter and the engine
version, so the same request is never simulated twice and the dose methods find kernels made for other grids.

Folder: $VOXELDOSIMETRY_CACHE_DIR/kernels, else the platform cache folder (~/.cache/voxeldosimetry/kernels on
Linux, ~/Library/Caches/voxeldosimetry/kernels on macOS, %LOCALAPPDATA%/voxeldosimetry/cache/kernels on Windows).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from VoxelDosimetryLib.kernels.kernel import DoseKernel, read_kernel, write_kernel

CACHE_ENV = "VOXELDOSIMETRY_CACHE_DIR"


def cache_root() -> Path:
    value = os.environ.get(CACHE_ENV)
    if value:
        return Path(value).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "voxeldosimetry" / "cache"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches" / "voxeldosimetry"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "voxeldosimetry"
    return base


def kernel_cache_dir() -> Path:
    return cache_root() / "kernels"


def cache_key(params: dict) -> str:
    """sha1 of the generation parameters (nuclide, voxel size, size, medium, density, composition, component,
    histories, seed, generator and engine versions), as canonical JSON."""
    from VoxelDosimetryLib.kernels.generate import KERNEL_GENERATOR_VERSION
    from VoxelDosimetryLib.montecarlo.engine import ENGINE_VERSION

    full = {**params, "generator_version": KERNEL_GENERATOR_VERSION, "engine_version": ENGINE_VERSION}
    text = json.dumps(full, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()


def cached_path(params: dict) -> Path:
    key = cache_key(params)
    name = f"{params['nuclide']}_{params['medium']}_{'x'.join(f'{v:g}' for v in params['voxel_mm'])}mm_" \
           f"{params['component']}_{key[:12]}.nrrd"
    return kernel_cache_dir() / name.replace("/", "_").replace(" ", "_")


def load_cached(params: dict) -> DoseKernel | None:
    path = cached_path(params)
    if not path.is_file():
        return None
    try:
        return read_kernel(path)
    except Exception:  # a damaged cache entry is regenerated, never trusted
        return None


def store_cached(params: dict, kernel: DoseKernel) -> Path:
    path = cached_path(params)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_kernel(kernel, path)


def cached_kernels() -> list[Path]:
    folder = kernel_cache_dir()
    return sorted(folder.glob("*.nrrd")) if folder.is_dir() else []
