"""ICRP-107 decay data: energy budgets, half-lives, beta spectra and sampling, names (PHYSICS.md §1)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from VoxelDosimetryLib.errors import InputFormatError, UnknownNuclideError
from VoxelDosimetryLib.physics import (
    SUPPORTED_NUCLIDES,
    BetaSpectrum,
    available_nuclides,
    canonical_nuclide_name,
    get_nuclide,
)

KEV = 1e-3  # MeV


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


# ------------------------------------------------------------------------------------------------ Lu-177
def test_lu177_half_life_and_decay_constant():
    lu = get_nuclide("Lu-177")
    assert lu.name == "Lu-177"
    assert lu.half_life_s == pytest.approx(6.647 * 86400.0, rel=1e-12)
    assert lu.decay_constant_per_s == pytest.approx(np.log(2) / (6.647 * 86400.0), rel=1e-12)
    assert lu.half_life_h == pytest.approx(159.528, rel=1e-9)


def test_lu177_energy_budget_matches_icrp107():
    b = get_nuclide("Lu-177").energy_budget()
    assert rel(b["electrons"], 147.9 * KEV) < 0.005
    assert rel(b["photons"], 35.1 * KEV) < 0.005
    assert b["beta"] == pytest.approx(133.27 * KEV, rel=1e-3)
    assert b["ie"] == pytest.approx(13.52 * KEV, rel=2e-3)
    assert b["auger"] == pytest.approx(1.13 * KEV, rel=5e-3)
    assert b["gamma"] + b["x"] == pytest.approx(b["photons"], rel=1e-12)
    assert b["annihilation"] == 0.0 and b["alpha"] == 0.0 and b["beta_plus"] == 0.0
    assert b["electrons"] == pytest.approx(b["beta"] + b["ie"] + b["auger"], rel=1e-12)
    assert b["non_penetrating_fraction"] == pytest.approx(0.808, abs=1e-3)
    assert b["total"] == pytest.approx(b["electrons"] + b["photons"], rel=1e-12)


def test_lu177_branches_and_main_lines():
    lu = get_nuclide("Lu-177")
    assert len(lu.betas) == 4
    assert lu.betas.total_yield() == pytest.approx(1.0, abs=1e-4)
    main = max(lu.betas, key=lambda ln: ln.yield_per_decay)
    assert main.energy_mev == pytest.approx(0.149135) and main.yield_per_decay == pytest.approx(0.78637)
    gammas = {round(ln.energy_mev * 1e3, 2): ln.yield_per_decay for ln in lu.photon_lines(kinds=("gamma",))}
    assert gammas[112.95] == pytest.approx(0.064)  # ICRP-107 yields, not ENSDF 6.20 %
    assert gammas[208.37] == pytest.approx(0.110)
    assert lu.electrons.select("IE").total_yield() == pytest.approx(0.1548, abs=2e-4)


def test_photon_lines_filtering():
    lu = get_nuclide("Lu-177")
    strong = lu.photon_lines(min_energy_mev=0.050, min_yield=0.01)
    assert sorted(np.round(strong.energy_mev * 1e3, 1).tolist()) == [54.7, 55.9, 113.0, 208.4]
    assert set(strong.kind.tolist()) == {"gamma", "X"}
    assert np.all(strong.energy_mev >= 0.05) and np.all(strong.yield_per_decay >= 0.01)
    assert len(lu.photon_lines()) == len(lu.photons) == 66
    assert lu.photon_lines(min_energy_mev=0.02).energy_per_decay_mev() == pytest.approx(34.78 * KEV, rel=2e-3)
    assert len(lu.photon_lines(kinds=("annihilation",))) == 0
    with pytest.raises(InputFormatError, match="Unknown emission kind"):
        lu.photon_lines(kinds=("gama",))


def test_lu177_beta_spectrum_mean_and_integral():
    s = get_nuclide("Lu-177").beta_spectrum
    assert s is not None and s.particle == "e-"
    assert s.energies_mev.size == 101
    assert s.max_energy_mev == pytest.approx(0.4978)
    assert s.mean_energy_mev() == pytest.approx(133.35 * KEV, rel=1e-3)
    assert s.yield_per_decay() == pytest.approx(1.0, abs=2e-3)
    # interpolated spectrum agrees with the ICRP-107 .RAD branch mean (133.27 keV) to 0.1 %
    assert rel(s.energy_per_decay_mev(), get_nuclide("Lu-177").energy_budget()["beta"]) < 1e-3


def test_pchip_is_closer_to_branch_mean_than_linear_on_nodes():
    lu = get_nuclide("Lu-177")
    branch_mean = lu.betas.energy_per_decay_mev() / lu.betas.total_yield()
    linear = BetaSpectrum(lu.beta_spectrum.energies_mev, lu.beta_spectrum.density_per_mev, interpolation="linear")
    assert rel(linear.mean_energy_mev(), branch_mean) > 3e-3  # the documented 0.4 % bias of linear-on-nodes
    assert rel(lu.beta_spectrum.mean_energy_mev(), branch_mean) < 1e-3


def test_beta_sampling_reproduces_mean_and_cdf():
    s = get_nuclide("Lu-177").beta_spectrum
    rng = np.random.default_rng(12345)
    x = s.sample(rng, 400_000)
    assert x.shape == (400_000,)
    assert x.min() >= 0.0 and x.max() <= s.max_energy_mev
    sigma = x.std() / np.sqrt(x.size)
    assert abs(x.mean() - s.mean_energy_mev()) < 4 * sigma
    # Kolmogorov-Smirnov distance against the analytic CDF (1 % critical value 1.63/sqrt(n))
    xs = np.sort(x[:100_000])
    d = np.max(np.abs(s.cdf(xs) - np.arange(1, xs.size + 1) / xs.size))
    assert d < 1.63 / np.sqrt(xs.size)
    # reproducible with the same seed
    np.testing.assert_array_equal(s.sample(np.random.default_rng(7), 10), s.sample(np.random.default_rng(7), 10))


def test_piecewise_linear_sampling_exact_on_synthetic_density():
    # density 0 on [0, 1] (zero-mass segment), then a triangle 2(2-E) on [1, 2]; mean 4/3
    spec = BetaSpectrum([0.0, 1.0, 1.0 + 1e-12, 2.0], [0.0, 0.0, 2.0, 0.0], interpolation="linear")
    assert spec.yield_per_decay() == pytest.approx(1.0, rel=1e-9)
    assert spec.mean_energy_mev() == pytest.approx(4.0 / 3.0, rel=1e-9)
    x = spec.sample(np.random.default_rng(1), 200_000)
    assert x.min() >= 1.0
    for q in (0.1, 0.5, 0.9):  # analytic quantile of the triangle: E = 2 - sqrt(1 - q)
        assert np.quantile(x, q) == pytest.approx(2 - np.sqrt(1 - q), abs=4e-3)
    with pytest.raises(TypeError, match="Generator"):
        spec.sample(np.random.RandomState(0), 3)  # type: ignore[arg-type]


def test_beta_spectrum_validation():
    with pytest.raises(InputFormatError, match="strictly increasing"):
        BetaSpectrum([0.0, 0.2, 0.1], [1.0, 1.0, 0.0])
    with pytest.raises(InputFormatError, match="non-negative"):
        BetaSpectrum([0.0, 0.1], [1.0, -1.0])
    with pytest.raises(InputFormatError, match="zero"):
        BetaSpectrum([0.0, 0.1], [0.0, 0.0])


def test_nuclide_is_immutable():
    lu = get_nuclide("Lu-177")
    with pytest.raises(dataclasses.FrozenInstanceError):
        lu.half_life_s = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        lu.photons.energy_mev[0] = 1.0
    with pytest.raises(ValueError):
        lu.beta_spectrum.density_per_mev[0] = 1.0


# ------------------------------------------------------------------------------------------- other nuclides
@pytest.mark.parametrize("name", SUPPORTED_NUCLIDES)
def test_supported_nuclides_load(name):
    nuc = get_nuclide(name)
    assert nuc.name == name and nuc.half_life_s > 0
    b = nuc.energy_budget()
    assert b["total"] > 0 and 0 < b["non_penetrating_fraction"] <= 1


# name, half-life (s), electrons keV/decay, photons keV/decay (PHYSICS.md §1.3 and ICRP-107)
BUDGETS = [
    ("Y-90", 64.1 * 3600, 933.1, 0.0012),
    ("I-131", 8.0207 * 86400, 191.9, 382.8),
    ("Tb-161", 6.906 * 86400, 202.5, 36.5),
    ("Ga-68", 67.71 * 60, 737.9, 948.7),
    ("Tc-99m", 6.015 * 3600, 16.19, 126.6),
]


@pytest.mark.parametrize("name,half_life_s,electrons_kev,photons_kev", BUDGETS)
def test_energy_budgets(name, half_life_s, electrons_kev, photons_kev):
    nuc = get_nuclide(name)
    b = nuc.energy_budget()
    assert nuc.half_life_s == pytest.approx(half_life_s, rel=1e-9)
    assert rel(b["electrons"], electrons_kev * KEV) < 0.005
    if photons_kev > 1:
        assert rel(b["photons"], photons_kev * KEV) < 0.005
    else:
        assert b["photons"] < 0.01 * KEV


def test_y90_spectrum():
    s = get_nuclide("Y-90").beta_spectrum
    assert s.max_energy_mev == pytest.approx(2.2801)
    assert rel(s.mean_energy_mev(), 0.93299) < 1e-3  # main-branch mean 932.99 keV


def test_ga68_is_beta_plus_with_annihilation_photons():
    ga = get_nuclide("68Ga")
    assert ga.beta_spectrum.particle == "e+"
    assert set(ga.betas.kind.tolist()) == {"beta+"}
    b = ga.energy_budget()
    assert b["beta_minus"] == 0.0 and b["beta_plus"] == pytest.approx(0.7374, rel=1e-3)
    ann = ga.photon_lines(kinds=("annihilation",))
    assert ann.total_yield() == pytest.approx(1.778, abs=1e-3) and ann[0].energy_mev == pytest.approx(0.511)
    assert ga.beta_spectrum.yield_per_decay() == pytest.approx(ga.betas.total_yield(), rel=2e-3)


def test_tc99m_beta_is_negligible():
    tc = get_nuclide("99mTc")
    # ICRP-107 lists the 0.0037 % beta- branch to Ru-99: present but dosimetrically nil
    assert tc.energy_budget()["beta"] < 1e-5
    main = max(tc.photon_lines(kinds=("gamma",)), key=lambda ln: ln.yield_per_decay)
    assert main.energy_mev == pytest.approx(0.1405, abs=1e-4) and main.yield_per_decay == pytest.approx(0.8906, abs=1e-3)


def test_alpha_emitter_budget():
    b = get_nuclide("Ac-225").energy_budget()
    assert b["alpha"] == pytest.approx(5.787, rel=1e-3)
    assert b["non_penetrating"] == pytest.approx(b["electrons"] + b["alpha"] + b["alpha_recoil"], rel=1e-12)
    assert get_nuclide("Ac-225").beta_spectrum is None


# ----------------------------------------------------------------------------------------------------- names
@pytest.mark.parametrize("spelling", ["Lu-177", "Lu177", "177Lu", "lu-177", "LU177", "lu 177", "Lu_177", " 177lu "])
def test_lu177_aliases(spelling):
    assert canonical_nuclide_name(spelling) == "Lu-177"
    assert get_nuclide(spelling) is get_nuclide("Lu-177")  # cached


@pytest.mark.parametrize("spelling,canonical", [
    ("Tc99m", "Tc-99m"), ("99mTc", "Tc-99m"), ("tc-99m", "Tc-99m"), ("177mLu", "Lu-177m"),
    ("Y90", "Y-90"), ("90Y", "Y-90"), ("i131", "I-131"), ("161Tb", "Tb-161"), ("Ga68", "Ga-68"),
    ("56Mn", "Mn-56"), ("Bi-212n", "Bi-212n"),
])
def test_other_aliases(spelling, canonical):
    assert canonical_nuclide_name(spelling) == canonical


def test_unknown_nuclide_names_close_matches():
    with pytest.raises(UnknownNuclideError) as err:
        get_nuclide("Lu-178x")
    msg = str(err.value)
    assert "Lu-178x" in msg and "Lu-178" in msg and "Lu-177" in msg and "ICRP-107" in msg
    with pytest.raises(UnknownNuclideError, match="not in the ICRP-107"):
        get_nuclide("unobtainium")
    with pytest.raises(UnknownNuclideError):
        get_nuclide(177)  # type: ignore[arg-type]
    assert isinstance(UnknownNuclideError("x"), KeyError)


def test_available_nuclides():
    names = available_nuclides()
    assert len(names) == 1252
    assert set(SUPPORTED_NUCLIDES) <= set(names)


def test_summary_is_json_friendly():
    import json

    s = get_nuclide("Lu-177").summary()
    json.dumps(s)
    assert s["energy_budget_kev_per_decay"]["electrons"] == pytest.approx(147.92, abs=0.05)
