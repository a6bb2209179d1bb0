"""The user's kernel cache: generated kernels kept under a key of every generation parameter and the engine
version, so the same request is never simulated twice and the dose methods find kernels made for other grids.

Folder: $VOXELDOSIMETRY_CACHE_DIR/kernels, else the platform cache folder (~/.cache/voxeldosimetry/kernels on
Linux, ~/Library/Caches/voxeldosimetry/kernels on macOS, %LOCALAPPDATA%/voxeldosimetry/cache/kernels on Windows).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from functools import lru_cache
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


def physics_fingerprint() -> str:
    """sha1 of what a simulated kernel depends on besides its parameters: the Monte Carlo engine's and the kernel
    generator's source files, the physics data shipped with the library, and the decay-data package version. Any
    change to the transport code or data gives new cache keys (ENGINE_VERSION alone is not bumped reliably)."""
    return _physics_fingerprint()


@lru_cache(maxsize=1)
def _physics_fingerprint() -> str:
    from importlib.metadata import PackageNotFoundError, version

    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha1()
    files = sorted((root / "montecarlo").glob("*.py")) + sorted((root / "physics").rglob("*.py")) + \
        sorted((root / "physics" / "data").rglob("*.*")) + [root / "kernels" / "generate.py"]
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    for package in ("icrp107-database", "xraylib"):
        try:
            digest.update(f"{package}={version(package)}".encode())
        except PackageNotFoundError:
            digest.update(f"{package}=missing".encode())
    return digest.hexdigest()


def cache_key(params: dict) -> str:
    """sha1 of the generation parameters (nuclide, voxel size, size, medium, density, composition, component,
    histories, seed) with the generator and engine versions and the physics fingerprint, as canonical JSON."""
    from VoxelDosimetryLib.kernels.generate import KERNEL_GENERATOR_VERSION
    from VoxelDosimetryLib.montecarlo.engine import ENGINE_VERSION

    full = {**params, "generator_version": KERNEL_GENERATOR_VERSION, "engine_version": ENGINE_VERSION,
            "physics": physics_fingerprint()}
    text = json.dumps(full, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()


def cached_path(params: dict) -> Path:
    key = cache_key(params)
    name = f"{params['nuclide']}_{params['medium']}_{'x'.join(f'{v:g}' for v in params['voxel_mm'])}mm_" \
           f"{params['component']}_{key[:12]}.nrrd"
    return kernel_cache_dir() / name.replace("/", "_").replace(" ", "_")


def load_cached(params: dict) -> DoseKernel | None:
    """The cached kernel for `params`, if its file exists and its contents match them (a file swapped or damaged
    under the right name is ignored and regenerated, never trusted)."""
    path = cached_path(params)
    if not path.is_file():
        return None
    try:
        kernel = read_kernel(path)
    except Exception:
        return None
    matches = (kernel.nuclide == params["nuclide"] and kernel.medium == params["medium"]
               and kernel.component == params["component"]
               and math.isclose(kernel.density_g_cm3, params["density_g_cm3"], rel_tol=1e-6)
               and all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(kernel.spacing_mm, params["voxel_mm"]))
               and list(kernel.shape[::-1]) == list(params["size_xyz"])
               and kernel.metadata.get("histories") == params["histories"]
               and kernel.metadata.get("seed") == params["seed"])
    return kernel if matches else None


def inside_cache(path: str | Path) -> bool:
    """Whether `path` lies in the kernel cache folder (user outputs must not: the cache is keyed by content)."""
    try:
        Path(path).resolve().relative_to(kernel_cache_dir().resolve())
        return True
    except ValueError:
        return False


def store_cached(params: dict, kernel: DoseKernel) -> Path:
    """Write `kernel` under its key; a file already there was not trusted by load_cached (damaged or swapped) and
    is replaced: the cache folder is this library's own."""
    path = cached_path(params)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    return write_kernel(kernel, path)


def cached_kernels() -> list[Path]:
    folder = kernel_cache_dir()
    return sorted(folder.glob("*.nrrd")) if folder.is_dir() else []
