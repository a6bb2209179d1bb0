"""Electron multiple elastic scattering: transport mean free paths and the modified Wentzel (MW) step distribution.

Per condensed step of length s the exact first two moments of the angular distribution are known from the
transport mean free paths (Goudsmit & Saunderson 1940; Lewis 1950): <P_l(mu)> = exp(-s/lambda_l). The deflection
is sampled from the modified Wentzel model of Fernandez-Varea, Mayol, Baro & Salvat (1993, NIM B 73:447): with
probability B no deflection, otherwise the screened-Rutherford shape p(mu) = 2A(1+A)/(1 - mu + 2A)^2; A follows
from the ratio of the two moments and B from the first one. Where that gives B < 0 (long steps), A follows from
the first moment and, with probability B, the step deflects by exactly the mean 1 - mu = <1 - mu>, B set by the
second moment (a variant of the model's second case). Both moments are exact in both cases. This keeps the angular spread right for any step length and has the single-scattering tail
that makes backscatter.

Transport mean free paths come from the screened Rutherford cross-section with Moliere's screening parameter
(Moliere 1947; Berger 1963, Methods Comput. Phys. 1:135), per atom
  sigma_1 = 2 pi r_e^2 Z(Z+1) (m c^2)^2 / (p c beta)^2 [ln(1 + 1/eta) - 1/(1 + eta)],
  sigma_2 = sigma_1 [3 - 3/2 R(eta)],  R = int x^2 / int x over x = 1 - mu of the Wentzel shape,
  eta = 1/4 (hbar c / (p c a_TF))^2 [1.13 + 3.76 (alpha Z / beta)^2],  a_TF = 0.88534 a_0 Z^(-1/3);
the Z(Z+1) term adds scattering on atomic electrons. Units: MeV, cm, g/cm2.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from VoxelDosimetryLib.montecarlo.uniform_grid import loglog_uniform

ELECTRON_MASS_MEV = 0.51099895  # CODATA 2018
CLASSICAL_ELECTRON_RADIUS_CM = 2.8179403262e-13  # CODATA 2018
BOHR_RADIUS_CM = 5.29177210903e-9  # CODATA 2018
HBAR_C_MEV_CM = 1.973269804e-11  # CODATA 2018
FINE_STRUCTURE = 7.2973525693e-3  # CODATA 2018
AVOGADRO = 6.02214076e23


def transport_mean_free_paths_g_cm2(energies_mev: Any, atomic_numbers: Sequence[int],
                                    atomic_weights_g_mol: Sequence[float], mass_fractions: Any) -> tuple:
    """First and second transport mean free paths (lambda_1, lambda_2) in g/cm2, each (M media, N energies).

    `mass_fractions` is (M, K) over the K elements of `atomic_numbers` / `atomic_weights_g_mol`.
    """
    e = np.asarray(energies_mev, dtype=float)[None, :]
    z = np.asarray(atomic_numbers, dtype=float)[:, None]
    a = np.asarray(atomic_weights_g_mol, dtype=float)[:, None]
    w = np.atleast_2d(np.asarray(mass_fractions, dtype=float))
    pc2 = e * (e + 2.0 * ELECTRON_MASS_MEV)  # (p c)^2, MeV^2
    beta2 = pc2 / (e + ELECTRON_MASS_MEV) ** 2
    a_tf = 0.88534 * BOHR_RADIUS_CM * z ** (-1.0 / 3.0)
    eta = 0.25 * HBAR_C_MEV_CM ** 2 / (pc2 * a_tf ** 2) * (1.13 + 3.76 * (FINE_STRUCTURE * z) ** 2 / beta2)
    sigma1 = (2.0 * np.pi * CLASSICAL_ELECTRON_RADIUS_CM ** 2 * z * (z + 1.0) * ELECTRON_MASS_MEV ** 2
              / (pc2 * beta2) * (np.log1p(1.0 / eta) - 1.0 / (1.0 + eta)))  # (K, N) cm2 per atom
    sigma2 = sigma1 * (3.0 - 1.5 * wentzel_mean_x2(eta) / wentzel_mean_one_minus_mu(eta))
    per_gram = AVOGADRO * w / a.T  # (M, K) atoms per gram
    return 1.0 / (per_gram @ sigma1), 1.0 / (per_gram @ sigma2)


def _log1p(x: Any) -> Any:
    """log(1 + x) for numpy arrays and torch tensors alike."""
    if type(x).__module__.startswith("torch"):
        return x.log1p()
    return np.log1p(x)


def _as_values(screening: Any) -> Any:
    return screening if type(screening).__module__.startswith("torch") else np.asarray(screening, dtype=float)


def wentzel_mean_one_minus_mu(screening: Any) -> Any:
    """<1 - mu> of p(mu) ~ 1/(1 - mu + 2A)^2 on [-1, 1]: 2A[(1 + A) ln(1 + 1/A) - 1] (numpy or torch)."""
    a = _as_values(screening)
    return 2.0 * a * ((1.0 + a) * _log1p(1.0 / a) - 1.0)


def wentzel_mean_x2(screening: Any) -> Any:
    """<(1 - mu)^2> of the Wentzel shape: 2A(1 + A)[2 - 4A ln(1 + 1/A) + 2A/(1 + A)] (numpy or torch)."""
    a = _as_values(screening)
    return 2.0 * a * (1.0 + a) * (2.0 - 4.0 * a * _log1p(1.0 / a) + 2.0 * a / (1.0 + a))


class _UniformInverse:
    """A tabulated against a uniform grid of ln y for a monotone y(A), looked up by log-log interpolation."""

    def __init__(self, ln_a: np.ndarray, y: np.ndarray, y_min: float, y_max: float, device: Any, n: int) -> None:
        import torch

        grid = np.linspace(np.log(y_min), np.log(y_max), n)
        self.log_y0, self.dlog_y, self.y_min, self.y_max = float(grid[0]), float(grid[1] - grid[0]), y_min, y_max
        a = np.exp(np.interp(grid, np.log(y), ln_a))[None, :]
        self.a = torch.as_tensor(a, dtype=torch.float32, device=device)

    def __call__(self, y: Any) -> Any:
        import torch

        log_y = torch.log(torch.clamp(y, self.y_min, self.y_max))
        return loglog_uniform(self.a, torch.zeros_like(log_y, dtype=torch.long), log_y, self.log_y0, self.dlog_y)


class WentzelScreeningTable:
    """Screening A of the Wentzel shape from its mean <1 - mu>, or from the moment ratio <(1-mu)^2>/<1-mu>."""

    def __init__(self, device: Any, n: int = 4096) -> None:
        ln_a = np.linspace(np.log(1e-14), np.log(1e4), 40000)
        a = np.exp(ln_a)
        w1 = wentzel_mean_one_minus_mu(a)
        self.from_mean = _UniformInverse(ln_a, w1, 1e-12, 0.999, device, n)
        self.from_ratio = _UniformInverse(ln_a, wentzel_mean_x2(a) / w1, 1e-2, 1.33, device, n)


def sample_step_cos(tables: WentzelScreeningTable, step_over_lambda1: Any, step_over_lambda2: Any,
                    u_mix: Any, u_angle: Any) -> Any:
    """cos(theta) of one condensed step from the modified Wentzel model (module docstring)."""
    import torch

    g1 = -torch.expm1(-step_over_lambda1)  # <1 - mu>
    g2 = -torch.expm1(-step_over_lambda2)  # <1 - P2(mu)> = 3<1 - mu> - 3/2 <(1 - mu)^2>
    m2 = 2.0 * g1 - (2.0 / 3.0) * g2  # target <(1 - mu)^2>
    # case I: Wentzel(A) with weight 1 - B plus no deflection; A from the moment ratio, B from the first moment
    a1 = tables.from_ratio(m2 / torch.clamp(g1, min=1e-30))
    b1 = 1.0 - g1 / wentzel_mean_one_minus_mu(a1)
    # case II (B1 < 0, long steps): Wentzel(A) with A from the first moment plus, with weight B, the deflection
    # 1 - mu = <1 - mu>; B brings <(1 - mu)^2> down to its target (both moments stay exact)
    a2 = tables.from_mean(g1)
    w2 = wentzel_mean_x2(a2)
    b2 = torch.clamp((w2 - m2) / torch.clamp(w2 - g1 * g1, min=1e-30), 0.0, 1.0)
    case2 = b1 < 0.0
    a = torch.where(case2, a2, a1)
    b = torch.where(case2, b2, b1)
    fixed = torch.where(case2, 1.0 - g1, torch.ones_like(g1))
    mu = 1.0 - 2.0 * a * u_angle / (1.0 - u_angle + a)
    return torch.where(u_mix < b, fixed, torch.clamp(mu, -1.0, 1.0))

