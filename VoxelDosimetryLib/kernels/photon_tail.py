"""The photon point kernel far from the source: dose per decay against distance in an infinite homogeneous medium,
used beyond the reach of a voxel kernel (dose/photon_tail.py adds it to the kernel methods).

Lu-177 photons (35 keV per decay) travel far: in infinite soft tissue 55 % of their absorbed energy lies beyond
120 mm, 0.4 % beyond 600 mm (measured with this module's generator). A voxel kernel holding that would be ~1.5 m
wide; the far field is smooth and isotropic, so a radial table of a few dozen numbers holds it instead.

Generation: a photon-only kernel (track-length scoring, kernels/generate.py) on a coarse cubic grid (7.5 mm
voxels, 241³: ±904 mm), averaged over spherical shells one voxel wide; each shell gives the mean dose per decay
and the mean distance of its voxel centres. The table ends where the energy absorbed farther out falls below
0.1 % of the photon energy emitted (issue #9's crop rule); `energy_beyond_fraction` records what is left out
(absorbed farther out in the cube, or carried out of it).
Between table points r²·D(r) is interpolated log-linearly in r.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError

TAIL_FORMAT = "voxeldosimetry photon tail"
TAIL_FORMAT_VERSION = 1
TAIL_VOXEL_MM = 7.5
TAIL_SIZE = 241
TAIL_HISTORIES = 2_000_000
CROP_ENERGY_FRACTION = 1e-3  # issue #9: crop the photon tail where it carries < 0.1 % of the energy
MEV_TO_J = 1.602176634e-13


@dataclass(frozen=True)
class PhotonTail:
    """Radial photon dose per decay (Gy) at distance `radius_mm` from a point source in an infinite medium.

    `valid_from_mm`: below it the coarse generation grid does not resolve the kernel (use a voxel kernel there).
    """

    nuclide: str
    medium: str
    density_g_cm3: float
    radius_mm: np.ndarray = field(repr=False)
    dose_gy_per_decay: np.ndarray = field(repr=False)
    valid_from_mm: float
    metadata: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        r = np.asarray(self.radius_mm, dtype=np.float64)
        d = np.asarray(self.dose_gy_per_decay, dtype=np.float64)
        if r.ndim != 1 or r.shape != d.shape or len(r) < 2 or np.any(np.diff(r) <= 0) or r[0] <= 0:
            raise InputFormatError("A photon tail needs >= 2 increasing positive radii with one dose value each.")
        if not np.all(np.isfinite(d)) or np.any(d <= 0):
            raise InputFormatError("Photon tail doses must be finite and positive (Gy per decay).")
        object.__setattr__(self, "radius_mm", r)
        object.__setattr__(self, "dose_gy_per_decay", d)

    @property
    def reach_mm(self) -> float:
        return float(self.radius_mm[-1])

    def dose_at(self, r_mm: np.ndarray) -> np.ndarray:
        """Gy per decay at distances r (mm): log-linear in r²·D between table points, 0 beyond the table; below
        the first table point the first value of r²·D is kept (only used where a voxel kernel takes over)."""
        r = np.asarray(r_mm, dtype=np.float64)
        log_r2d = np.log(self.radius_mm ** 2 * self.dose_gy_per_decay)
        values = np.exp(np.interp(r, self.radius_mm, log_r2d)) / np.maximum(r, 1e-9) ** 2
        return np.where(r <= self.reach_mm, values, 0.0)

    def energy_beyond_kev(self, r_mm: float) -> float:
        """Energy absorbed per decay beyond r (keV), integrating D·ρ·4πr² dr over the table (trapezoids in r)."""
        grid = np.linspace(max(r_mm, float(self.radius_mm[0])), self.reach_mm, 2000)
        if grid[0] >= grid[-1]:
            return 0.0
        rho_kg_mm3 = self.density_g_cm3 * 1e-6
        integrand = self.dose_at(grid) * rho_kg_mm3 * 4.0 * math.pi * grid ** 2
        from scipy.integrate import trapezoid

        return float(trapezoid(integrand, grid)) / MEV_TO_J * 1e3

    def to_json(self) -> dict:
        return {"format": TAIL_FORMAT, "format_version": TAIL_FORMAT_VERSION, "nuclide": self.nuclide,
                "medium": self.medium, "density_g_cm3": self.density_g_cm3,
                "valid_from_mm": self.valid_from_mm, "radius_mm": [round(float(v), 4) for v in self.radius_mm],
                "dose_gy_per_decay": [float(f"{v:.6e}") for v in self.dose_gy_per_decay],
                "metadata": self.metadata}

    @classmethod
    def from_json(cls, data: dict, where: str = "the photon tail") -> "PhotonTail":
        if not isinstance(data, dict) or data.get("format") != TAIL_FORMAT:
            raise InputFormatError(f"{where} is not a photon tail file (format {TAIL_FORMAT!r}).")
        try:
            return cls(str(data["nuclide"]), str(data["medium"]), float(data["density_g_cm3"]),
                       np.asarray(data["radius_mm"], dtype=np.float64),
                       np.asarray(data["dose_gy_per_decay"], dtype=np.float64), float(data["valid_from_mm"]),
                       dict(data.get("metadata") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputFormatError(f"{where} is damaged ({exc}); make it again with `voxeldosimetry kernel "
                                   "--photon-tail`.") from None

    def fingerprint(self) -> str:
        return hashlib.sha1(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()


def read_photon_tail(path: str | Path) -> PhotonTail:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputFormatError(f"Cannot read the photon tail {path}: {exc}.") from None
    return PhotonTail.from_json(data, str(path))


def write_photon_tail(tail: PhotonTail, path: str | Path) -> Path:
    from VoxelDosimetryLib.io.safe_write import write_text_atomic

    return write_text_atomic(path, json.dumps(tail.to_json(), indent=1) + "\n")


def centred_distances_mm(shape_zyx, step_zyx) -> np.ndarray:
    """Distance (mm) of every cell of a centred odd grid from its centre cell; `step_zyx` the cell size per axis."""
    axes = [(np.arange(n) - n // 2) * s for n, s in zip(shape_zyx, step_zyx)]
    return np.sqrt(axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2)


def emits_photons(nuclide: str) -> bool:
    """Whether `nuclide` has photon lines (a pure beta emitter needs no photon tail)."""
    from VoxelDosimetryLib.physics import get_nuclide

    return len(get_nuclide(nuclide).photon_lines()) > 0


def radial_table(values_zyx: np.ndarray, voxel_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Radial profile of a centred cubic kernel: (mean centre distance r̄ in mm, Gy/decay at r̄) for shells one voxel
    wide inside the inscribed sphere, skipping the centre shell."""
    c = values_zyx.shape[0] // 2
    r = centred_distances_mm(values_zyx.shape, (voxel_mm,) * 3)
    shell = np.floor(r / voxel_mm + 0.5).astype(np.int64)  # shell k: k-1/2 <= r/voxel < k+1/2
    last = c
    inside = (shell >= 1) & (shell <= last)
    count = np.bincount(shell[inside], minlength=last + 1)[1:]
    r_sum = np.bincount(shell[inside], weights=r[inside], minlength=last + 1)[1:]
    # the shell mean of r²·D (smooth: e^(-μr) times build-up) divided by the mean r², not the mean of D, which
    # the 1/r² curvature biases high (+1.8 % three voxels out)
    g_sum = np.bincount(shell[inside], weights=(r ** 2 * values_zyx)[inside], minlength=last + 1)[1:]
    radius = r_sum / count
    return radius, g_sum / count / radius ** 2


def generate_photon_tail(nuclide: str = "Lu-177", medium: str | None = "soft_tissue",
                         density_g_cm3: float | None = None, histories: int = TAIL_HISTORIES, seed: int = 0,
                         device: str = "auto", voxel_mm: float = TAIL_VOXEL_MM, size: int = TAIL_SIZE,
                         progress: Optional[Callable[[float, str], Any]] = None, cancel: Any = None) -> PhotonTail:
    """Simulate the radial photon tail (see the module docstring); the table is cropped where the energy beyond
    falls below 0.1 % of the photon energy emitted."""
    from VoxelDosimetryLib.kernels.generate import generate_kernel

    t0 = time.perf_counter()
    kernel = generate_kernel(nuclide, voxel_mm, size, medium=medium, density_g_cm3=density_g_cm3,
                             histories=histories, component="photon", seed=seed, device=device, progress=progress,
                             cancel=cancel, warn_uncertainty=False)  # the centre voxel is not used

    radius, dose = radial_table(kernel.values, voxel_mm)
    emitted = float(kernel.metadata["emitted_kev_per_decay"])
    if emitted <= 0 or not np.all(dose > 0):
        raise InputFormatError(f"{kernel.nuclide} emits no photons that reach {radius[-1]:.0f} mm here; a "
                               "photon tail is not needed.")
    mass_kg = kernel.voxel_mass_kg
    energy_kev = kernel.values * mass_kg / MEV_TO_J * 1e3
    r = centred_distances_mm(kernel.values.shape, (voxel_mm,) * 3)
    order = np.argsort(r, axis=None)
    escaped = max(0.0, emitted - float(energy_kev.sum()))  # carried out of the simulated cube: beyond the table too
    beyond = energy_kev.sum() - np.cumsum(energy_kev.ravel()[order]) + escaped  # beyond each sorted distance
    r_sorted = r.ravel()[order]
    crop = float(r_sorted[np.argmax(beyond < CROP_ENERGY_FRACTION * emitted)]) \
        if np.any(beyond < CROP_ENERGY_FRACTION * emitted) else float(radius[-1])
    keep = radius <= max(crop, float(radius[1])) + voxel_mm
    last = int(np.count_nonzero(keep))
    beyond_table = float(energy_kev[r > radius[last - 1]].sum()) + escaped
    meta = {"histories": int(histories), "seed": int(seed), "voxel_mm": voxel_mm, "size": size,
            "emitted_kev_per_decay": emitted, "absorbed_kev_per_decay": float(energy_kev.sum()),
            "energy_beyond_fraction": beyond_table / emitted,
            "engine": kernel.metadata.get("engine"), "engine_version": kernel.metadata.get("engine_version"),
            "command": f"voxeldosimetry kernel --nuclide {kernel.nuclide} --photon-tail --histories {histories} "
                       f"--seed {seed}",
            "time_s": time.perf_counter() - t0}
    if meta["energy_beyond_fraction"] > CROP_ENERGY_FRACTION:
        from VoxelDosimetryLib.qc import qc_warn

        qc_warn("photon_tail_short",
                f"The {kernel.nuclide} photon tail ends at {radius[last - 1]:.0f} mm with "
                f"{100 * meta['energy_beyond_fraction']:.2g} % of the photon energy absorbed farther out (target "
                f"below {100 * CROP_ENERGY_FRACTION:g} %): its photons are too penetrating for this grid.",
                energy_beyond_fraction=meta["energy_beyond_fraction"])
    return PhotonTail(kernel.nuclide, kernel.medium, kernel.density_g_cm3, radius[:last], dose[:last],
                      valid_from_mm=3.0 * voxel_mm, metadata=meta)


def tail_params(nuclide: str, medium: str, density_g_cm3: float, histories: int, seed: int) -> dict:
    """The cache-key parameters of a photon tail (kernels/cache.cache_key adds engine and physics versions)."""
    return {"kind": "photon_tail", "nuclide": nuclide, "medium": medium, "density_g_cm3": float(density_g_cm3),
            "voxel_mm": [TAIL_VOXEL_MM], "size_xyz": [TAIL_SIZE], "histories": int(histories), "seed": int(seed),
            "component": "photon_tail", "format_version": TAIL_FORMAT_VERSION}


def cached_tail_path(params: dict) -> Path:
    from VoxelDosimetryLib.kernels.cache import cache_key, kernel_cache_dir

    name = f"photon_tail_{params['nuclide']}_{params['medium']}_{cache_key(params)[:12]}.json"
    return kernel_cache_dir() / name.replace("/", "_").replace(" ", "_")


def _shipped_tails() -> list[Path]:
    from VoxelDosimetryLib.kernels.library import SHIPPED_DIR, SHIPPED_INDEX

    if not SHIPPED_INDEX.is_file():
        return []
    index = json.loads(SHIPPED_INDEX.read_text())
    return [SHIPPED_DIR / e["file"] for e in index.get("photon_tails", [])]


def _cached_tails() -> list[Path]:
    from VoxelDosimetryLib.kernels.cache import kernel_cache_dir

    folder = kernel_cache_dir()
    return sorted(folder.glob("photon_tail_*.json")) if folder.is_dir() else []


def tail_files() -> list[Path]:
    """Shipped tails first, then the cache's."""
    return _shipped_tails() + _cached_tails()


def find_photon_tail(nuclide: str, medium: str = "soft_tissue") -> Optional[PhotonTail]:
    """The photon tail of `nuclide` in `medium`: the shipped one, else the cached one with the most histories
    (damaged files are skipped), else None."""
    from VoxelDosimetryLib.physics import get_nuclide

    name = get_nuclide(nuclide).name
    shipped = _shipped_tails()  # the index is read once per lookup
    found = []
    for path in shipped + _cached_tails():
        try:
            tail = _read_cached(str(path), path.stat().st_mtime_ns)
        except (InputFormatError, OSError):
            continue
        if tail.nuclide == name and tail.medium == medium:
            if path in shipped:
                return tail
            found.append(tail)
    return max(found, key=lambda t: int(t.metadata.get("histories") or 0)) if found else None


@lru_cache(maxsize=64)
def _read_cached(path: str, _mtime_ns: int) -> PhotonTail:
    return read_photon_tail(path)


def make_photon_tail(nuclide: str = "Lu-177", histories: int = TAIL_HISTORIES, seed: int = 0, device: str = "auto",
                     use_cache: bool = True, progress: Optional[Callable[[float, str], Any]] = None,
                     cancel: Any = None) -> tuple[PhotonTail, Path, bool]:
    """The soft-tissue photon tail for `nuclide` from the cache, or simulated and cached: (tail, path, cached)."""
    from VoxelDosimetryLib.kernels.medium import SOFT_TISSUE, SOFT_TISSUE_DENSITY_G_CM3
    from VoxelDosimetryLib.physics import get_nuclide

    name = get_nuclide(nuclide).name
    params = tail_params(name, SOFT_TISSUE, SOFT_TISSUE_DENSITY_G_CM3, histories, seed)
    path = cached_tail_path(params)
    if use_cache and path.is_file():
        try:
            tail = read_photon_tail(path)
            if tail.nuclide == name and tail.metadata.get("histories") == int(histories) \
                    and tail.metadata.get("seed") == int(seed):
                return tail, path, True
        except InputFormatError:
            pass  # damaged: made again below
    tail = generate_photon_tail(name, SOFT_TISSUE, None, histories, seed, device, progress=progress, cancel=cancel)
    path.parent.mkdir(parents=True, exist_ok=True)
    return tail, write_photon_tail(tail, path), False
