"""Photon interaction data for the Monte Carlo engine: mass attenuation and energy-absorption coefficients and
the scattering functions of each medium, tabulated once on a log energy grid (1 keV to 3 MeV by default).

Sources and paths (docs/MC_PHYSICS_DATA.md has the details and the measured agreement):

* E <= 800 keV: xraylib 4.3 (Schoonjans et al., Spectrochim. Acta B 66 (2011) 776) per element:
  CS_Photo (photoelectric), CS_Compt (incoherent, EPDL/Hubbell incoherent scattering function), CS_Rayl
  (coherent, form factor). Mixture rule mu/rho = sum_i w_i (mu/rho)_i over elemental mass fractions w_i.
* E > 800 keV (xraylib raises "Spline extrapolation is not allowed" there):
  Compton = Klein-Nishina total cross section x electrons per gram (binding is negligible there);
  Rayleigh = the 800 keV value x (0.8 MeV / E)^2; photoelectric = per element, a power law continuing the
  700-800 keV log-log slope of CS_Photo. Pair production is not included (0 below 1.022 MeV; ~1 % of mu in
  water at 3 MeV).
* mu_en/rho is computed from the interaction components at every energy (not from xraylib CS_Energy, which is
  wrong above 800 keV and also between 15 and 150 keV, e.g. -37 % for water at 30 keV):
  mu_en = [tau (1 - X/E) + sigma_incoh <T>/E] - g-term, with X the fluorescence energy emitted per
  photoabsorption (xraylib Kissel cascade line cross sections), <T> the mean Compton-electron energy from
  Klein-Nishina x S(x, Z) and the radiative loss g from the Attix yield approximation Y(T) ~ Z_eff T / 1600 MeV.
* Scattering functions for sampling, on a log grid of the momentum-transfer variable x = sin(theta/2)/lambda
  (1/Angstrom): S(x) (xraylib SF_Compt) and F(x)^2 (xraylib FF_Rayl), averaged per atom of the mixture, and the
  cumulative integral of F^2 over x^2 for Rayleigh angle sampling.

Units: energy MeV, mu/rho cm2/g, density g/cm3, x 1/Angstrom. xraylib itself takes keV.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError, VoxelDosimetryError

# ------------------------------------------------------------------------------------------------ constants
ELECTRON_MASS_MEV = 0.51099895  # CODATA 2018 m_e c^2
CLASSICAL_ELECTRON_RADIUS_CM = 2.8179403262e-13  # CODATA 2018 r_e
AVOGADRO_PER_MOL = 6.02214076e23  # SI 2019 exact
HC_KEV_ANGSTROM = 12.398419843320026  # CODATA 2018 h c, keV Angstrom (lambda[A] = 12.398 / E[keV])
XRAYLIB_MAX_ENERGY_MEV = 0.8  # CS_Compt/CS_Rayl/CS_Photo (H, O) raise above 800 keV (PHYSICS.md section 2.1)

PHOTON_DATA_FORMAT = "voxeldosimetry-photon-cross-sections"
PHOTON_DATA_VERSION = 1

# Quantities tabulated per medium and energy (attribute names end with their unit).
QUANTITIES = ("photo", "compton", "rayleigh", "total", "mu_en")
_ALIASES = {"photo": "photo", "photoelectric": "photo", "compton": "compton", "incoherent": "compton",
            "rayleigh": "rayleigh", "coherent": "rayleigh", "total": "total", "mu_en": "mu_en",
            "energy_absorption": "mu_en", "mu_en_over_rho": "mu_en"}

# IUPAC standard atomic weights (g/mol; IUPAC 2007 abridged values, the ones ESTAR/XCOM-era data use, so that
# water has Z/A = 0.55509). Elements not listed fall back to xraylib.AtomicWeight (rounded to 0.01).
ATOMIC_WEIGHTS_G_MOL: Dict[int, float] = {
    1: 1.00794, 2: 4.002602, 3: 6.941, 4: 9.012182, 5: 10.811, 6: 12.0107, 7: 14.0067, 8: 15.9994,
    9: 18.9984032, 10: 20.1797, 11: 22.98976928, 12: 24.3050, 13: 26.9815386, 14: 28.0855, 15: 30.973762,
    16: 32.065, 17: 35.453, 18: 39.948, 19: 39.0983, 20: 40.078, 21: 44.955912, 22: 47.867, 23: 50.9415,
    24: 51.9961, 25: 54.938045, 26: 55.845, 27: 58.933195, 28: 58.6934, 29: 63.546, 30: 65.38, 31: 69.723,
    32: 72.64, 33: 74.92160, 34: 78.96, 35: 79.904, 36: 83.798, 37: 85.4678, 38: 87.62, 39: 88.90585,
    40: 91.224, 41: 92.90638, 42: 95.96, 44: 101.07, 45: 102.90550, 46: 106.42, 47: 107.8682, 48: 112.411,
    49: 114.818, 50: 118.710, 51: 121.760, 52: 127.60, 53: 126.90447, 54: 131.293, 55: 132.9054519,
    56: 137.327, 57: 138.90547, 58: 140.116, 64: 157.25, 71: 174.967, 72: 178.49, 73: 180.94788, 74: 183.84,
    78: 195.084, 79: 196.966569, 80: 200.59, 82: 207.2, 83: 208.98040, 92: 238.02891,
}


# ---------------------------------------------------------------------------------------------------- errors
class InteractionDataError(VoxelDosimetryError, ValueError):
    """Interaction data cannot be built or looked up as asked (unknown element, bad medium index, ...)."""


class EnergyRangeError(InteractionDataError):
    """An energy lies outside the tabulated range of an interaction-data table."""


# ----------------------------------------------------------------------------------------- element helpers
def _xraylib():
    try:
        import xraylib  # noqa: WPS433 (optional heavy import kept local)
    except ImportError as exc:  # pragma: no cover - xraylib is a declared dependency
        raise InteractionDataError("Building photon/electron interaction tables needs the 'xraylib' package "
                                   "(pip install xraylib). Saved tables (load_npz) do not.") from exc
    return xraylib


def atomic_number(element: Union[str, int]) -> int:
    """Atomic number of an element given as a symbol ('Ca') or a number (20)."""
    if isinstance(element, (int, np.integer)):
        z = int(element)
    else:
        symbol = str(element).strip()
        try:
            z = int(_xraylib().SymbolToAtomicNumber(symbol))
        except Exception:  # xraylib raises ValueError for unknown symbols
            z = 0
        if z <= 0:
            raise InteractionDataError(f"Unknown element symbol {element!r}: use chemical symbols such as 'H', 'O', "
                                       "'Ca' (case-sensitive) or atomic numbers.")
    if not 1 <= z <= 99:
        raise InteractionDataError(f"Atomic number {z} is outside 1..99; check the medium composition.")
    return z


def element_symbol(z: int) -> str:
    return str(_xraylib().AtomicNumberToSymbol(int(z)))


def atomic_weight_g_mol(z: int) -> float:
    """IUPAC standard atomic weight (g/mol); xraylib's rounded value for elements outside our table."""
    z = int(z)
    if z in ATOMIC_WEIGHTS_G_MOL:
        return ATOMIC_WEIGHTS_G_MOL[z]
    return float(_xraylib().AtomicWeight(z))


class MediaSpec:
    """Normalised media description shared by the photon and electron tables.

    names (M,), densities_g_cm3 (M,) (NaN where unknown), atomic_numbers (K,) of every element present and
    mass_fractions (M, K) with rows summing to 1.
    """

    __slots__ = ("names", "densities_g_cm3", "atomic_numbers", "mass_fractions")

    def __init__(self, names: Sequence[str], densities_g_cm3: np.ndarray, atomic_numbers: np.ndarray,
                 mass_fractions: np.ndarray) -> None:
        self.names = tuple(str(n) for n in names)
        self.densities_g_cm3 = np.asarray(densities_g_cm3, dtype=float)
        self.atomic_numbers = np.asarray(atomic_numbers, dtype=np.int64)
        self.mass_fractions = np.asarray(mass_fractions, dtype=float)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def atomic_weights_g_mol(self) -> np.ndarray:
        return np.array([atomic_weight_g_mol(z) for z in self.atomic_numbers])

    @property
    def electrons_per_gram(self) -> np.ndarray:
        """N_A * sum_i w_i Z_i / A_i (electrons per gram), per medium."""
        return AVOGADRO_PER_MOL * self.mass_fractions @ (self.atomic_numbers / self.atomic_weights_g_mol)

    @property
    def atoms_per_gram(self) -> np.ndarray:
        """N_A * sum_i w_i / A_i (atoms per gram), per medium."""
        return AVOGADRO_PER_MOL * self.mass_fractions @ (1.0 / self.atomic_weights_g_mol)

    def key(self) -> str:
        """SHA-1 of names, densities and compositions: identifies the media a table was built for."""
        payload = json.dumps({"names": list(self.names), "densities": [None if not math.isfinite(d) else round(d, 9)
                                                                        for d in self.densities_g_cm3],
                              "Z": self.atomic_numbers.tolist(),
                              "w": np.round(self.mass_fractions, 12).tolist()}, sort_keys=True)
        return hashlib.sha1(payload.encode("utf-8")).hexdigest()


MediaLike = Any  # MediaTable | Medium | sequence of Medium | sequence of {element: mass fraction} | MediaSpec


def resolve_media(media: MediaLike, names: Optional[Sequence[str]] = None,
                  densities_g_cm3: Optional[Sequence[float]] = None) -> MediaSpec:
    """Normalise `media` to a MediaSpec.

    Accepts a MediaTable, a Medium, a sequence of Medium, a mapping {element: mass fraction} or a sequence of
    such mappings (elements as symbols or atomic numbers), or a MediaSpec. `names` and `densities_g_cm3`
    override or supply the names and densities (mappings carry none: density NaN, name 'medium_<i>').
    """
    if isinstance(media, MediaSpec):
        spec_names, spec_rho = list(media.names), list(media.densities_g_cm3)
        fractions = [{int(z): float(w) for z, w in zip(media.atomic_numbers, row) if w > 0}
                     for row in media.mass_fractions]
    else:
        items = [media] if (isinstance(media, Mapping) or hasattr(media, "mass_fractions")) else list(media)
        if not items:
            raise InteractionDataError("No media given: pass a MediaTable, a list of Medium, or a list of "
                                       "{element: mass fraction} mappings.")
        spec_names, spec_rho, fractions = [], [], []
        for i, item in enumerate(items):
            if hasattr(item, "mass_fractions") and hasattr(item, "density_g_cm3"):
                spec_names.append(str(getattr(item, "name", f"medium_{i}")))
                spec_rho.append(float(item.density_g_cm3))
                raw = dict(item.mass_fractions)
            elif isinstance(item, Mapping):
                spec_names.append(f"medium_{i}")
                spec_rho.append(float("nan"))
                raw = dict(item)
            else:
                raise InteractionDataError(f"Medium {i} is a {type(item).__name__}; give a Medium or a mapping "
                                           "{element symbol: mass fraction}.")
            fr: Dict[int, float] = {}
            for el, w in raw.items():
                w = float(w)
                if not (math.isfinite(w) and w >= 0):
                    raise InputFormatError(f"Medium {spec_names[-1]!r}: mass fraction of {el!r} is {w}; mass fractions "
                                           "must be finite and >= 0.")
                if w > 0:
                    z = atomic_number(el)
                    fr[z] = fr.get(z, 0.0) + w
            total = sum(fr.values())
            if not total > 0:
                raise InputFormatError(f"Medium {spec_names[-1]!r} has no element with a positive mass fraction.")
            if abs(total - 1.0) > 1e-3:
                raise InputFormatError(f"Medium {spec_names[-1]!r}: mass fractions sum to {total:.6f}, not 1; "
                                       "renormalise them (give fractions, not percentages).")
            fractions.append({z: w / total for z, w in fr.items()})
    if names is not None:
        if len(names) != len(fractions):
            raise InputFormatError(f"{len(names)} names for {len(fractions)} media; give one name per medium.")
        spec_names = [str(n) for n in names]
    if densities_g_cm3 is not None:
        rho = np.asarray(densities_g_cm3, dtype=float).reshape(-1)
        if rho.size != len(fractions):
            raise InputFormatError(f"{rho.size} densities for {len(fractions)} media; give one density (g/cm3) per "
                                   "medium.")
        spec_rho = list(rho)
    rho_arr = np.asarray(spec_rho, dtype=float)
    if np.any(rho_arr[np.isfinite(rho_arr)] <= 0):
        raise InputFormatError("Densities must be > 0 g/cm3.")
    zs = sorted({z for fr in fractions for z in fr})
    w = np.array([[fr.get(z, 0.0) for z in zs] for fr in fractions], dtype=float)
    return MediaSpec(spec_names, rho_arr, np.array(zs, dtype=np.int64), w)


# ------------------------------------------------------------------------------------------- Klein-Nishina
def klein_nishina_cross_section_cm2(energy_mev: Any) -> np.ndarray:
    """Klein-Nishina total cross section per free electron (cm2).

    Klein & Nishina, Z. Phys. 52 (1929) 853; closed form as in Attix (1986) ch. 7 / Evans (1955):
    sigma = 2 pi r_e^2 {(1+k)/k^2 [2(1+k)/(1+2k) - ln(1+2k)/k] + ln(1+2k)/(2k) - (1+3k)/(1+2k)^2}, k = E/mc^2.
    """
    k = np.asarray(energy_mev, dtype=float) / ELECTRON_MASS_MEV
    l2k = np.log1p(2.0 * k)
    return 2.0 * math.pi * CLASSICAL_ELECTRON_RADIUS_CM ** 2 * (
        (1.0 + k) / k ** 2 * (2.0 * (1.0 + k) / (1.0 + 2.0 * k) - l2k / k)
        + l2k / (2.0 * k) - (1.0 + 3.0 * k) / (1.0 + 2.0 * k) ** 2)


def klein_nishina_dcs_cm2_sr(energy_mev: Any, cos_theta: Any) -> np.ndarray:
    """Klein-Nishina differential cross section per electron (cm2/sr), broadcast over energy and cos(theta).

    Klein & Nishina 1929: dsigma/dOmega = r_e^2/2 r^2 (r + 1/r - sin^2 theta), r = E'/E = 1/(1 + k(1-cos theta)).
    """
    k = np.asarray(energy_mev, dtype=float) / ELECTRON_MASS_MEV
    mu = np.asarray(cos_theta, dtype=float)
    r = 1.0 / (1.0 + k * (1.0 - mu))
    return 0.5 * CLASSICAL_ELECTRON_RADIUS_CM ** 2 * r ** 2 * (r + 1.0 / r - (1.0 - mu ** 2))


def momentum_transfer_inv_angstrom(energy_mev: Any, cos_theta: Any) -> np.ndarray:
    """x = sin(theta/2)/lambda in 1/Angstrom (the variable of xraylib SF_Compt/FF_Rayl; Hubbell et al. 1975)."""
    e_kev = np.asarray(energy_mev, dtype=float) * 1e3
    return np.sqrt(np.clip(0.5 * (1.0 - np.asarray(cos_theta, dtype=float)), 0.0, None)) * e_kev / HC_KEV_ANGSTROM


# --------------------------------------------------------------------------------------- grid interpolation
def _log_grid(e_min: float, e_max: float, n: int, what: str) -> np.ndarray:
    if not (e_min > 0 and e_max > e_min and math.isfinite(e_max)):
        raise InteractionDataError(f"{what}: need 0 < e_min < e_max; got {e_min}, {e_max}.")
    if int(n) < 16:
        raise InteractionDataError(f"{what}: use at least 16 grid points; got {n}.")
    return np.exp(np.linspace(math.log(e_min), math.log(e_max), int(n)))


def _uniform_loglog(log_table: np.ndarray, log_x0: float, dlog_x: float, rows: np.ndarray,
                    x: np.ndarray) -> np.ndarray:
    """exp of the linear interpolation of log_table[rows, :] (uniform grid in ln x) at x; clamps at the ends."""
    n = log_table.shape[1]
    u = (np.log(x) - log_x0) / dlog_x
    i = np.clip(np.floor(u), 0, n - 2).astype(np.int64)
    f = np.clip(u - i, 0.0, 1.0)
    lo = log_table[rows, i]
    hi = log_table[rows, i + 1]
    return np.exp(lo + f * (hi - lo))


def _check_rows(index: Any, n_media: int, what: str) -> np.ndarray:
    idx = np.asarray(index)
    if idx.dtype.kind not in "iu":
        if idx.dtype.kind == "f" and np.all(np.equal(np.mod(idx, 1), 0)):
            idx = idx.astype(np.int64)
        else:
            raise InteractionDataError(f"{what}: medium indices must be integers; got dtype {idx.dtype}.")
    if idx.size and (idx.min() < 0 or idx.max() >= n_media):
        raise InteractionDataError(f"{what}: medium index out of range (valid 0..{n_media - 1}; got "
                                   f"{int(idx.min())}..{int(idx.max())}). Use the index of the media table the data "
                                   "were built for.")
    return idx.astype(np.int64)


def _check_energy(energy_mev: Any, e_min: float, e_max: float, what: str) -> np.ndarray:
    e = np.asarray(energy_mev, dtype=float)
    if e.size:
        lo, hi = float(np.min(e)), float(np.max(e))
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise EnergyRangeError(f"{what}: energies must be finite numbers in MeV.")
        if lo < e_min * (1 - 1e-9) or hi > e_max * (1 + 1e-9):
            raise EnergyRangeError(f"{what}: energy {lo if lo < e_min else hi:.6g} MeV is outside the table "
                                   f"[{e_min:.6g}, {e_max:.6g}] MeV. Rebuild the table with a wider e_min_mev/"
                                   "e_max_mev, or handle such particles before the lookup (e.g. deposit energies "
                                   "below the cut-off locally).")
    return e


def _torch_uniform_loglog(torch, log_table, log_x0: float, dlog_x: float, rows, x):
    """Torch version of _uniform_loglog (same clamping); rows and x broadcast to a common shape."""
    n = log_table.shape[1]
    rows, x = torch.broadcast_tensors(rows.long(), x)
    u = (torch.log(x.to(log_table.dtype)) - log_x0) / dlog_x
    i = torch.clamp(torch.floor(u), 0, n - 2).long()
    f = torch.clamp(u - i.to(u.dtype), 0.0, 1.0)
    flat = log_table.reshape(-1)
    base = rows * n + i
    lo = flat[base]
    hi = flat[base + 1]
    return torch.exp(lo + f * (hi - lo))


# ------------------------------------------------------------------------------------- element-level tables
def _quadrature(n: int = 128) -> Tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)  # nodes in cos(theta) on [-1, 1], weights


def _safe(fn, *args) -> float:
    try:
        return float(fn(*args))
    except Exception:  # xraylib raises ValueError outside its tables / below thresholds
        return float("nan")


def _element_scattering_tables(xrl, z: int, x_grid: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """S(x, Z) (xraylib SF_Compt, Hubbell et al. 1975) and F(x, Z) (xraylib FF_Rayl) on x_grid (1/Angstrom)."""
    s = np.array([_safe(xrl.SF_Compt, z, float(x)) for x in x_grid])
    f = np.array([_safe(xrl.FF_Rayl, z, float(x)) for x in x_grid])
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(f))):
        raise InteractionDataError(f"xraylib has no scattering-function data for Z={z} on x in "
                                   f"[{x_grid[0]:.3g}, {x_grid[-1]:.3g}] 1/A.")
    s = np.maximum.accumulate(np.clip(s, 1e-30, float(z)))  # S rises to Z (guard against round-off)
    f = np.clip(f, 1e-30, float(z))
    return s, f


def _interp_s(s_table: np.ndarray, log_x0: float, dlog_x: float, x: np.ndarray) -> np.ndarray:
    """S(x) for one element from its table; S ~ x^2 below the grid (S(x) -> 0 as x^2, Hubbell 1975)."""
    x = np.asarray(x, dtype=float)
    out = np.empty_like(x)
    x_min = math.exp(log_x0)
    below = x < x_min
    xs = np.where(below, x_min, x)
    out[...] = _uniform_loglog(np.log(s_table)[None, :], log_x0, dlog_x, np.zeros(xs.shape, dtype=np.int64), xs)
    out[below] = s_table[0] * (x[below] / x_min) ** 2
    return out


def _fluorescence_energy_mev(xrl, z: int, e_kev: np.ndarray, lines: Sequence[int]) -> np.ndarray:
    """Mean fluorescence energy emitted per photoabsorption, X(E) (MeV), K and L lines with cascades.

    X = sum_lines sigma_line(E) E_line / tau(E), from xraylib CS_FluorLine_Kissel_Cascade / CS_Photo_Total
    (Kissel photoionisation, Elam et al. 2002 radiative rates and yields). Elements Z <= 10 emit < 1 keV with
    fluorescence yields < 2 % and are set to X = 0 (absorbed on the spot). Above the last energy xraylib
    covers, X is held at its last value (X is nearly constant above the K edge).
    """
    x_out = np.zeros_like(e_kev)
    if z <= 10:
        return x_out
    energies = [(line, _safe(xrl.LineEnergy, z, line)) for line in lines]
    energies = [(line, e) for line, e in energies if math.isfinite(e) and e > 0]
    last = float("nan")
    for j, e in enumerate(e_kev):
        tau = _safe(xrl.CS_Photo_Total, z, float(e))
        if math.isfinite(tau) and tau > 0:
            emitted = 0.0
            for line, e_line in energies:
                cs = _safe(xrl.CS_FluorLine_Kissel_Cascade, z, line, float(e))
                if math.isfinite(cs) and cs > 0:
                    emitted += cs * e_line
            last = min(emitted / tau, float(e)) * 1e-3
            x_out[j] = last
        elif math.isfinite(last):
            x_out[j] = last
    return x_out


def _xray_lines(xrl) -> Tuple[int, ...]:
    names = [n for n in dir(xrl) if n.endswith("_LINE") and n[:2] in ("KL", "KM", "KN", "KO", "KP", "L1", "L2", "L3")
             and n.count("_") == 1]
    return tuple(sorted({int(getattr(xrl, n)) for n in names}))


# ---------------------------------------------------------------------------------------------- main class
def read_table_npz(path: Union[str, Path], file_format: str, version: int, what: str) -> tuple[dict, dict]:
    """Arrays and metadata of a table file written by save_npz; errors name the file and the fix."""
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputFormatError(f"Cannot read {what} from {path}: {exc}.") from exc
    with data:
        arrays = {key: data[key] for key in data.files}
    if "metadata_json" not in arrays:
        raise InputFormatError(f"{path} lacks the array 'metadata_json'; rebuild it with save_npz.")
    meta = json.loads(str(arrays.pop("metadata_json")))
    if meta.get("format") != file_format:
        raise InputFormatError(f"{path} is not a {what} file (format {meta.get('format')!r}).")
    if int(meta.get("version", 0)) > version:
        raise InputFormatError(f"{path} was written by a newer version ({meta.get('version')}); upgrade "
                               "VoxelDosimetry or rebuild the tables.")
    return arrays, meta


class MediaTableAccessors:
    """Shared accessors of per-medium energy tables (needs `spec: MediaSpec` and `energies_mev`)."""

    table_kind = "interaction"

    @property
    def names(self) -> Tuple[str, ...]:
        return self.spec.names

    @property
    def n_media(self) -> int:
        return len(self.spec)

    @property
    def densities_g_cm3(self) -> np.ndarray:
        return self.spec.densities_g_cm3

    @property
    def e_min_mev(self) -> float:
        return float(self.energies_mev[0])

    @property
    def e_max_mev(self) -> float:
        return float(self.energies_mev[-1])

    @property
    def media_key(self) -> str:
        return self.spec.key()

    def index_of(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise InteractionDataError(f"No medium named {name!r} in these {self.table_kind} tables; known: "
                                       f"{', '.join(self.names[:10])}{' ...' if self.n_media > 10 else ''}.") from None


class PhotonCrossSections(MediaTableAccessors):
    """Per-medium photon interaction coefficients on a log energy grid, plus scattering-function tables.

    Arrays (M media, N energies, Nx momentum transfers):
      energies_mev (N,); photo/compton/rayleigh/total_mu_over_rho_cm2_g and mu_en_over_rho_cm2_g (M, N);
      fluorescence_fraction (M, N): fraction of the photoabsorbed energy re-emitted as K/L fluorescence;
      x_grid_inv_angstrom (Nx,); sf_compton_per_atom (M, Nx): S(x) per atom of the mixture (-> z_per_atom);
      ff2_rayleigh_per_atom (M, Nx): F(x)^2 per atom; ff2_cumulative_per_atom (M, Nx): int_0^{x^2} F^2 d(x^2);
      z_per_atom, atoms_per_gram, electrons_per_gram, densities_g_cm3 (M,).
    Build with PhotonCrossSections.build(media); mixtures use mu/rho = sum_i w_i (mu/rho)_i.
    """

    table_kind = "photon"

    def __init__(self, *, names: Sequence[str], densities_g_cm3: np.ndarray, atomic_numbers: np.ndarray,
                 mass_fractions: np.ndarray, energies_mev: np.ndarray, tables: Mapping[str, np.ndarray],
                 fluorescence_fraction: np.ndarray, x_grid_inv_angstrom: np.ndarray,
                 sf_compton_per_atom: np.ndarray, ff2_rayleigh_per_atom: np.ndarray,
                 ff2_cumulative_per_atom: np.ndarray, metadata: Optional[Mapping[str, Any]] = None) -> None:
        self.spec = MediaSpec(names, densities_g_cm3, atomic_numbers, mass_fractions)
        self.energies_mev = np.asarray(energies_mev, dtype=float)
        n_e = self.energies_mev.size
        dl = np.diff(np.log(self.energies_mev))
        if n_e < 2 or not np.allclose(dl, dl[0], rtol=1e-6, atol=0):
            raise InputFormatError("Photon tables need a uniform logarithmic energy grid of at least 2 points.")
        self._log_e0 = float(math.log(self.energies_mev[0]))
        self._dlog_e = float(dl[0])
        self._tables = {}
        for q in QUANTITIES:
            arr = np.asarray(tables[q], dtype=float)
            if arr.shape != (len(self.spec), n_e):
                raise InputFormatError(f"Photon table {q!r} has shape {arr.shape}; expected {(len(self.spec), n_e)}.")
            self._tables[q] = arr
        self._log_tables = {q: np.log(np.maximum(a, 1e-300)) for q, a in self._tables.items()}
        self.fluorescence_fraction = np.asarray(fluorescence_fraction, dtype=float)
        self.x_grid_inv_angstrom = np.asarray(x_grid_inv_angstrom, dtype=float)
        dlx = np.diff(np.log(self.x_grid_inv_angstrom))
        if not np.allclose(dlx, dlx[0], rtol=1e-6, atol=0):
            raise InputFormatError("The momentum-transfer grid must be uniform in ln x.")
        self._log_x0 = float(math.log(self.x_grid_inv_angstrom[0]))
        self._dlog_x = float(dlx[0])
        self.sf_compton_per_atom = np.asarray(sf_compton_per_atom, dtype=float)
        self.ff2_rayleigh_per_atom = np.asarray(ff2_rayleigh_per_atom, dtype=float)
        self.ff2_cumulative_per_atom = np.asarray(ff2_cumulative_per_atom, dtype=float)
        self.metadata = dict(metadata or {})
        self._torch_cache: Dict[Tuple[str, str], Dict[str, Any]] = {}

    # -------------------------------------------------------------------------------------------- build
    @classmethod
    def build(cls, media: MediaLike, *, names: Optional[Sequence[str]] = None,
              densities_g_cm3: Optional[Sequence[float]] = None, e_min_mev: float = 1e-3, e_max_mev: float = 3.0,
              n_energies: int = 400, x_min_inv_angstrom: float = 1e-3, x_max_inv_angstrom: float = 1e3,
              n_x: int = 256, n_angles: int = 128) -> "PhotonCrossSections":
        """Tabulate the media (see resolve_media for accepted inputs) on a log grid [e_min_mev, e_max_mev].

        Loops over elements and energies (xraylib), never over voxels: 74 Schneider media take ~1-2 s.
        """
        xrl = _xraylib()
        spec = resolve_media(media, names, densities_g_cm3)
        energies = _log_grid(e_min_mev, e_max_mev, n_energies, "PhotonCrossSections.build")
        if energies[0] < 1e-3 * (1 - 1e-9):
            raise InteractionDataError(f"e_min_mev={e_min_mev} is below 1 keV, where xraylib has no data.")
        x_grid = _log_grid(x_min_inv_angstrom, x_max_inv_angstrom, n_x, "momentum-transfer grid")
        if x_min_inv_angstrom < 1e-3:
            raise InteractionDataError("x_min_inv_angstrom must be >= 1e-3 1/A (xraylib SF_Compt limit).")
        x_needed = float(momentum_transfer_inv_angstrom(energies[-1], -1.0))
        if x_grid[-1] < x_needed:
            raise InteractionDataError(f"x_max_inv_angstrom={x_max_inv_angstrom} is below the largest momentum transfer "
                                       f"{x_needed:.4g} 1/A at {energies[-1]} MeV; raise it.")
        low = energies <= XRAYLIB_MAX_ENERGY_MEV * (1 + 1e-12)
        high = ~low
        e_kev_low = np.minimum(energies[low] * 1e3, XRAYLIB_MAX_ENERGY_MEV * 1e3)  # guard round-off at 800 keV
        mu_q, w_q = _quadrature(n_angles)
        lines = _xray_lines(xrl)
        n_el, n_e = spec.atomic_numbers.size, energies.size
        el = {k: np.zeros((n_el, n_e)) for k in ("photo", "compton", "rayleigh", "tr_c", "tr2_c", "fluor_x")}
        s_el = np.zeros((n_el, n_x))
        f_el = np.zeros((n_el, n_x))
        a_el = spec.atomic_weights_g_mol
        # per-element quadrature pieces: Klein-Nishina dcs at (E, cos theta) -- shared by all elements
        dcs = klein_nishina_dcs_cm2_sr(energies[:, None], mu_q[None, :])  # (N, Q)
        ratio = 1.0 / (1.0 + energies[:, None] / ELECTRON_MASS_MEV * (1.0 - mu_q[None, :]))  # E'/E
        t_kin = energies[:, None] * (1.0 - ratio)  # Compton electron kinetic energy, MeV (free electron at rest)
        xq = momentum_transfer_inv_angstrom(energies[:, None], mu_q[None, :])
        kn_total = klein_nishina_cross_section_cm2(energies)
        e_hi_ratio = energies[high] / XRAYLIB_MAX_ENERGY_MEV
        for j, z in enumerate(spec.atomic_numbers):
            z = int(z)
            photo = np.array([_safe(xrl.CS_Photo, z, float(e)) for e in e_kev_low])
            compt = np.array([_safe(xrl.CS_Compt, z, float(e)) for e in e_kev_low])
            rayl = np.array([_safe(xrl.CS_Rayl, z, float(e)) for e in e_kev_low])
            for label, arr in (("CS_Photo", photo), ("CS_Compt", compt), ("CS_Rayl", rayl)):
                if not np.all(np.isfinite(arr)):
                    bad = e_kev_low[~np.isfinite(arr)]
                    raise InteractionDataError(f"xraylib {label} failed for Z={z} at {bad[0]:.4g} keV; xraylib covers "
                                               "1-800 keV. Check e_min_mev/e_max_mev.")
            el["photo"][j, low] = photo
            el["compton"][j, low] = compt
            el["rayleigh"][j, low] = rayl
            if high.any():
                ref = 800.0
                p800, p700 = float(xrl.CS_Photo(z, ref)), float(xrl.CS_Photo(z, 700.0))
                # photoelectric above 800 keV: continue the 700-800 keV log-log slope (power law, documented)
                slope = math.log(p800 / p700) / math.log(800.0 / 700.0)
                el["photo"][j, high] = p800 * e_hi_ratio ** slope
                # Compton above 800 keV: Klein-Nishina x electrons per gram (Klein & Nishina 1929; binding < 0.6 %)
                el["compton"][j, high] = kn_total[high] * AVOGADRO_PER_MOL * z / a_el[j]
                # Rayleigh above 800 keV: sigma_coh ~ E^-2 at high energy (Hubbell et al. 1975 form-factor limit)
                el["rayleigh"][j, high] = float(xrl.CS_Rayl(z, ref)) * e_hi_ratio ** -2.0
            s_tab, f_tab = _element_scattering_tables(xrl, z, x_grid)
            s_el[j], f_el[j] = s_tab, f_tab
            # Compton energy transfer with binding: <T> and <T^2> over KN x S(x, Z) (as in Hubbell & Seltzer, NISTIR 5632)
            s_q = _interp_s(s_tab, float(np.log(x_grid[0])), float(np.log(x_grid[1] / x_grid[0])), xq)
            wdcs = w_q[None, :] * dcs * s_q
            norm = wdcs.sum(axis=1)
            mean_t = (wdcs * t_kin).sum(axis=1) / norm
            mean_t2 = (wdcs * t_kin ** 2).sum(axis=1) / norm
            el["tr_c"][j] = el["compton"][j] * mean_t / energies  # cm2/g, energy-transfer fraction weighted
            el["tr2_c"][j] = el["compton"][j] * mean_t2 / energies  # MeV cm2/g (for the radiative-loss term)
            # fluorescence energy per photoabsorption (MeV); constant above the xraylib range
            fx = np.zeros(n_e)
            fx[low] = _fluorescence_energy_mev(xrl, z, e_kev_low, lines)
            if high.any():
                fx[high] = fx[low][-1]
            el["fluor_x"][j] = fx
        w = spec.mass_fractions  # (M, K) mixture rule mu/rho = sum_i w_i (mu/rho)_i (Hubbell, Int. J. Appl. Radiat. Isot. 33 (1982) 1269)
        photo_m = w @ el["photo"]
        compt_m = w @ el["compton"]
        rayl_m = w @ el["rayleigh"]
        total_m = photo_m + compt_m + rayl_m
        absorbed_fraction = 1.0 - np.clip(el["fluor_x"] / energies[None, :], 0.0, 1.0)  # (K, N)
        tr_photo = el["photo"] * absorbed_fraction  # tau (1 - X/E)
        tr2_photo = el["photo"] * absorbed_fraction ** 2 * energies[None, :]  # tau (E - X)^2 / E, MeV cm2/g
        mu_tr_m = w @ (tr_photo + el["tr_c"])
        # radiative loss g (Attix 1986 ch. 8: S_rad/S_col ~ Z T / 800 MeV -> yield Y(T) ~ c T, c = Z_eff / 1600 MeV)
        # g = sum(T Y(T)) / sum(T) = c <T^2>/<T> over the secondary electrons; Z_eff = sum w Z^2/A / sum w Z/A
        z_arr = spec.atomic_numbers.astype(float)
        z_eff = (w @ (z_arr ** 2 / a_el)) / (w @ (z_arr / a_el))
        c_rad = z_eff / 1600.0
        # mu_en E = mu_tr E - sum sigma_i T_i Y(T_i) = mu_tr E - c sum sigma_i T_i^2  ->  mu_en = mu_tr - c sum sigma <T^2>/E
        mu_en_m = mu_tr_m - c_rad[:, None] * (w @ (tr2_photo + el["tr2_c"]))
        fluor_m = np.where(photo_m > 0, (w @ (el["photo"] * (1 - absorbed_fraction))) / np.maximum(photo_m, 1e-300),
                           0.0)
        # scattering functions per atom of the mixture: sum_i n_i S_i / sum_i n_i, n_i = w_i / A_i
        n_frac = w / a_el[None, :]
        n_frac = n_frac / n_frac.sum(axis=1, keepdims=True)
        sf_m = n_frac @ s_el
        ff2_m = n_frac @ (f_el ** 2)
        # cumulative int_0^{x^2} F^2 d(x^2) on the grid: F^2(x_min) x_min^2 below the grid, then trapezoid in ln x
        # with d(x^2) = 2 x^2 d(ln x)
        integrand = ff2_m * 2.0 * x_grid[None, :] ** 2
        steps = 0.5 * (integrand[:, 1:] + integrand[:, :-1]) * np.diff(np.log(x_grid))[None, :]
        cum = np.concatenate([ff2_m[:, :1] * x_grid[0] ** 2, ff2_m[:, :1] * x_grid[0] ** 2
                              + np.cumsum(steps, axis=1)], axis=1)
        meta = {"format": PHOTON_DATA_FORMAT, "version": PHOTON_DATA_VERSION,
                "xraylib_version": str(getattr(xrl, "__version__", "")),
                "media_key": spec.key(), "z_eff_radiative": z_eff.tolist(),
                "xraylib_max_energy_mev": XRAYLIB_MAX_ENERGY_MEV,
                "sources": "E<=0.8 MeV: xraylib CS_Photo/CS_Compt/CS_Rayl; E>0.8 MeV: Klein-Nishina Compton, "
                           "E^-2 Rayleigh, power-law photo; mu_en from components (KN x S(x) energy transfer, "
                           "xraylib Kissel fluorescence, Attix radiative yield); no pair production",
                "n_angles": int(n_angles)}
        return cls(names=spec.names, densities_g_cm3=spec.densities_g_cm3, atomic_numbers=spec.atomic_numbers,
                   mass_fractions=spec.mass_fractions, energies_mev=energies,
                   tables={"photo": photo_m, "compton": compt_m, "rayleigh": rayl_m, "total": total_m,
                           "mu_en": mu_en_m},
                   fluorescence_fraction=fluor_m, x_grid_inv_angstrom=x_grid, sf_compton_per_atom=sf_m,
                   ff2_rayleigh_per_atom=ff2_m, ff2_cumulative_per_atom=cum, metadata=meta)

    # ------------------------------------------------------------------------------------------ accessors
    @property
    def photo_mu_over_rho_cm2_g(self) -> np.ndarray:
        return self._tables["photo"]

    @property
    def compton_mu_over_rho_cm2_g(self) -> np.ndarray:
        return self._tables["compton"]

    @property
    def rayleigh_mu_over_rho_cm2_g(self) -> np.ndarray:
        return self._tables["rayleigh"]

    @property
    def total_mu_over_rho_cm2_g(self) -> np.ndarray:
        return self._tables["total"]

    @property
    def mu_en_over_rho_cm2_g(self) -> np.ndarray:
        return self._tables["mu_en"]

    @property
    def z_per_atom(self) -> np.ndarray:
        """Mean atomic number per atom of each mixture: the large-x limit of sf_compton_per_atom."""
        n = self.spec.mass_fractions / self.spec.atomic_weights_g_mol[None, :]
        return (n @ self.spec.atomic_numbers.astype(float)) / n.sum(axis=1)

    @property
    def atoms_per_gram(self) -> np.ndarray:
        return self.spec.atoms_per_gram

    @property
    def electrons_per_gram(self) -> np.ndarray:
        return self.spec.electrons_per_gram

    def table(self, quantity: str) -> np.ndarray:
        """(M, N) array of one quantity: photo, compton, rayleigh, total or mu_en (all cm2/g)."""
        return self._tables[_quantity(quantity)]

    def _rows(self, medium_index: Any) -> np.ndarray:
        if isinstance(medium_index, str):
            return np.asarray(self.index_of(medium_index))
        return _check_rows(medium_index, self.n_media, "PhotonCrossSections")

    # -------------------------------------------------------------------------------------- interpolation
    def interpolate(self, medium_index: Any, energy_mev: Any, quantity: str = "total") -> np.ndarray:
        """mu/rho (cm2/g) of `quantity` for medium indices and energies (broadcast), log-log interpolation.

        quantity: photo | compton | rayleigh | total | mu_en (aliases photoelectric, incoherent, coherent,
        energy_absorption). Raises EnergyRangeError outside [e_min_mev, e_max_mev].
        Near absorption edges (e.g. Ag K 25.5 keV, Sn K 29.2 keV) the interpolation spreads the edge over one
        grid interval (2 % in energy with 400 points).
        """
        q = _quantity(quantity)
        rows = self._rows(medium_index)
        e = _check_energy(energy_mev, self.e_min_mev, self.e_max_mev, f"PhotonCrossSections.interpolate({q})")
        rows, e = np.broadcast_arrays(rows, e)
        return _uniform_loglog(self._log_tables[q], self._log_e0, self._dlog_e, rows, e)

    def interpolate_all(self, medium_index: Any, energy_mev: Any) -> Dict[str, np.ndarray]:
        """{quantity: mu/rho (cm2/g)} for every quantity in QUANTITIES."""
        return {q: self.interpolate(medium_index, energy_mev, q) for q in QUANTITIES}

    def linear_attenuation_per_cm(self, medium_index: Any, energy_mev: Any, quantity: str = "total") -> np.ndarray:
        """mu (1/cm) = mu/rho x density; needs densities (Medium or densities_g_cm3 at build)."""
        rows = self._rows(medium_index)
        rho = self.densities_g_cm3[rows]
        if not np.all(np.isfinite(rho)):
            raise InteractionDataError("These tables were built without densities; pass densities_g_cm3 to build() "
                                       "or use mu/rho (interpolate) times your density.")
        return self.interpolate(rows, energy_mev, quantity) * rho

    def scattering_function(self, medium_index: Any, x_inv_angstrom: Any) -> np.ndarray:
        """Incoherent scattering function S(x) per atom of the mixture (-> z_per_atom for large x)."""
        rows = self._rows(medium_index)
        x = np.asarray(x_inv_angstrom, dtype=float)
        if np.any(x < 0) or np.any(x > self.x_grid_inv_angstrom[-1] * (1 + 1e-9)):
            raise InteractionDataError(f"Momentum transfer must be in [0, {self.x_grid_inv_angstrom[-1]:.4g}] 1/A.")
        rows, x = np.broadcast_arrays(rows, x)
        x_min = self.x_grid_inv_angstrom[0]
        xs = np.maximum(x, x_min)
        out = _uniform_loglog(np.log(np.maximum(self.sf_compton_per_atom, 1e-300)), self._log_x0, self._dlog_x,
                              rows, xs)
        below = x < x_min
        return np.where(below, self.sf_compton_per_atom[rows, 0] * (x / x_min) ** 2, out)

    def form_factor_squared(self, medium_index: Any, x_inv_angstrom: Any) -> np.ndarray:
        """Atomic form factor squared F(x)^2 per atom of the mixture (F(0)^2 below the grid)."""
        rows = self._rows(medium_index)
        x = np.asarray(x_inv_angstrom, dtype=float)
        if np.any(x < 0) or np.any(x > self.x_grid_inv_angstrom[-1] * (1 + 1e-9)):
            raise InteractionDataError(f"Momentum transfer must be in [0, {self.x_grid_inv_angstrom[-1]:.4g}] 1/A.")
        rows, x = np.broadcast_arrays(rows, x)
        xs = np.maximum(x, self.x_grid_inv_angstrom[0])
        return _uniform_loglog(np.log(np.maximum(self.ff2_rayleigh_per_atom, 1e-300)), self._log_x0, self._dlog_x,
                               rows, xs)

    # ------------------------------------------------------------------------------------------ diagnostics
    def _x_integral(self, medium_index: int, energy_mev: Any, integrand, n_points: int) -> np.ndarray:
        """2 pi int_{-1}^{1} g(E, cos theta, x) dcos theta, integrated in ln x (cos theta = 1 - 2 lambda^2 x^2,
        dcos = -4 lambda^2 x^2 dln x) so that forward peaks at high energy are resolved."""
        e = np.atleast_1d(np.asarray(energy_mev, dtype=float))
        lam = HC_KEV_ANGSTROM / (e * 1e3)  # wavelength, Angstrom
        x_max = 1.0 / lam
        t = np.linspace(math.log(1e-9), 0.0, n_points)
        x = x_max[:, None] * np.exp(t)[None, :]
        mu = 1.0 - 2.0 * (lam[:, None] * x) ** 2
        vals = integrand(e[:, None], mu, x) * 4.0 * lam[:, None] ** 2 * x ** 2
        return 2.0 * math.pi * np.trapezoid(vals, t, axis=1) if hasattr(np, "trapezoid") else \
            2.0 * math.pi * np.trapz(vals, t, axis=1)

    def compton_from_scattering_function(self, medium_index: int, energy_mev: Any,
                                         n_points: int = 4000) -> np.ndarray:
        """sigma_incoh/rho (cm2/g) = atoms/g x int KN x S(x) dOmega from the stored S table: a consistency check
        of the S(x) table against the tabulated Compton coefficient (Hubbell et al. 1975 incoherent model)."""
        m = int(medium_index)

        def g(e, mu, x):
            return klein_nishina_dcs_cm2_sr(e, mu) * self.scattering_function(np.full(x.shape, m), x)

        return self._x_integral(m, energy_mev, g, n_points) * self.atoms_per_gram[m]

    def rayleigh_from_form_factor(self, medium_index: int, energy_mev: Any, n_points: int = 4000) -> np.ndarray:
        """sigma_coh/rho (cm2/g) = atoms/g x int r_e^2/2 (1 + cos^2) F^2(x) dOmega (Thomson x form factor,
        Hubbell & Overbo 1979, no anomalous scattering factors) from the stored F^2 table."""
        m = int(medium_index)

        def g(e, mu, x):
            return 0.5 * CLASSICAL_ELECTRON_RADIUS_CM ** 2 * (1.0 + mu ** 2) * \
                self.form_factor_squared(np.full(x.shape, m), x)

        return self._x_integral(m, energy_mev, g, n_points) * self.atoms_per_gram[m]

    def continuity_at_800kev(self) -> Dict[str, np.ndarray]:
        """Per-medium ratios (above-800-keV path / xraylib) at exactly 0.8 MeV: 'compton' (Klein-Nishina x
        electrons per gram vs CS_Compt), 'total' and 'mu_en' (this table vs xraylib CS_Energy, which is accurate
        at 800 keV: within 0.01 % of NIST for water). Needs xraylib."""
        xrl = _xraylib()
        zs = [int(z) for z in self.spec.atomic_numbers]
        w = self.spec.mass_fractions
        compt = w @ np.array([float(xrl.CS_Compt(z, 800.0)) for z in zs])
        photo = w @ np.array([float(xrl.CS_Photo(z, 800.0)) for z in zs])
        rayl = w @ np.array([float(xrl.CS_Rayl(z, 800.0)) for z in zs])
        energy = w @ np.array([float(xrl.CS_Energy(z, 800.0)) for z in zs])
        kn = float(klein_nishina_cross_section_cm2(0.8)) * self.electrons_per_gram
        rows = np.arange(self.n_media)
        mu_en_table = self.interpolate(rows, np.full(self.n_media, 0.8), "mu_en")
        return {"compton": kn / compt, "total": (photo + kn + rayl) / (photo + compt + rayl),
                "mu_en": mu_en_table / energy}

    # -------------------------------------------------------------------------------------------- torch
    def to_torch(self, device: Any = "cpu", dtype: Any = None) -> Dict[str, Any]:
        """Tensors for a torch sampler (cached per device/dtype; default dtype float32).

        Keys: log_photo, log_compton, log_rayleigh, log_total, log_mu_en (M, N: ln of cm2/g),
        fluorescence_fraction (M, N), energies_mev (N), densities_g_cm3, z_per_atom, atoms_per_gram,
        electrons_per_gram (M), x_grid_inv_angstrom (Nx), sf_compton_per_atom, ff2_rayleigh_per_atom,
        ff2_cumulative_per_atom (M, Nx); python floats log_e0, dlog_e (energy grid: ln E_i = log_e0 + i dlog_e),
        log_x0, dlog_x (momentum-transfer grid), e_min_mev, e_max_mev.
        """
        import torch

        dtype = torch.float32 if dtype is None else dtype
        dev = torch.device(device)
        key = (str(dev), str(dtype))
        if key not in self._torch_cache:
            def t(a: np.ndarray):
                return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=dev)

            out: Dict[str, Any] = {f"log_{q}": t(self._log_tables[q]) for q in QUANTITIES}
            out.update({"fluorescence_fraction": t(self.fluorescence_fraction), "energies_mev": t(self.energies_mev),
                        "densities_g_cm3": t(np.nan_to_num(self.densities_g_cm3, nan=0.0)),
                        "z_per_atom": t(self.z_per_atom), "atoms_per_gram": t(self.atoms_per_gram),
                        "electrons_per_gram": t(self.electrons_per_gram),
                        "x_grid_inv_angstrom": t(self.x_grid_inv_angstrom),
                        "sf_compton_per_atom": t(self.sf_compton_per_atom),
                        "ff2_rayleigh_per_atom": t(self.ff2_rayleigh_per_atom),
                        "ff2_cumulative_per_atom": t(self.ff2_cumulative_per_atom),
                        "log_e0": self._log_e0, "dlog_e": self._dlog_e, "log_x0": self._log_x0,
                        "dlog_x": self._dlog_x, "e_min_mev": self.e_min_mev, "e_max_mev": self.e_max_mev})
            self._torch_cache[key] = out
        return self._torch_cache[key]

    def interpolate_torch(self, medium_index: Any, energy_mev: Any, quantity: str = "total",
                          tables: Optional[Mapping[str, Any]] = None, check: bool = False):
        """Torch version of interpolate (on the energies' device). Energies outside the table are clamped to
        its ends unless check=True (which raises EnergyRangeError but synchronises a GPU)."""
        import torch

        q = _quantity(quantity)
        e = energy_mev if isinstance(energy_mev, torch.Tensor) else torch.as_tensor(energy_mev)
        tabs = tables if tables is not None else self.to_torch(e.device)
        log_table = tabs[f"log_{q}"]
        m = medium_index if isinstance(medium_index, torch.Tensor) else torch.as_tensor(medium_index)
        m = m.to(log_table.device)
        e = e.to(device=log_table.device, dtype=log_table.dtype)
        if check:
            _check_energy(e.detach().cpu().numpy(), self.e_min_mev, self.e_max_mev, "interpolate_torch")
            _check_rows(m.detach().cpu().numpy(), self.n_media, "interpolate_torch")
        return _torch_uniform_loglog(torch, log_table, tabs["log_e0"], tabs["dlog_e"], m, e)

    # ------------------------------------------------------------------------------------------ persistence
    def save_npz(self, path: Union[str, Path]) -> Path:
        """Write every table and the media description to a compressed .npz (no pickles)."""
        path = Path(path)
        meta = dict(self.metadata)
        meta.setdefault("format", PHOTON_DATA_FORMAT)
        meta.setdefault("version", PHOTON_DATA_VERSION)
        np.savez_compressed(
            path, metadata_json=np.array(json.dumps(meta)), names=np.array(self.names, dtype=str),
            densities_g_cm3=self.densities_g_cm3, atomic_numbers=self.spec.atomic_numbers,
            mass_fractions=self.spec.mass_fractions, energies_mev=self.energies_mev,
            **{f"{q}_cm2_g": self._tables[q] for q in QUANTITIES},
            fluorescence_fraction=self.fluorescence_fraction, x_grid_inv_angstrom=self.x_grid_inv_angstrom,
            sf_compton_per_atom=self.sf_compton_per_atom, ff2_rayleigh_per_atom=self.ff2_rayleigh_per_atom,
            ff2_cumulative_per_atom=self.ff2_cumulative_per_atom)
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")

    @classmethod
    def load_npz(cls, path: Union[str, Path]) -> "PhotonCrossSections":
        data, meta = read_table_npz(path, PHOTON_DATA_FORMAT, PHOTON_DATA_VERSION, "photon cross-section tables")
        try:
            return cls(names=[str(n) for n in data["names"]], densities_g_cm3=data["densities_g_cm3"],
                       atomic_numbers=data["atomic_numbers"], mass_fractions=data["mass_fractions"],
                       energies_mev=data["energies_mev"],
                       tables={q: data[f"{q}_cm2_g"] for q in QUANTITIES},
                       fluorescence_fraction=data["fluorescence_fraction"],
                       x_grid_inv_angstrom=data["x_grid_inv_angstrom"],
                       sf_compton_per_atom=data["sf_compton_per_atom"],
                       ff2_rayleigh_per_atom=data["ff2_rayleigh_per_atom"],
                       ff2_cumulative_per_atom=data["ff2_cumulative_per_atom"], metadata=meta)
        except KeyError as exc:
            raise InputFormatError(f"{path} lacks the array {exc}; rebuild it with save_npz.") from exc

    def __repr__(self) -> str:
        return (f"PhotonCrossSections({self.n_media} media, {self.energies_mev.size} energies "
                f"{self.e_min_mev:g}-{self.e_max_mev:g} MeV)")


def _quantity(name: str) -> str:
    try:
        return _ALIASES[str(name).lower()]
    except KeyError:
        raise InteractionDataError(f"Unknown photon quantity {name!r}; use one of {', '.join(QUANTITIES)}.") from None
