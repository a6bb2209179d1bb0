"""Kernel generation with the project's Monte Carlo engine: decays uniform in the centre voxel of a homogeneous
grid, energy scored per voxel, Gy per decay.

Electrons and photons are simulated in separate runs (`component` electron | photon | total = both): electrons
with the engine's condensed-history transport, photons with track-length (kerma) scoring, which lowers the
photon tail's variance by orders of magnitude without bias (PHYSICS.md §7.2). The grid is the kernel itself:
energy carried beyond its faces is not scored (reported as `absorbed_fraction_in_kernel`). The result is averaged
over the grid's symmetries (reflections of every axis; swaps of axes with equal voxel size and count), which
leaves the centre voxel unchanged, so its batch uncertainty is reported exactly.
"""
from __future__ import annotations

import itertools
import math
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.kernels.kernel import DoseKernel, check_component
from VoxelDosimetryLib.kernels.medium import kernel_medium
from VoxelDosimetryLib.physics.media import Medium

KERNEL_GENERATOR = "voxeldosimetry kernel"
KERNEL_GENERATOR_VERSION = "1"
TARGET_CENTRE_UNCERTAINTY = 0.005  # issue #9: enough histories for < 0.5 % at the centre
MIN_HISTORIES = 10  # the engine estimates uncertainty from 10 batches
# Monte Carlo memory per voxel: three float64 tallies, index, density and the torch copies (measured ~60 B)
BYTES_PER_VOXEL = 64
MAX_KERNEL_BYTES = 8 * 2 ** 30


def odd_size(size: int | Sequence[int]) -> tuple[int, int, int]:
    """(x, y, z) odd voxel counts from one number or three; InputFormatError otherwise."""
    values = [size] * 3 if isinstance(size, (int, np.integer)) else list(size)
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise InputFormatError(f"Kernel size is one odd number or three (x y z); got {size}.")
    out = []
    for v in values:
        if isinstance(v, float) and not v.is_integer():
            raise InputFormatError(f"Kernel size must be whole odd numbers; got {size}.")
        v = int(v)
        if v < 1 or v % 2 == 0:
            raise InputFormatError(f"Kernel size must be odd (the source voxel sits in the middle) and >= 1; got "
                                   f"{size}. Use e.g. {v + 1 if v % 2 == 0 and v > 0 else 1}.")
        out.append(v)
    return tuple(out)  # type: ignore[return-value]


def voxel_size(voxel_mm: float | Sequence[float]) -> tuple[float, float, float]:
    """(x, y, z) voxel size in mm from one number or three."""
    values = [voxel_mm] * 3 if isinstance(voxel_mm, (int, float, np.floating)) else list(voxel_mm)
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise InputFormatError(f"Voxel size is one number or three (x y z, mm); got {voxel_mm}.")
    out = tuple(float(v) for v in values)
    if not all(math.isfinite(v) and v > 0 for v in out):
        raise InputFormatError(f"Voxel size must be positive (mm); got {voxel_mm}.")
    if max(out) > 100.0 or min(out) < 0.01:
        raise InputFormatError(f"Voxel size {out} mm is outside 0.01-100 mm; check the units (mm).")
    return out  # type: ignore[return-value]


def memory_estimate_bytes(size_xyz: Sequence[int]) -> int:
    return int(np.prod(size_xyz)) * BYTES_PER_VOXEL


def check_memory(size_xyz: Sequence[int]) -> None:
    need = memory_estimate_bytes(size_xyz)
    if need > MAX_KERNEL_BYTES:
        raise InputFormatError(f"A {size_xyz[0]}x{size_xyz[1]}x{size_xyz[2]} kernel needs about {need / 2 ** 30:.1f} "
                               f"GiB to simulate (limit {MAX_KERNEL_BYTES / 2 ** 30:.0f} GiB): choose a smaller "
                               "--size; the photon tail beyond ~25 cm carries well under 1 % of the energy.")


def symmetrise(values: np.ndarray, spacing_xyz: Sequence[float]) -> np.ndarray:
    """Average over reflections of each axis and permutations of axes with equal voxel size and count."""
    v = np.asarray(values, dtype=np.float64)
    for axis in range(3):
        v = 0.5 * (v + np.flip(v, axis=axis))
    sp_zyx = tuple(spacing_xyz)[::-1]
    axes = (0, 1, 2)
    perms = [p for p in itertools.permutations(axes)
             if all(v.shape[a] == v.shape[p[a]] and math.isclose(sp_zyx[a], sp_zyx[p[a]], rel_tol=1e-9)
                    for a in axes)]
    return sum(np.transpose(v, p) for p in perms) / len(perms)


def electron_half_width(nuclide: Any, medium: Medium, spacing_xyz: Sequence[float]) -> tuple[int, int, int]:
    """Voxels (x, y, z) from the centre that the most energetic electron can reach (CSDA range, +1 voxel for the
    source position inside its voxel): the size of an electron-only kernel that holds all electron energy."""
    from VoxelDosimetryLib.montecarlo.electron_data import ElectronStoppingPowers

    e_max = 0.0
    if nuclide.beta_spectrum is not None:
        e_max = float(nuclide.beta_spectrum.max_energy_mev)
    lines = nuclide.electron_lines()
    if len(lines):
        e_max = max(e_max, float(np.max(lines.energy_mev)))
    if e_max <= 0:
        return (0, 0, 0)
    sp = ElectronStoppingPowers.build([medium])
    range_mm = float(sp.range_cm(0, min(e_max, 2.99))) * 10.0
    return tuple(int(math.ceil(range_mm / s)) + 1 for s in spacing_xyz)  # type: ignore[return-value]


def _run_component(medium: Medium, nuclide: Any, spacing: tuple, size_xyz: tuple, component: str, histories: int,
                   seed: int, device: str, progress: Optional[Callable], cancel: Any, span: tuple) -> tuple:
    from VoxelDosimetryLib.montecarlo.engine import MonteCarloEngine
    from VoxelDosimetryLib.montecarlo.geometry import VoxelPhantom

    shape_zyx = tuple(size_xyz[::-1])
    phantom = VoxelPhantom.homogeneous(shape_zyx, spacing, medium, medium.density_g_cm3)
    source = np.zeros(shape_zyx)
    source[tuple(n // 2 for n in shape_zyx)] = 1.0
    engine = MonteCarloEngine(phantom, nuclide, device=device, components=(component,))

    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(span[0] + fraction * (span[1] - span[0]), f"{component}s: {message}")

    result = engine.run(source, histories=histories, seed=seed, n_batches=min(10, histories),
                        batch_size=min(histories, 200_000), progress=report, cancel=cancel,
                        track_length_photons=(component == "photon"))
    return result.dose_per_decay.array.astype(np.float64), result.uncertainty.array, result.stats


def generate_kernel(nuclide: str = "Lu-177", voxel_mm: float | Sequence[float] = 4.8,
                    size: int | Sequence[int] = 51, medium: str | None = None, density_g_cm3: float | None = None,
                    histories: int = 1_000_000, component: str = "total", seed: int = 0, device: str = "auto",
                    electron_size: int | Sequence[int] | None = None, command: str | None = None,
                    progress: Optional[Callable[[float, str], Any]] = None, cancel: Any = None,
                    warn_uncertainty: bool = True) -> DoseKernel:
    """Simulate a voxel S-value kernel (Gy per decay) of `nuclide` in a homogeneous medium.

    `voxel_mm` one or three (x, y, z) sizes; `size` one or three odd voxel counts. `electron_size`: a smaller grid
    for the electron run of a total kernel (default: the electrons' CSDA reach, at most `size`). The metadata
    record the histories, seed, centre relative uncertainty (batch method; QC warning above 0.5 %), engine and
    generator versions, absorbed fraction and the command. `warn_uncertainty=False` skips the QC warning (for
    runs whose centre voxel is not used, such as the photon tail).
    """
    from VoxelDosimetryLib.montecarlo.engine import ENGINE_NAME, ENGINE_VERSION
    from VoxelDosimetryLib.physics import get_nuclide
    from VoxelDosimetryLib.qc import qc_warn

    check_component(component)
    spacing = voxel_size(voxel_mm)
    size_xyz = odd_size(size)
    if isinstance(histories, bool) or int(histories) != histories or int(histories) < MIN_HISTORIES:
        raise InputFormatError(f"--histories must be a whole number >= {MIN_HISTORIES} (the uncertainty is "
                               f"estimated from 10 batches); got {histories}.")
    histories = int(histories)
    check_memory(size_xyz)
    the_nuclide = get_nuclide(nuclide)
    the_medium = kernel_medium(medium, density_g_cm3)
    t0 = time.perf_counter()
    parts = ("electron", "photon") if component == "total" else (component,)
    if "electron" in parts:
        if electron_size is None:
            half = electron_half_width(the_nuclide, the_medium, spacing)
            e_size = tuple(min(2 * h + 1, n) for h, n in zip(half, size_xyz))
        else:
            e_size = tuple(min(a, b) for a, b in zip(odd_size(electron_size), size_xyz))
    values = np.zeros(tuple(size_xyz[::-1]))
    centre_var = 0.0
    info: dict = {}
    emitted_kev = 0.0
    for i, part in enumerate(parts):
        part_size = e_size if part == "electron" else size_xyz
        span = (i / len(parts), (i + 1) / len(parts))
        dose, unc, stats = _run_component(the_medium, the_nuclide, spacing, part_size, part, histories, seed + i,
                                          device, progress, cancel, span)
        dose = symmetrise(dose, spacing)
        off = tuple((a - b) // 2 for a, b in zip(values.shape, dose.shape))
        values[off[0]:off[0] + dose.shape[0], off[1]:off[1] + dose.shape[1], off[2]:off[2] + dose.shape[2]] += dose
        c = tuple(n // 2 for n in dose.shape)
        centre_var += (float(unc[c]) * float(dose[c])) ** 2
        emitted_kev += stats["emitted_per_decay_kev"]
        info[part] = {"size_xyz": list(part_size), "time_s": stats["time_s"], "device": stats["device"],
                      "deposited_kev_per_decay": stats["deposited_per_decay_kev"],
                      "emitted_kev_per_decay": stats["emitted_per_decay_kev"],
                      "centre_relative_uncertainty": float(unc[c]),
                      "track_length_photons": stats["track_length_photons"]}
    centre = values[tuple(n // 2 for n in values.shape)]
    centre_rel = math.sqrt(centre_var) / centre if centre > 0 else 1.0
    if command is None:
        command = " ".join(["voxeldosimetry", "kernel", "--nuclide", the_nuclide.name, "--voxel-mm",
                            *(f"{s:g}" for s in spacing),
                            *(["--medium", medium] if medium is not None else []),
                            *(["--density", f"{float(density_g_cm3):g}"] if density_g_cm3 is not None else []),
                            "--size", *(str(n) for n in size_xyz), "--histories", str(histories),
                            "--component", component, "--seed", str(seed), "--out", "K.nrrd"])
    meta = {"histories": histories, "seed": int(seed), "centre_relative_uncertainty": float(centre_rel),
            "generator": KERNEL_GENERATOR, "generator_version": KERNEL_GENERATOR_VERSION, "engine": ENGINE_NAME,
            "engine_version": ENGINE_VERSION, "command": command, "medium_composition": the_medium.composition,
            "mass_fractions": dict(the_medium.mass_fractions), "symmetrised": True, "runs": info,
            "emitted_kev_per_decay": emitted_kev, "time_s": time.perf_counter() - t0}
    from VoxelDosimetryLib.kernels.medium import canonical_medium_name

    kernel = DoseKernel(values, spacing, the_nuclide.name, canonical_medium_name(medium, density_g_cm3),
                        the_medium.density_g_cm3, component, meta)
    absorbed = kernel.energy_per_decay_kev()
    kernel.metadata["absorbed_kev_per_decay"] = absorbed
    kernel.metadata["absorbed_fraction_in_kernel"] = absorbed / emitted_kev if emitted_kev > 0 else 0.0
    if warn_uncertainty and centre_rel > TARGET_CENTRE_UNCERTAINTY:
        needed = int(math.ceil(histories * (centre_rel / TARGET_CENTRE_UNCERTAINTY) ** 2))
        qc_warn("kernel_uncertainty_high",
                f"The kernel's centre voxel has a {100 * centre_rel:.2g} % relative uncertainty (target < "
                f"{100 * TARGET_CENTRE_UNCERTAINTY:g} %): run about {needed:.2g} histories (--histories {needed}).",
                centre_relative_uncertainty=centre_rel, histories=histories, suggested_histories=needed)
    return kernel
