"""kernels/: file format, MC generation, energy-conserving resampling, cache and lookup (issue #9)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.kernels.generate import generate_kernel, odd_size, symmetrise, voxel_size
from VoxelDosimetryLib.kernels.kernel import DoseKernel, mirror_octant, read_kernel, write_kernel
from VoxelDosimetryLib.kernels.library import KernelNotAvailableError, find_kernel
from VoxelDosimetryLib.kernels.resample import resample_kernel
from VoxelDosimetryLib.physics import get_nuclide
from VoxelDosimetryLib.qc import collect_qc


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VOXELDOSIMETRY_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def electron_kernel() -> DoseKernel:
    """Lu-177 electrons in soft tissue, 4.8 mm voxels, 5^3 (the CSDA reach is < 1.8 mm)."""
    return generate_kernel("Lu-177", 4.8, 5, medium="soft_tissue", histories=20_000, component="electron",
                           device="cpu", seed=3)


def _symmetric_random(shape, seed=0):
    rng = np.random.default_rng(seed)
    return symmetrise(rng.random(shape) ** 4, (1.0, 1.0, 1.0))


def test_kernel_round_trip_and_octant(tmp_path, electron_kernel):
    full = tmp_path / "k.nrrd"
    octant = tmp_path / "k_octant.nrrd"
    write_kernel(electron_kernel, full)
    write_kernel(electron_kernel, octant, octant=True)
    a, b = read_kernel(full), read_kernel(octant)
    for k in (a, b):
        assert k.shape == (5, 5, 5)
        assert k.nuclide == "Lu-177" and k.medium == "soft_tissue" and k.component == "electron"
        assert k.density_g_cm3 == pytest.approx(1.04)
        np.testing.assert_allclose(k.values, electron_kernel.values.astype(np.float32), rtol=1e-6)
        for field in ("histories", "seed", "centre_relative_uncertainty", "generator_version", "engine_version",
                      "command"):
            assert field in k.metadata
    assert octant.stat().st_size < full.stat().st_size


def test_mirror_octant_inverts_the_octant_cut():
    full = _symmetric_random((7, 5, 9))
    np.testing.assert_allclose(mirror_octant(full[3:, 2:, 4:]), full)


def test_generated_electron_kernel_conserves_energy(electron_kernel):
    budget_kev = get_nuclide("Lu-177").energy_budget()["electrons"] * 1e3
    meta = electron_kernel.metadata
    # every electron stops inside 5 voxels of 4.8 mm: absorbed == emitted (the engine's balance), ~147.9 keV
    assert meta["absorbed_fraction_in_kernel"] == pytest.approx(1.0, abs=1e-6)
    assert electron_kernel.energy_per_decay_kev() == pytest.approx(budget_kev, rel=0.01)
    # self-absorbed fraction of a 4.8 mm cube: ~93 % (PHYSICS.md 4.1 sanity check: 137 keV of 148)
    self_kev = electron_kernel.centre_value * electron_kernel.voxel_mass_kg / 1.602176634e-13 * 1e3
    assert 0.88 < self_kev / budget_kev < 0.97
    assert meta["centre_relative_uncertainty"] < 0.01
    np.testing.assert_allclose(electron_kernel.values, np.flip(electron_kernel.values, 0))
    np.testing.assert_allclose(electron_kernel.values, electron_kernel.values.transpose(0, 2, 1))


def test_too_few_histories_warn_with_the_number_needed():
    with collect_qc() as warnings:
        k = generate_kernel("Lu-177", 4.8, 3, medium="water", histories=200, component="electron", device="cpu")
    assert k.metadata["centre_relative_uncertainty"] > 0.005
    codes = [w.code for w in warnings]
    assert "kernel_uncertainty_high" in codes


@pytest.mark.parametrize("kwargs, match", [
    ({"size": 4}, "odd"),
    ({"size": (5, 5)}, "one odd number or three"),
    ({"voxel_mm": 0.0}, "positive"),
    ({"voxel_mm": -1.0}, "positive"),
    ({"voxel_mm": 480.0}, "check the units"),
    ({"histories": 0}, ">= 10"),
    ({"histories": 5}, ">= 10"),
    ({"size": 2001}, "GiB"),
    ({"medium": "unobtainium"}, "Unknown kernel medium"),
    ({"medium": None}, "Name the kernel's medium"),
    ({"component": "beta"}, "total, electron, photon"),
])
def test_bad_generation_requests_are_refused_before_simulating(kwargs, match):
    args = dict(nuclide="Lu-177", voxel_mm=4.8, size=5, medium="soft_tissue", histories=1000, device="cpu")
    args.update(kwargs)
    with pytest.raises(InputFormatError, match=match):
        generate_kernel(**args)


def test_size_and_voxel_parsing():
    assert odd_size(5) == (5, 5, 5) and odd_size([9, 9, 3]) == (9, 9, 3)
    assert voxel_size([0.98, 0.98, 3]) == (0.98, 0.98, 3.0)


def test_resampling_to_the_same_grid_is_the_identity(electron_kernel):
    same = resample_kernel(electron_kernel, electron_kernel.spacing_mm, (5, 5, 5))
    np.testing.assert_allclose(same.values, electron_kernel.values, rtol=1e-12, atol=1e-30)


def test_odd_ratio_resampling_is_exact_and_conserves_energy():
    """Aligned grids (coarse = 3 x fine): the coarse kernel equals the brute-force sum over fine sources and
    targets (translation invariance), and the absorbed energy is conserved."""
    fine = DoseKernel(_symmetric_random((15, 15, 15), seed=2), (1.0, 1.0, 1.0), "Lu-177", "water", 1.0, "total")
    coarse = resample_kernel(fine, 3.0, (5, 5, 5))
    energy = fine.values * fine.voxel_mass_kg
    brute = np.zeros((5, 5, 5))
    for s in np.ndindex(3, 3, 3):  # fine source voxels -1..1 of the coarse centre voxel (index = offset + 1)
        # fine target t = s + d for fine offsets d = -7..7, stored at index t + 8 (t = -8..8)
        pad = np.zeros((17, 17, 17))
        pad[s[0]:s[0] + 15, s[1]:s[1] + 15, s[2]:s[2] + 15] = energy
        # coarse target J = -2..2 holds fine t = 3J-1..3J+1, i.e. indices 1..15
        brute += pad[1:16, 1:16, 1:16].reshape(5, 3, 5, 3, 5, 3).sum(axis=(1, 3, 5)) / 27.0
    np.testing.assert_allclose(coarse.values * coarse.voxel_mass_kg, brute, rtol=1e-10)
    assert coarse.metadata["resampled_energy_fraction"] == pytest.approx(brute.sum() / energy.sum(), rel=1e-12)
    wide = resample_kernel(fine, 3.0, (7, 7, 7))  # covers every fine target: all energy kept
    assert wide.energy_per_decay_kev() == pytest.approx(fine.energy_per_decay_kev(), rel=1e-12)


def test_resampled_fine_kernel_matches_a_direct_coarse_simulation():
    """Electrons at 1.6 mm resampled to 4.8 mm (ratio 3) against a direct 4.8 mm run: self-dose within 2 %."""
    fine = generate_kernel("Lu-177", 1.6, 5, medium="soft_tissue", histories=60_000, component="electron",
                           device="cpu", seed=11)
    coarse = resample_kernel(fine, 4.8, (3, 3, 3))
    direct = generate_kernel("Lu-177", 4.8, 3, medium="soft_tissue", histories=60_000, component="electron",
                             device="cpu", seed=12)
    assert coarse.centre_value == pytest.approx(direct.centre_value, rel=0.02)
    assert coarse.energy_per_decay_kev() == pytest.approx(fine.energy_per_decay_kev(), rel=1e-9)


def test_library_finds_exact_resampled_or_names_the_command(tmp_path, electron_kernel, monkeypatch):
    import VoxelDosimetryLib.kernels.library as library

    monkeypatch.setattr(library, "SHIPPED_INDEX", tmp_path / "no_index.json")  # only the user's kernels
    folder = tmp_path / "mine"
    folder.mkdir()
    write_kernel(electron_kernel, folder / "st.nrrd")
    exact = find_kernel("Lu-177", (4.8, 4.8, 4.8), "soft_tissue", 1.04, "electron", [folder])
    np.testing.assert_allclose(exact.values, electron_kernel.values, rtol=1e-6)
    assert find_kernel("lu177", (4.81, 4.8, 4.79), "soft_tissue", 1.04, "electron", [folder]).shape == (5, 5, 5)
    tripled = find_kernel("Lu-177", (14.4, 14.4, 4.8), "soft_tissue", 1.04, "electron", [folder])
    assert tripled.spacing_mm == (14.4, 14.4, 4.8)
    assert tripled.energy_per_decay_kev() == pytest.approx(electron_kernel.energy_per_decay_kev(), rel=1e-6)
    with pytest.raises(KernelNotAvailableError, match=r"voxeldosimetry kernel --nuclide Lu-177 --voxel-mm 6 6 6"):
        find_kernel("Lu-177", (6.0, 6.0, 6.0), "soft_tissue", 1.04, "electron", [folder])
    with pytest.raises(KernelNotAvailableError, match=r"kernels exist for Lu-177, which cannot be used for Y-90"):
        find_kernel("Y-90", (4.8, 4.8, 4.8), "soft_tissue", 1.04, "electron", [folder])


def test_resampling_refuses_finer_targets_and_untiled_ratios(electron_kernel):
    with pytest.raises(InputFormatError, match="finer than the kernel"):
        resample_kernel(electron_kernel, 2.4)
    with pytest.raises(InputFormatError, match="do not tile"):
        resample_kernel(electron_kernel, 9.6)  # ratio 2
    with pytest.raises(InputFormatError, match="do not tile"):
        resample_kernel(electron_kernel, 4.9)  # ratio 1.02: the neighbouring grid's kernel


def test_nearly_tiling_voxels_are_snapped():
    """0.98 mm voxels resampled to 3 mm (ratio 3.06) behave as exact thirds: the same coarse kernel as 1 mm voxels
    with the same energies (the face-straddling error of unsnapped resampling was +42 % on face neighbours)."""
    values = _symmetric_random((15, 15, 15), seed=4)
    exact = DoseKernel(values, (1.0, 1.0, 1.0), "Lu-177", "water", 1.0, "total")
    near = DoseKernel(values * (1.0 / 0.98) ** 3, (0.98, 0.98, 0.98), "Lu-177", "water", 1.0, "total")
    a, b = resample_kernel(exact, 3.0), resample_kernel(near, 3.0)
    np.testing.assert_allclose(b.values, a.values, rtol=1e-9)
    assert b.metadata["resampled_from"]["snapped_fine_voxel_mm"] == [1.0, 1.0, 1.0]


def test_library_prefers_the_shipped_set_and_never_takes_a_neighbouring_grid(tmp_path, electron_kernel):
    """A cached kernel on a shipped grid does not replace the shipped one; 4.6 mm is not served by 4.8 mm."""
    from VoxelDosimetryLib.kernels.cache import kernel_cache_dir

    kernel_cache_dir().mkdir(parents=True, exist_ok=True)
    write_kernel(electron_kernel.with_values(electron_kernel.values * 0.5), kernel_cache_dir() / "worse.nrrd")
    shipped = find_kernel("Lu-177", (4.8, 4.8, 4.8), "soft_tissue", 1.04, "electron")
    assert shipped.metadata["histories"] == 200_000  # the shipped kernel, not the cached 20 000-history one
    with pytest.raises(KernelNotAvailableError):
        find_kernel("Lu-177", (4.6, 4.6, 4.6), "soft_tissue", 1.04, "electron")
