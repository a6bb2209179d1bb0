"""Photon transport, vectorised over a batch in torch (same code on CPU and CUDA).

* Tracking: Woodcock (delta) tracking (Woodcock et al. 1965, ANL-7050) with the majorant
  mu_max(E) = max over media m of (mu/rho)_m(E) x (largest density of a voxel of medium m); tables are linear in
  E between uniform ln-E nodes, so the node-wise maximum is a true majorant between nodes.
* Photoelectric: the photon energy is deposited at the interaction voxel. K/L fluorescence is neglected (tissue
  K edges < 4 keV; Ca K 4 keV in bone: its range is far below a voxel), so all of E is local.
* Compton: Klein-Nishina (Klein & Nishina 1929) sampled with Kahn's rejection technique (Kahn 1954, AECU-3259),
  followed by rejection on the incoherent scattering function S(x, Z)/Z of the medium (Hubbell et al. 1975);
  the Compton electron energy E - E' is deposited locally (valid at >= 3 mm voxels for Lu-177: a 93 keV electron
  has a 0.13 mm range, PHYSICS.md section 7.2). Doppler broadening is ignored.
* Rayleigh: x^2 sampled from F^2(x) by inverse CDF of the tabulated cumulative int F^2 d(x^2), accepted with the
  Thomson factor (1 + cos^2 theta)/2 (the standard form-factor method, e.g. Salvat, PENELOPE-2008 manual s. 2.1).
* Optional kerma scoring (``kerma=True``): a collision-type kerma estimator on the Woodcock points. Every
  tentative collision (real or virtual; a Poisson process of rate mu_max along the track) scores
  E mu_en(x)/mu_max, whose expectation per unit length is E mu_en(x): the same quantity GATE's TLE actor scores
  by track length. Real interactions then deposit nothing locally (kerma replaces them). Lower variance for the
  photon dose far from the source; energy is conserved only in expectation (mu_en vs the analog model).
* Photons leaving the grid are escaped; their energy is tallied for the energy balance. Photons below the
  cut-off deposit their energy locally.
Units: energy MeV, lengths mm, mu/rho cm^2/g, density g/cm3 (mu [1/mm] = 0.1 rho mu/rho).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

ELECTRON_MASS_MEV = 0.51099895  # CODATA 2018
HC_KEV_ANGSTROM = 12.398419843320026  # CODATA 2018


@dataclass
class PhotonTables:
    """Device tables for photon transport (M media, N energies on a uniform ln-E grid, Nx momentum transfers).

    mu_cm2_g (M, N, 3): photoelectric, Compton, Rayleigh mass coefficients; mu_en_cm2_g (M, N);
    sf_ratio (M, Nx): S(x)/Z per atom of the mixture on the ln-x grid; ff2_cum (M, Nx): int_0^{x^2} F^2 d(x^2).
    sf_ratio/ff2_cum may be None (then no S(x) rejection and Thomson-only Rayleigh angles).
    """

    log_e0: float
    dlog_e: float
    mu_cm2_g: Any
    mu_en_cm2_g: Any
    log_x0: float = 0.0
    dlog_x: float = 1.0
    x_grid: Any = None
    sf_ratio: Any = None
    ff2_cum: Any = None
    e_min_mev: float = field(init=False, default=0.0)
    e_max_mev: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        n = int(self.mu_cm2_g.shape[1])
        self.e_min_mev = math.exp(self.log_e0)
        self.e_max_mev = math.exp(self.log_e0 + (n - 1) * self.dlog_e)

    @property
    def n_media(self) -> int:
        return int(self.mu_cm2_g.shape[0])

    def energy_index(self, energy_mev: Any) -> tuple[Any, Any]:
        """(lower node index, linear weight of the upper node) of energies; clamped to the grid."""
        import torch

        n = self.mu_cm2_g.shape[1]
        u = (torch.log(torch.clamp(energy_mev, min=self.e_min_mev)) - self.log_e0) / self.dlog_e
        i = torch.clamp(torch.floor(u).long(), 0, n - 2)
        f = torch.clamp(u - i.to(u.dtype), 0.0, 1.0)
        return i, f

    def coefficients(self, medium: Any, i: Any, f: Any) -> Any:
        """(n, 3) photo/Compton/Rayleigh mu/rho (cm2/g) of media `medium` at interpolation (i, f)."""
        lo = self.mu_cm2_g[medium, i]
        hi = self.mu_cm2_g[medium, i + 1]
        return lo + f[:, None] * (hi - lo)

    def mu_en(self, medium: Any, i: Any, f: Any) -> Any:
        lo = self.mu_en_cm2_g[medium, i]
        return lo + f * (self.mu_en_cm2_g[medium, i + 1] - lo)

    def majorant_per_mm(self, max_density_g_cm3: Any) -> Any:
        """(N,) majorant attenuation coefficient (1/mm) for the given per-medium maximum densities."""
        total = self.mu_cm2_g.sum(dim=2)  # (M, N)
        return (0.1 * total * max_density_g_cm3[:, None]).max(dim=0).values

    def to(self, device: Any) -> "PhotonTables":
        def mv(t: Any) -> Any:
            return None if t is None else t.to(device)

        return PhotonTables(self.log_e0, self.dlog_e, mv(self.mu_cm2_g), mv(self.mu_en_cm2_g), self.log_x0,
                            self.dlog_x, mv(self.x_grid), mv(self.sf_ratio), mv(self.ff2_cum))


def photon_tables_from_cross_sections(xs: Any, device: Any) -> PhotonTables:
    """Adapter: VoxelDosimetryLib.montecarlo.photon_data.PhotonCrossSections -> PhotonTables on `device`."""
    import torch

    def table(q: str) -> np.ndarray:
        for name in ("table", "get"):
            fn = getattr(xs, name, None)
            if callable(fn):
                try:
                    return np.asarray(fn(q), dtype=float)
                except Exception:  # noqa: BLE001 - fall back to the stored arrays
                    pass
        return np.asarray(xs._tables[q], dtype=float)  # noqa: SLF001

    e = np.asarray(xs.energies_mev, dtype=float)
    dl = float(np.log(e[1] / e[0]))
    mu = np.stack([table("photo"), table("compton"), table("rayleigh")], axis=2)
    x = np.asarray(xs.x_grid_inv_angstrom, dtype=float)
    z_atom = getattr(xs, "z_per_atom", None)
    sf = np.asarray(xs.sf_compton_per_atom, dtype=float)
    if z_atom is None:
        z_atom = sf[:, -1]
    sf_ratio = np.clip(sf / np.asarray(z_atom, dtype=float).reshape(-1, 1), 0.0, 1.0)
    f32 = torch.float32
    return PhotonTables(
        log_e0=float(np.log(e[0])), dlog_e=dl,
        mu_cm2_g=torch.as_tensor(mu, dtype=f32, device=device),
        mu_en_cm2_g=torch.as_tensor(table("mu_en"), dtype=f32, device=device),
        log_x0=float(np.log(x[0])), dlog_x=float(np.log(x[1] / x[0])),
        x_grid=torch.as_tensor(x, dtype=torch.float64, device=device),
        sf_ratio=torch.as_tensor(sf_ratio, dtype=f32, device=device),
        ff2_cum=torch.as_tensor(np.asarray(xs.ff2_cumulative_per_atom, dtype=float), dtype=torch.float64,
                                device=device))


# --------------------------------------------------------------------------------------------- kinematics
def rotate(direction: Any, cos_t: Any, phi: Any) -> Any:
    """Rotate unit vectors (n, 3) by polar angle acos(cos_t) and azimuth phi about their own axis."""
    import torch

    u, v, w = direction[:, 0], direction[:, 1], direction[:, 2]
    sin_t = torch.sqrt(torch.clamp(1.0 - cos_t * cos_t, min=0.0))
    cp, sp = torch.cos(phi), torch.sin(phi)
    rho2 = torch.clamp(1.0 - w * w, min=0.0)
    rho = torch.sqrt(rho2)
    polar = rho < 1e-6
    safe = torch.where(polar, torch.ones_like(rho), rho)
    nu = u * cos_t + sin_t * (u * w * cp - v * sp) / safe
    nv = v * cos_t + sin_t * (v * w * cp + u * sp) / safe
    nw = w * cos_t - sin_t * rho * cp
    sign = torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))
    nu = torch.where(polar, sin_t * cp, nu)
    nv = torch.where(polar, sin_t * sp, nv)
    nw = torch.where(polar, sign * cos_t, nw)
    out = torch.stack([nu, nv, nw], dim=1)
    return out / torch.linalg.vector_norm(out, dim=1, keepdim=True)


def _interp_row(table: Any, rows: Any, log_x0: float, dlog_x: float, x: Any) -> Any:
    """Linear interpolation in ln x of table[rows] at x (clamped to the grid ends)."""
    import torch

    n = table.shape[1]
    u = (torch.log(torch.clamp(x, min=1e-30)) - log_x0) / dlog_x
    i = torch.clamp(torch.floor(u).long(), 0, n - 2)
    f = torch.clamp(u - i.to(u.dtype), 0.0, 1.0).to(table.dtype)
    lo = table[rows, i]
    return lo + f * (table[rows, i + 1] - lo)


def sample_compton(energy_mev: Any, medium: Any, tables: Optional[PhotonTables], generator: Any,
                   max_rounds: int = 1000) -> tuple[Any, Any]:
    """(E'/E, cos theta) for Compton scattering: Klein-Nishina by Kahn's method (Kahn 1954), then acceptance
    with probability S(x, Z)/Z (Hubbell et al. 1975) when tables with S are given."""
    import torch

    n = energy_mev.numel()
    dev = energy_mev.device
    k = energy_mev / ELECTRON_MASS_MEV
    eta_out = torch.ones(n, device=dev, dtype=energy_mev.dtype)
    pending = torch.arange(n, device=dev)
    use_sf = tables is not None and tables.sf_ratio is not None
    for _ in range(max_rounds):
        if pending.numel() == 0:
            break
        kk = k[pending]
        r = torch.rand((pending.numel(), 4), generator=generator, device=dev, dtype=energy_mev.dtype)
        two_k = 2.0 * kk
        branch1 = r[:, 0] <= (1.0 + two_k) / (9.0 + two_k)
        # Kahn 1954: eta = E/E' in [1, 1 + 2k]; branch 1 eta = 1 + 2k r, branch 2 eta = (1 + 2k)/(1 + 2k r)
        eta = torch.where(branch1, 1.0 + two_k * r[:, 1], (1.0 + two_k) / (1.0 + two_k * r[:, 1]))
        cos_t = 1.0 - (eta - 1.0) / kk
        accept = torch.where(branch1, r[:, 2] <= 4.0 * (1.0 / eta - 1.0 / (eta * eta)),
                             r[:, 2] <= 0.5 * (cos_t * cos_t + 1.0 / eta))
        if use_sf:
            # x = sin(theta/2) / lambda [1/Angstrom]
            x = (energy_mev[pending] * 1e3 / HC_KEV_ANGSTROM) * torch.sqrt(torch.clamp(0.5 * (1.0 - cos_t), min=0.0))
            s = _interp_row(tables.sf_ratio, medium[pending], tables.log_x0, tables.dlog_x, x)
            accept = accept & (r[:, 3] <= s.to(r.dtype))
        eta_out[pending[accept]] = eta[accept]
        pending = pending[~accept]
    ratio = 1.0 / eta_out
    cos_out = torch.clamp(1.0 - (eta_out - 1.0) / k, -1.0, 1.0)
    return ratio, cos_out


def sample_rayleigh(energy_mev: Any, medium: Any, tables: Optional[PhotonTables], generator: Any,
                    max_rounds: int = 1000) -> Any:
    """cos theta for Rayleigh scattering: x^2 from F^2 (inverse CDF of the cumulative table), accepted with
    (1 + cos^2)/2 (Thomson). Without form-factor tables: Thomson distribution only (documented fallback)."""
    import torch

    n = energy_mev.numel()
    dev = energy_mev.device
    cos_out = torch.ones(n, device=dev, dtype=energy_mev.dtype)
    pending = torch.arange(n, device=dev)
    have_ff = tables is not None and tables.ff2_cum is not None
    for _ in range(max_rounds):
        if pending.numel() == 0:
            break
        m = pending.numel()
        r = torch.rand((m, 2), generator=generator, device=dev, dtype=torch.float64)
        if have_ff:
            xmax = energy_mev[pending].double() * 1e3 / HC_KEV_ANGSTROM  # x at theta = pi
            rows = tables.ff2_cum[medium[pending]]  # (m, Nx)
            cmax = _interp_row(tables.ff2_cum, medium[pending], tables.log_x0, tables.dlog_x, xmax)
            target = r[:, 0] * cmax
            j = torch.clamp(torch.searchsorted(rows, target[:, None]).reshape(-1), 1, rows.shape[1] - 1)
            c0 = rows.gather(1, (j - 1)[:, None]).reshape(-1)
            c1 = rows.gather(1, j[:, None]).reshape(-1)
            xg = tables.x_grid
            x0sq, x1sq = xg[j - 1] ** 2, xg[j] ** 2
            t = torch.clamp((target - c0) / torch.clamp(c1 - c0, min=1e-300), 0.0, 1.0)
            below = target < rows[:, 0]  # below the first node: F^2 ~ constant -> x^2 uniform
            x2 = torch.where(below, target / torch.clamp(rows[:, 0], min=1e-300) * xg[0] ** 2,
                             x0sq + t * (x1sq - x0sq))
            cos_t = torch.clamp(1.0 - 2.0 * x2 / (xmax * xmax), -1.0, 1.0)
        else:
            cos_t = 2.0 * r[:, 0] - 1.0
        accept = r[:, 1] <= 0.5 * (1.0 + cos_t * cos_t)
        cos_out[pending[accept]] = cos_t[accept].to(cos_out.dtype)
        pending = pending[~accept]
    return cos_out


# -------------------------------------------------------------------------------------------- transport
@dataclass
class PhotonResult:
    escaped_energy_mev: float = 0.0
    deposited_energy_mev: float = 0.0  # analog deposits (photo, Compton electrons, below-cut), or kerma score
    interactions: int = 0
    iterations: int = 0
    escaped: Optional[dict] = None  # states of escaped photons when requested


def transport_photons(pos: Any, direction: Any, energy: Any, phantom: Any, tables: PhotonTables, edep: Any,
                      generator: Any, cut_mev: float = 0.01, kerma: bool = False, majorant: Any = None,
                      max_iterations: int = 100000, return_escaped: bool = False) -> PhotonResult:
    """Transport photons (pos (n,3) mm, direction (n,3), energy (n,) MeV) until absorbed, below cut or escaped.

    Energy is added to `edep` (flat float64 tensor over the phantom voxels, modified in place).
    `majorant` (N,) 1/mm may be passed to avoid recomputing it per batch.
    """
    import torch

    dev = energy.device
    res = PhotonResult()
    if majorant is None:
        majorant = photon_majorant(phantom, tables)
    pos = pos.clone()
    direction = direction.clone()
    energy = energy.clone()
    escaped_sum = torch.zeros((), dtype=torch.float64, device=dev)
    dep_sum = torch.zeros((), dtype=torch.float64, device=dev)
    esc_states = [] if return_escaped else None
    # photons starting below the cut: local deposit
    low = energy < cut_mev
    if bool(low.any()):
        vox, inside = phantom.locate(pos[low])
        e = energy[low].double()
        edep.index_add_(0, vox[inside], e[inside])
        dep_sum += e[inside].sum()
        escaped_sum += e[~inside].sum()
        keep = ~low
        pos, direction, energy = pos[keep], direction[keep], energy[keep]
    n_inter = 0
    it = 0
    while energy.numel() > 0 and it < max_iterations:
        it += 1
        n = energy.numel()
        i, f = tables.energy_index(energy)
        mu_max = majorant[i] + f * (majorant[i + 1] - majorant[i])
        r = torch.rand((n, 3), generator=generator, device=dev, dtype=torch.float32)
        step = -torch.log(torch.clamp(r[:, 0], min=1e-12)) / mu_max
        pos = pos + step[:, None] * direction
        vox, inside = phantom.locate(pos)
        alive = inside.clone()
        if not bool(inside.all()):
            out = ~inside
            escaped_sum += energy[out].double().sum()
            if esc_states is not None:
                esc_states.append((pos[out], direction[out], energy[out]))
        med = phantom.media_index[vox]
        rho = phantom.density_g_cm3[vox]
        coef = tables.coefficients(med, i, f)  # (n, 3) cm2/g
        mu_tot = coef.sum(dim=1)
        mu_real = 0.1 * rho * mu_tot
        if kerma:
            score = energy * (0.1 * rho * tables.mu_en(med, i, f)) / mu_max
            score = torch.where(inside, score, torch.zeros_like(score)).double()
            edep.index_add_(0, vox, score)
            dep_sum += score.sum()
        real = inside & (r[:, 1] * mu_max < mu_real)
        if bool(real.any()):
            ridx = torch.nonzero(real).reshape(-1)
            n_inter += int(ridx.numel())
            c = coef[ridx]
            pick = r[ridx, 2] * mu_tot[ridx]
            is_photo = pick < c[:, 0]
            is_compt = (~is_photo) & (pick < c[:, 0] + c[:, 1])
            is_rayl = ~(is_photo | is_compt)
            # photoelectric: all energy local, photon absorbed
            if bool(is_photo.any()):
                p = ridx[is_photo]
                if not kerma:
                    e = energy[p].double()
                    edep.index_add_(0, vox[p], e)
                    dep_sum += e.sum()
                alive[p] = False
            if bool(is_compt.any()):
                p = ridx[is_compt]
                ratio, cos_t = sample_compton(energy[p], med[p], tables, generator)
                e_new = energy[p] * ratio
                if not kerma:
                    e = (energy[p] - e_new).double()
                    edep.index_add_(0, vox[p], e)
                    dep_sum += e.sum()
                phi = 2.0 * math.pi * torch.rand(p.numel(), generator=generator, device=dev)
                direction[p] = rotate(direction[p], cos_t, phi)
                energy[p] = e_new
            if bool(is_rayl.any()):
                p = ridx[is_rayl]
                cos_t = sample_rayleigh(energy[p], med[p], tables, generator).to(energy.dtype)
                phi = 2.0 * math.pi * torch.rand(p.numel(), generator=generator, device=dev)
                direction[p] = rotate(direction[p], cos_t, phi)
            low = alive & (energy < cut_mev)
            if bool(low.any()):
                e = energy[low].double()
                edep.index_add_(0, vox[low], e)
                dep_sum += e.sum()
                alive = alive & ~low
        if not bool(alive.all()):
            pos, direction, energy = pos[alive], direction[alive], energy[alive]
    if energy.numel() > 0:  # iteration cap reached (should not happen): deposit in place, counted
        vox, inside = phantom.locate(pos)
        e = energy.double()
        edep.index_add_(0, vox[inside], e[inside])
        dep_sum += e[inside].sum()
        escaped_sum += e[~inside].sum()
    res.escaped_energy_mev = float(escaped_sum)
    res.deposited_energy_mev = float(dep_sum)
    res.interactions = n_inter
    res.iterations = it
    if esc_states is not None:
        if esc_states:
            res.escaped = {"pos": torch.cat([s[0] for s in esc_states]), "dir": torch.cat([s[1] for s in esc_states]),
                           "energy": torch.cat([s[2] for s in esc_states])}
        else:
            z = torch.zeros((0, 3), device=dev)
            res.escaped = {"pos": z, "dir": z, "energy": torch.zeros(0, device=dev)}
    return res


def photon_majorant(phantom: Any, tables: PhotonTables) -> Any:
    """(N,) majorant (1/mm) over the phantom: per medium its largest voxel density."""
    import torch

    m = phantom.media_index
    rho = phantom.density_g_cm3
    max_rho = torch.zeros(tables.n_media, dtype=rho.dtype, device=rho.device)
    max_rho = max_rho.scatter_reduce(0, m, rho, reduce="amax", include_self=True)
    return tables.majorant_per_mm(max_rho) * (1.0 + 1e-5)
