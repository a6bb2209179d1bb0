"""GATE 10 export: files readable back on the same grid, media = ours, errors; opengate build when installed."""
from __future__ import annotations

import json
import py_compile

import numpy as np
import pytest

from VoxelDosimetryLib.errors import InputFormatError, UnitError
from VoxelDosimetryLib.io import read_volume
from VoxelDosimetryLib.montecarlo.gate_export import (OpenGateUnavailableError, build_gate_simulation,
                                                      export_gate_simulation, import_opengate, nuclide_ion,
                                                      opengate_installed)
from VoxelDosimetryLib.montecarlo.gate_materials import GATE_ELEMENT_NAMES, gate_media_list, write_schneider_tables
from VoxelDosimetryLib.physics import MediaTable, schneider_composition_table, schneider_density_table
from VoxelDosimetryLib.volume import Volume

SHAPE = (6, 7, 8)


def ct_and_tia(direction=None) -> tuple[Volume, Volume]:
    ct = np.zeros(SHAPE, dtype=np.int16)
    ct[:, :, :2] = -1000
    ct[2:4, 3:5, 4:6] = 800
    ct[0, 0, 0] = -3024  # scanner padding, below the Schneider table
    ct_vol = Volume(ct, spacing=(2.0, 2.5, 3.0), origin=(-10.0, 20.0, 30.5), direction=direction, quantity="ct",
                    unit="HU")
    tia = np.zeros(SHAPE)
    tia[3, 3, 3], tia[2, 2, 2] = 5.0e6, 1.0e6
    return ct_vol, Volume(tia, grid=ct_vol.grid, quantity="tia_concentration", unit="Bq*s/mL")


def test_export_files_read_back_on_the_ct_grid(tmp_path):
    ct, tia = ct_and_tia()
    export = export_gate_simulation(ct, tia, tmp_path / "exp", histories=1001, threads=2, seed=5)
    ct_back = read_volume(export.files["ct"])
    assert ct_back.grid.mismatch(ct.grid) is None and ct_back.array.dtype == np.int16
    np.testing.assert_array_equal(ct_back.array, ct.array)
    src_back = read_volume(export.files["activity"])
    assert src_back.grid.mismatch(ct.grid) is None and src_back.quantity == "tia_concentration"
    np.testing.assert_array_equal(src_back.array, tia.array.astype(np.float32))
    config = json.loads(export.files["config"].read_text())
    assert config["histories"] == 1001 and config["seed"] == 5 and config["threads"] == 2
    assert config["ion"] == {"Z": 71, "A": 177, "excitation_kev": 0.0, "nuclide": "Lu-177"}
    assert config["ct_grid"]["size_xyz"] == [8, 7, 6] and config["ct_grid"]["origin_lps_mm"] == [-10.0, 20.0, 30.5]
    total = 6.0e6 * ct.voxel_volume_ml
    assert config["source"]["total"] == pytest.approx(total) and config["source"]["total_unit"] == "Bq*s"
    assert f"--total-tia-bq-s {total:.6g}" in config["import_command"]
    assert all(w > e for w, e in zip(config["world_size_mm"], [16.0, 17.5, 18.0]))
    assert len(config["materials"]) == 74 and config["physics_list"] == "G4EmStandardPhysics_option4"
    py_compile.compile(str(export.files["script"]), doraise=True)
    readme = export.files["readme"].read_text()
    assert "python run_gate.py" in readme and config["import_command"] in readme


def test_media_list_matches_our_media_table():
    media = MediaTable.from_schneider(0.05)
    listed = gate_media_list(media)
    assert len(listed) == len(media) == 74
    assert listed[0]["hu_low"] is None and listed[-1]["hu_high"] is None  # clamped ends, as media_index does
    edges = [m["hu_low"] for m in listed[1:]]
    np.testing.assert_allclose(edges, media.hu_edges[1:-1])
    for entry, medium in zip(listed, media):
        assert entry["name"] == "VD_" + medium.name and entry["density_g_cm3"] == medium.density_g_cm3
        assert dict(zip(entry["elements"], entry["mass_fractions"])) == dict(medium.mass_fractions)
    assert len({m["name"] for m in listed}) == 74


def test_schneider_tables_in_gate_format_match_ours(tmp_path):
    materials, densities = write_schneider_tables(tmp_path)
    lines = [ln for ln in materials.read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "[Elements]" and lines[2] == "[/Elements]"
    comp = schneider_composition_table()
    assert lines[1].split() == [GATE_ELEMENT_NAMES[e] for e in comp.elements]
    rows = [ln.split() for ln in lines[3:]]
    assert [int(r[0]) for r in rows] == [int(h) for h in comp.hu_low]
    np.testing.assert_allclose([[float(v) for v in r[1:-1]] for r in rows], comp.mass_percent)
    assert [r[-1] for r in rows] == list(comp.names)
    dens = np.array([[float(v) for v in ln.split()] for ln in densities.read_text().splitlines()
                     if ln and not ln.startswith("#")])
    table = schneider_density_table()
    np.testing.assert_allclose(dens[:, 0], table.hu)
    np.testing.assert_allclose(dens[:, 1], table.density_g_cm3)


def test_source_on_another_grid_is_resampled_conserving_activity(tmp_path):
    ct, _ = ct_and_tia()
    coarse = Volume(np.full((3, 5, 4), 2.0), spacing=(4.0, 3.5, 6.0), origin=(-9.0, 20.5, 32.0),  # same FOV
                    quantity="activity_concentration", unit="MBq/mL")
    export = export_gate_simulation(ct, coarse, tmp_path / "exp", histories=10)
    assert any("resampled" in n for n in export.config["notes"])
    source = read_volume(export.files["activity"])
    assert source.grid.mismatch(ct.grid) is None
    assert export.config["source"]["total_unit"] == "Bq" and "--total-activity-bq" in export.config["import_command"]
    total_in = 2.0e6 * coarse.voxel_volume_ml * coarse.array.size
    assert export.config["source"]["total"] == pytest.approx(total_in, rel=1e-3)


def test_inputs_are_not_modified(tmp_path):
    ct, tia = ct_and_tia()
    ct_before, tia_before = ct.array.copy(), tia.array.copy()
    export_gate_simulation(ct, tia, tmp_path / "exp", histories=10)
    np.testing.assert_array_equal(ct.array, ct_before)
    np.testing.assert_array_equal(tia.array, tia_before)


@pytest.mark.parametrize("change, error, message", [
    (lambda a: a * -1.0, InputFormatError, "negative"),
    (lambda a: np.where(a > 0, np.nan, a), InputFormatError, "NaN"),
    (lambda a: a * 0.0, InputFormatError, "sums to zero"),
])
def test_bad_sources_are_refused(tmp_path, change, error, message):
    ct, tia = ct_and_tia()
    with pytest.raises(error, match=message):
        export_gate_simulation(ct, tia.with_array(change(tia.array)), tmp_path / "exp")


def test_bad_settings_are_refused(tmp_path):
    ct, tia = ct_and_tia()
    with pytest.raises(UnitError, match="activity"):
        export_gate_simulation(ct, tia.with_array(tia.array, quantity="dose", unit="Gy"), tmp_path / "e")
    with pytest.raises(InputFormatError, match="physics list"):
        export_gate_simulation(ct, tia, tmp_path / "e", physics_list="FTFP_MAGIC")
    with pytest.raises(InputFormatError, match="histories"):
        export_gate_simulation(ct, tia, tmp_path / "e", histories=0)
    with pytest.raises(UnitError):
        export_gate_simulation(tia, tia, tmp_path / "e")  # the CT must be a CT
    assert nuclide_ion("Y-90") == {"Z": 39, "A": 90, "excitation_kev": 0.0, "nuclide": "Y-90"}


def test_build_without_opengate_names_the_fix(tmp_path, monkeypatch):
    if opengate_installed():
        pytest.skip("opengate is installed here; the missing-package message cannot be checked")
    with pytest.raises(OpenGateUnavailableError, match="pip install opengate"):
        import_opengate()
    ct, tia = ct_and_tia()
    export_gate_simulation(ct, tia, tmp_path / "exp", histories=10)
    with pytest.raises(OpenGateUnavailableError):
        build_gate_simulation(tmp_path / "exp")
    with pytest.raises(InputFormatError, match="not a GATE export folder"):
        build_gate_simulation(tmp_path)


# --------------------------------------------------------------------------------- with opengate installed
requires_opengate = pytest.mark.skipif(not opengate_installed(),
                                       reason="opengate (GATE 10) is not installed: pip install opengate to run "
                                              "the simulation-build tests (see docs/GATE.md)")


def _opengate_or_skip(monkeypatch) -> None:
    monkeypatch.setenv("GATEONRTD", "1")  # build only: no Geant4 data check or download at import
    try:
        import_opengate()
    except OpenGateUnavailableError as exc:
        pytest.skip(f"opengate is installed but cannot be imported: {exc}")


@requires_opengate
@pytest.mark.slow
def test_opengate_simulation_builds_with_our_media(tmp_path, monkeypatch):
    _opengate_or_skip(monkeypatch)
    ct, tia = ct_and_tia()
    export_gate_simulation(ct, tia, tmp_path / "exp", histories=1001, threads=2, seed=5)
    sim, summary = build_gate_simulation(tmp_path / "exp")
    assert summary["voxel_materials"] == 74 and summary["declared_materials"] == 74
    assert summary["source"]["particle"] == "ion" and summary["source"]["ion"] == [71, 177]
    assert summary["source"]["n_per_thread"] == 501 and summary["threads"] == 2 and summary["seed"] == 5
    assert summary["physics_list"] == "G4EmStandardPhysics_option4" and summary["decay"]
    assert summary["dose_size"] == [8, 7, 6]
    assert {k: v.rsplit("/", 1)[-1] for k, v in summary["dose_outputs"].items()} == {
        "edep": "dose_edep.mhd", "edep_uncertainty": "dose_edep_uncertainty.mhd", "dose": "dose_dose.mhd",
        "dose_uncertainty": "dose_dose_uncertainty.mhd"}
    patient = sim.volume_manager.get_volume("patient")
    edges = [m[0] for m in patient.voxel_materials[1:]]
    np.testing.assert_allclose(edges, MediaTable.from_schneider(0.05).hu_edges[1:-1])
    assert patient.voxel_materials[0][0] == -np.inf and patient.voxel_materials[-1][1] == np.inf
    assert sim.get_actor("dose").output_coordinate_system == "attached_to_image"


@requires_opengate
@pytest.mark.slow
def test_opengate_schneider_tables_mode_builds(tmp_path, monkeypatch):
    _opengate_or_skip(monkeypatch)
    ct, tia = ct_and_tia()
    export_gate_simulation(ct, tia, tmp_path / "exp", histories=10, materials_mode="schneider_tables")
    sim, summary = build_gate_simulation(tmp_path / "exp")
    # opengate splits the same bins on slightly different HU edges but into as many media as we do
    assert summary["voxel_materials"] == summary["declared_materials"] == 74
    patient = sim.volume_manager.get_volume("patient")
    assert patient.voxel_materials[0][0] == -np.inf and patient.voxel_materials[-1][1] == np.inf
