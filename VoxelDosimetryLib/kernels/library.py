"""Finding the kernel a dose method needs: the shipped Lu-177 set, the user's cache, or a resampled finer one.

Lookup for (nuclide, voxel size, medium, density, component), shipped kernels always before the user's:
1. a kernel on the same voxel grid (every axis within 0.5 %): the shipped set (electron + photon parts), else the
   best cached or `kernel_folder` kernel (most histories, then farthest reach);
2. else a finer kernel whose voxels tile the wanted voxel (kernels/resample.py: an odd whole number k per axis,
   k = 1 within 0.5 %, k >= 3 within 3 %, at least one k >= 3), resampled with its voxels snapped to tile exactly
   and energy conserved; electron and photon parts separately, the electrons from the finest kernel and the
   photons from the one reaching farthest;
3. else KernelNotAvailableError with the exact `voxeldosimetry kernel` command that makes it (the command caches
   its result, so the dose method finds it afterwards).
A kernel of another nuclide is never used. `check_kernel_quality` warns (QC) when a kernel in use has a centre
uncertainty above 0.5 % or a photon reach below 45 mm.
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
MIN_PHOTON_REACH_MM = 45.0  # the shipped 0.98x0.98x3 mm photon kernels reach 48 mm, the others 120 mm
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
    histories: int = 0

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
                             e["component"], tuple(e["voxel_mm"]), tuple(e["size_xyz"]), True,
                             int(e.get("histories") or 0))
                 for e in index["kernels"])


def _entry_from_file(path: Path) -> Optional[KernelEntry]:
    """The kernel fields of a file from its NRRD header alone (no voxel data read); None when it is not a kernel
    (the answer is remembered per file version, so a folder holding a large CT costs one header read)."""
    stat = path.stat()
    return _entry_from_header(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4096)
def _entry_from_header(path: str, _mtime_ns: int, _size: int) -> Optional[KernelEntry]:
    import nrrd

    from VoxelDosimetryLib.kernels.kernel import KERNEL_QUANTITY, OCTANT

    try:
        header = nrrd.read_header(path)
        if header.get("quantity") != KERNEL_QUANTITY:
            return None
        meta = json.loads(header.get("voxeldosimetry_metadata", "{}"))
        spacing = tuple(float(v) for v in np.abs(np.diag(np.asarray(header["space directions"], dtype=float))))
        sizes = [int(n) for n in header["sizes"]]
        if meta.get("storage") == OCTANT:
            sizes = [2 * n - 1 for n in sizes]
        return KernelEntry(Path(path), str(meta["nuclide"]), str(meta["medium"]), float(meta["density_g_cm3"]),
                           str(meta["component"]), spacing, tuple(sizes), False, int(meta.get("histories") or 0))
    except Exception:  # not a kernel (or damaged): skipped, never trusted
        return None


def _user_kernel_files(extra_folders: Iterable[str | Path]) -> list[Path]:
    """The cache's kernel files, then those of the user's kernel folders."""
    from VoxelDosimetryLib.kernels.cache import cached_kernels

    files = list(cached_kernels())
    for folder in extra_folders:
        files += kernel_folder_files(folder)
    return files


def cached_entries(extra_folders: Iterable[str | Path] = ()) -> list[KernelEntry]:
    """Kernels of the user's cache and kernel folders (read by header)."""
    return [e for e in (_entry_from_file(p) for p in _user_kernel_files(extra_folders)) if e is not None]


def kernel_folder_files(folder: str | Path) -> list[Path]:
    """The NRRD files of a user's kernel folder; InputFormatError when the folder does not exist."""
    from VoxelDosimetryLib.errors import InputFormatError

    folder = Path(folder)
    if not folder.is_dir():
        raise InputFormatError(f"The kernel folder {folder} does not exist (option kernel_folder / --kernel-folder); "
                               "name a folder of kernels made with `voxeldosimetry kernel`.")
    return sorted(folder.glob("*.nrrd")) + sorted(folder.glob("*.nhdr"))


def all_entries(extra_folders: Iterable[str | Path] = ()) -> list[KernelEntry]:
    return shipped_entries() + cached_entries(extra_folders)


def kernel_fingerprint(extra_folders: Iterable[str | Path] = ()) -> str:
    """sha1 of what kernel lookup can see: the shipped index and the names (keyed by all parameters), sizes and
    modification times of the cached and extra kernel files and of the photon tails. Changes whenever a lookup could return another kernel."""
    import hashlib

    digest = hashlib.sha1()
    if SHIPPED_INDEX.is_file():
        digest.update(SHIPPED_INDEX.read_bytes())
    from VoxelDosimetryLib.kernels.photon_tail import tail_files

    for path in _user_kernel_files(extra_folders) + tail_files():
        stat = path.stat()
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def tiling_ratio(fine: Sequence[float], coarse: Sequence[float]) -> Optional[tuple]:
    """Odd whole ratios (k per axis) when the fine voxel tiles the coarse one (kernels/resample.odd_ratios) with
    at least one k >= 3, else None: a ratio of 1 off by more than 0.5 % would be the neighbouring grid's kernel
    taken as is (-7 % self-dose at 4.3 mm from 4.42 mm); an even ratio straddles the voxel faces."""
    from VoxelDosimetryLib.kernels.resample import odd_ratios

    ratios = odd_ratios(fine, coarse)
    return ratios if ratios is not None and max(ratios) >= 3 else None


def _matches(e: KernelEntry, nuclide: str, medium: str, density: float) -> bool:
    return e.nuclide == nuclide and e.medium == medium and abs(e.density_g_cm3 - density) <= DENSITY_RTOL * density


def _quality(e: KernelEntry) -> tuple:
    return (e.shipped, e.histories, e.reach_mm)


def _same_grid(entries: list[KernelEntry], component: str, voxel_mm: tuple) -> Optional[DoseKernel]:
    """The best kernel of `component` on this grid, or electron + photon parts summed for `total`."""
    from VoxelDosimetryLib.kernels.resample import same_voxel_size

    same = [e for e in entries if same_voxel_size(e.voxel_mm, voxel_mm)]
    whole = [e for e in same if e.component == component]
    if whole:
        return max(whole, key=_quality).load()
    if component == "total":
        electron = [e for e in same if e.component == "electron"]
        photon = [e for e in same if e.component == "photon"]
        if electron and photon:
            return max(electron, key=_quality).load().plus(max(photon, key=_quality).load())
    return None


def _resampled(entries: list[KernelEntry], component: str, voxel_mm: tuple) -> Optional[DoseKernel]:
    from VoxelDosimetryLib.kernels.resample import resample_kernel

    finer = [e for e in entries if tiling_ratio(e.voxel_mm, voxel_mm)]
    whole = [e for e in finer if e.component == component]
    if component == "photon" and whole:
        return resample_kernel(max(whole, key=lambda e: (e.reach_mm, e.histories)).load(), voxel_mm)
    if component != "photon" and whole:
        return resample_kernel(min(whole, key=lambda e: (float(np.prod(e.voxel_mm)), -e.histories)).load(),
                               voxel_mm)
    if component == "total":
        electron = _resampled(entries, "electron", voxel_mm)
        photon = _resampled(entries, "photon", voxel_mm)
        if electron is not None and photon is not None:
            return electron.plus(photon)
    return None


def default_kernel_size(voxel_mm: Sequence[float], reach_mm: float = 120.0) -> tuple:
    """Odd voxel counts (x, y, z) reaching about `reach_mm` on every axis."""
    return tuple(2 * max(1, int(math.ceil(reach_mm / v))) + 1 for v in voxel_mm)


def check_kernel_quality(kernel: DoseKernel, where: str) -> None:
    """QC warnings for a kernel about to be used: centre uncertainty above 0.5 %, photon reach below 45 mm."""
    from VoxelDosimetryLib.kernels.generate import TARGET_CENTRE_UNCERTAINTY
    from VoxelDosimetryLib.qc import qc_warn

    unc = kernel.metadata.get("centre_relative_uncertainty")
    if unc is not None and unc > TARGET_CENTRE_UNCERTAINTY:
        qc_warn("kernel_uncertainty_high",
                f"{where}: the kernel's centre voxel has a {100 * unc:.2g} % relative uncertainty (target below "
                "0.5 %), so voxel doses carry that noise. Make it again with more --histories.",
                centre_relative_uncertainty=unc, medium=kernel.medium)
    reach = min(kernel.half_extent_mm)
    if kernel.component in ("total", "photon") and reach < MIN_PHOTON_REACH_MM:
        qc_warn("kernel_short_reach",
                f"{where}: the kernel reaches only {reach:.0f} mm from the source voxel (less than "
                f"{MIN_PHOTON_REACH_MM:.0f} mm), so photon cross-dose from farther away is missing. Use a larger "
                "--size.", reach_mm=reach, medium=kernel.medium)


def kernel_command(nuclide: str, voxel_mm: Sequence[float], medium: str, density: float, size: int | str = 51,
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
    shipped = [e for e in candidates if e.shipped]
    users = [e for e in candidates if not e.shipped]
    for pick in (_same_grid, _resampled):  # same grid before resampling; shipped before the user's kernels
        for group in (shipped, users):
            kernel = pick(group, component, voxel_mm)
            if kernel is not None:
                return kernel
    other = sorted({e.nuclide for e in all_entries(extra_folders) if e.medium == medium and e.nuclide != name})
    hint = f" (kernels exist for {', '.join(other)}, which cannot be used for {name})" if other else ""
    near = sorted({tuple(round(v, 4) for v in e.voxel_mm) for e in candidates})
    have = f" Kernels for this medium exist at {', '.join('x'.join(f'{v:g}' for v in s) + ' mm' for s in near)}, " \
           "but none equals the image voxel size or tiles it (an odd whole number of kernel voxels per image voxel)." \
        if near else ""
    size = " ".join(str(n) for n in default_kernel_size(voxel_mm))
    raise KernelNotAvailableError(
        f"No {name} {component} kernel for {medium} ({float(density_g_cm3):g} g/cm3) at voxel size "
        f"{'x'.join(f'{v:g}' for v in voxel_mm)} mm{hint}.{have} Make one (it is cached and found automatically): "
        f"{kernel_command(name, voxel_mm, medium, float(density_g_cm3), size)}")
