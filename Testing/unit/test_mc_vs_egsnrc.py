"""Fast version of Testing/benchmarks/mc_vs_egsnrc.py: our transport against stored EGSnrc (ompMC) pencil beams.

One photon case (208.4 keV, Lu-177's main gamma) and one electron case (498 keV, the Lu-177 beta endpoint) with
few histories and loose tolerances. With the modified Wentzel multiple scattering, R50 and the mean depth agree
within about 6 %; the energy escaping backwards at the vacuum surface is 15-40 % too high (docs/VALIDATION.md):
the bound below contains that known gap.
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("xraylib")

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "mc_vs_egsnrc.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("mc_vs_egsnrc", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference(bench):
    return bench.load_reference()


def test_reference_file_has_provenance_and_consistent_shapes(reference):
    prov = reference["provenance"]
    assert prov["ompmc_version"] == "0.4.0"
    assert prov["egsnrc_options"]["ecut_total_mev"] == pytest.approx(0.521)
    photon = reference["photon"]["208.4keV"]
    n_slabs = len(photon["z_bounds_cm"]) - 1
    assert len(photon["slab_edep_mev"]) == n_slabs == 60
    assert np.asarray(photon["ring_edep_mev"]).shape == (len(photon["ring_bounds_cm"]) - 1, n_slabs)
    # energy conservation in the stored numbers: slabs sum to the kept fraction of the incident energy
    assert sum(photon["slab_edep_mev"]) / photon["energy_mev"] == pytest.approx(photon["absorbed_fraction"],
                                                                                 rel=1e-3)
    electron = reference["electron"]["498keV"]
    assert sum(electron["slab_edep_mev"]) / electron["energy_mev"] == pytest.approx(
        electron["energy_fraction_kept"], rel=1e-3)


def test_photon_208kev_pencil_beam_matches_egsnrc(bench, reference):
    ref = reference["photon"]["208.4keV"]
    ours = bench.run_photon_pencil(ref, photons=100_000, seed=3, batches=4)
    cmp = bench.compare_photon(ours, ref)
    assert cmp["absorbed_ratio"] == pytest.approx(1.0, abs=0.015)
    for group in ("0-5 cm", "5-10 cm", "10-20 cm"):
        assert cmp["depth_group_ratio"][group] == pytest.approx(1.0, abs=0.03), group
    for radius in ("1", "2", "5"):
        assert cmp["tails"][radius]["ratio"] == pytest.approx(1.0, abs=0.04), radius
    # uncollided photons through 30 cm follow exp(-mu z) with our mu (about 1700 of 100000 photons)
    expected = cmp["uncollided_exit_analytic_ours_mu"]
    assert ours["uncollided_exit_fraction"] == pytest.approx(expected, abs=4.0 * math.sqrt(expected / 100_000))


def test_electron_498kev_pencil_beam_close_to_egsnrc(bench, reference):
    ref = reference["electron"]["498keV"]
    ours = bench.run_electron_pencil(ref, electrons=20_000, seed=4, batches=4)
    cmp = bench.compare_electron(ours, ref)
    assert ours["escaped_energy_fraction"] + float(ours["slab_edep_mev"].sum()) / ref["energy_mev"] == \
        pytest.approx(1.0, abs=1e-6)
    assert cmp["r50_ratio"] == pytest.approx(1.0, abs=0.09)
    assert cmp["mean_depth_ratio"] == pytest.approx(1.0, abs=0.08)
    assert cmp["absorbed_in_thin_slabs_ours"] == pytest.approx(cmp["absorbed_in_thin_slabs_egsnrc"], abs=0.02)
    assert 0.8 < cmp["escaped_fraction_ours"] / cmp["escaped_fraction_egsnrc"] < 1.7
