"""The photon tail beyond a voxel kernel's reach (issue #9): the radial table, its hand-over to the voxel kernel
and the coarse-grid convolution, checked against closed forms and a direct convolution with the whole kernel."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.signal import fftconvolve

from VoxelDosimetryLib.dose.fft_convolution import FFTConvolver
from VoxelDosimetryLib.dose.photon_tail import TailWindow, kernel_reach_mm, near_kernel, tail_dose, window_for
from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.kernels.photon_tail import (MEV_TO_J, PhotonTail, find_photon_tail, radial_table,
                                                   read_photon_tail, write_photon_tail)

MU_PER_MM = 0.012  # a smooth synthetic photon kernel: D(r) = A exp(-mu r) / r^2
AMPLITUDE = 1e-12


def _analytic(r_mm):
    r = np.maximum(np.asarray(r_mm, dtype=np.float64), 1.0)
    return AMPLITUDE * np.exp(-MU_PER_MM * r) / r ** 2


def _synthetic_tail(reach_mm: float = 400.0, density: float = 1.0) -> PhotonTail:
    radius = np.arange(10.0, reach_mm + 1e-9, 10.0)
    return PhotonTail("Lu-177", "soft_tissue", density, radius, _analytic(radius), valid_from_mm=10.0,
                      metadata={"histories": 1})


def _offsets(shape, spacing_zyx, centre):
    axes = [(np.arange(n) - c) * s for n, c, s in zip(shape, centre, spacing_zyx)]
    return np.sqrt(axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2)


def test_dose_at_is_exact_for_exponential_over_r_squared_and_zero_beyond_reach():
    tail = _synthetic_tail()
    r = np.array([15.0, 123.4, 399.0])
    np.testing.assert_allclose(tail.dose_at(r), _analytic(r), rtol=1e-12)  # log(r^2 D) is linear in r
    assert tail.dose_at(np.array([401.0]))[0] == 0.0


def test_energy_beyond_matches_the_closed_form():
    # integral_R^Rmax A exp(-mu r) rho 4 pi dr = 4 pi rho A (exp(-mu R) - exp(-mu Rmax)) / mu
    tail = _synthetic_tail(density=1.04)
    rho_kg_mm3 = 1.04e-6
    expected_j = 4 * math.pi * rho_kg_mm3 * AMPLITUDE * (math.exp(-MU_PER_MM * 50) - math.exp(-MU_PER_MM * 400)) \
        / MU_PER_MM
    assert tail.energy_beyond_kev(50.0) == pytest.approx(expected_j / MEV_TO_J * 1e3, rel=1e-5)


def test_radial_table_recovers_a_smooth_isotropic_function():
    n, voxel = 41, 5.0
    c = n // 2
    r = _offsets((n, n, n), (voxel,) * 3, (c, c, c))
    values = _analytic(r)
    radius, dose = radial_table(values, voxel)
    assert len(radius) == c
    far = radius >= 3 * voxel
    np.testing.assert_allclose(dose[far], _analytic(radius[far]), rtol=0.01)


def test_json_round_trip_and_damaged_files(tmp_path):
    tail = _synthetic_tail()
    path = write_photon_tail(tail, tmp_path / "tail.json")
    back = read_photon_tail(path)
    np.testing.assert_allclose(back.dose_gy_per_decay, tail.dose_gy_per_decay, rtol=1e-6)
    assert back.fingerprint() == read_photon_tail(path).fingerprint()
    (tmp_path / "bad.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(InputFormatError, match="not a photon tail"):
        read_photon_tail(tmp_path / "bad.json")
    data = tail.to_json()
    data["dose_gy_per_decay"][3] = -1.0
    (tmp_path / "neg.json").write_text(json.dumps(data))
    with pytest.raises(InputFormatError, match="positive"):
        read_photon_tail(tmp_path / "neg.json")


def test_window_weight_and_blocks():
    window = TailWindow(24.0, 48.0)
    np.testing.assert_allclose(window.weight(np.array([0.0, 24.0, 36.0, 48.0, 100.0])), [0, 0, 0.5, 1, 1])
    assert window.block_factors((0.98, 0.98, 3.0)) == (1, 4, 4)  # (z, y, x): blocks of ~4 mm
    assert kernel_reach_mm((33, 99, 99), (0.98, 0.98, 3.0)) == pytest.approx(48.0)
    assert window_for([(33, 99, 99), (33, 101, 101)], (0.98, 0.98, 3.0)).r1_mm == pytest.approx(48.0)


@pytest.mark.parametrize("spacing_xyz", [(2.0, 2.0, 5.0), (1.5, 1.5, 4.0)])
def test_near_kernel_plus_tail_equals_the_whole_kernel(spacing_xyz):
    """A source convolved with the cropped kernel + the coarse tail equals the direct convolution with a kernel
    covering the whole image (the exact answer): within 3 % everywhere, 0.3 % in total energy."""
    spacing_zyx = spacing_xyz[::-1]
    shape = (41, 44, 38)
    decays = np.zeros(shape, dtype=np.float32)
    decays[20, 23, 17] = 1e6
    decays[5, 30, 30] = 4e5  # an off-centre source near the edge
    kshape = tuple(2 * int(round(60.0 / s)) + 1 for s in spacing_zyx)  # reach 60 mm
    k_r = _offsets(kshape, spacing_zyx, tuple(n // 2 for n in kshape))
    voxel_kernel = _analytic(k_r)
    tail = _synthetic_tail(reach_mm=600.0)
    window = window_for([kshape], spacing_xyz)
    assert max(window.block_factors(spacing_xyz)) >= 2  # the coarse grid is exercised
    engine = FFTConvolver(device="cpu", dtype="float64")
    dose = engine.convolve(decays, near_kernel(voxel_kernel, spacing_xyz, window)) + \
        tail_dose(decays, spacing_xyz, tail, window, engine)
    big = tuple(2 * n - 1 for n in shape)
    whole = _analytic(_offsets(big, spacing_zyx, tuple(n - 1 for n in shape)))
    exact = fftconvolve(decays.astype(np.float64), whole, mode="same")
    assert dose.sum() == pytest.approx(exact.sum(), rel=3e-3)
    np.testing.assert_allclose(dose, exact, rtol=0.03)


def test_shipped_lu177_tail_conserves_the_photon_energy():
    """Infinite medium: every emitted photon's energy is absorbed somewhere. The shipped soft-tissue kernel holds
    what lies within its reach, the tail what lies beyond, and only < 0.1 % is cropped."""
    from VoxelDosimetryLib.kernels.library import find_kernel

    tail = find_photon_tail("Lu-177")
    assert tail is not None and tail.medium == "soft_tissue"
    emitted = tail.metadata["emitted_kev_per_decay"]
    assert tail.metadata["energy_beyond_fraction"] < 1e-3
    assert tail.energy_beyond_kev(0.0) < emitted
    photon = find_kernel("Lu-177", (4.8, 4.8, 4.8), "soft_tissue", 1.04, "photon")
    r = _offsets(photon.shape, (4.8,) * 3, photon.centre_index)
    window = window_for([photon.shape], (4.8, 4.8, 4.8))
    inside_kev = float((photon.values * (1 - window.weight(r))).sum()) * photon.voxel_mass_kg / MEV_TO_J * 1e3
    # the tail part: D w integrated over all space, on a fine radial grid
    grid = np.linspace(window.r0_mm, tail.reach_mm, 20000)
    from scipy.integrate import trapezoid

    tail_kev = trapezoid(tail.dose_at(grid) * window.weight(grid) * tail.density_g_cm3 * 1e-6 * 4 * math.pi
                         * grid ** 2, grid) / MEV_TO_J * 1e3
    assert inside_kev + tail_kev == pytest.approx(emitted, rel=0.01)


# --- the kernel methods with the tail ---------------------------------------------------------------------------

VOXEL = 4.0


def _point_case(shape=(31, 61, 61), hu=40.0):
    """A hot voxel in a homogeneous soft-tissue block (4 mm voxels, 244 mm across)."""
    from VoxelDosimetryLib.volume import Volume

    ct = Volume(np.full(shape, hu, np.float32), spacing=(VOXEL,) * 3, quantity="ct", unit="HU")
    act = np.zeros(shape, np.float32)
    act[tuple(n // 2 for n in shape)] = 1e6
    return ct, Volume(act, spacing=(VOXEL,) * 3, quantity="activity_concentration", unit="Bq/mL")


@pytest.fixture
def short_kernel(tmp_path):
    """A soft-tissue total kernel reaching 48 mm, its values the shipped tail's at the voxel centres."""
    from VoxelDosimetryLib.kernels.kernel import DoseKernel, write_kernel

    tail = find_photon_tail("Lu-177")
    n = 25
    r = _offsets((n, n, n), (VOXEL,) * 3, (12, 12, 12))
    values = tail.dose_at(np.maximum(r, 2.0))
    path = tmp_path / "short.nrrd"
    write_kernel(DoseKernel(values, (VOXEL,) * 3, "Lu-177", "soft_tissue", 1.04, "total"), path)
    return path, tail


def test_svsv_continues_a_short_kernel_with_the_tail_out_to_the_reach(short_kernel):
    from VoxelDosimetryLib.dose import DoseRequest, compute_dose

    path, tail = short_kernel
    ct, source = _point_case()
    decays = 1e6 * source.voxel_volume_ml
    r = _offsets(ct.shape, (VOXEL,) * 3, (15, 30, 30))
    plain = compute_dose("svsv", DoseRequest(source, ct, options={"kernel": str(path), "photon_reach_mm": 0}))
    assert plain.info["photon_tail"] is None
    assert np.all(plain.dose.array[r > 48 * math.sqrt(3) + 1] <= 1e-6 * plain.dose.array.max())  # FFT round-off
    for reach in (120.0, 750.0):
        result = compute_dose("svsv", DoseRequest(source, ct, options={"kernel": str(path),
                                                                        "photon_reach_mm": reach}))
        info = result.info["photon_tail"]
        assert info["full_at_mm"] == pytest.approx(48.0) and info["reach_mm"] == reach
        dose = result.dose.array.astype(np.float64) / decays
        far = (r >= 24) & (r <= min(reach, 120) - 6)
        np.testing.assert_allclose(dose[far], tail.dose_at(r[far]), rtol=0.02)
        beyond = r > reach + 4 * math.sqrt(3)
        if beyond.any():
            assert np.all(dose[beyond] <= 1e-6 * dose.max())
    assert result.info["photon_tail"]["command"].startswith("voxeldosimetry kernel --nuclide Lu-177 --photon-tail")


def test_dvk_scales_the_tail_by_density_like_the_rest_of_its_dose(short_kernel):
    from VoxelDosimetryLib.dose import DoseRequest, compute_dose
    from VoxelDosimetryLib.physics import ct_to_density

    path, _ = short_kernel
    ct, source = _point_case()
    hu = ct.array.copy()
    hu[:, :, :12] = 700.0  # bone-like slab far from the source
    hu[:, :, 50:] = -1000.0  # air beyond
    ct = ct.with_array(hu)
    opts = {"kernel": str(path), "photon_reach_mm": 750}
    svsv = compute_dose("svsv", DoseRequest(source, ct, options=dict(opts))).dose.array.astype(np.float64)
    dvk = compute_dose("dvk", DoseRequest(source, ct, options=dict(opts))).dose.array.astype(np.float64)
    rho = ct_to_density(ct).array.astype(np.float64)
    tissue = rho >= 0.1
    np.testing.assert_allclose(dvk[tissue], svsv[tissue] * 1.04 / rho[tissue], rtol=1e-5)
    assert np.all(dvk[~tissue] == 0)


def test_missing_tail_is_a_qc_warning_with_the_command(short_kernel, monkeypatch):
    import VoxelDosimetryLib.kernels.photon_tail as photon_tail
    from VoxelDosimetryLib.dose import DoseRequest, compute_dose
    from VoxelDosimetryLib.qc import collect_qc

    path, _ = short_kernel
    monkeypatch.setattr(photon_tail, "find_photon_tail", lambda nuclide, medium="soft_tissue": None)
    ct, source = _point_case()
    with collect_qc() as log:
        result = compute_dose("svsv", DoseRequest(source, ct, options={"kernel": str(path)}))
    assert result.info["photon_tail"] is None
    item = next(i for i in log.items if i.code == "photon_tail_missing")
    assert "voxeldosimetry kernel --nuclide Lu-177 --photon-tail" in item.message


def test_kernels_reaching_the_requested_distance_get_no_tail(short_kernel):
    from VoxelDosimetryLib.dose import DoseRequest, compute_dose

    path, _ = short_kernel
    ct, source = _point_case()
    result = compute_dose("svsv", DoseRequest(source, ct, options={"kernel": str(path), "photon_reach_mm": 50}))
    assert result.info["photon_tail"] is None  # 50 mm is within one voxel of the kernel's 48 mm


def test_photon_reach_option_is_validated():
    from VoxelDosimetryLib.dose import DoseRequest, compute_dose

    ct, source = _point_case((5, 5, 5))
    for bad in (-1, 1001, "far"):
        with pytest.raises(InputFormatError, match="photon_reach_mm"):
            compute_dose("svsv", DoseRequest(source, ct, options={"photon_reach_mm": bad}))


def test_mvsv_adds_the_tail_in_tissue_bins_only():
    """Shipped 4.8 mm kernels (reach 120 mm): with photon_reach_mm=750 the tail takes over from 60 mm on; air
    voxels still get no dose."""
    from VoxelDosimetryLib.dose import DoseRequest, compute_dose
    from VoxelDosimetryLib.physics import ct_to_density
    from VoxelDosimetryLib.volume import Volume

    shape = (9, 45, 45)
    hu = np.full(shape, 40.0, np.float32)
    hu[:, :, 38:] = -1000.0  # air slab 86-106 mm from the source
    hu[:, :, :6] = -700.0  # lung-like slab
    ct = Volume(hu, spacing=(4.8,) * 3, quantity="ct", unit="HU")
    act = np.zeros(shape, np.float32)
    act[4, 22, 22] = 1e6
    source = ct.with_array(act, quantity="activity_concentration", unit="Bq/mL")
    near = compute_dose("mvsv", DoseRequest(source, ct, options={"photon_reach_mm": 0})).dose.array
    far = compute_dose("mvsv", DoseRequest(source, ct, options={"photon_reach_mm": 750}))
    assert far.info["photon_tail"]["from_mm"] == pytest.approx(60.0)
    diff = far.dose.array.astype(np.float64) - near.astype(np.float64)
    air = ct_to_density(ct).array < 0.1
    r = _offsets(shape, (4.8,) * 3, (4, 22, 22))
    assert np.all(far.dose.array[air] == 0)
    assert np.all(np.abs(diff[(r < 55) & ~air]) <= 1e-5 * near.max())  # unchanged inside the window
    assert diff[(r > 125) & ~air].mean() > 0.05 * far.dose.array[(r > 125) & ~air].mean()  # the cube's corners 
    # hold only part of what the radial tail adds beyond 120 mm


def test_node_deposit_and_interpolation_are_transposes_and_keep_the_sum():
    """<deposit(x), y> = <x, interpolate(y)> (an exact adjoint pair), the deposit keeps the total and, away from
    the edges, interpolation reproduces a linear field exactly."""
    import torch

    from VoxelDosimetryLib.dose.photon_tail import _from_nodes, _to_nodes

    rng = np.random.default_rng(3)
    shape, f = (7, 13, 10), (1, 4, 3)
    x = torch.from_numpy(rng.random(shape).astype(np.float32))
    nodes = _to_nodes(x, f)
    assert tuple(nodes.shape) == (7, 6, 6)  # blocks + one node beyond each end where f > 1
    assert float(nodes.sum()) == pytest.approx(float(x.sum()), rel=1e-6)
    y = torch.from_numpy(rng.random(tuple(nodes.shape)).astype(np.float32))
    assert float((nodes * y).sum()) == pytest.approx(float((x * _from_nodes(y, f, shape)).sum()), rel=1e-5)
    # a field linear in y on the node positions (block centres) comes back linear on the voxel centres
    centres_y = (np.arange(-1, 5) + 0.5) * 4 - 0.5  # node positions in voxel units
    field = torch.from_numpy(np.broadcast_to((2.0 + 0.5 * centres_y)[None, :, None], (7, 6, 6)).astype(np.float32))
    back = _from_nodes(field, f, shape).numpy()
    np.testing.assert_allclose(back[:, :, 3], np.broadcast_to(2.0 + 0.5 * np.arange(13), (7, 13)), rtol=1e-6)
