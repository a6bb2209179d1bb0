"""Electron stopping powers and CSDA ranges for the Monte Carlo engine, per medium on a log energy grid
(1 keV to 3 MeV by default).

* Collision stopping power: Bethe formula for electrons, ICRU Report 37 (1984) ch. 2 (no shell correction),
  with the Sternheimer density-effect correction (Sternheimer, Berger & Seltzer, At. Data Nucl. Data Tables 30
  (1984) 261). Water uses the ICRU-37 values given explicitly (I = 75.0 eV, C = 3.5017, X0 = 0.2400,
  X1 = 2.8004, a = 0.09116, m = 3.4773); other media use the general Sternheimer & Peierls (Phys. Rev. B 3
  (1971) 3681) rules for C, X0, X1, a with m = 3.
* Mean excitation energy of mixtures: Bragg additivity ln I = sum w_i (Z/A)_i ln I_i / sum w_i (Z/A)_i with
  the ICRU-37 constituent values (Seltzer & Berger, Int. J. Appl. Radiat. Isot. 33 (1982) 1189):
  condensed compounds H 19.2, C 81, N 82, O 106, F 112, Cl 180 eV and 1.13 x the elemental I for other
  elements; gases, single elements and metal alloys use the elemental (ESTAR) values. This reproduces ESTAR's
  I for ICRP soft tissue (72.5 vs 72.3 eV), cortical bone (106.5 vs 106.4), adipose (63.3 vs 63.2), lung
  (75.6 vs 75.3) and air (85.7 vs 85.7).
* Radiative stopping power: S_rad/S_col = Z_eff T / 800 MeV (Attix 1986, ch. 8), Z_eff = sum w Z^2/A /
  sum w Z/A. For water this is ~18 % above ESTAR at 1 MeV, i.e. 0.15 % of S_tot. Bremsstrahlung is meant to be
  deposited locally for Lu-177 (radiation yield ~0.06 % of the beta energy).
* CSDA range R(T) = int_0^T dT'/S_tot, integrated in ln T on an 8x refined grid; below e_min (1 keV) the
  stopping power is continued as a power law S ~ T^-p fitted at e_min, so R(e_min) = e_min / ((1 + p) S(e_min))
  (water: 5.1e-6 g/cm2, 0.05 um; p = 0.63).

Units: energy MeV, stopping power MeV cm2/g, range g/cm2 (divide by the density for cm), I in eV.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.montecarlo.photon_data import (
    MediaTableAccessors,
    read_table_npz,
    ELECTRON_MASS_MEV,
    EnergyRangeError,
    InteractionDataError,
    MediaLike,
    MediaSpec,
    _check_energy,
    _check_rows,
    _log_grid,
    _torch_uniform_loglog,
    _uniform_loglog,
    resolve_media,
)

ELECTRON_DATA_FORMAT = "voxeldosimetry-electron-stopping-powers"
ELECTRON_DATA_VERSION = 1
BETHE_K_HALF_MEV_CM2_MOL = 0.1535375  # K/2 = 2 pi N_A r_e^2 m_e c^2 / 2 (K = 0.307075 MeV cm2/mol; PDG)
LN10 = math.log(10.0)
GAS_DENSITY_THRESHOLD_G_CM3 = 0.01  # media below this density are treated as gases (air: 0.0012)
ATTIX_RADIATIVE_N_MEV = 800.0  # S_rad/S_col ~ Z T / n, n ~ 800 MeV (Attix 1986)

# Elemental mean excitation energies (eV), ICRU Report 37 (1984) / ESTAR (as used by NIST ESTAR/PSTAR).
ELEMENTAL_I_VALUES_EV: Dict[int, float] = {
    1: 19.2, 2: 41.8, 3: 40.0, 4: 63.7, 5: 76.0, 6: 78.0, 7: 82.0, 8: 95.0, 9: 115.0, 10: 137.0, 11: 149.0,
    12: 156.0, 13: 166.0, 14: 173.0, 15: 173.0, 16: 180.0, 17: 174.0, 18: 188.0, 19: 190.0, 20: 191.0,
    21: 216.0, 22: 233.0, 23: 245.0, 24: 257.0, 25: 272.0, 26: 286.0, 27: 297.0, 28: 311.0, 29: 322.0, 30: 330.0,
    31: 334.0, 32: 350.0, 34: 348.0, 36: 352.0, 47: 470.0, 48: 469.0, 49: 488.0, 50: 488.0, 53: 491.0,
    54: 482.0, 56: 491.0, 64: 591.0, 74: 727.0, 78: 790.0, 79: 790.0, 82: 823.0, 92: 890.0,
}
# ICRU-37 Table 2.11 (Seltzer & Berger 1982) values for atoms bound in condensed compounds; other elements
# 1.13 x elemental.
CONDENSED_COMPOUND_I_VALUES_EV: Dict[int, float] = {1: 19.2, 6: 81.0, 7: 82.0, 8: 106.0, 9: 112.0, 17: 180.0}
CONDENSED_OTHER_FACTOR = 1.13
_NON_METALS = frozenset({1, 2, 5, 6, 7, 8, 9, 10, 14, 15, 16, 17, 18, 33, 34, 35, 36, 52, 53, 54, 85, 86})

WATER_I_VALUE_EV = 75.0  # ICRU-37 liquid water
WATER_MASS_FRACTIONS: Dict[str, float] = {"H": 0.1119, "O": 0.8881}  # H2O (Z/A = 0.55509)


@dataclass(frozen=True)
class SternheimerParameters:
    """Density-effect parameters (Sternheimer, Berger & Seltzer 1984): delta(X), X = log10(beta gamma).

    delta = 2 ln10 X - c_bar + a (x1 - X)^m for x0 <= X < x1, 2 ln10 X - c_bar for X >= x1, and
    delta0 10^(2 (X - x0)) below x0 (delta0 = 0 for insulators; used for all media here).
    """

    c_bar: float
    x0: float
    x1: float
    a: float
    m: float
    delta0: float = 0.0

    def as_array(self) -> np.ndarray:
        return np.array([self.c_bar, self.x0, self.x1, self.a, self.m, self.delta0], dtype=float)


# ICRU-37 / Sternheimer et al. 1984 liquid water (PHYSICS.md section 2.2)
WATER_STERNHEIMER_1984 = SternheimerParameters(c_bar=3.5017, x0=0.2400, x1=2.8004, a=0.09116, m=3.4773)


# ------------------------------------------------------------------------------------------- medium params
def _elemental_i(z: int) -> float:
    try:
        return ELEMENTAL_I_VALUES_EV[int(z)]
    except KeyError:
        raise InteractionDataError(f"No ICRU-37 mean excitation energy tabulated here for Z={z}; pass the medium's "
                                   "I-value with i_values_ev=... when building ElectronStoppingPowers.") from None


def mean_excitation_energy_ev(atomic_numbers: Sequence[int], mass_fractions: Sequence[float],
                              atomic_weights_g_mol: Sequence[float], gas: bool = False) -> float:
    """Bragg additivity ln I = sum w_i (Z/A)_i ln I_i / sum w_i (Z/A)_i (ICRU Report 37, 1984).

    Constituent I_i: gases, single elements and metal alloys -> elemental values; condensed compounds ->
    ICRU-37 Table 2.11 (H 19.2, C 81, N 82, O 106, F 112, Cl 180 eV) and 1.13 x elemental otherwise.
    """
    zs = [int(z) for z in atomic_numbers]
    w = np.asarray(mass_fractions, dtype=float)
    a = np.asarray(atomic_weights_g_mol, dtype=float)
    present = [i for i, wi in enumerate(w) if wi > 0]
    elemental = gas or len(present) == 1 or all(zs[i] not in _NON_METALS for i in present)
    ln_i = np.zeros(len(zs))
    for i in present:
        z = zs[i]
        if elemental:
            ln_i[i] = math.log(_elemental_i(z))
        elif z in CONDENSED_COMPOUND_I_VALUES_EV:
            ln_i[i] = math.log(CONDENSED_COMPOUND_I_VALUES_EV[z])
        else:
            ln_i[i] = math.log(CONDENSED_OTHER_FACTOR * _elemental_i(z))
    za = w * np.asarray(zs, dtype=float) / a
    return float(math.exp(float(np.sum(za * ln_i) / np.sum(za))))


def plasma_energy_ev(density_g_cm3: float, z_over_a: float) -> float:
    """hbar omega_p = 28.816 sqrt(rho Z/A) eV (Sternheimer, Berger & Seltzer 1984)."""
    return 28.816 * math.sqrt(density_g_cm3 * z_over_a)


def sternheimer_peierls_parameters(i_value_ev: float, density_g_cm3: float, z_over_a: float,
                                   gas: bool = False) -> SternheimerParameters:
    """General density-effect parameters for an arbitrary medium (Sternheimer & Peierls 1971; m = 3).

    C = 2 ln(I / hbar omega_p) + 1; X0, X1 from the solid/liquid (by I < or >= 100 eV) or gas (by C) rules;
    a = (C - 2 ln10 X0) / (X1 - X0)^m so that delta(X0) = 0.
    """
    c_bar = 2.0 * math.log(i_value_ev / plasma_energy_ev(density_g_cm3, z_over_a)) + 1.0
    if not gas:  # Sternheimer & Peierls 1971, solids and liquids
        if i_value_ev < 100.0:
            x0, x1 = (0.2, 2.0) if c_bar < 3.681 else (0.326 * c_bar - 1.0, 2.0)
        else:
            x0, x1 = (0.2, 3.0) if c_bar < 5.215 else (0.326 * c_bar - 1.5, 3.0)
    else:  # Sternheimer & Peierls 1971, gases
        if c_bar < 10.0:
            x0, x1 = 1.6, 4.0
        elif c_bar < 10.5:
            x0, x1 = 1.7, 4.0
        elif c_bar < 11.0:
            x0, x1 = 1.8, 4.0
        elif c_bar < 11.5:
            x0, x1 = 1.9, 4.0
        elif c_bar < 12.25:
            x0, x1 = 2.0, 4.0
        elif c_bar < 13.804:
            x0, x1 = 2.0, 5.0
        else:
            x0, x1 = 0.326 * c_bar - 2.5, 5.0
    m = 3.0
    a = (c_bar - 2.0 * LN10 * x0) / (x1 - x0) ** m
    return SternheimerParameters(c_bar=c_bar, x0=x0, x1=x1, a=a, m=m)


# -------------------------------------------------------------------------------------------------- physics
def density_effect_delta(kinetic_energy_mev: Any, params: Union[SternheimerParameters, np.ndarray]) -> np.ndarray:
    """Sternheimer density-effect correction delta(T) (Sternheimer, Berger & Seltzer 1984 parameterisation)."""
    p = params.as_array() if isinstance(params, SternheimerParameters) else np.asarray(params, dtype=float)
    c_bar, x0, x1, a, m, delta0 = (p[..., k] for k in range(6))
    tau = np.asarray(kinetic_energy_mev, dtype=float) / ELECTRON_MASS_MEV
    x = np.log10(np.sqrt(tau * (tau + 2.0)))  # log10(beta gamma) = log10(p / m c)
    mid = 2.0 * LN10 * x - c_bar + a * np.clip(x1 - x, 0.0, None) ** m
    high = 2.0 * LN10 * x - c_bar
    low = delta0 * 10.0 ** (2.0 * (x - x0))
    return np.where(x >= x1, high, np.where(x >= x0, mid, low))


def bethe_collision_stopping_power(kinetic_energy_mev: Any, z_over_a: Any, i_value_ev: Any,
                                   params: Union[SternheimerParameters, np.ndarray]) -> np.ndarray:
    """Electron mass collision stopping power (MeV cm2/g), ICRU Report 37 Bethe formula (no shell correction):

    S_col/rho = 0.153537 (Z/A)/beta^2 [ln(tau^2 (tau + 2) / (2 (I/mc^2)^2)) + F-(tau) - delta],
    F-(tau) = 1 - beta^2 + (tau^2/8 - (2 tau + 1) ln 2) / (tau + 1)^2, tau = T / mc^2.
    """
    tau = np.asarray(kinetic_energy_mev, dtype=float) / ELECTRON_MASS_MEV
    beta2 = tau * (tau + 2.0) / (tau + 1.0) ** 2
    i_rel = np.asarray(i_value_ev, dtype=float) * 1e-6 / ELECTRON_MASS_MEV
    f_minus = 1.0 - beta2 + (tau ** 2 / 8.0 - (2.0 * tau + 1.0) * math.log(2.0)) / (tau + 1.0) ** 2
    bracket = np.log(tau ** 2 * (tau + 2.0) / (2.0 * i_rel ** 2)) + f_minus - density_effect_delta(
        kinetic_energy_mev, params)
    if np.any(bracket <= 0):
        raise InteractionDataError("The Bethe formula is not valid at these low energies for this I-value (the "
                                   "logarithmic term is <= 0); raise e_min_mev (>= 1 keV is safe for tissues).")
    return BETHE_K_HALF_MEV_CM2_MOL * np.asarray(z_over_a, dtype=float) / beta2 * bracket


def radiative_to_collision_ratio(kinetic_energy_mev: Any, z_eff: Any) -> np.ndarray:
    """S_rad/S_col ~ Z_eff T / 800 MeV (Attix, Introduction to Radiological Physics, 1986, ch. 8)."""
    return np.asarray(z_eff, dtype=float) * np.asarray(kinetic_energy_mev, dtype=float) / ATTIX_RADIATIVE_N_MEV


# ---------------------------------------------------------------------------------------------- main class
def _per_medium(values: Any, spec: MediaSpec, what: str) -> list:
    """Normalise a per-medium override (None, sequence, or mapping index/name -> value) to a list."""
    out: list = [None] * len(spec)
    if values is None:
        return out
    if isinstance(values, Mapping):
        for key, val in values.items():
            if isinstance(key, str):
                if key not in spec.names:
                    raise InteractionDataError(f"{what}: no medium named {key!r}.")
                idx = spec.names.index(key)
            else:
                idx = int(key)
                if not 0 <= idx < len(spec):
                    raise InteractionDataError(f"{what}: medium index {idx} out of range 0..{len(spec) - 1}.")
            out[idx] = val
        return out
    vals = list(values)
    if len(vals) != len(spec):
        raise InteractionDataError(f"{what}: {len(vals)} values for {len(spec)} media; give one per medium (None "
                                   "for the default) or a mapping {index or name: value}.")
    return vals


class ElectronStoppingPowers(MediaTableAccessors):
    """Collision, radiative and total stopping powers, CSDA ranges and radiation yields per medium.

    Arrays (M media, N energies): energies_mev (N,); s_col/s_rad/s_tot_mev_cm2_g, csda_range_g_cm2,
    radiation_yield (M, N); per medium: densities_g_cm3, z_over_a, i_value_ev, z_eff_radiative, is_gas,
    sternheimer (M, 6: c_bar, x0, x1, a, m, delta0), low_energy_exponent p (S ~ T^-p below e_min).
    Build with ElectronStoppingPowers.build(media).
    """

    table_kind = "electron"

    def __init__(self, *, names: Sequence[str], densities_g_cm3: np.ndarray, atomic_numbers: np.ndarray,
                 mass_fractions: np.ndarray, energies_mev: np.ndarray, z_over_a: np.ndarray, i_value_ev: np.ndarray,
                 z_eff_radiative: np.ndarray, is_gas: np.ndarray, sternheimer: np.ndarray, s_col: np.ndarray,
                 s_rad: np.ndarray, csda_range: np.ndarray, radiation_yield: np.ndarray,
                 low_energy_exponent: np.ndarray, inverse_log_range0: np.ndarray, inverse_dlog_range: np.ndarray,
                 inverse_log_energy: np.ndarray, metadata: Optional[Mapping[str, Any]] = None) -> None:
        self.spec = MediaSpec(names, densities_g_cm3, atomic_numbers, mass_fractions)
        self.energies_mev = np.asarray(energies_mev, dtype=float)
        dl = np.diff(np.log(self.energies_mev))
        if self.energies_mev.size < 2 or not np.allclose(dl, dl[0], rtol=1e-6, atol=0):
            raise InputFormatError("Electron tables need a uniform logarithmic energy grid of at least 2 points.")
        self._log_e0 = float(math.log(self.energies_mev[0]))
        self._dlog_e = float(dl[0])
        self.z_over_a = np.asarray(z_over_a, dtype=float)
        self.i_value_ev = np.asarray(i_value_ev, dtype=float)
        self.z_eff_radiative = np.asarray(z_eff_radiative, dtype=float)
        self.is_gas = np.asarray(is_gas, dtype=bool)
        self.sternheimer = np.asarray(sternheimer, dtype=float)
        self.s_col_mev_cm2_g = np.asarray(s_col, dtype=float)
        self.s_rad_mev_cm2_g = np.asarray(s_rad, dtype=float)
        self.s_tot_mev_cm2_g = self.s_col_mev_cm2_g + self.s_rad_mev_cm2_g
        self.csda_range_g_cm2 = np.asarray(csda_range, dtype=float)
        self.radiation_yield_table = np.asarray(radiation_yield, dtype=float)
        self.low_energy_exponent = np.asarray(low_energy_exponent, dtype=float)
        self.inverse_log_range0 = np.asarray(inverse_log_range0, dtype=float)
        self.inverse_dlog_range = np.asarray(inverse_dlog_range, dtype=float)
        self.inverse_log_energy = np.asarray(inverse_log_energy, dtype=float)
        shape = (len(self.spec), self.energies_mev.size)
        for name in ("s_col_mev_cm2_g", "s_rad_mev_cm2_g", "csda_range_g_cm2", "radiation_yield_table"):
            if getattr(self, name).shape != shape:
                raise InputFormatError(f"Electron table {name} has shape {getattr(self, name).shape}; expected {shape}.")
        self._log = {"collision": np.log(self.s_col_mev_cm2_g), "radiative": np.log(self.s_rad_mev_cm2_g),
                     "total": np.log(self.s_tot_mev_cm2_g), "range": np.log(self.csda_range_g_cm2),
                     "yield": np.log(np.maximum(self.radiation_yield_table, 1e-300))}
        self.metadata = dict(metadata or {})
        self._torch_cache: Dict[Tuple[str, str], Dict[str, Any]] = {}

    # ---------------------------------------------------------------------------------------------- build
    @classmethod
    def build(cls, media: MediaLike, *, names: Optional[Sequence[str]] = None,
              densities_g_cm3: Optional[Sequence[float]] = None, i_values_ev: Any = None,
              density_effect: Any = None, e_min_mev: float = 1e-3, e_max_mev: float = 3.0, n_energies: int = 400,
              refine: int = 8, n_inverse: int = 1024,
              gas_density_threshold_g_cm3: float = GAS_DENSITY_THRESHOLD_G_CM3) -> "ElectronStoppingPowers":
        """Tabulate the media (MediaTable, Medium list, or {element: fraction} mappings with densities_g_cm3).

        i_values_ev / density_effect: optional per-medium overrides (a sequence with None for "default", or a
        mapping {index or name: value}); e.g. for ICRU-37 water pass i_values_ev=[75.0] and
        density_effect=[WATER_STERNHEIMER_1984].
        """
        spec = resolve_media(media, names, densities_g_cm3)
        if not np.all(np.isfinite(spec.densities_g_cm3)):
            raise InteractionDataError("Electron stopping powers need each medium's density (density effect): pass "
                                       "Medium objects or densities_g_cm3=[...].")
        if int(refine) < 1 or int(n_inverse) < 16:
            raise InteractionDataError("refine must be >= 1 and n_inverse >= 16.")
        energies = _log_grid(e_min_mev, e_max_mev, n_energies, "ElectronStoppingPowers.build")
        refine = int(refine)
        fine = np.exp(np.linspace(math.log(energies[0]), math.log(energies[-1]), (energies.size - 1) * refine + 1))
        i_over = _per_medium(i_values_ev, spec, "i_values_ev")
        d_over = _per_medium(density_effect, spec, "density_effect")
        a_el = spec.atomic_weights_g_mol
        z_el = spec.atomic_numbers.astype(float)
        w = spec.mass_fractions
        z_over_a = w @ (z_el / a_el)  # ICRU-37: Z/A = sum w_i Z_i / A_i
        z_eff = (w @ (z_el ** 2 / a_el)) / z_over_a  # electron-weighted Z for bremsstrahlung (~Z^2 per atom)
        is_gas = spec.densities_g_cm3 < float(gas_density_threshold_g_cm3)
        n_m = len(spec)
        i_val = np.zeros(n_m)
        stern = np.zeros((n_m, 6))
        for m in range(n_m):
            if i_over[m] is not None:
                i_val[m] = float(i_over[m])
                if not i_val[m] > 0:
                    raise InteractionDataError(f"i_values_ev for medium {spec.names[m]!r} must be > 0 eV.")
            else:
                i_val[m] = mean_excitation_energy_ev(spec.atomic_numbers, w[m], a_el, gas=bool(is_gas[m]))
            par = d_over[m]
            if par is None:
                par = sternheimer_peierls_parameters(i_val[m], float(spec.densities_g_cm3[m]), float(z_over_a[m]),
                                                     gas=bool(is_gas[m]))
            elif not isinstance(par, SternheimerParameters):
                par = SternheimerParameters(*[float(v) for v in par])
            stern[m] = par.as_array()
        s_col_f = bethe_collision_stopping_power(fine[None, :], z_over_a[:, None], i_val[:, None], stern[:, None, :])
        ratio_f = radiative_to_collision_ratio(fine[None, :], z_eff[:, None])
        s_rad_f = s_col_f * ratio_f
        s_tot_f = s_col_f + s_rad_f
        # below e_min: S_tot ~ T^-p (local power law at e_min) -> R(e_min) = e_min / ((1 + p) S(e_min))
        p = -np.log(s_tot_f[:, 1] / s_tot_f[:, 0]) / math.log(fine[1] / fine[0])
        p = np.clip(p, 0.0, 2.0)
        r0 = fine[0] / ((1.0 + p) * s_tot_f[:, 0])
        # CSDA range: R(T) = R(e_min) + int dT/S_tot = R(e_min) + int (T/S_tot) dln T  (ICRU Report 37 definition)
        g = fine[None, :] / s_tot_f
        dlnt = math.log(fine[1] / fine[0])
        cum = np.concatenate([np.zeros((n_m, 1)), np.cumsum(0.5 * (g[:, 1:] + g[:, :-1]) * dlnt, axis=1)], axis=1)
        range_f = r0[:, None] + cum
        # radiation yield Y(T) = (1/T) int_0^T S_rad/S_tot dT' (ICRU Report 37 definition); ratio ~ T below e_min
        frac = s_rad_f / s_tot_f
        hf = fine[None, :] * frac
        cum_y = np.concatenate([np.zeros((n_m, 1)), np.cumsum(0.5 * (hf[:, 1:] + hf[:, :-1]) * dlnt, axis=1)], axis=1)
        yield_f = (0.5 * fine[0] * frac[:, :1] + cum_y) / fine[None, :]
        sl = slice(None, None, refine)
        # inverse range table: ln T on a uniform ln R grid per medium (for energy_after_path)
        log_r = np.log(range_f)
        log_r0 = log_r[:, 0]
        dlog_r = (log_r[:, -1] - log_r0) / (int(n_inverse) - 1)
        inv = np.empty((n_m, int(n_inverse)))
        log_fine = np.log(fine)
        for m in range(n_m):
            grid = log_r0[m] + dlog_r[m] * np.arange(int(n_inverse))
            inv[m] = np.interp(grid, log_r[m], log_fine)
        meta = {"format": ELECTRON_DATA_FORMAT, "version": ELECTRON_DATA_VERSION, "media_key": spec.key(),
                "sources": "Bethe ICRU-37 + Sternheimer 1984 density effect (Sternheimer-Peierls 1971 general "
                           "parameters unless overridden); Bragg additivity with ICRU-37 I-values; "
                           "S_rad/S_col = Z_eff T/800 MeV (Attix)",
                "refine": refine}
        return cls(names=spec.names, densities_g_cm3=spec.densities_g_cm3, atomic_numbers=spec.atomic_numbers,
                   mass_fractions=spec.mass_fractions, energies_mev=energies, z_over_a=z_over_a, i_value_ev=i_val,
                   z_eff_radiative=z_eff, is_gas=is_gas, sternheimer=stern, s_col=s_col_f[:, sl],
                   s_rad=s_rad_f[:, sl], csda_range=range_f[:, sl], radiation_yield=yield_f[:, sl],
                   low_energy_exponent=p, inverse_log_range0=log_r0, inverse_dlog_range=dlog_r,
                   inverse_log_energy=inv, metadata=meta)

    @classmethod
    def water(cls, density_g_cm3: float = 1.0, **kwargs: Any) -> "ElectronStoppingPowers":
        """Liquid water with the ICRU-37 I-value (75.0 eV) and Sternheimer 1984 density-effect parameters."""
        return cls.build([WATER_MASS_FRACTIONS], names=["water"], densities_g_cm3=[density_g_cm3],
                         i_values_ev=[WATER_I_VALUE_EV], density_effect=[WATER_STERNHEIMER_1984], **kwargs)

    def sternheimer_parameters(self, medium: Union[int, str]) -> SternheimerParameters:
        m = self.index_of(medium) if isinstance(medium, str) else int(medium)
        return SternheimerParameters(*[float(v) for v in self.sternheimer[m]])

    def _rows(self, medium: Any) -> np.ndarray:
        if isinstance(medium, str):
            return np.asarray(self.index_of(medium))
        return _check_rows(medium, self.n_media, "ElectronStoppingPowers")

    # -------------------------------------------------------------------------------------------- lookups
    def stopping_power(self, medium: Any, energy_mev: Any, kind: str = "total") -> np.ndarray:
        """Mass stopping power (MeV cm2/g): kind = total | collision | radiative (log-log interpolation)."""
        if kind not in ("total", "collision", "radiative"):
            raise InteractionDataError(f"Unknown stopping-power kind {kind!r}; use total, collision or radiative.")
        rows = self._rows(medium)
        e = _check_energy(energy_mev, self.e_min_mev, self.e_max_mev, "ElectronStoppingPowers.stopping_power")
        rows, e = np.broadcast_arrays(rows, e)
        return _uniform_loglog(self._log[kind], self._log_e0, self._dlog_e, rows, e)

    def radiation_yield(self, medium: Any, energy_mev: Any) -> np.ndarray:
        """Fraction of the initial kinetic energy emitted as bremsstrahlung over the whole CSDA path."""
        rows = self._rows(medium)
        e = _check_energy(energy_mev, self.e_min_mev, self.e_max_mev, "ElectronStoppingPowers.radiation_yield")
        rows, e = np.broadcast_arrays(rows, e)
        return _uniform_loglog(self._log["yield"], self._log_e0, self._dlog_e, rows, e)

    def range_g_cm2(self, medium: Any, energy_mev: Any) -> np.ndarray:
        """CSDA range (g/cm2) for kinetic energies in (0, e_max]; below e_min the power-law continuation."""
        rows = self._rows(medium)
        e = np.asarray(energy_mev, dtype=float)
        if e.size and (np.any(~np.isfinite(e)) or np.min(e) < 0):
            raise EnergyRangeError("Electron energies must be finite and >= 0 MeV.")
        _check_energy(np.maximum(e, self.e_min_mev), self.e_min_mev, self.e_max_mev,
                      "ElectronStoppingPowers.range_g_cm2")
        rows, e = np.broadcast_arrays(rows, e)
        es = np.maximum(e, self.e_min_mev)
        r = _uniform_loglog(self._log["range"], self._log_e0, self._dlog_e, rows, es)
        below = e < self.e_min_mev
        if np.any(below):
            p = self.low_energy_exponent[rows]
            r = np.where(below, self.csda_range_g_cm2[rows, 0] * (np.maximum(e, 0.0) / self.e_min_mev) ** (1.0 + p), r)
        return r

    def range_cm(self, medium: Any, energy_mev: Any) -> np.ndarray:
        """CSDA range in cm (range_g_cm2 / density)."""
        rows = self._rows(medium)
        return self.range_g_cm2(rows, energy_mev) / self.densities_g_cm3[rows]

    def energy_after_path(self, medium: Any, energy_mev: Any, path_g_cm2: Any) -> np.ndarray:
        """Kinetic energy after travelling path_g_cm2 (g/cm2) in CSDA: T' = R^-1(R(T) - s); 0 when s >= R(T).

        Vectorised over medium indices, energies and paths (broadcast). The inverse uses a per-medium table of
        ln T on a uniform ln R grid (n_inverse points) and the power law below e_min.
        """
        rows = self._rows(medium)
        s = np.asarray(path_g_cm2, dtype=float)
        if s.size and (np.any(~np.isfinite(s)) or np.min(s) < 0):
            raise InteractionDataError("Path lengths must be finite and >= 0 g/cm2.")
        rows, e, s = np.broadcast_arrays(rows, np.asarray(energy_mev, dtype=float), s)
        r = self.range_g_cm2(rows, e) - s
        out = _inverse_range_numpy(self, rows, r)
        return np.minimum(out, e)

    # ---------------------------------------------------------------------------------------------- torch
    def to_torch(self, device: Any = "cpu", dtype: Any = None) -> Dict[str, Any]:
        """Tensors for a torch transport loop (cached per device/dtype; default float32).

        Keys: log_s_col, log_s_rad, log_s_tot, log_range, log_yield (M, N); inverse_log_energy (M, Ninv),
        inverse_log_range0, inverse_dlog_range, low_energy_exponent, range0_g_cm2, densities_g_cm3 (M,);
        python floats log_e0, dlog_e, e_min_mev, e_max_mev.
        """
        import torch

        dtype = torch.float32 if dtype is None else dtype
        dev = torch.device(device)
        key = (str(dev), str(dtype))
        if key not in self._torch_cache:
            def t(a: np.ndarray):
                return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=dev)

            self._torch_cache[key] = {
                "log_s_col": t(self._log["collision"]), "log_s_rad": t(self._log["radiative"]),
                "log_s_tot": t(self._log["total"]), "log_range": t(self._log["range"]),
                "log_yield": t(self._log["yield"]), "inverse_log_energy": t(self.inverse_log_energy),
                "inverse_log_range0": t(self.inverse_log_range0), "inverse_dlog_range": t(self.inverse_dlog_range),
                "low_energy_exponent": t(self.low_energy_exponent), "range0_g_cm2": t(self.csda_range_g_cm2[:, 0]),
                "densities_g_cm3": t(self.densities_g_cm3), "log_e0": self._log_e0, "dlog_e": self._dlog_e,
                "e_min_mev": self.e_min_mev, "e_max_mev": self.e_max_mev}
        return self._torch_cache[key]

    def _torch_args(self, medium, energy, tables):
        import torch

        e = energy if isinstance(energy, torch.Tensor) else torch.as_tensor(energy)
        tabs = tables if tables is not None else self.to_torch(e.device)
        dt = tabs["log_range"].dtype
        m = medium if isinstance(medium, torch.Tensor) else torch.as_tensor(medium)
        return torch, tabs, m.to(tabs["log_range"].device).long(), e.to(device=tabs["log_range"].device, dtype=dt)

    def stopping_power_torch(self, medium: Any, energy_mev: Any, kind: str = "total",
                             tables: Optional[Mapping[str, Any]] = None):
        """Torch stopping power (MeV cm2/g); energies are clamped to the table."""
        key = {"total": "log_s_tot", "collision": "log_s_col", "radiative": "log_s_rad"}.get(kind)
        if key is None:
            raise InteractionDataError(f"Unknown stopping-power kind {kind!r}; use total, collision or radiative.")
        torch, tabs, m, e = self._torch_args(medium, energy_mev, tables)
        return _torch_uniform_loglog(torch, tabs[key], tabs["log_e0"], tabs["dlog_e"], m, e)

    def range_torch(self, medium: Any, energy_mev: Any, tables: Optional[Mapping[str, Any]] = None):
        """Torch CSDA range (g/cm2); power law below e_min, clamped at e_max."""
        torch, tabs, m, e = self._torch_args(medium, energy_mev, tables)
        return torch_range_g_cm2(tabs, m, e)

    def energy_after_path_torch(self, medium: Any, energy_mev: Any, path_g_cm2: Any,
                                tables: Optional[Mapping[str, Any]] = None):
        """Torch version of energy_after_path (0 where the path exceeds the range)."""
        torch, tabs, m, e = self._torch_args(medium, energy_mev, tables)
        s = path_g_cm2 if isinstance(path_g_cm2, torch.Tensor) else torch.as_tensor(path_g_cm2)
        return torch_energy_after_path(tabs, m, e, s.to(device=e.device, dtype=e.dtype))

    # ------------------------------------------------------------------------------------------ persistence
    _ARRAYS = ("energies_mev", "z_over_a", "i_value_ev", "z_eff_radiative", "is_gas", "sternheimer",
               "s_col_mev_cm2_g", "s_rad_mev_cm2_g", "csda_range_g_cm2", "radiation_yield_table",
               "low_energy_exponent", "inverse_log_range0", "inverse_dlog_range", "inverse_log_energy")

    def save_npz(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        meta = dict(self.metadata)
        meta.setdefault("format", ELECTRON_DATA_FORMAT)
        meta.setdefault("version", ELECTRON_DATA_VERSION)
        np.savez_compressed(path, metadata_json=np.array(json.dumps(meta)), names=np.array(self.names, dtype=str),
                            densities_g_cm3=self.densities_g_cm3, atomic_numbers=self.spec.atomic_numbers,
                            mass_fractions=self.spec.mass_fractions,
                            **{name: getattr(self, name) for name in self._ARRAYS})
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")

    @classmethod
    def load_npz(cls, path: Union[str, Path]) -> "ElectronStoppingPowers":
        data, meta = read_table_npz(path, ELECTRON_DATA_FORMAT, ELECTRON_DATA_VERSION,
                                    "electron stopping-power tables")
        try:
            return cls(names=[str(n) for n in data["names"]], densities_g_cm3=data["densities_g_cm3"],
                       atomic_numbers=data["atomic_numbers"], mass_fractions=data["mass_fractions"],
                       energies_mev=data["energies_mev"], z_over_a=data["z_over_a"],
                       i_value_ev=data["i_value_ev"], z_eff_radiative=data["z_eff_radiative"],
                       is_gas=data["is_gas"], sternheimer=data["sternheimer"], s_col=data["s_col_mev_cm2_g"],
                       s_rad=data["s_rad_mev_cm2_g"], csda_range=data["csda_range_g_cm2"],
                       radiation_yield=data["radiation_yield_table"],
                       low_energy_exponent=data["low_energy_exponent"],
                       inverse_log_range0=data["inverse_log_range0"],
                       inverse_dlog_range=data["inverse_dlog_range"],
                       inverse_log_energy=data["inverse_log_energy"], metadata=meta)
        except KeyError as exc:
            raise InputFormatError(f"{path} lacks the array {exc}; rebuild it with save_npz.") from exc

    def __repr__(self) -> str:
        return (f"ElectronStoppingPowers({self.n_media} media, {self.energies_mev.size} energies "
                f"{self.e_min_mev:g}-{self.e_max_mev:g} MeV)")


# ------------------------------------------------------------------------------------ inverse range helpers
def _inverse_range_numpy(tab: ElectronStoppingPowers, rows: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Kinetic energy whose CSDA range is r (g/cm2); 0 for r <= 0."""
    rows = np.asarray(rows, dtype=np.int64)
    r = np.asarray(r, dtype=float)
    pos = r > 0
    lr = np.log(np.where(pos, r, 1.0))
    lr0 = tab.inverse_log_range0[rows]
    dlr = tab.inverse_dlog_range[rows]
    n = tab.inverse_log_energy.shape[1]
    u = (lr - lr0) / dlr
    i = np.clip(np.floor(u), 0, n - 2).astype(np.int64)
    f = np.clip(u - i, 0.0, 1.0)
    le = tab.inverse_log_energy[rows, i] * (1 - f) + tab.inverse_log_energy[rows, i + 1] * f
    e = np.exp(le)
    p = tab.low_energy_exponent[rows]
    low = lr < lr0  # below e_min: R = R0 (T/T0)^(1+p)
    e = np.where(low, tab.e_min_mev * np.exp((lr - lr0) / (1.0 + p)), e)
    return np.where(pos, e, 0.0)


def torch_range_g_cm2(tables: Mapping[str, Any], medium, energy_mev):
    """CSDA range (g/cm2) from to_torch() tables; power law below e_min; energies above e_max are clamped."""
    import torch

    medium, energy_mev = torch.broadcast_tensors(medium.long(), energy_mev)
    e_min = tables["e_min_mev"]
    es = torch.clamp(energy_mev, min=e_min)
    r = _torch_uniform_loglog(torch, tables["log_range"], tables["log_e0"], tables["dlog_e"], medium, es)
    p = tables["low_energy_exponent"][medium]
    r_low = tables["range0_g_cm2"][medium] * torch.pow(torch.clamp(energy_mev, min=0.0) / e_min, 1.0 + p)
    return torch.where(energy_mev < e_min, r_low, r)


def torch_energy_after_path(tables: Mapping[str, Any], medium, energy_mev, path_g_cm2):
    """T' = R^-1(R(T) - s) from to_torch() tables (CSDA step); 0 where s >= R(T)."""
    import torch

    medium, energy_mev, path_g_cm2 = torch.broadcast_tensors(medium.long(), energy_mev, path_g_cm2)
    r = torch_range_g_cm2(tables, medium, energy_mev) - path_g_cm2
    pos = r > 0
    lr = torch.log(torch.where(pos, r, torch.ones_like(r)))
    lr0 = tables["inverse_log_range0"][medium]
    dlr = tables["inverse_dlog_range"][medium]
    inv = tables["inverse_log_energy"]
    n = inv.shape[1]
    u = (lr - lr0) / dlr
    i = torch.clamp(torch.floor(u), 0, n - 2).long()
    f = torch.clamp(u - i.to(u.dtype), 0.0, 1.0)
    flat = inv.reshape(-1)
    base = medium * n + i
    e = torch.exp(flat[base] * (1 - f) + flat[base + 1] * f)
    p = tables["low_energy_exponent"][medium]
    e_low = tables["e_min_mev"] * torch.exp((lr - lr0) / (1.0 + p))
    e = torch.where(lr < lr0, e_low, e)
    e = torch.minimum(e, energy_mev)
    return torch.where(pos, e, torch.zeros_like(e))
