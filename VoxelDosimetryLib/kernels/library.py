"""Finding the kernel a dose method needs: the shipped Lu-177 set, the user's cache, or a resampled finer one.

Lookup for (nuclide, voxel size, medium, density, component):
1. a kernel on the same voxel grid (every axis within 0.5 %) in the shipped set or the cache;
2. else one whose voxel size divides the wanted one by an odd whole number on every axis (within 3 %): its
   voxels then tile the wanted voxels exactly and resampling (kernels/resample.py) conserves energy and is exact
   up to the fine kernel's own noise; electron and photon parts are resampled separately, the electrons from
   the finest kernel and the photons from the one reaching farthest;
3. else KernelNotAvailableError with the exact `voxeldosimetry kernel` command that makes it (the command caches
   its result, so the dose method finds it afterwards).
A kernel of another nuclide is never used.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from VoxelDosimetryLib.errors import VoxelDosimetryError
from VoxelDosimetryLib.kernels.kernel import DoseKernel, read_kernel

SHIPPED_DIR = Path(__file__).resolve().parent / "data"
SHIPPED_INDEX = SHIPPED_DIR / "index.json"
SAME_SPACING_RTOL = 0.005
ODD_RATIO_RTOL = 0.03  # 0.98 mm voxels serve 3 mm grids (ratio 3.06)
DENSITY_RTOL = 1e-3


class KernelNotAvailableError(VoxelDosimetryError, LookupError):
    """No kernel for the requested nuclide, voxel size and medium; the message gives the command that makes one."""


@dataclass(frozen=True)
class KernelEntry:
    """What a kernel file holds, without reading its voxels."""

    path: Path
    nuclide: str
    medium: str
    density_g_cm3: float
    component: str
    voxel_mm: tuple
    size_xyz: tuple
    shipped: bool

    @property
    def reach_mm(self) -> float:
        return min(n / 2.0 * s for n, s in zip(self.size_xyz, self.voxel_mm))

    def load(self) -> DoseKernel:
        return _load(str(self.path))


@lru_cache(maxsize=256)
def _load(path: str) -> DoseKernel:
    return read_kernel(path)


def shipped_entries() -> list[KernelEntry]:
    """The shipped set's index (read once per process and index file)."""
    if not SHIPPED_INDEX.is_file():
        return []
    return list(_index(str(SHIPPED_INDEX), SHIPPED_INDEX.stat().st_mtime_ns))


@lru_cache(maxsize=4)
def _index(path: str, _mtime_ns: int) -> tuple:
    index = json.loads(Path(path).read_text())
    folder = Path(path).parent
    return tuple(KernelEntry(folder / e["file"], e["nuclide"], e["medium"], float(e["density_g_cm3"]),
                             e["component"], tuple(e["voxel_mm"]), tuple(e["size_xyz"]), True)
                 for e in index["kernels"])


def _entry_from_file(path: Path) -> Optional[KernelEntry]:
    try:
        k = _load(str(path))
    except Exception:  # not a kernel (or damaged): skipped, never trusted
        return None
    return KernelEntry(path, k.nuclide, k.medium, k.density_g_cm3, k.component, k.spacing_mm, k.shape[::-1], False)


def cached_entries(extra_folders: Iterable[str | Path] = ()) -> list[KernelEntry]:
    from VoxelDosimetryLib.kernels.cache import cached_kernels

    files = list(cached_kernels())
    for folder in extra_folders:
        files += sorted(Path(folder).glob("*.nrrd"))
    return [e for e in (_entry_from_file(p) for p in files) if e is not None]


def all_entries(extra_folders: Iterable[str | Path] = ()) -> list[KernelEntry]:
    return shipped_entries() + cached_entries(extra_folders)


def kernel_fingerprint(extra_folders: Iterable[str | Path] = ()) -> str:
    """sha1 of what kernel lookup can see: the shipped index and the names (keyed by all parameters), sizes and
    modification times of the cached and extra kernel files. Changes whenever a lookup could return another kernel."""
    import hashlib

    from VoxelDosimetryLib.kernels.cache import cached_kernels

    digest = hashlib.sha1()
    if SHIPPED_INDEX.is_file():
        digest.update(SHIPPED_INDEX.read_bytes())
    files = list(cached_kernels())
    for folder in extra_folders:
        files += sorted(Path(folder).glob("*.nrrd"))
    for path in files:
        stat = path.stat()
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _same_spacing(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(abs(x - y) <= SAME_SPACING_RTOL * y for x, y in zip(a, b))


def _odd_ratio(fine: Sequence[float], coarse: Sequence[float]) -> Optional[tuple]:
    ratios = []
    for f, c in zip(fine, coarse):
        r = c / f
        k = int(round(r))
        if k < 1 or k % 2 == 0 or abs(r - k) > ODD_RATIO_RTOL * k:
            return None
        ratios.append(k)
    return tuple(ratios)


def _matches(e: KernelEntry, nuclide: str, medium: str, density: float) -> bool:
    return e.nuclide == nuclide and e.medium == medium and abs(e.density_g_cm3 - density) <= DENSITY_RTOL * density


def _pick(entries: list[KernelEntry], component: str, voxel_mm: tuple) -> Optional[DoseKernel]:
    from VoxelDosimetryLib.kernels.resample import resample_kernel

    same = [e for e in entries if e.component == component and _same_spacing(e.voxel_mm, voxel_mm)]
    if same:
        best = max(same, key=lambda e: (e.shipped, e.reach_mm))
        return best.load()
    finer = [e for e in entries if e.component == component and _odd_ratio(e.voxel_mm, voxel_mm)]
    if not finer:
        return None
    if component == "photon":
        best = max(finer, key=lambda e: e.reach_mm)
    else:
        best = min(finer, key=lambda e: float(np.prod(e.voxel_mm)))
    return resample_kernel(best.load(), voxel_mm)


def kernel_command(nuclide: str, voxel_mm: Sequence[float], medium: str, density: float, size: int = 51,
                   histories: int = 1_000_000) -> str:
    return (f"voxeldosimetry kernel --nuclide {nuclide} --voxel-mm {' '.join(f'{v:g}' for v in voxel_mm)} "
            f"--medium {medium} --density {density:g} --size {size} --histories {histories} --out "
            f"{medium}_{'x'.join(f'{v:g}' for v in voxel_mm)}mm.nrrd")


def find_kernel(nuclide: str, voxel_mm: Sequence[float], medium: str, density_g_cm3: float,
                component: str = "total", extra_folders: Iterable[str | Path] = ()) -> DoseKernel:
    """The kernel for these parameters (see the module docstring); KernelNotAvailableError names the command."""
    from VoxelDosimetryLib.physics import get_nuclide

    name = get_nuclide(nuclide).name
    voxel_mm = tuple(float(v) for v in voxel_mm)
    candidates = [e for e in all_entries(extra_folders) if _matches(e, name, medium, float(density_g_cm3))]
    kernel = _pick(candidates, component, voxel_mm)
    if kernel is None and component == "total":
        electron = _pick(candidates, "electron", voxel_mm)
        photon = _pick(candidates, "photon", voxel_mm)
        if electron is not None and photon is not None:
            kernel = electron.plus(photon)
    if kernel is not None:
        return kernel
    other = sorted({e.nuclide for e in all_entries(extra_folders) if e.medium == medium and e.nuclide != name})
    hint = f" (kernels exist for {', '.join(other)}, which cannot be used for {name})" if other else ""
    near = sorted({tuple(round(v, 4) for v in e.voxel_mm) for e in candidates})
    have = f" Kernels for this medium exist at {', '.join('x'.join(f'{v:g}' for v in s) + ' mm' for s in near)}, " \
           "but none equals the image voxel size or divides it by an odd whole number on every axis." if near else ""
    size = 2 * max(1, int(math.ceil(120.0 / max(voxel_mm)))) + 1
    raise KernelNotAvailableError(
        f"No {name} {component} kernel for {medium} ({float(density_g_cm3):g} g/cm3) at voxel size "
        f"{'x'.join(f'{v:g}' for v in voxel_mm)} mm{hint}.{have} Make one (it is cached and found automatically): "
        f"{kernel_command(name, voxel_mm, medium, float(density_g_cm3), size)}")
