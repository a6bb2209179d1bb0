"""Schneider 2000 tables: HU -> density curve and composition bins (PHYSICS.md §3)."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.physics import (
    composition_bin,
    hu_to_density,
    schneider_composition_table,
    schneider_density_table,
)
from VoxelDosimetryLib.physics.schneider import DENSITIES_FILE, MATERIALS_FILE

NODES = [(-1000, 0.00121), (-98, 0.93), (-97, 0.930486), (14, 1.03), (23, 1.031), (100, 1.1199), (101, 1.0762),
         (1600, 1.9642), (3000, 2.8)]


def test_density_table_nodes():
    t = schneider_density_table()
    np.testing.assert_array_equal(t.hu, [h for h, _ in NODES])
    np.testing.assert_array_equal(t.density_g_cm3, [d for _, d in NODES])


@pytest.mark.parametrize("hu,rho", NODES)
def test_density_at_nodes(hu, rho):
    assert hu_to_density(hu) == pytest.approx(rho, rel=1e-12)


@pytest.mark.parametrize("i", range(len(NODES) - 1))
def test_density_at_midpoints(i):
    (h0, d0), (h1, d1) = NODES[i], NODES[i + 1]
    assert hu_to_density(0.5 * (h0 + h1)) == pytest.approx(0.5 * (d0 + d1), rel=1e-12)


def test_drop_between_100_and_101_hu():
    rho = hu_to_density(np.array([99.0, 100.0, 100.5, 101.0, 102.0]))
    assert rho[1] == pytest.approx(1.1199) and rho[3] == pytest.approx(1.0762)
    assert rho[1] > rho[2] > rho[3]  # the soft-tissue line ends, the skeletal line starts lower
    assert rho[0] < rho[1] and rho[4] > rho[3]


def test_vectorised_shape_dtype_and_input_untouched():
    ct = np.array([[[-1024, 0], [40, 1000]]], dtype=np.int16)
    before = ct.copy()
    rho = hu_to_density(ct)
    assert rho.shape == ct.shape and rho.dtype == np.float64
    np.testing.assert_array_equal(ct, before)
    f = np.array([0.0, 3000.0])
    hu_to_density(f)
    np.testing.assert_array_equal(f, [0.0, 3000.0])


def test_out_of_range_clamped_counted_and_logged(caplog):
    with caplog.at_level(logging.INFO):
        rho, report = hu_to_density(np.array([-3024.0, -1024.0, 0.0, 3500.0]), return_report=True)
    assert rho[0] == rho[1] == pytest.approx(0.00121)
    assert rho[3] == pytest.approx(2.8)
    assert (report.n_below, report.n_above, report.n_out_of_range) == (2, 1, 3)
    assert report.min_value == -3024.0 and report.max_value == 3500.0
    levels = {r.levelno for r in caplog.records if r.name == "VoxelDosimetryLib.physics.schneider"}
    assert levels == {logging.INFO}  # counts in the log; the user-facing warning is the QC one
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.name for r in warning] == ["VoxelDosimetryLib.qc"]
    assert "[ct_hu_clamped]" in warning[0].getMessage()
    assert "1 of 4" in warning[0].getMessage() and "3000" in warning[0].getMessage()


def test_in_range_logs_nothing(caplog):
    with caplog.at_level(logging.DEBUG, logger="VoxelDosimetryLib.physics.schneider"):
        _, report = hu_to_density(np.linspace(-1000, 3000, 11), return_report=True)
    assert report.n_out_of_range == 0 and not caplog.records


def test_non_finite_hu_raises():
    with pytest.raises(InputFormatError, match="NaN or infinite"):
        hu_to_density(np.array([0.0, np.nan]))


def test_composition_table():
    t = schneider_composition_table()
    assert len(t) == 27
    assert t.elements == ("H", "C", "N", "O", "Na", "Mg", "P", "S", "Cl", "Ar", "K", "Ca", "Ti", "Cu", "Zn", "Ag", "Sn")
    assert t.names[0] == "Air" and t.names[1] == "Lung" and t.names[7] == "SoftTissus"
    assert t.names[-3:] == ("AmalgamTooth", "MetallImplants", "MetallImplants")
    assert sum(n.startswith("Marrow_Bone") for n in t.names) == 15
    np.testing.assert_allclose(t.mass_percent.sum(axis=1), 100.0, atol=1e-9)
    assert t.hu_low[0] == -1050 and t.hu_low[-1] == 3000 and t.hu_high[-1] == 3001
    np.testing.assert_array_equal(t.hu_high[:-1], t.hu_low[1:])
    air = t.mass_fractions(0)
    assert air == pytest.approx({"N": 0.755, "O": 0.232, "Ar": 0.013})
    bone = t.mass_fractions(23)  # Marrow_Bone15
    assert sum(bone.values()) == pytest.approx(1.0) and bone["Ca"] == pytest.approx(0.225)
    amalgam = t.mass_fractions(24)
    assert amalgam == pytest.approx({"Cu": 0.04, "Zn": 0.02, "Ag": 0.65, "Sn": 0.29})


def test_composition_bin_boundaries():
    hu = np.array([-2000, -1050, -950.001, -950, -120, 18.999, 19, 80, 120, 1639.9, 1640, 2300, 2999.9, 3000,
                   3000.5, 3001])
    idx, report = composition_bin(hu, return_report=True)
    assert idx.dtype == np.int16
    assert idx.tolist() == [0, 0, 0, 1, 2, 6, 7, 8, 9, 23, 24, 25, 25, 26, 26, 26]
    assert report.n_below == 1 and report.n_above == 1


def test_data_files_cite_source():
    for path in (DENSITIES_FILE, MATERIALS_FILE):
        head = path.read_text(encoding="utf-8").splitlines()[0]
        assert head.startswith("#") and "Schneider" in head
    assert "Phys Med Biol" in DENSITIES_FILE.read_text(encoding="utf-8")
