"""physics.voxel_mass: the one CT -> density -> voxel mass path on a dose grid (voi, run, compare, GATE import)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from VoxelDosimetryLib import Volume
from VoxelDosimetryLib.errors import InputFormatError, UnitError
from VoxelDosimetryLib.physics import hu_to_density
from VoxelDosimetryLib.physics.voxel_mass import (AIR_HU, ct_on_grid, density_on_grid,
                                                  voxel_mass_g)
from VoxelDosimetryLib.volume import Grid

LIB = Path(__file__).resolve().parents[2] / "VoxelDosimetryLib"


def _ct(hu: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> Volume:
    return Volume(hu.astype(np.float32), spacing=spacing, quantity="ct", unit="HU")


def _coarse(ct: Volume, factor: int) -> Grid:
    """The grid of factor^3 blocks of `ct`, voxel centres at the block centres."""
    shape = tuple(s // factor for s in ct.shape)
    spacing = tuple(s * factor for s in ct.spacing)
    origin = tuple(o + (factor - 1) / 2 * s for o, s in zip(ct.origin, ct.spacing))
    return Grid(shape, spacing, origin, ct.grid.direction)


def _block_mean(array: np.ndarray, f: int) -> np.ndarray:
    z, y, x = array.shape
    return array.reshape(z // f, f, y // f, f, x // f, f).mean(axis=(1, 3, 5))


def test_same_grid_gives_the_schneider_density_exactly():
    hu = np.array([[[-1000.0, 0.0, 100.0, 101.0, 1500.0]]])
    ct = _ct(hu)
    rho = density_on_grid(ct, ct.grid)
    assert rho.quantity == "density" and rho.unit == "g/cm3" and rho.array.dtype == np.float64
    assert np.array_equal(rho.array, hu_to_density(ct.array))
    assert np.allclose(voxel_mass_g(ct), hu_to_density(ct.array) * 1e-3)  # 1 mm3 = 1e-3 mL


def test_coarse_voxels_hold_the_mean_density_and_conserve_mass():
    rng = np.random.default_rng(1)
    hu = rng.choice([-1000.0, -800.0, 40.0, 100.0, 101.0, 1200.0], size=(12, 12, 12))  # tissue interfaces
    ct = _ct(hu)
    grid = _coarse(ct, 3)
    rho = density_on_grid(ct, grid).array
    expected = _block_mean(hu_to_density(ct.array), 3)
    assert np.allclose(rho, expected, rtol=1e-6)
    assert voxel_mass_g(ct, grid).sum() == pytest.approx(hu_to_density(ct.array).sum() * 1e-3, rel=1e-6)
    # averaging HU first is not mass-conserving: the Schneider curve is not linear (drop at 100/101 HU)
    hu_first = hu_to_density(_block_mean(ct.array.astype(np.float64), 3))
    assert not np.allclose(hu_first, expected, rtol=1e-3)


def test_outside_the_ct_masses_and_dose_engines_both_see_air():
    ct = _ct(np.full((4, 4, 4), 40.0))
    grid = Grid((4, 4, 8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), ct.grid.direction)  # x reaches 4 mm past the CT
    rho = density_on_grid(ct, grid).array
    assert np.allclose(rho[..., :4], hu_to_density(40.0)) and np.all(rho[..., 4:] == hu_to_density(AIR_HU))
    hu = ct_on_grid(ct, grid).array
    assert np.allclose(hu[..., :4], 40.0) and np.all(hu[..., 4:] == AIR_HU)


def test_a_density_map_is_used_as_given_and_bad_inputs_are_refused():
    density = Volume(np.full((2, 2, 2), 1.5), spacing=(10, 10, 10), quantity="density", unit="g/cm3")
    assert np.allclose(voxel_mass_g(density), 1.5)
    with pytest.raises(InputFormatError, match="negative"):
        density_on_grid(density.with_array(np.full((2, 2, 2), -1.0)), density.grid)
    with pytest.raises(InputFormatError, match="NaN"):
        density_on_grid(_ct(np.array([[[0.0, np.nan]]])), density.grid)
    with pytest.raises(UnitError):
        density_on_grid(density.with_array(np.ones((2, 2, 2)), quantity="dose", unit="Gy"), density.grid)


def test_no_other_module_turns_hu_into_voxel_masses():
    """voi, metrics, pipeline and GATE import get masses from physics/voxel_mass.py only."""
    offenders = []
    for path in sorted(LIB.rglob("*.py")):
        rel = path.relative_to(LIB).as_posix()
        if rel.startswith(("physics/", "dose/", "montecarlo/geometry.py", "montecarlo/engine.py")):
            continue  # the curve itself; dose engines and the MC phantom use the density of their own grid
        text = path.read_text(encoding="utf-8")
        if "hu_to_density(" in text or "ct_to_density(" in text:
            offenders.append(rel)
    assert not offenders, f"HU -> density outside physics/voxel_mass.py: {offenders}"
