"""svsv, dvk and mvsv dose methods against direct (scipy) convolution with the same kernels (issue #9).

Synthetic symmetric kernels in a kernel folder keep these tests exact and fast; the shipped set is tested in
test_kernel_set.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import convolve

from VoxelDosimetryLib.dose import DoseRequest, compute_dose
from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.kernels.generate import symmetrise
from VoxelDosimetryLib.kernels.kernel import DoseKernel, write_kernel
from VoxelDosimetryLib.kernels.library import KernelNotAvailableError
from VoxelDosimetryLib.kernels.medium import SOFT_TISSUE, SOFT_TISSUE_DENSITY_G_CM3
from VoxelDosimetryLib.physics import ct_to_density
from VoxelDosimetryLib.physics.media import DensityBins, density_bin_map
from VoxelDosimetryLib.volume import Volume

SPACING = (3.0, 3.0, 3.0)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    import VoxelDosimetryLib.kernels.library as library

    monkeypatch.setenv("VOXELDOSIMETRY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(library, "SHIPPED_INDEX", tmp_path / "none.json")  # synthetic kernels only


def _kernel_values(scale: float, shape=(7, 7, 7), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return symmetrise(rng.random(shape) ** 3, SPACING) * 1e-12 * scale


@pytest.fixture
def kernel_folder(tmp_path):
    """Soft tissue (electron + photon parts) and one kernel per tissue density bin, each scaled by its bin."""
    folder = tmp_path / "kernels"
    folder.mkdir()
    write_kernel(DoseKernel(_kernel_values(1.0, (3, 3, 3), 1), SPACING, "Lu-177", SOFT_TISSUE,
                            SOFT_TISSUE_DENSITY_G_CM3, "electron"), folder / "st_e.nrrd")
    write_kernel(DoseKernel(_kernel_values(0.1, (9, 9, 9), 2), SPACING, "Lu-177", SOFT_TISSUE,
                            SOFT_TISSUE_DENSITY_G_CM3, "photon"), folder / "st_p.nrrd")
    for b in DensityBins.default():
        if b.representative_g_cm3 >= 0.1:
            write_kernel(DoseKernel(_kernel_values(1.0 + b.index, (7, 7, 7), 10 + b.index), SPACING, "Lu-177",
                                    b.medium, b.representative_g_cm3, "total"), folder / f"bin{b.index}.nrrd")
    return folder


def _read(folder, name):
    from VoxelDosimetryLib.kernels.kernel import read_kernel

    return read_kernel(folder / name)


def _case(shape=(12, 14, 16)):
    """CT with soft tissue, a lung slab, an air pocket and bone; a smooth activity."""
    hu = np.full(shape, 40.0, np.float32)
    hu[:, :, :4] = -750.0
    hu[2:4, 2:5, 6:9] = -1000.0
    hu[6:9, 8:11, 10:13] = 900.0
    ct = Volume(hu, spacing=SPACING, quantity="ct", unit="HU")
    rng = np.random.default_rng(5)
    act = (rng.random(shape) * 1e5).astype(np.float32)
    source = Volume(act, spacing=SPACING, quantity="activity_concentration", unit="Bq/mL")
    return ct, source


def _decays(source: Volume) -> np.ndarray:
    return source.array.astype(np.float64) * source.voxel_volume_ml


def test_svsv_equals_direct_convolution_with_the_soft_tissue_kernel(kernel_folder):
    ct, source = _case()
    result = compute_dose("svsv", DoseRequest(source, ct, options={"kernel_folder": str(kernel_folder)}))
    total = _read(kernel_folder, "st_e.nrrd").plus(_read(kernel_folder, "st_p.nrrd"))
    expected = convolve(_decays(source), total.values, mode="same")
    expected[result.dose.array == 0] = 0  # air outside the body: the value policy reports no dose there
    assert result.dose.quantity == "dose_rate" and result.dose.unit == "Gy/s"
    np.testing.assert_allclose(result.dose.array, expected, rtol=2e-5, atol=1e-5 * expected.max())
    assert result.info["kernel"]["medium"] == SOFT_TISSUE


def test_component_option_selects_the_electron_part(kernel_folder):
    ct, source = _case()
    result = compute_dose("svsv", DoseRequest(source, ct, options={"kernel_folder": str(kernel_folder),
                                                                    "component": "electron"}))
    expected = convolve(_decays(source), _read(kernel_folder, "st_e.nrrd").values, mode="same")
    inside = result.dose.array > 0
    np.testing.assert_allclose(result.dose.array[inside], expected[inside], rtol=2e-5, atol=1e-5 * expected.max())


def test_tia_gives_dose_in_gray(kernel_folder):
    ct, source = _case()
    tia = source.replace(quantity="tia_concentration", unit="Bq*s/mL")
    rate = compute_dose("svsv", DoseRequest(source, ct, options={"kernel_folder": str(kernel_folder)})).dose
    dose = compute_dose("svsv", DoseRequest(tia, ct, options={"kernel_folder": str(kernel_folder)})).dose
    assert dose.quantity == "dose" and dose.unit == "Gy"
    np.testing.assert_allclose(dose.array, rate.array, rtol=1e-6)


def test_dvk_scales_by_kernel_over_voxel_density_and_is_zero_below_0_1(kernel_folder):
    ct, source = _case()
    opts = {"kernel_folder": str(kernel_folder)}
    svsv = compute_dose("svsv", DoseRequest(source, ct, options=dict(opts))).dose.array.astype(np.float64)
    dvk = compute_dose("dvk", DoseRequest(source, ct, options=dict(opts))).dose.array.astype(np.float64)
    rho = ct_to_density(ct).array.astype(np.float64)
    tissue = rho >= 0.1
    np.testing.assert_allclose(dvk[tissue], svsv[tissue] * SOFT_TISSUE_DENSITY_G_CM3 / rho[tissue], rtol=1e-5)
    assert np.all(dvk[~tissue] == 0)
    assert (~tissue).sum() == 18  # the air pocket inside the body


def test_mvsv_keeps_each_bins_convolution_in_that_bin(kernel_folder):
    ct, source = _case()
    result = compute_dose("mvsv", DoseRequest(source, ct, options={"kernel_folder": str(kernel_folder)}))
    bins, _ = density_bin_map(ct)
    expected = np.zeros(ct.shape)
    for b in DensityBins.default():
        mask = bins.array == b.index
        if not mask.any():
            continue
        if b.representative_g_cm3 < 0.1:
            continue  # air bins: no dose
        conv = convolve(_decays(source), _read(kernel_folder, f"bin{b.index}.nrrd").values, mode="same")
        expected[mask] = conv[mask]
    np.testing.assert_allclose(result.dose.array, expected, rtol=2e-5, atol=1e-5 * expected.max())
    used = {row["bin"] for row in result.info["density_bins"]}
    assert used == {int(i) for i in np.unique(bins.array) if DensityBins.default()[int(i)].representative_g_cm3 >= 0.1}


def test_zero_activity_gives_zero_dose(kernel_folder):
    ct, source = _case()
    zero = source.with_array(np.zeros(source.shape, np.float32))
    for method in ("svsv", "dvk", "mvsv"):
        dose = compute_dose(method, DoseRequest(zero, ct, options={"kernel_folder": str(kernel_folder)})).dose
        assert not dose.array.any()


def test_missing_kernel_names_the_command_for_the_whole_method():
    ct, source = _case()
    for method in ("svsv", "mvsv"):
        with pytest.raises(KernelNotAvailableError, match=rf"voxeldosimetry kernel --nuclide Lu-177 --for-method "
                                                          rf"{method} --voxel-mm 3 3 3"):
            compute_dose(method, DoseRequest(source, ct))


def test_a_kernel_file_for_another_nuclide_or_grid_is_refused(tmp_path):
    ct, source = _case()
    other = tmp_path / "y90.nrrd"
    write_kernel(DoseKernel(_kernel_values(1.0), SPACING, "Y-90", SOFT_TISSUE, 1.04, "total"), other)
    with pytest.raises(InputFormatError, match="is for Y-90, not Lu-177"):
        compute_dose("svsv", DoseRequest(source, ct, options={"kernel": str(other)}))
    coarse = tmp_path / "coarse.nrrd"
    write_kernel(DoseKernel(_kernel_values(1.0), (4.8, 4.8, 4.8), "Lu-177", SOFT_TISSUE, 1.04, "total"), coarse)
    with pytest.raises(InputFormatError, match="voxeldosimetry kernel --voxel-mm"):
        compute_dose("dvk", DoseRequest(source, ct, options={"kernel": str(coarse)}))


def test_the_kernel_fingerprint_changes_when_a_cached_kernel_appears(tmp_path):
    from VoxelDosimetryLib.dose import get_dose_method
    from VoxelDosimetryLib.kernels.cache import kernel_cache_dir

    method = get_dose_method("mvsv")
    before = method.state({})
    assert method.state({}) == before
    kernel_cache_dir().mkdir(parents=True, exist_ok=True)
    write_kernel(DoseKernel(_kernel_values(1.0), SPACING, "Lu-177", SOFT_TISSUE, 1.04, "total"),
                 kernel_cache_dir() / "new.nrrd")
    assert method.state({}) != before
    assert get_dose_method("led").state({}) is None


def test_the_kernel_fingerprint_follows_the_files_the_options_name(kernel_folder, tmp_path):
    """A kernel replaced in the kernel folder, or a new kernel file under the same name, gives a new fingerprint,
    so the pipeline recomputes the dose instead of reusing a result made with the old kernel."""
    import os

    from VoxelDosimetryLib.dose import get_dose_method

    method = get_dose_method("svsv")
    folder_state = method.state({"kernel_folder": str(kernel_folder)})
    file_state = method.state({"kernel": str(kernel_folder / "st_p.nrrd")})
    assert folder_state != method.state({}) and file_state != method.state({})
    write_kernel(DoseKernel(_kernel_values(2.0, (9, 9, 9), 3), SPACING, "Lu-177", SOFT_TISSUE,
                            SOFT_TISSUE_DENSITY_G_CM3, "photon"), kernel_folder / "st_p.nrrd")
    os.utime(kernel_folder / "st_p.nrrd", ns=(1, 1))  # a different time whatever the file system's resolution
    assert method.state({"kernel_folder": str(kernel_folder)}) != folder_state
    assert method.state({"kernel": str(kernel_folder / "st_p.nrrd")}) != file_state


def test_the_ct_is_converted_to_density_once_per_request(kernel_folder, monkeypatch):
    """The value policy's density is handed to the method: one conversion, one `ct_hu_clamped` warning."""
    import VoxelDosimetryLib.dose.value_policy as value_policy
    import VoxelDosimetryLib.physics as physics
    from VoxelDosimetryLib.qc import collect_qc

    ct, source = _case()
    ct.array[0, 0, 10] = 3100.0  # above the HU -> density curve: warned about when converted
    calls = []
    original = physics.ct_to_density

    def counting(volume, *args, **kwargs):
        calls.append(volume)
        return original(volume, *args, **kwargs)

    monkeypatch.setattr(physics, "ct_to_density", counting)
    monkeypatch.setattr(value_policy, "ct_to_density", counting)
    for method in ("led", "dvk", "mvsv"):
        calls.clear()
        with collect_qc() as warnings:
            compute_dose(method, DoseRequest(source, ct, options={"kernel_folder": str(kernel_folder)}
                                             if method != "led" else {}))
        assert len(calls) == 1, method
        assert [w.code for w in warnings].count("ct_hu_clamped") == 1, method
