"""Decay sampling for voxelised internal emitters (vectorised in torch, same code on CPU and CUDA).

Per batch of N decays:
  * decay voxels are drawn with probability proportional to the per-voxel weight (activity or TIA in each voxel)
    by inverse CDF (torch.searchsorted on a float64 cumulative sum over the non-zero voxels only); the position is
    uniform inside the voxel; directions are isotropic.
  * beta particles: floor(Y) + Bernoulli(Y - floor(Y)) per decay, with Y the total beta yield (1 for Lu-177);
    energies by exact inversion of the nuclide's piecewise-linear N(E) (the same density BetaSpectrum.sample uses),
    implemented as a torch table so it runs on the device.
  * discrete lines (IE, Auger, gamma, X): the number of emissions of each line in the batch is
    Binomial(N, y) (+ N * floor(y) when y > 1) and each emission is attached to a decay drawn uniformly from the
    batch. The expected number per decay is exactly y, so the emitted energy per decay averages to the ICRP-107
    budget; the only simplification is that emissions of one line in one decay are not mutually exclusive
    (irrelevant for the batch-method uncertainty and for every mean quantity).
  * particles below the cut-off energy (default 10 keV: Auger electrons, L X-rays) deposit their energy in the
    decay voxel (range < 3 um for electrons; mean free path of a 10 keV photon in water 2 mm - stated error).
Energies in MeV, positions in mm of the transport frame (see geometry.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.physics.nuclides import Nuclide
from VoxelDosimetryLib.volume.source_weights import checked_source_weights


@dataclass
class Particles:
    """A batch of particles: pos (n, 3) mm, dir (n, 3) unit, energy (n,) MeV, voxel (n,) flat index of birth."""

    pos: Any
    dir: Any
    energy: Any
    voxel: Any

    def __len__(self) -> int:
        return int(self.energy.shape[0])


@dataclass
class Emissions:
    """What one batch of decays emits: transported electrons and photons plus local (below-cut) deposits."""

    n_decays: int
    electrons: Particles
    photons: Particles
    local_voxel: Any  # flat voxel index of each below-cut particle
    local_energy: Any  # its energy (MeV)
    local_is_photon: Any  # True for below-cut photons (X-rays), False for electrons
    emitted_energy_mev: float  # total energy of every particle emitted (transported + local)
    emitted_electron_mev: float
    emitted_photon_mev: float


def isotropic_directions(n: int, generator: Any, device: Any, dtype: Any = None) -> Any:
    """n unit vectors uniform on the sphere (cos theta uniform in [-1, 1], phi uniform)."""
    import torch

    dtype = dtype or torch.float32
    u = torch.rand((n, 2), generator=generator, device=device, dtype=dtype)
    cos_t = 2.0 * u[:, 0] - 1.0
    sin_t = torch.sqrt(torch.clamp(1.0 - cos_t * cos_t, min=0.0))
    phi = 2.0 * math.pi * u[:, 1]
    return torch.stack([sin_t * torch.cos(phi), sin_t * torch.sin(phi), cos_t], dim=1)


class BetaSampler:
    """Inverse-CDF sampling of a piecewise-linear beta density N(E) on the device.

    Within a segment [x0, x1] with densities f0, f1 the CDF is quadratic in t = E - x0; the root is
    t = 2c / (f0 + sqrt(f0^2 + 2 (f1 - f0) c / h)) (cancellation-free form).
    """

    def __init__(self, energies_mev: np.ndarray, density_per_mev: np.ndarray, device: Any) -> None:
        import torch

        x = np.asarray(energies_mev, dtype=np.float64)
        f = np.asarray(density_per_mev, dtype=np.float64)
        cum = np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(x))])
        if cum[-1] <= 0:
            raise InputFormatError("The beta spectrum integrates to zero.")
        self.mean_energy_mev = float(np.sum(0.5 * np.diff(x) * (f[1:] * x[1:] + f[:-1] * x[:-1])
                                            + np.diff(x) ** 2 * (f[1:] - f[:-1]) / 6.0) / cum[-1])
        cum = cum / cum[-1]
        self._norm = float(np.sum(0.5 * (f[1:] + f[:-1]) * np.diff(x)))
        self.x = torch.tensor(x, device=device)
        self.f = torch.tensor(f, device=device)
        self.cum = torch.tensor(cum, device=device)
        self.device = device

    @classmethod
    def from_nuclide(cls, nuclide: Nuclide, device: Any) -> "BetaSampler | None":
        spec = nuclide.beta_spectrum
        if spec is None:
            return None
        return cls(spec.grid_energies_mev, spec.grid_density_per_mev, device)

    def sample(self, n: int, generator: Any) -> Any:
        import torch

        u = torch.rand(n, generator=generator, device=self.device, dtype=torch.float64)
        i = torch.clamp(torch.searchsorted(self.cum, u, right=True) - 1, 0, self.x.numel() - 2)
        x0, h = self.x[i], self.x[i + 1] - self.x[i]
        f0 = self.f[i] / self._norm
        f1 = self.f[i + 1] / self._norm
        c = u - self.cum[i]
        disc = torch.clamp(f0 * f0 + 2.0 * (f1 - f0) / h * c, min=0.0)
        denom = f0 + torch.sqrt(disc)
        t = torch.where(denom > 0, 2.0 * c / torch.where(denom > 0, denom, torch.ones_like(denom)),
                        torch.zeros_like(denom))
        return (x0 + torch.minimum(torch.clamp(t, min=0.0), h)).to(torch.float32)


class DecaySource:
    """Voxelised source of one nuclide. `weights` (z, y, x): activity or TIA per voxel (any non-negative scale).

    The input array is copied, never modified.
    """

    def __init__(self, weights: np.ndarray, spacing_mm: tuple[float, float, float], nuclide: Nuclide, device: Any,
                 cut_mev: float = 0.01) -> None:
        import torch

        w = checked_source_weights(weights)
        if w.ndim != 3:
            raise InputFormatError(f"The source needs a 3-D (z, y, x) array; got shape {w.shape}.")
        total = float(w.sum())
        if not (cut_mev >= 0 and math.isfinite(cut_mev)):
            raise InputFormatError(f"The cut-off energy must be >= 0 MeV; got {cut_mev}.")
        self.shape_zyx = tuple(int(s) for s in w.shape)
        self.spacing_mm = tuple(float(s) for s in spacing_mm)
        self.nuclide = nuclide
        self.device = torch.device(device) if not isinstance(device, torch.device) else device
        self.cut_mev = float(cut_mev)
        self.total_weight = total
        flat = w.reshape(-1)
        nz = np.flatnonzero(flat > 0)
        self.voxels = torch.as_tensor(nz, dtype=torch.long, device=self.device)
        cdf = np.cumsum(flat[nz])
        self.cdf = torch.as_tensor(cdf / cdf[-1], dtype=torch.float64, device=self.device)
        self.beta = BetaSampler.from_nuclide(nuclide, self.device)
        self.beta_yield = float(nuclide.betas.total_yield()) if self.beta is not None else 0.0
        e_lines = nuclide.electron_lines()
        p_lines = nuclide.photon_lines()
        energies = np.concatenate([e_lines.energy_mev, p_lines.energy_mev])
        yields = np.concatenate([e_lines.yield_per_decay, p_lines.yield_per_decay])
        keep = yields > 0
        self.line_energy = torch.as_tensor(energies[keep], dtype=torch.float32, device=self.device)
        self.line_yield = yields[keep]
        self.line_is_photon = torch.as_tensor(np.concatenate([np.zeros(len(e_lines), bool),
                                                              np.ones(len(p_lines), bool)])[keep], device=self.device)
        self._yield_int = torch.as_tensor(np.floor(self.line_yield), dtype=torch.float32, device=self.device)
        self._yield_frac = torch.as_tensor(self.line_yield - np.floor(self.line_yield), dtype=torch.float32,
                                           device=self.device)

    # ---------------------------------------------------------------------------------------------------
    def expected_energy_per_decay_mev(self) -> dict[str, float]:
        """Mean emitted energy per decay implied by the sampling model (beta spectrum mean x beta yield + lines)."""
        e = self.line_energy.double().cpu().numpy()
        is_ph = self.line_is_photon.cpu().numpy()
        beta = self.beta_yield * (self.beta.mean_energy_mev if self.beta is not None else 0.0)
        electrons = beta + float(np.dot(e[~is_ph], self.line_yield[~is_ph]))
        photons = float(np.dot(e[is_ph], self.line_yield[is_ph]))
        return {"beta": beta, "electrons": electrons, "photons": photons, "total": electrons + photons}

    def sample_decay_voxels(self, n: int, generator: Any) -> Any:
        import torch

        u = torch.rand(n, generator=generator, device=self.device, dtype=torch.float64)
        k = torch.clamp(torch.searchsorted(self.cdf, u, right=True), max=self.cdf.numel() - 1)
        return self.voxels[k]

    def voxel_positions(self, voxel: Any, generator: Any) -> Any:
        """Uniform random positions (n, 3) mm inside the given flat voxels."""
        import torch

        nz, ny, nx = self.shape_zyx
        ix = voxel % nx
        iy = (voxel // nx) % ny
        iz = voxel // (nx * ny)
        idx = torch.stack([ix, iy, iz], dim=1).to(torch.float32)
        u = torch.rand((voxel.numel(), 3), generator=generator, device=self.device, dtype=torch.float32)
        # keep u strictly below 1 so a position never lands on the far face (float32 round-off)
        u = torch.clamp(u, max=1.0 - 1e-6)
        return (idx + u) * torch.tensor(self.spacing_mm, dtype=torch.float32, device=self.device)

    def sample(self, n_decays: int, generator: Any) -> Emissions:
        """Emissions of `n_decays` decays."""
        import torch

        dev = self.device
        n = int(n_decays)
        decay_voxel = self.sample_decay_voxels(n, generator)
        parts_e, parts_decay, parts_photon = [], [], []
        if self.beta is not None and self.beta_yield > 0:
            whole = int(math.floor(self.beta_yield))
            frac = self.beta_yield - whole
            ids = [torch.arange(n, device=dev)] * whole
            if frac > 0:
                ids.append(torch.nonzero(torch.rand(n, generator=generator, device=dev) < frac).reshape(-1))
            ids_t = torch.cat(ids) if ids else torch.zeros(0, dtype=torch.long, device=dev)
            parts_decay.append(ids_t)
            parts_e.append(self.beta.sample(ids_t.numel(), generator))
            parts_photon.append(torch.zeros(ids_t.numel(), dtype=torch.bool, device=dev))
        if self.line_energy.numel():
            counts = torch.binomial(torch.full_like(self._yield_frac, float(n)), self._yield_frac, generator=generator)
            counts = (counts + self._yield_int * n).long()
            total = int(counts.sum())
            line_of = torch.repeat_interleave(torch.arange(counts.numel(), device=dev), counts)
            parts_decay.append(torch.randint(0, n, (total,), generator=generator, device=dev))
            parts_e.append(self.line_energy[line_of])
            parts_photon.append(self.line_is_photon[line_of])
        energy = torch.cat(parts_e) if parts_e else torch.zeros(0, device=dev)
        decay = torch.cat(parts_decay) if parts_decay else torch.zeros(0, dtype=torch.long, device=dev)
        photon = torch.cat(parts_photon) if parts_photon else torch.zeros(0, dtype=torch.bool, device=dev)
        local = energy < self.cut_mev
        e_sum = float(energy[~photon].double().sum())
        p_sum = float(energy[photon].double().sum())
        tr_e, tr_p = (~local) & (~photon), (~local) & photon

        def take(mask: Any) -> Particles:
            vox = decay_voxel[decay[mask]]
            return Particles(self.voxel_positions(vox, generator), isotropic_directions(vox.numel(), generator, dev),
                             energy[mask], vox)

        return Emissions(n_decays=n, electrons=take(tr_e), photons=take(tr_p), local_voxel=decay_voxel[decay[local]],
                         local_energy=energy[local], local_is_photon=photon[local], emitted_energy_mev=e_sum + p_sum,
                         emitted_electron_mev=e_sum, emitted_photon_mev=p_sum)
