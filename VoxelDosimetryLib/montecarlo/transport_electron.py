"""Electron transport: condensed-history CSDA steps, vectorised over a batch in torch (CPU and CUDA).

Per step of an electron of kinetic energy E in medium m, density rho:
  * step length s = min(f_range * R_m(E)/rho, f_voxel * smallest voxel spacing) with R the CSDA range (g/cm2)
    from the total (collision + radiative) stopping power; f_range = 0.2 and f_voxel = 0.5 by default;
  * mean energy after the step from the range table: E' = R_m^-1(R_m(E) - rho s) (continuous slowing down);
  * energy-loss straggling: log-normal with the mean loss of the range table and the Bohr-type variance of
    free-electron collisions up to the Moller maximum energy transfer E/2,
    Omega^2 = 0.153537 (Z/A) rho s[cm] (E/2) / beta^2 MeV^2 (Bohr 1915), capped at E (energy is conserved
    exactly: what is lost is deposited). The log-normal keeps the mean and is skewed towards large losses like
    the Landau/Vavilov distribution of thin steps (a documented simplification of it);
  * multiple scattering: random hinge - the electron moves a uniform fraction of s, is deflected, then moves the
    rest. The deflection follows the modified Wentzel model (Fernandez-Varea et al. 1993) with the exact first two
    transport moments of the step, <P_l> = exp(-s/lambda_l), lambda_1,2 from Moliere-screened Rutherford scattering
    at the mean energy of the step (montecarlo/electron_scattering.py). Against EGSnrc pencil beams R50 and mean
    depth agree within 6 %, backscatter through a vacuum surface is 15-40 % too high (docs/VALIDATION.md). It
    replaced a Gaussian Highland model (R50 -9 to -11 %, backscatter -25 %, step-dependent);
  * the energy lost in the step is deposited in the voxel of the hinge point; the medium is re-evaluated at the
    start of every step (steps are short compared with voxels, so boundary crossings are resolved per step);
  * below the cut-off (default 10 keV, CSDA range 2.5 um in water) the remaining energy is deposited locally;
  * bremsstrahlung is included in the stopping power and deposited locally (Lu-177 radiation yield ~0.06 %,
    i.e. ~0.1 keV/decay moved from the photon tail to the track: negligible, PHYSICS.md section 2.2).
Units: MeV, mm (positions), cm and g/cm2 (tables).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from VoxelDosimetryLib.montecarlo.electron_scattering import sample_step_cos
from VoxelDosimetryLib.montecarlo.transport_photon import rotate
from VoxelDosimetryLib.montecarlo.uniform_grid import loglog_uniform

ELECTRON_MASS_MEV = 0.51099895  # CODATA 2018
# Range rejection keeps an electron unless its CSDA range x this margin is below the distance to the voxel's faces:
# the log-normal straggling lets a path run past the mean CSDA range, and a margin of 1.5 makes that reach
# (straight, with no scattering) out of the voxel negligible (issue #10; tested against the full transport)
RANGE_REJECTION_MARGIN = 1.5


@dataclass
class ElectronTables:
    """Device tables: CSDA range (g/cm2) and transport mean free path lambda_1 (g/cm2) on a uniform ln-E grid, the
    range's inverse on a uniform ln-R grid, per medium.

    range_g_cm2 (M, N); tmfp_g_cm2 (M, N) lambda_1; tmfp2_g_cm2 (M, N) lambda_2; energy_of_range_mev (M, NR); z_over_a (M,); screening: the Wentzel
    screening table (electron_scattering.WentzelScreeningTable).
    """

    log_e0: float
    dlog_e: float
    range_g_cm2: Any
    log_r0: float
    dlog_r: float
    energy_of_range_mev: Any
    z_over_a: Any
    tmfp_g_cm2: Any
    tmfp2_g_cm2: Any
    screening: Any

    @property
    def n_media(self) -> int:
        return int(self.range_g_cm2.shape[0])

    def range_of(self, medium: Any, energy_mev: Any) -> Any:
        """CSDA range (g/cm2), log-log interpolation in the table; below the grid R ~ E^1.75 (low-E power law)."""
        import torch

        le = torch.log(torch.clamp(energy_mev, min=1e-7))
        return loglog_uniform(self.range_g_cm2, medium, le, self.log_e0, self.dlog_e)

    def tmfp_of(self, medium: Any, energy_mev: Any) -> tuple:
        """Transport mean free paths (lambda_1, lambda_2) in g/cm2, log-log interpolation (clamped to the ends)."""
        import torch

        le = torch.log(torch.clamp(energy_mev, min=1e-7))
        return (loglog_uniform(self.tmfp_g_cm2, medium, le, self.log_e0, self.dlog_e),
                loglog_uniform(self.tmfp2_g_cm2, medium, le, self.log_e0, self.dlog_e))

    def energy_of(self, medium: Any, range_g_cm2: Any) -> Any:
        """Inverse of range_of (MeV); 0 for a range <= 0."""
        import torch

        lr = torch.log(torch.clamp(range_g_cm2, min=1e-30))
        e = loglog_uniform(self.energy_of_range_mev, medium, lr, self.log_r0, self.dlog_r)
        return torch.where(range_g_cm2 > 0, e, torch.zeros_like(e))


def build_electron_tables(energies_mev: np.ndarray, range_g_cm2: np.ndarray, z_over_a: Sequence[float],
                          spec: Any, device: Any, n_range: int = 512) -> ElectronTables:
    """ElectronTables from per-medium CSDA ranges (M, N) tabulated on a ln-E grid; `spec` (photon_data.MediaSpec:
    atomic numbers, weights and mass fractions) gives the transport mean free path."""
    import torch

    from VoxelDosimetryLib.montecarlo.electron_scattering import (
        WentzelScreeningTable,
        transport_mean_free_paths_g_cm2,
    )

    e = np.asarray(energies_mev, dtype=float)
    r = np.asarray(range_g_cm2, dtype=float)
    if r.ndim != 2 or r.shape[1] != e.size:
        raise ValueError(f"range table shape {r.shape} does not match {e.size} energies")
    le = np.log(e)
    dl = np.diff(le)
    if not np.allclose(dl, dl[0], rtol=1e-6):
        # resample onto a uniform ln-E grid
        grid = np.linspace(le[0], le[-1], e.size)
        r = np.stack([np.exp(np.interp(grid, le, np.log(row))) for row in r])
        le = grid
    lr = np.log(np.maximum(r, 1e-30))
    lr_grid = np.linspace(lr[:, 0].min(), lr[:, -1].max(), n_range)
    # inverse per medium; beyond a medium's own table extrapolate log-log with its end slopes
    inv = np.empty((r.shape[0], n_range))
    for m in range(r.shape[0]):
        x, y = lr[m], le
        vals = np.interp(lr_grid, x, y)
        lo_slope = (y[1] - y[0]) / (x[1] - x[0])
        hi_slope = (y[-1] - y[-2]) / (x[-1] - x[-2])
        vals = np.where(lr_grid < x[0], y[0] + (lr_grid - x[0]) * lo_slope, vals)
        vals = np.where(lr_grid > x[-1], y[-1] + (lr_grid - x[-1]) * hi_slope, vals)
        inv[m] = np.exp(vals)
    tmfp1, tmfp2 = transport_mean_free_paths_g_cm2(np.exp(le), spec.atomic_numbers, spec.atomic_weights_g_mol,
                                                   spec.mass_fractions)
    f32 = torch.float32
    return ElectronTables(float(le[0]), float(le[1] - le[0]), torch.as_tensor(r, dtype=f32, device=device),
                          float(lr_grid[0]), float(lr_grid[1] - lr_grid[0]),
                          torch.as_tensor(inv, dtype=f32, device=device),
                          torch.as_tensor(np.asarray(z_over_a, float), dtype=f32, device=device),
                          torch.as_tensor(tmfp1, dtype=f32, device=device),
                          torch.as_tensor(tmfp2, dtype=f32, device=device), WentzelScreeningTable(device))


# --------------------------------------------------------------------------------------------- transport
@dataclass
class ElectronResult:
    escaped_energy_mev: float = 0.0
    deposited_energy_mev: float = 0.0
    steps: int = 0  # loop iterations (the longest track)
    electron_steps: int = 0  # condensed-history steps over all electrons
    path_length_mm: Any = None  # per electron, when requested


def transport_electrons(pos: Any, direction: Any, energy: Any, phantom: Any, tables: ElectronTables, edep: Any,
                        generator: Any, cut_mev: float = 0.01, range_fraction: float = 0.2,
                        voxel_fraction: float = 0.5, straggling: bool = True, scattering: bool = True,
                        max_steps: int = 100000, return_path_length: bool = False,
                        range_rejection: bool = False) -> ElectronResult:
    """Transport electrons (pos (n,3) mm, direction (n,3), energy (n,) MeV) to the cut-off or out of the grid.

    Energy is added to `edep` (flat float64 over the phantom voxels, in place). Electrons below the cut-off
    deposit their energy where they are; electrons whose hinge or end point leaves the grid are escaped.
    `range_rejection`: before each step, an electron whose residual CSDA range (in its voxel's medium, times
    RANGE_REJECTION_MARGIN) is shorter than the distance to its voxel's nearest face deposits all its energy in
    that voxel at once: it could not have left it, so the voxel dose is unchanged (bremsstrahlung is deposited
    locally anyway, see above); only where in the voxel the energy lands is lost, which no tally resolves.
    """
    import torch

    dev = energy.device
    res = ElectronResult()
    pos = pos.clone()
    direction = direction.clone()
    energy = energy.clone()
    ids = torch.arange(energy.numel(), device=dev)
    path = torch.zeros(energy.numel(), device=dev, dtype=torch.float32) if return_path_length else None
    esc = torch.zeros((), dtype=torch.float64, device=dev)
    dep = torch.zeros((), dtype=torch.float64, device=dev)
    max_step_mm = voxel_fraction * min(phantom.spacing_mm)
    steps = 0

    def deposit(vox: Any, inside: Any, e: Any) -> None:
        nonlocal esc, dep
        e = e.double()
        ein = torch.where(inside, e, torch.zeros_like(e))
        edep.index_add_(0, vox, ein)
        dep = dep + ein.sum()
        esc = esc + (e - ein).sum()

    # below-cut start: local
    low = energy < cut_mev
    if bool(low.any()):
        vox, inside = phantom.locate(pos[low])
        deposit(vox, inside, energy[low])
        keep = ~low
        pos, direction, energy, ids = pos[keep], direction[keep], energy[keep], ids[keep]
    while energy.numel() > 0 and steps < max_steps:
        steps += 1
        n = energy.numel()
        vox, inside = phantom.locate(pos)
        med = phantom.media_index[vox]
        rho = phantom.density_g_cm3[vox]
        r_g = tables.range_of(med, energy)  # g/cm2
        r_mm = 10.0 * r_g / rho
        if range_rejection:
            trapped = inside & (RANGE_REJECTION_MARGIN * r_mm < phantom.distance_to_faces_mm(pos))
            if bool(trapped.any()):
                deposit(vox[trapped], inside[trapped], energy[trapped])
                keep = ~trapped
                pos, direction, energy, ids = pos[keep], direction[keep], energy[keep], ids[keep]
                vox, med, rho, r_g, r_mm = vox[keep], med[keep], rho[keep], r_g[keep], r_mm[keep]
                n = energy.numel()
                if n == 0:
                    break
        res.electron_steps += n
        step = torch.clamp(torch.minimum(range_fraction * r_mm, torch.full_like(r_mm, max_step_mm)), min=1e-7)
        # final step: if the residual range is within one step of the cut, go to the end of the range
        r_after = torch.clamp(r_g - 0.1 * rho * step, min=0.0)
        e_mean = tables.energy_of(med, r_after)
        loss = energy - e_mean
        rnd = torch.rand((n, 3), generator=generator, device=dev, dtype=torch.float32)
        if straggling:
            gamma = 1.0 + energy / ELECTRON_MASS_MEV
            beta2 = 1.0 - 1.0 / (gamma * gamma)
            # Bohr-type variance for electrons (Bohr 1915): int W^2 dsigma over free-electron collisions up to
            # the Moller maximum transfer W_max = E/2: Omega^2 = 0.153537 (Z/A) rho s[cm] W_max / beta^2 MeV^2
            var = 0.153537 * rho * tables.z_over_a[med] * (0.1 * step) * (0.5 * energy) / beta2
            # log-normal with the CSDA mean and the Bohr variance: never negative and mean-preserving, so the
            # mean path length stays the CSDA range (a clamped Gaussian biased it by -5 % to -10 %)
            s2 = torch.log1p(var / torch.clamp(loss * loss, min=1e-20))
            normal = torch.randn(n, generator=generator, device=dev, dtype=torch.float32)
            loss = loss * torch.exp(torch.sqrt(s2) * normal - 0.5 * s2)
            loss = torch.minimum(loss, energy)
        hinge = rnd[:, 0] * step
        pos_h = pos + hinge[:, None] * direction
        vox_h, inside_h = phantom.locate(pos_h)
        deposit(vox_h, inside_h, loss)
        e_new = energy - loss
        if scattering:
            # modified Wentzel with the step's first two transport moments (see module docstring)
            lam1, lam2 = tables.tmfp_of(med, 0.5 * (energy + e_new))
            path_g = 0.1 * rho * step
            u_mix = torch.rand(n, generator=generator, device=dev, dtype=torch.float32)
            cos_t = sample_step_cos(tables.screening, path_g / lam1, path_g / lam2, u_mix, rnd[:, 1])
            phi = 2.0 * math.pi * rnd[:, 2]
            direction = rotate(direction, cos_t, phi)
        pos = pos_h + (step - hinge)[:, None] * direction
        energy = e_new
        if path is not None:
            path.index_add_(0, ids, step)
        vox_e, inside_e = phantom.locate(pos)
        gone = (~inside_h) | (~inside_e)
        stop = energy < cut_mev
        # below cut inside: deposit at the end point; escaped electrons carry their energy out
        done = gone | stop
        if bool(done.any()):
            deposit(vox_e[done], (inside_e & ~gone)[done], energy[done])
            keep = ~done
            pos, direction, energy, ids = pos[keep], direction[keep], energy[keep], ids[keep]
    if energy.numel() > 0:  # step cap (should not happen): deposit in place
        vox, inside = phantom.locate(pos)
        deposit(vox, inside, energy)
    res.escaped_energy_mev = float(esc)
    res.deposited_energy_mev = float(dep)
    res.steps = steps
    res.path_length_mm = path
    return res


# ------------------------------------------------------------------------------------ fallback data builder
# Condensed-phase elemental mean excitation energies (eV) for Bragg additivity (ICRU Report 37, table 2.11 for
# H, C, N, O, Cl in compounds; elemental values otherwise).
_I_VALUES_EV = {1: 19.2, 6: 81.0, 7: 82.0, 8: 106.0, 9: 112.0, 11: 149.0, 12: 156.0, 13: 166.0, 14: 173.0,
                15: 173.0, 16: 180.0, 17: 180.0, 18: 188.0, 19: 190.0, 20: 191.0, 26: 286.0, 29: 322.0, 30: 330.0,
                53: 491.0}


def bethe_electron_tables(media: Any, device: Any, e_min_mev: float = 1e-3, e_max_mev: float = 10.0,
                          n_energies: int = 320) -> ElectronTables:
    """Self-contained electron tables (used when montecarlo.electron_data is not available).

    S_col: Bethe formula of ICRU Report 37 with the Sternheimer-Peierls (1971) general density-effect
    parameters; I by Bragg additivity (ICRU-37); S_rad/S_col ~ Z_eff T / 800 MeV (Attix 1986, eq. 8.7);
    CSDA range R(E) = int dE / S_tot by the trapezoid rule in ln E, R(E_min) = E_min / (1.75 S(E_min)).
    """
    from VoxelDosimetryLib.montecarlo.photon_data import resolve_media

    spec = resolve_media(media)
    z = spec.atomic_numbers.astype(float)
    a = spec.atomic_weights_g_mol
    w = spec.mass_fractions
    za = w @ (z / a)
    ln_i = (w @ (z / a * np.log([_I_VALUES_EV.get(int(k), 10.0 * k) for k in spec.atomic_numbers]))) / za
    i_mev = np.exp(ln_i) * 1e-6
    z_eff = (w @ (z * z / a)) / za
    rho = np.where(np.isfinite(spec.densities_g_cm3), spec.densities_g_cm3, 1.0)
    e = np.exp(np.linspace(np.log(e_min_mev), np.log(e_max_mev), n_energies))
    mc2 = ELECTRON_MASS_MEV
    tau = e / mc2
    gamma = tau + 1.0
    beta2 = 1.0 - 1.0 / gamma ** 2
    x_log = np.log10(np.sqrt(gamma ** 2 - 1.0))
    ranges = np.empty((len(za), e.size))
    for m in range(len(za)):
        # Sternheimer & Peierls (1971) general parameters for condensed media
        hw_p = 28.816e-6 * math.sqrt(rho[m] * za[m])  # plasma energy, MeV
        cbar = 1.0 + 2.0 * math.log(i_mev[m] / hw_p)
        if i_mev[m] < 100e-6:
            x1, x0 = 2.0, (0.2 if cbar < 3.681 else 0.326 * cbar - 1.0)
        else:
            x1, x0 = 3.0, (0.2 if cbar < 5.215 else 0.326 * cbar - 1.5)
        aa = (cbar - 4.6052 * x0) / (x1 - x0) ** 3
        delta = np.where(x_log < x0, 0.0, np.where(x_log < x1, 4.6052 * x_log - cbar + aa * (x1 - x_log) ** 3,
                                                   4.6052 * x_log - cbar))
        # Bethe collision stopping power for electrons (ICRU Report 37, eq. 2.2 with F- of eq. 2.4)
        f_minus = 1.0 - beta2 + (tau ** 2 / 8.0 - (2.0 * tau + 1.0) * math.log(2.0)) / (tau + 1.0) ** 2
        s_col = 0.153537 * za[m] / beta2 * (np.log(tau ** 2 * (tau + 2.0) / (2.0 * (i_mev[m] / mc2) ** 2))
                                            + f_minus - delta)
        s_col = np.maximum(s_col, 1e-3)
        s_tot = s_col * (1.0 + z_eff[m] * e / 800.0)  # Attix: S_rad/S_col ~ Z T / 800 MeV
        integrand = e / s_tot
        cum = np.concatenate([[0.0], np.cumsum(0.5 * (integrand[1:] + integrand[:-1]) * np.diff(np.log(e)))])
        ranges[m] = e[0] / (1.75 * s_tot[0]) + cum
    return build_electron_tables(e, ranges, za, spec, device)


def electron_tables_for_media(media: Any, device: Any) -> ElectronTables:
    """ElectronTables from montecarlo.electron_data.ElectronStoppingPowers when present, else the Bethe fallback."""
    try:
        from VoxelDosimetryLib.montecarlo.electron_data import ElectronStoppingPowers  # type: ignore
    except ImportError:
        return bethe_electron_tables(media, device)
    return electron_tables_from_stopping_powers(ElectronStoppingPowers.build(media), media, device)


def electron_tables_from_stopping_powers(sp: Any, media: Any, device: Any) -> ElectronTables:
    """Adapter: ElectronStoppingPowers -> ElectronTables (CSDA range table + Z/A + transport mean free path)."""
    from VoxelDosimetryLib.montecarlo.photon_data import resolve_media

    spec = resolve_media(media)
    e = np.asarray(sp.energies_mev, dtype=float)
    r = np.asarray(sp.csda_range_g_cm2 if hasattr(sp, "csda_range_g_cm2") else sp.range_table_g_cm2, dtype=float)
    za = spec.mass_fractions @ (spec.atomic_numbers / spec.atomic_weights_g_mol)
    return build_electron_tables(e, r, za, spec, device)
