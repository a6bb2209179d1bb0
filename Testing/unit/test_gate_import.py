"""GATE 9 / GATE 10 / own-engine MC outputs -> case mc/ label: file discovery, stats, normalisation, geometry."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from VoxelDosimetryLib.errors import GridMismatchError, InputFormatError, MissingMetadataError
from VoxelDosimetryLib.io import read_volume
from VoxelDosimetryLib.montecarlo.gate_import import (compare_grids, find_gate_outputs, import_gate_to_case,
                                                      load_gate_dose)
from VoxelDosimetryLib.montecarlo.gate_stats import parse_gate_stats, read_gate_stats
from VoxelDosimetryLib.physics import hu_to_density
from VoxelDosimetryLib.io.case import Case, Timepoint, read_case, write_case
from VoxelDosimetryLib.volume import Volume

# GATE 9 GateSimulationStatisticActor::SaveData layout (ctime dates carry their own newline)
GATE9_STATS = """# NumberOfRun    = 1
# NumberOfEvents = 1000
# NumberOfTracks = 25345
# NumberOfSteps  = 123456
# NumberOfGeometricalSteps  = 2345
# NumberOfPhysicalSteps     = 121111
# ElapsedTime           = 12.5
# ElapsedTimeWoInit     = 10.25
# StartDate             = Mon Jan  5 09:00:00 2026
# EndDate               = Mon Jan  5 09:00:12 2026
# StartSimulationTime        = 0
# StopSimulationTime         = 1
# CurrentSimulationTime      = 1
# VirtualStartSimulationTime = -1
# VirtualStopSimulationTime  = -1
# ElapsedSimulationTime      = 1
# PPS (Primary per sec)      = 97.561
# TPS (Track per sec)        = 2472.68
# SPS (Step per sec)         = 12044.5
# Track types: 
# Hf177 = 1000
# e- = 20000
# gamma = 4345
"""

# written by opengate 10.1.1 ActorOutputStatisticsActor.write_data, encoder "json" (the default) and "legacy"
GATE10_JSON_STATS = json.dumps({
    "runs": {"value": 1, "unit": None}, "events": {"value": 1000, "unit": None},
    "tracks": {"value": 25345, "unit": None}, "steps": {"value": 123456, "unit": None},
    "init": {"value": 850.0, "unit": "ms"}, "duration": {"value": 2.5, "unit": "s"},
    "pps": {"value": 400, "unit": None}, "tps": {"value": 10138, "unit": None}, "sps": {"value": 49382, "unit": None},
    "start_time": {"value": "Mon Jan  5 09:00:00 2026", "unit": None},
    "stop_time": {"value": "Mon Jan  5 09:00:03 2026", "unit": None},
    "sim_start_time": {"value": 0.0, "unit": "ps"}, "sim_stop_time": {"value": 1.0, "unit": "s"},
    "threads": {"value": 2, "unit": None}, "arch": {"value": "Linux", "unit": None},
    "python": {"value": "3.11.7", "unit": None},
    "track_types": {"value": {"e-": 20000, "gamma": 4345, "Hf177": 1000}, "unit": None}}, indent=4)
GATE10_LEGACY_STATS = """runs                1 
events              1000 
tracks              25345 
steps               123456 
init                850.0 ms
duration            2.5 s
pps                 400 
tps                 10138 
sps                 49382 
start_time          Mon Jan  5 09:00:00 2026 
stop_time           Mon Jan  5 09:00:03 2026 
sim_start_time      0.0 ps
sim_stop_time       1.0 s
threads             2 
arch                Linux 
python              3.11.7 
track_types
                        e-: 20000
                        gamma: 4345
                        Hf177: 1000"""

SHAPE = (4, 5, 6)  # z, y, x
SPACING = (2.0, 2.5, 3.0)
ORIGIN = (-10.0, 20.0, 30.5)
N_EVENTS = 1000


def write_mhd(array: np.ndarray, path: Path, spacing=SPACING, origin=ORIGIN) -> Path:
    """A MetaImage as ITK (hence opengate) writes it, with no sidecar."""
    image = sitk.GetImageFromArray(np.asarray(array, dtype=np.float64))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))
    return path


def fake_dose(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Total dose (Gy) of N_EVENTS primaries with some empty voxels, and a relative uncertainty (0 where empty)."""
    rng = np.random.default_rng(seed)
    dose = rng.uniform(1e-9, 1e-7, SHAPE)
    dose[0] = 0.0
    unc = np.where(dose > 0, rng.uniform(0.01, 0.3, SHAPE), 0.0)
    return dose, unc


def write_gate10(folder: Path, dose: np.ndarray, unc: np.ndarray, prefix: str = "dose", stats: str = GATE10_JSON_STATS,
                 **geometry) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_mhd(dose, folder / f"{prefix}_dose.mhd", **geometry)
    write_mhd(unc, folder / f"{prefix}_dose_uncertainty.mhd", **geometry)
    write_mhd(dose * 1e3, folder / f"{prefix}_edep.mhd", **geometry)
    write_mhd(unc, folder / f"{prefix}_edep_uncertainty.mhd", **geometry)
    (folder / "stats.txt").write_text(stats)
    return folder


def make_case(folder: Path, shape=SHAPE, spacing=SPACING, origin=ORIGIN) -> Path:
    ct = np.zeros(shape, dtype=np.int16)
    ct[..., :2] = -1000
    ct_vol = Volume(ct, spacing=spacing, origin=origin, quantity="ct", unit="HU")
    spect = Volume(np.ones(shape, np.float32), grid=ct_vol.grid, quantity="activity_concentration", unit="Bq/mL")
    case = Case(id="gate-test", nuclide="Lu-177", timepoints=[Timepoint(24.0, "spect_24h.nrrd")])
    write_case(case, folder, {"ct.nrrd": ct_vol, "spect_24h.nrrd": spect})
    return folder


# ------------------------------------------------------------------------------------------------ stats
def test_gate9_stats_file_is_parsed():
    stats = parse_gate_stats(GATE9_STATS, "stat.txt")
    assert stats.format == "gate9" and stats.events == 1000
    assert stats.values["runs"] == 1 and stats.values["tracks"] == 25345 and stats.values["steps"] == 123456
    assert stats.elapsed_time_s == 12.5 and stats.values["elapsed_time_without_init_s"] == 10.25
    assert stats.values["start_date"] == "Mon Jan  5 09:00:00 2026"
    assert stats.values["primaries_per_s"] == pytest.approx(97.561)
    assert stats.track_types == {"Hf177": 1000, "e-": 20000, "gamma": 4345}
    assert stats.engine == "GATE" and stats.engine_version is None


@pytest.mark.parametrize("text, fmt", [(GATE10_JSON_STATS, "gate10-json"), (GATE10_LEGACY_STATS, "gate10-legacy")])
def test_gate10_stats_json_and_legacy_agree(text, fmt):
    stats = parse_gate_stats(text)
    assert stats.format == fmt and stats.events == 1000 and stats.values["threads"] == 2
    assert stats.elapsed_time_s == 2.5 and stats.values["init_time_s"] == pytest.approx(0.85)
    assert stats.values["sim_stop_time_s"] == 1.0 and stats.values["start_time"] == "Mon Jan  5 09:00:00 2026"
    assert stats.track_types == {"e-": 20000, "gamma": 4345, "Hf177": 1000}


def test_own_engine_stats_json(tmp_path):
    path = tmp_path / "mc_stats.json"
    path.write_text(json.dumps({"engine": "VoxelDosimetry-MC", "engine_version": "0.1", "histories": 5000,
                                "time_s": 3.0, "source_total": 2.0}))
    stats = read_gate_stats(path)
    assert stats.format == "voxeldosimetry" and stats.events == 5000 and stats.elapsed_time_s == 3.0
    assert stats.engine == "VoxelDosimetry-MC" and stats.engine_version == "0.1"


@pytest.mark.parametrize("text, message", [("", "empty"), ("hello world", "not a GATE statistics file"),
                                           ('{"foo": 1}', "neither GATE 10"), ("{broken", "malformed"),
                                           ("# NumberOfEvents = many", "not a number")])
def test_bad_stats_files_are_named(text, message):
    with pytest.raises(InputFormatError, match=message):
        parse_gate_stats(text, "stats.txt")


def test_unknown_time_unit_is_refused():
    with pytest.raises(InputFormatError, match="unknown time unit"):
        parse_gate_stats(json.dumps({"events": {"value": 1, "unit": None},
                                     "duration": {"value": 1, "unit": "fortnight"}}))


# ------------------------------------------------------------------------------------------------ files
def test_gate9_names_are_found(tmp_path):
    dose, unc = fake_dose()
    for name, arr in (("output-Dose", dose), ("output-Dose-Uncertainty", unc), ("output-Edep", dose),
                      ("output-Edep-Uncertainty", unc), ("output-Dose-Squared", dose)):
        write_mhd(arr, tmp_path / f"{name}.mhd")
    (tmp_path / "stat.txt").write_text(GATE9_STATS)
    files = find_gate_outputs(tmp_path)
    assert files.prefix == "output" and files.dose.name == "output-Dose.mhd"
    assert files.dose_uncertainty.name == "output-Dose-Uncertainty.mhd" and files.edep.name == "output-Edep.mhd"
    assert files.stats.name == "stat.txt" and not files.dose_to_water


def test_gate10_automatic_names_are_found(tmp_path):
    dose, unc = fake_dose()
    base = "dose_with_uncertainty_from_doseactor_dose"
    write_mhd(dose, tmp_path / f"{base}-dose.mhd")
    write_mhd(unc, tmp_path / f"{base}-dose_uncertainty.mhd")
    write_mhd(dose, tmp_path / f"{base}-dose_squared.mhd")
    (tmp_path / "stats_from_simulationstatisticsactor_stats.json").write_text(GATE10_JSON_STATS)
    files = find_gate_outputs(tmp_path)
    assert files.prefix == base and files.dose.name == f"{base}-dose.mhd"
    assert files.dose_uncertainty.name == f"{base}-dose_uncertainty.mhd" and files.edep is None
    assert files.stats.name.startswith("stats_from")


def test_several_output_sets_need_a_prefix(tmp_path):
    dose, unc = fake_dose()
    write_gate10(tmp_path, dose, unc, prefix="a")
    write_gate10(tmp_path, dose, unc, prefix="b")
    with pytest.raises(InputFormatError, match="several output sets.*--prefix"):
        find_gate_outputs(tmp_path)
    assert find_gate_outputs(tmp_path, prefix="B").dose.name == "b_dose.mhd"
    with pytest.raises(InputFormatError, match="prefixes found: a, b"):
        find_gate_outputs(tmp_path, prefix="c")


def test_empty_folder_names_the_expected_files(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputFormatError, match="output-Dose.mhd"):
        find_gate_outputs(tmp_path)
    with pytest.raises(InputFormatError, match="not a folder"):
        find_gate_outputs(tmp_path / "missing")


def test_dose_to_water_is_used_only_without_dose(tmp_path):
    dose, unc = fake_dose()
    write_mhd(dose, tmp_path / "out-DoseToWater.mhd")
    write_mhd(unc, tmp_path / "out-DoseToWater-Uncertainty.mhd")
    files = find_gate_outputs(tmp_path)
    assert files.dose_to_water and files.dose.name == "out-DoseToWater.mhd"
    assert files.dose_uncertainty.name == "out-DoseToWater-Uncertainty.mhd"


# -------------------------------------------------------------------------------------------- normalise
def test_dose_per_decay_is_dose_over_events(tmp_path):
    dose, unc = fake_dose()
    result = load_gate_dose(write_gate10(tmp_path, dose, unc))
    assert result.dose.quantity == "dose_per_decay" and result.dose.unit == "Gy/(Bq*s)"
    np.testing.assert_array_equal(result.dose.array, (dose / N_EVENTS).astype(np.float32))
    assert result.dose.grid.origin == ORIGIN and result.dose.grid.spacing == SPACING
    # GATE 10 writes 0 where nothing was deposited; the import stores 1 there (GATE 9 / own convention)
    np.testing.assert_array_equal(result.uncertainty.array[0], 1.0)
    np.testing.assert_array_equal(result.uncertainty.array[1:], unc[1:].astype(np.float32))
    meta = result.metadata
    assert meta["engine"] == "GATE" and meta["convention"] == "gate10" and meta["histories"] == N_EVENTS
    assert meta["uncertainty"]["zero_dose_voxels_set_to_1"] == SHAPE[1] * SHAPE[2]
    assert meta["stats"]["format"] == "gate10-json" and meta["normalisation"]["assumes_one_decay_per_primary"]


def test_total_tia_gives_gray_and_activity_gives_gray_per_second(tmp_path):
    dose, unc = fake_dose()
    folder = write_gate10(tmp_path, dose, unc)
    gy = load_gate_dose(folder, total_tia_bq_s=3.0e12)
    assert gy.dose.quantity == "dose" and gy.dose.unit == "Gy"
    np.testing.assert_allclose(gy.dose.array, dose / N_EVENTS * 3.0e12, rtol=1e-6)
    assert gy.metadata["normalisation"]["total_tia_bq_s"] == 3.0e12
    rate = load_gate_dose(folder, total_activity_bq=2.0e9)
    assert rate.dose.quantity == "dose_rate" and rate.dose.unit == "Gy/s"
    np.testing.assert_allclose(rate.dose.array, dose / N_EVENTS * 2.0e9, rtol=1e-6)
    with pytest.raises(InputFormatError, match="not both"):
        load_gate_dose(folder, total_tia_bq_s=1.0, total_activity_bq=1.0)
    with pytest.raises(InputFormatError, match="positive"):
        load_gate_dose(folder, total_tia_bq_s=-5.0)


def test_gate9_relative_uncertainty_is_kept_and_histories_override(tmp_path):
    dose, unc = fake_dose()
    unc9 = np.where(dose > 0, unc, 1.0)  # GATE 9 writes 1 where the mean is 0
    write_mhd(dose, tmp_path / "output-Dose.mhd")
    write_mhd(unc9, tmp_path / "output-Dose-Uncertainty.mhd")
    (tmp_path / "stat.txt").write_text(GATE9_STATS)
    result = load_gate_dose(tmp_path, histories=4000)
    assert result.metadata["convention"] == "gate9" and result.metadata["histories"] == 4000
    np.testing.assert_array_equal(result.dose.array, (dose / 4000).astype(np.float32))
    np.testing.assert_array_equal(result.uncertainty.array, unc9.astype(np.float32))


def test_number_of_primaries_is_required(tmp_path):
    dose, unc = fake_dose()
    folder = write_gate10(tmp_path, dose, unc)
    (folder / "stats.txt").unlink()
    with pytest.raises(MissingMetadataError, match="--histories"):
        load_gate_dose(folder)
    assert load_gate_dose(folder, histories=10).metadata["histories"] == 10


def test_bad_images_are_refused(tmp_path):
    dose, unc = fake_dose()
    bad = dose.copy()
    bad[1, 1, 1] = np.nan
    with pytest.raises(InputFormatError, match="1 NaN/infinite"):
        load_gate_dose(write_gate10(tmp_path / "nan", bad, unc))
    bad = dose.copy()
    bad[1, 1, 1] = -1.0
    with pytest.raises(InputFormatError, match="negative"):
        load_gate_dose(write_gate10(tmp_path / "neg", bad, unc))
    folder = write_gate10(tmp_path / "nounc", dose, unc)
    for name in ("dose_dose_uncertainty.mhd", "dose_edep_uncertainty.mhd"):
        (folder / name).unlink()
    with pytest.raises(InputFormatError, match="dose_uncertainty.active"):
        load_gate_dose(folder)


def test_own_engine_outputs_import_with_the_same_reader(tmp_path):
    from VoxelDosimetryLib.montecarlo.engine import MonteCarloResult

    dpd = fake_dose()[0] * 1e-6
    grid = Volume(dpd, spacing=SPACING, origin=ORIGIN).grid
    source_total = 5.0e10
    result = MonteCarloResult(
        edep=Volume(dpd.astype(np.float32), grid=grid, quantity="energy_deposited", unit="MeV"),
        dose_per_decay=Volume(dpd.astype(np.float32), grid=grid, quantity="dose_per_decay", unit="Gy/(Bq*s)"),
        dose=Volume((dpd * source_total).astype(np.float32), grid=grid, quantity="dose", unit="Gy"),
        uncertainty=Volume(np.full(SHAPE, 0.05, np.float32), grid=grid, quantity="relative_uncertainty", unit="1"),
        stats={"engine": "VoxelDosimetry-MC", "engine_version": "0.1", "histories": 20000, "seed": 3,
               "source_total": source_total, "time_s": 1.5})
    result.write(tmp_path, prefix="mc")
    loaded = load_gate_dose(tmp_path)
    assert loaded.metadata["convention"] == "voxeldosimetry" and loaded.metadata["engine"] == "VoxelDosimetry-MC"
    assert loaded.metadata["engine_version"] == "0.1" and loaded.metadata["histories"] == 20000
    np.testing.assert_allclose(loaded.dose.array, dpd, rtol=1e-6)
    np.testing.assert_array_equal(loaded.uncertainty.array[1:], np.float32(0.05))


# ------------------------------------------------------------------------------------------------ case
def test_import_writes_mc_folder_and_case_entry(tmp_path):
    case_dir = make_case(tmp_path / "case")
    dose, unc = fake_dose()
    summary = import_gate_to_case(write_gate10(tmp_path / "gate", dose, unc), case_dir, total_tia_bq_s=1.0e12)
    case = read_case(case_dir)
    assert case.mc["dose"] == "mc/dose.nrrd" and case.mc["uncertainty"] == "mc/uncertainty.nrrd"
    assert case.mc["engine"] == "GATE" and case.mc["histories"] == N_EVENTS and case.mc["quantity"] == "dose"
    stored = read_volume(case_dir / "mc" / "dose.nrrd")
    assert stored.quantity == "dose" and stored.unit == "Gy"
    assert stored.grid.mismatch(case.load_ct().grid) is None
    np.testing.assert_allclose(stored.array, dose / N_EVENTS * 1.0e12, rtol=1e-6)
    rel = read_volume(case_dir / "mc" / "uncertainty.nrrd")
    assert rel.quantity == "relative_uncertainty" and float(rel.array.max()) == 1.0
    meta = json.loads((case_dir / "mc" / "metadata.json").read_text())
    assert meta["geometry"]["matches"] and meta["geometry"]["offset_mm"] == [0.0, 0.0, 0.0]
    assert meta["source_files"]["dose"].endswith("dose_dose.mhd") and meta["case"] == "gate-test"
    assert not summary["replaced_previous_mc"]
    again = import_gate_to_case(tmp_path / "gate", case_dir)
    assert again["replaced_previous_mc"] and read_case(case_dir).mc["quantity"] == "dose_per_decay"


def test_translated_grid_needs_align_to_ct(tmp_path):
    case_dir = make_case(tmp_path / "case")
    dose, unc = fake_dose()
    shifted = (ORIGIN[0] + 4.0, ORIGIN[1] - 2.5, ORIGIN[2])
    gate = write_gate10(tmp_path / "gate", dose, unc, origin=shifted)
    with pytest.raises(GridMismatchError, match=r"offset \(\+4.000, -2.500, \+0.000\) mm.*--align-to-ct"):
        import_gate_to_case(gate, case_dir)
    assert read_case(case_dir).mc is None  # nothing written on failure
    summary = import_gate_to_case(gate, case_dir, align_to_ct=True)
    assert summary["geometry"]["aligned_to_ct"] and summary["geometry"]["offset_mm"] == [4.0, -2.5, 0.0]
    assert read_volume(case_dir / "mc" / "dose.nrrd").grid.mismatch(read_case(case_dir).load_ct().grid) is None


def test_gate10_centred_output_gets_a_hint(tmp_path):
    case_dir = make_case(tmp_path / "case")
    dose, unc = fake_dose()
    size = np.array(SHAPE[::-1]) * np.array(SPACING)
    centred = tuple(float(v) for v in -(size - np.array(SPACING)) / 2.0)
    gate = write_gate10(tmp_path / "gate", dose, unc, origin=centred)
    assert compare_grids(read_volume(gate / "dose_dose.mhd").grid, read_case(case_dir).load_ct().grid)[
        "mc_centred_on_origin"]
    with pytest.raises(GridMismatchError, match="attached_to_image"):
        import_gate_to_case(gate, case_dir)


def test_other_spacing_or_shape_is_a_grid_mismatch(tmp_path):
    case_dir = make_case(tmp_path / "case")
    dose, unc = fake_dose()
    gate = write_gate10(tmp_path / "gate", dose, unc, spacing=(2.0, 2.5, 4.0))
    with pytest.raises(GridMismatchError, match="spacings differ.*gate export"):
        import_gate_to_case(gate, case_dir, align_to_ct=True)


def test_edep_only_uses_the_ct_density(tmp_path):
    case_dir = make_case(tmp_path / "case")
    edep = np.full(SHAPE, 2.0)  # MeV over all events
    (tmp_path / "g").mkdir()
    write_mhd(edep, tmp_path / "g" / "x_edep.mhd")
    write_mhd(np.full(SHAPE, 0.1), tmp_path / "g" / "x_edep_uncertainty.mhd")
    import_gate_to_case(tmp_path / "g", case_dir, histories=100)
    stored = read_volume(case_dir / "mc" / "dose.nrrd")
    ct = read_case(case_dir).load_ct()
    mass_kg = hu_to_density(ct.array) * ct.voxel_volume_ml * 1e-3
    np.testing.assert_allclose(stored.array, 2.0 * 1.602176634e-13 / mass_kg / 100, rtol=1e-6)
    notes = json.loads((case_dir / "mc" / "metadata.json").read_text())["notes"]
    assert any("energy deposit" in n for n in notes)


def test_hand_written_gate9_header_is_read(tmp_path):
    """A MetaImage header as GATE 9's GateImage writes it (Offset, AnatomicalOrientation, MET_FLOAT raw)."""
    dose, unc = fake_dose()
    for name, arr in (("output-Dose", dose), ("output-Dose-Uncertainty", np.where(dose > 0, unc, 1.0))):
        arr.astype("<f4").tofile(tmp_path / f"{name}.raw")
        (tmp_path / f"{name}.mhd").write_text(
            "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
            "CompressedData = False\nTransformMatrix = 1 0 0 0 1 0 0 0 1\n"
            f"Offset = {ORIGIN[0]} {ORIGIN[1]} {ORIGIN[2]}\nCenterOfRotation = 0 0 0\nAnatomicalOrientation = RAI\n"
            f"ElementSpacing = {SPACING[0]} {SPACING[1]} {SPACING[2]}\nDimSize = {SHAPE[2]} {SHAPE[1]} {SHAPE[0]}\n"
            f"ElementType = MET_FLOAT\nElementDataFile = {name}.raw\n")
    (tmp_path / "stat.txt").write_text(GATE9_STATS)
    result = load_gate_dose(tmp_path)
    np.testing.assert_allclose(result.dose.array, dose.astype(np.float32) / N_EVENTS, rtol=1e-6)
    assert result.dose.grid.origin == ORIGIN
