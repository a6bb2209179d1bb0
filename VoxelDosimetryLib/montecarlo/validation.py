"""Validation cases of the Monte Carlo engine (issue #3): each returns a dict of measured values, reference values
and relative differences, so the benchmark (Testing/benchmarks/mc_validation.py, full statistics) and the test
suite (few histories, loose tolerances) run exactly the same code.

References (PHYSICS.md): ESTAR water CSDA ranges; xraylib narrow-beam attenuation; PyTheranostics sphere
S-values (section 4.1(c)); the PyTheranostics 4.80 mm soft-tissue kernel (section 4.1(b), data folder
reference_kernels/). Nothing here is tuned to a reference: the engine's physics does not see these numbers.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from VoxelDosimetryLib.montecarlo.geometry import AIR, BONE, LUNG, WATER, VoxelPhantom
from VoxelDosimetryLib.physics.media import Medium
from VoxelDosimetryLib.volume.volume import Grid

MEV_TO_J = 1.602176634e-13

#: ESTAR (NIST) CSDA ranges of electrons in liquid water, g/cm2 (PHYSICS.md section 2.2 and ESTAR tables).
ESTAR_WATER_CSDA_G_CM2 = {0.01: 2.515e-4, 0.1: 1.431e-2, 1.0: 0.4367}

#: PHYSICS.md 4.1(c): Lu-177 sphere S-values (mGy/(MBq s)) and masses (g) -> absorbed energy per decay (keV).
SPHERE_REFERENCE = {1.0: (4.54, 0.00431), 2.0: (0.629, 0.0345), 3.0: (0.193, 0.116), 5.0: (0.0427, 0.539),
                    10.0: (5.46e-3, 4.31), 20.0: (6.93e-4, 34.5), 30.0: (2.07e-4, 116.0), 60.0: (2.65e-5, 932.0)}
#: density implied by the sphere table's masses (4.31 g for r = 10 mm): ICRP soft tissue, 1.03 g/cm3
SPHERE_DENSITY_G_CM3 = 1.03

REFERENCE_KERNEL_FILE = "reference_kernels/Lu177-4.80-mm-mGyperMBqs-SoftICRP.img"
REFERENCE_KERNEL_SHAPE = (51, 51, 51)
REFERENCE_KERNEL_VOXEL_MM = 4.80


def icrp_soft_tissue(density_g_cm3: float = 1.03) -> Medium:
    """ICRP soft tissue (NIST compound 'Tissue, Soft (ICRP)' via xraylib) at `density_g_cm3`."""
    import xraylib

    data = xraylib.GetCompoundDataNISTByName("Tissue, Soft (ICRP)")
    fractions = {xraylib.AtomicNumberToSymbol(int(z)): float(w)
                 for z, w in zip(data["Elements"], data["massFractions"])}
    return Medium(index=0, name="SoftTissueICRP", hu_low=-1.0e6, hu_high=1.0e6, density_g_cm3=float(density_g_cm3),
                  mass_fractions=fractions, composition="SoftTissueICRP")


def _relative(measured: float, reference: float) -> float:
    return (measured - reference) / reference


# ------------------------------------------------------------------------------------------ energy balance
def slab_phantom(n: int = 24, spacing_mm: float = 2.0) -> VoxelPhantom:
    """Water | cortical bone | lung slabs along x with one air layer at x = 0 (index order z, y, x)."""
    idx = np.zeros((n, n, n), np.int64)
    idx[:, :, n // 2:3 * n // 4] = 1
    idx[:, :, 3 * n // 4:] = 2
    idx[:, :, :1] = 3
    rho = np.array([1.0, 1.85, 0.26, 0.00121], np.float32)[idx]
    return VoxelPhantom.from_arrays(Grid((n, n, n), (spacing_mm,) * 3, (0.0, 0.0, 0.0)), [WATER, BONE, LUNG, AIR],
                                    idx, rho)


def energy_balance(histories: int = 100_000, device: str = "cpu", seed: int = 1) -> dict:
    """Deposited + escaped = emitted per decay for Lu-177 spread over the water/bone/lung slabs."""
    from VoxelDosimetryLib.montecarlo.engine import MonteCarloEngine

    ph = slab_phantom()
    act = np.zeros(ph.shape)
    act[4:20, 4:20, 4:22] = 1.0  # straddles all three interfaces
    res = MonteCarloEngine(ph, "Lu-177", device=device).run(act, histories=histories, seed=seed,
                                                             batch_size=min(histories, 200_000))
    s = res.stats
    return {"emitted_per_decay_kev": s["emitted_per_decay_kev"], "deposited_per_decay_kev": s["deposited_per_decay_kev"],
            "escaped_per_decay_kev": s["escaped_per_decay_kev"],
            "relative_error": s["energy_balance_relative_error"], "histories": histories}


# ----------------------------------------------------------------------------------- electron CSDA range
def electron_csda_range(energy_mev: float, electrons: int = 10_000, device: str = "cpu", seed: int = 5,
                        cut_mev: float = 0.01) -> dict:
    """Mean path length of monoenergetic electrons from a point in water (straggling and scattering on) plus
    the residual range at the cut-off, against the CSDA range of the engine's table and ESTAR when tabulated."""
    import torch

    from VoxelDosimetryLib.montecarlo.transport_electron import electron_tables_for_media, transport_electrons

    tables = electron_tables_for_media([WATER], device)
    water0 = torch.zeros(1, dtype=torch.long, device=device)
    table_mm = 10.0 * float(tables.range_of(water0, torch.tensor([energy_mev], device=device)))
    cut_mm = 10.0 * float(tables.range_of(water0, torch.tensor([cut_mev], device=device)))
    n_side = 41
    spacing = 2.4 * table_mm / n_side  # the grid holds every track (straight-line range < 1.2 CSDA ranges)
    ph = VoxelPhantom.homogeneous((n_side,) * 3, (spacing,) * 3).to_torch(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    pos = torch.full((electrons, 3), n_side * spacing / 2, device=device)
    d = torch.nn.functional.normalize(torch.randn(electrons, 3, generator=gen, device=device), dim=1)
    edep = torch.zeros(ph.n_voxels, dtype=torch.float64, device=device)
    res = transport_electrons(pos, d, torch.full((electrons,), energy_mev, device=device), ph, tables, edep, gen,
                              cut_mev=cut_mev, return_path_length=True)
    path = res.path_length_mm.double()
    mean_mm = float(path.mean()) + cut_mm
    out = {"energy_mev": energy_mev, "mean_path_mm": mean_mm, "path_sem_mm": float(path.std()) / math.sqrt(electrons),
           "table_csda_mm": table_mm, "relative_to_table": _relative(mean_mm, table_mm),
           "escaped_fraction": res.escaped_energy_mev / (electrons * energy_mev), "electrons": electrons}
    if energy_mev in ESTAR_WATER_CSDA_G_CM2:
        estar_mm = 10.0 * ESTAR_WATER_CSDA_G_CM2[energy_mev]
        out.update(estar_csda_mm=estar_mm, relative_to_estar=_relative(mean_mm, estar_mm))
    return out


# ------------------------------------------------------------------------------------ photon attenuation
def narrow_beam_attenuation(energy_mev: float, photons: int = 200_000, device: str = "cpu", seed: int = 9) -> dict:
    """Uncollided fraction of a pencil beam through one mean free path of water -> measured mu/rho against
    xraylib's CS_Total for water (Hubbell-type total with coherent scattering)."""
    import torch
    import xraylib

    from VoxelDosimetryLib.montecarlo.photon_data import PhotonCrossSections
    from VoxelDosimetryLib.montecarlo.transport_photon import photon_tables_from_cross_sections, transport_photons

    mu_ref = float(xraylib.CS_Total_CP("H2O", energy_mev * 1e3))  # cm2/g
    thickness_mm = 10.0 / mu_ref  # one mean free path at 1 g/cm3
    n_vox = 50
    ph = VoxelPhantom.homogeneous((n_vox, 1, 1), (2.0, 2.0, thickness_mm / n_vox))
    tph = ph.to_torch(device)
    xs = PhotonCrossSections.build(list(ph.media))
    tables = photon_tables_from_cross_sections(xs, device)
    pos = torch.zeros(photons, 3, device=device)
    pos[:, :2] = 1.0
    d = torch.zeros(photons, 3, device=device)
    d[:, 2] = 1.0
    edep = torch.zeros(tph.n_voxels, dtype=torch.float64, device=device)
    res = transport_photons(pos, d, torch.full((photons,), energy_mev, device=device), tph, tables, edep,
                            torch.Generator(device=device).manual_seed(seed), return_escaped=True)
    esc = res.escaped
    e0 = torch.tensor(energy_mev, dtype=esc["energy"].dtype, device=device)
    uncollided = int(((esc["energy"] == e0) & (esc["dir"][:, 2] == 1.0)).sum())
    frac = uncollided / photons
    mu = -math.log(frac) / (thickness_mm / 10.0)
    sem = math.sqrt((1.0 - frac) / (frac * photons)) / (thickness_mm / 10.0)
    return {"energy_mev": energy_mev, "mu_measured_cm2_g": mu, "mu_sem_cm2_g": sem, "mu_xraylib_cm2_g": mu_ref,
            "mu_engine_table_cm2_g": float(xs.interpolate(0, energy_mev, "total")),
            "relative_to_xraylib": _relative(mu, mu_ref), "photons": photons}


# ------------------------------------------------------------------------------------------------ spheres
def sphere_absorbed_energy(radius_mm: float, histories: int = 100_000, device: str = "cpu", seed: int = 2,
                           voxels_per_radius: float = 10.0) -> dict:
    """Lu-177 uniform in an ICRP soft-tissue sphere (1.03 g/cm3) in air: absorbed energy per decay (keV)."""
    from VoxelDosimetryLib.montecarlo.engine import MonteCarloEngine

    sp = radius_mm / voxels_per_radius
    n = int(2 * math.ceil(voxels_per_radius) + 4)
    c = (np.arange(n) + 0.5) * sp - n * sp / 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    inside = np.sqrt(x * x + y * y + z * z) <= radius_mm
    ph = VoxelPhantom.from_arrays(Grid((n,) * 3, (sp,) * 3, (0.0, 0.0, 0.0)),
                                  [AIR, icrp_soft_tissue(SPHERE_DENSITY_G_CM3)], inside.astype(np.int64),
                                  np.where(inside, SPHERE_DENSITY_G_CM3, AIR.density_g_cm3))
    res = MonteCarloEngine(ph, "Lu-177", device=device).run(inside.astype(float), histories=histories, seed=seed,
                                                             batch_size=min(histories, 200_000))
    e = res.edep.array[inside].astype(np.float64)
    kev = float(e.sum()) / histories * 1e3
    s_ref, mass_ref = SPHERE_REFERENCE[float(radius_mm)]
    ref_kev = s_ref * 1e-9 * mass_ref * 1e-3 / MEV_TO_J * 1e3  # S (Gy per decay) x mass (kg) -> keV
    return {"radius_mm": radius_mm, "absorbed_kev": kev, "reference_kev": ref_kev,
            "relative": _relative(kev, ref_kev), "voxel_mm": sp, "histories": histories,
            "voxel_volume_ratio": float(inside.sum()) * sp ** 3 / (4.0 / 3.0 * math.pi * radius_mm ** 3)}


# -------------------------------------------------------------------------------------- voxel S-values
def read_reference_kernel(data_dir: str | Path) -> np.ndarray:
    """The PyTheranostics 4.80 mm Lu-177 soft-tissue kernel, in Gy per decay (file: mGy/(MBq s) = 1e-9)."""
    raw = np.fromfile(Path(data_dir) / REFERENCE_KERNEL_FILE, dtype="<f4")
    if raw.size != int(np.prod(REFERENCE_KERNEL_SHAPE)):
        from VoxelDosimetryLib.errors import InputFormatError

        raise InputFormatError(f"The reference kernel holds {raw.size} values; expected 51^3.")
    return raw.reshape(REFERENCE_KERNEL_SHAPE).astype(np.float64) * 1e-9


def kernel_offsets_table(kernel: np.ndarray, offsets: Sequence[tuple[int, int, int]]) -> dict:
    """Mean of the kernel over all voxels equivalent to each offset by the cube's symmetries."""
    c = np.array(kernel.shape) // 2
    out = {}
    for off in offsets:
        values = []
        seen: set = set()
        for p in itertools.permutations(off):
            for signs in itertools.product((1, -1), repeat=3):
                o = tuple(int(s * v) for s, v in zip(signs, p))
                if o in seen:
                    continue
                seen.add(o)
                idx = tuple(int(ci + oi) for ci, oi in zip(c, o))
                if all(0 <= i < n for i, n in zip(idx, kernel.shape)):
                    values.append(kernel[idx])
        out[off] = float(np.mean(values))
    return out


def radial_shell_means(kernel: np.ndarray, edges_voxels: Sequence[float]) -> list[float]:
    """Mean kernel value in shells edges[i] <= r < edges[i+1] (r in voxel units from the centre voxel)."""
    c = np.array(kernel.shape) // 2
    z, y, x = np.indices(kernel.shape)
    r = np.sqrt((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2)
    return [float(kernel[(r >= lo) & (r < hi)].mean()) for lo, hi in zip(edges_voxels[:-1], edges_voxels[1:])]


KERNEL_OFFSETS = ((0, 0, 0), (1, 0, 0), (1, 1, 0), (1, 1, 1), (2, 0, 0), (3, 0, 0), (5, 0, 0))
TAIL_SHELLS_VOXELS = (4.5, 7.5, 12.5, 20.5)


def soft_tissue_vsv(histories: int = 1_000_000, data_dir: str | Path | None = None, device: str = "cpu",
                    seed: int = 4, size: int = 41, density_g_cm3: float = 1.03) -> dict:
    """Lu-177 voxel S-values: decays uniform in the centre voxel of a `size`^3 grid of 4.80 mm ICRP soft tissue.

    Compares centre, neighbours (symmetry-averaged) and photon-tail shells with the reference kernel when
    `data_dir` holds it; always reports the kernel sum and the self-absorbed energy (keV per decay).
    """
    from VoxelDosimetryLib.montecarlo.engine import MonteCarloEngine

    sp = REFERENCE_KERNEL_VOXEL_MM
    ph = VoxelPhantom.homogeneous((size,) * 3, (sp,) * 3, icrp_soft_tissue(density_g_cm3))
    src = np.zeros(ph.shape)
    src[size // 2, size // 2, size // 2] = 1.0
    res = MonteCarloEngine(ph, "Lu-177", device=device).run(src, histories=histories, seed=seed,
                                                             batch_size=min(histories, 500_000))
    ours = res.dose_per_decay.array.astype(np.float64)
    unc = res.uncertainty.array
    centre_mass_kg = density_g_cm3 * (sp / 10.0) ** 3 * 1e-3
    out: dict[str, Any] = {"voxel_mm": sp, "density_g_cm3": density_g_cm3, "histories": histories, "size": size,
                           "self_absorbed_kev": float(ours[size // 2, size // 2, size // 2]) * centre_mass_kg
                           / MEV_TO_J * 1e3,
                           "centre_uncertainty": float(unc[size // 2, size // 2, size // 2]),
                           "sum_gy_per_decay": float(ours.sum()), "offsets": {}, "tail": {}}
    ours_t = kernel_offsets_table(ours, KERNEL_OFFSETS)
    shells = [e for e in TAIL_SHELLS_VOXELS if e <= size // 2 + 0.5]  # only shells inside the simulated grid
    ours_shell = radial_shell_means(ours, shells)
    ref = None
    if data_dir is not None and (Path(data_dir) / REFERENCE_KERNEL_FILE).exists():
        ref = read_reference_kernel(data_dir)
        out["reference_sum_gy_per_decay"] = float(ref.sum())
        out["reference_self_absorbed_kev"] = float(ref[25, 25, 25]) * centre_mass_kg / MEV_TO_J * 1e3
    ref_t = kernel_offsets_table(ref, KERNEL_OFFSETS) if ref is not None else {}
    ref_shell = radial_shell_means(ref, shells) if ref is not None else []
    for off in KERNEL_OFFSETS:
        row = {"ours": ours_t[off]}
        if ref is not None:
            row.update(reference=ref_t[off], relative=_relative(ours_t[off], ref_t[off]))
        out["offsets"]["%d,%d,%d" % off] = row
    for i, (lo, hi) in enumerate(zip(shells[:-1], shells[1:])):
        row = {"ours": ours_shell[i]}
        if ref is not None:
            row.update(reference=ref_shell[i], relative=_relative(ours_shell[i], ref_shell[i]))
        out["tail"][f"{lo:g}-{hi:g} voxels"] = row
    return out


# ----------------------------------------------------------------------------------------- slab profile
def slab_interface_profile(histories: int = 400_000, device: str = "cpu", seed: int = 6) -> dict:
    """Lu-177 uniform everywhere in a water | bone | lung slab phantom (no air): dose per decay along x next to
    local energy deposition (LED). Shows electron disequilibrium at the interfaces and the density scaling."""
    from VoxelDosimetryLib.montecarlo.engine import MonteCarloEngine
    from VoxelDosimetryLib.physics import get_nuclide

    n, sp = 30, 1.0
    idx = np.zeros((8, 8, n), np.int64)
    idx[:, :, 10:20] = 1
    idx[:, :, 20:] = 2
    rho_per_medium = np.array([1.0, 1.85, 0.26], np.float32)
    rho = rho_per_medium[idx]
    ph = VoxelPhantom.from_arrays(Grid(idx.shape, (sp, 4.0, 4.0), (0.0, 0.0, 0.0)), [WATER, BONE, LUNG], idx, rho)
    act = np.ones(idx.shape)  # uniform activity per voxel (per volume)
    res = MonteCarloEngine(ph, "Lu-177", device=device).run(act, histories=histories, seed=seed,
                                                             batch_size=min(histories, 200_000))
    dpd = res.dose_per_decay.array.astype(np.float64)
    inner = dpd[2:-2, 2:-2, :]  # away from the y/z faces, where electrons escape
    profile = inner.mean(axis=(0, 1))
    unc = res.uncertainty.array[2:-2, 2:-2, :].mean(axis=(0, 1))
    electrons_kev = get_nuclide("Lu-177").energy_budget()["electrons"] * 1e3
    mass = rho_per_medium[idx[0, 0, :]] * sp * 4.0 * 4.0 * 1e-3 * 1e-3  # kg per voxel along x
    led_electrons = electrons_kev * 1e-3 * MEV_TO_J / (idx.size) / mass  # electrons only, per decay
    return {"x_mm": ((np.arange(n) + 0.5) * sp).tolist(), "media": ["water"] * 10 + ["bone"] * 10 + ["lung"] * 10,
            "dose_per_decay": profile.tolist(), "relative_uncertainty": unc.tolist(),
            "led_electrons_per_decay": led_electrons.tolist(), "histories": histories}


# --------------------------------------------------------------------------------------------- patient15
def patient15_inputs(data_dir: str | Path) -> tuple[Any, Any]:
    """CT (HU = attn - 1000, PHYSICS/MANIFEST) and relative activity of the patient15 Lu-DOTATATE phantom."""
    from VoxelDosimetryLib.io import read_volume

    folder = Path(data_dir) / "patient15_LuDOTATATE"
    attn = read_volume(folder / "patient15_LuDOTATATE_attn.h33")
    src = read_volume(folder / "patient15_LuDOTATATE_src.h33")
    ct = attn.with_array(attn.array.astype(np.float32) - 1000.0, quantity="ct", unit="HU")
    return ct, src
