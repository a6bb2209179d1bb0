"""Fast versions of the Monte Carlo validation (Testing/benchmarks/mc_validation.py runs them at full statistics
and writes docs/VALIDATION.md). Tolerances are loose here: a few 1e4 histories on two CPU cores."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("xraylib")

from VoxelDosimetryLib.montecarlo import validation as val  # noqa: E402


def test_energy_balance_per_decay():
    r = val.energy_balance(histories=6_000)
    assert abs(r["relative_error"]) < 1e-3  # issue #3: +-0.1 %
    assert r["emitted_per_decay_kev"] == pytest.approx(183.0, rel=0.02)


@pytest.mark.parametrize("energy", [0.1, 0.498])
def test_electron_mean_path_is_the_csda_range(energy):
    r = val.electron_csda_range(energy, electrons=2_000)
    assert abs(r["relative_to_table"]) < 0.02
    if "relative_to_estar" in r:
        assert abs(r["relative_to_estar"]) < 0.03


def test_narrow_beam_attenuation_matches_xraylib():
    r = val.narrow_beam_attenuation(0.2084, photons=40_000)
    assert abs(r["relative_to_xraylib"]) < 4 * r["mu_sem_cm2_g"] / r["mu_xraylib_cm2_g"] + 5e-3
    assert r["mu_engine_table_cm2_g"] == pytest.approx(r["mu_xraylib_cm2_g"], rel=5e-3)


@pytest.mark.parametrize("radius", [3.0, 30.0])
def test_sphere_absorbed_energy_matches_the_sphere_table(radius):
    r = val.sphere_absorbed_energy(radius, histories=8_000, voxels_per_radius=6.0)
    assert abs(r["relative"]) < 0.05


def test_kernel_offsets_are_symmetry_averaged():
    k = np.zeros((5, 5, 5))
    k[2, 2, 3] = 6.0  # one of the six face neighbours
    table = val.kernel_offsets_table(k, [(0, 0, 0), (1, 0, 0), (1, 1, 0)])
    assert table[(1, 0, 0)] == pytest.approx(1.0)
    assert table[(0, 0, 0)] == 0.0 and table[(1, 1, 0)] == 0.0
    shells = val.radial_shell_means(np.ones((7, 7, 7)), [0.5, 1.5, 2.5])
    assert shells == [1.0, 1.0]


@pytest.mark.slow
def test_slab_interfaces_show_electron_disequilibrium():
    r = val.slab_interface_profile(histories=40_000)
    ratio = np.asarray(r["dose_per_decay"]) / np.asarray(r["led_electrons_per_decay"])
    # interiors: electron equilibrium, dose per decay close to local deposition of the electrons (+ a few % photons)
    for lo, hi in ((3, 7), (13, 17), (23, 27)):
        assert ratio[lo:hi].mean() == pytest.approx(1.02, abs=0.06)
    # bone voxel next to the lung receives the lung's electrons (lung mass per voxel is 7x smaller)
    assert ratio[19] > 1.1
    assert ratio[20] < 0.92
    assert np.all(np.isfinite(r["relative_uncertainty"]))
