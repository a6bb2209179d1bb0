"""The `voxeldosimetry` command line: info, convert, demo, errors and exit codes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from VoxelDosimetryLib import Volume
from VoxelDosimetryLib.cli.main import main
from VoxelDosimetryLib.io import read_volume, write_volume


def test_info_lists_versions_device_and_nuclides(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["devices"]["auto"] in ("cpu", "cuda")
    lu = [n for n in info["nuclides"] if n["name"] == "Lu-177"][0]
    assert lu["electrons_kev_per_decay"] == pytest.approx(147.9, rel=0.005)
    assert lu["photons_kev_per_decay"] == pytest.approx(35.1, rel=0.005)
    assert {"Lu-177", "Y-90", "I-131", "Tb-161", "Ga-68", "Tc-99m"} <= {n["name"] for n in info["nuclides"]}
    assert main(["info"]) == 0
    assert "Lu-177" in capsys.readouterr().out


def test_convert_keeps_geometry_and_converts_units(tmp_path, capsys, oblique_direction):
    vol = Volume(np.arange(60, dtype=np.float32).reshape(3, 4, 5), spacing=(1.1, 2.2, 3.3), origin=(-5, 6, -7),
                 direction=oblique_direction, quantity="activity_concentration", unit="MBq/mL")
    src = write_volume(vol, tmp_path / "in.nrrd")
    assert main(["convert", str(src), str(tmp_path / "out.nii.gz"), "--to-unit", "Bq/mL"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["unit"] == "Bq/mL"
    out = read_volume(tmp_path / "out.nii.gz")
    assert out.grid == vol.grid and out.unit == "Bq/mL"
    assert np.allclose(out.array, vol.array * 1e6)


def test_convert_errors_exit_nonzero_with_a_message(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "missing.nrrd"), str(tmp_path / "x.nrrd")]) == 1
    assert "error" in capsys.readouterr().err
    vol = write_volume(Volume(np.zeros((2, 2, 2)), quantity="dose"), tmp_path / "d.nrrd")
    assert main(["convert", str(vol), str(tmp_path / "x.nrrd"), "--to-unit", "Bq"]) == 1
    assert "Cannot convert" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["convert"])
    assert usage.value.code == 2


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "liver" in out and "Lu-177" in out and "mean_gy" in out
    case = json.loads((tmp_path / "demo" / "case" / "case.json").read_text())
    truth = case["notes"]["true_organ_tia_bq_s"]
    assert truth["liver"] > truth["kidney_left"] > 0
    manifest = json.loads((tmp_path / "demo" / "run" / "run.json").read_text())
    assert [s["name"] for s in manifest["steps"]][-2:] == ["labels", "tables"]
    # the SPECT keeps the true total activity: compare with the truth volume at each time
    for tp in case["timepoints"]:
        info = [s["info"] for s in manifest["steps"] if s["name"] == f"activity_{tp['time_h']:g}h"][0]
        true = read_volume(tmp_path / "demo" / "case" / tp["activity_true"])
        assert info["total_on_dose_grid_bq"] == pytest.approx(true.array.sum() * true.voxel_volume_ml, rel=0.01)
    table = json.loads((tmp_path / "demo" / "run" / "tables" / "segments.json").read_text())
    rows = {r["name"]: r for r in table["rows"]}
    assert rows["liver"]["tia_mbq_h"] * 3.6e9 == pytest.approx(truth["liver"], rel=0.15)
    assert rows["tumour_liver"]["mean_gy"] > rows["liver"]["mean_gy"] > 0
    assert (tmp_path / "demo" / "run" / "report.md").exists()


def test_dose_led_resamples_the_source_onto_the_ct_grid(tmp_path, capsys):
    ct = write_volume(Volume(np.zeros((8, 8, 8), np.int16), spacing=(2, 2, 2), quantity="ct"), tmp_path / "ct.nrrd")
    tia = Volume(np.full((4, 4, 4), 2e9), spacing=(4, 4, 4), origin=(1, 1, 1), quantity="tia_concentration")
    tia_path = write_volume(tia, tmp_path / "tia.nrrd")
    assert main(["dose", "--tia", str(tia_path), "--ct", str(ct), "--method", "led",
                 "--out", str(tmp_path / "dose.nrrd")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["method"] == "led"
    dose = read_volume(tmp_path / "dose.nrrd")
    assert dose.quantity == "dose" and dose.shape == (8, 8, 8)
    assert dose.array.max() > 0
    assert main(["dose", "--tia", str(tia_path), "--ct", str(ct), "--method", "led", "--uncertainty",
                 str(tmp_path / "u.nrrd"), "--out", str(tmp_path / "d2.nrrd")]) == 1
    assert "no uncertainty" in capsys.readouterr().err


def test_dose_mc_writes_dose_and_uncertainty(tmp_path, capsys):
    ct_array = np.zeros((10, 10, 10), np.int16)
    ct_array[:, :, 6:] = 700  # bone slab beside soft tissue
    ct = write_volume(Volume(ct_array, spacing=(4, 4, 4), quantity="ct"), tmp_path / "ct.nrrd")
    activity = np.zeros((10, 10, 10))
    activity[4:6, 4:6, 4:6] = 1e6
    src = write_volume(Volume(activity, spacing=(4, 4, 4), quantity="activity_concentration"), tmp_path / "a.nrrd")
    assert main(["dose", "--activity", str(src), "--ct", str(ct), "--method", "mc", "--histories", "20000",
                 "--device", "cpu", "--out", str(tmp_path / "d.nrrd"), "--uncertainty", str(tmp_path / "u.nrrd")]) == 0
    report = json.loads(capsys.readouterr().out)
    dose, unc = read_volume(tmp_path / "d.nrrd"), read_volume(tmp_path / "u.nrrd")
    assert dose.quantity == "dose_rate" and unc.quantity == "relative_uncertainty"
    hot = dose.array[4:6, 4:6, 4:6]
    assert hot.min() > 10 * dose.array[0, 0, 0]
    assert unc.array[4:6, 4:6, 4:6].max() < 0.05
    assert np.isfinite(dose.array).all() and np.isfinite(unc.array).all()
    assert report["info"]["histories"] == 20000 and report["info"]["method"] == "mc"


def test_dose_grid_option_and_uncertainty_goal(tmp_path, capsys):
    """--grid activity computes on the source's (coarser) grid with the CT averaged onto it; --uncertainty-goal
    stops the MC early and the stderr summary says so."""
    ct = write_volume(Volume(np.zeros((12, 12, 12), np.int16), spacing=(2, 2, 2), quantity="ct"), tmp_path / "ct.nrrd")
    activity = np.zeros((6, 6, 6))
    activity[2:4, 2:4, 2:4] = 1e6
    src = write_volume(Volume(activity, spacing=(4, 4, 4), origin=(1, 1, 1), quantity="activity_concentration"),
                       tmp_path / "a.nrrd")
    assert main(["dose", "--activity", str(src), "--ct", str(ct), "--grid", "activity", "--method", "mc",
                 "--uncertainty-goal", "0.05", "--device", "cpu", "--out", str(tmp_path / "d.nrrd")]) == 0
    report = json.loads(capsys.readouterr().out)
    err = capsys.readouterr().err
    dose = read_volume(tmp_path / "d.nrrd")
    assert dose.shape == (6, 6, 6) and dose.spacing == (4.0, 4.0, 4.0)
    assert report["info"]["stop_reason"] == "uncertainty_goal"
    assert report["info"]["goal_median_relative_uncertainty"] <= 0.05
    assert report["info"]["value_policy"]["p90_relative_uncertainty"] >= \
        report["info"]["value_policy"]["median_relative_uncertainty"]
    assert main(["dose", "--activity", str(src), "--ct", str(ct), "--grid", str(src), "--method", "led",
                 "--out", str(tmp_path / "d2.nrrd")]) == 0
    capsys.readouterr()
    assert read_volume(tmp_path / "d2.nrrd").shape == (6, 6, 6)
    assert main(["dose", "--activity", str(src), "--ct", str(ct), "--grid", "spect", "--method", "led",
                 "--out", str(tmp_path / "d3.nrrd")]) == 1
    assert "--grid takes ct, activity or an image file" in capsys.readouterr().err


def test_a_relative_source_map_must_not_declare_another_quantity(tmp_path, capsys):
    ct = Volume(np.zeros((6, 6, 6), np.float32), spacing=(4, 4, 4), quantity="ct", unit="HU")
    write_volume(ct, tmp_path / "ct.nrrd")
    labels = np.zeros((6, 6, 6), np.uint8)
    labels[2:4, 2:4, 2:4] = 1
    write_volume(ct.with_array(labels, quantity="labels", unit="label"), tmp_path / "labels.nrrd")
    argv = ["dose", "--activity", str(tmp_path / "labels.nrrd"), "--ct", str(tmp_path / "ct.nrrd"), "--method", "led",
            "--out", str(tmp_path / "d.nrrd"), "--total-activity-mbq", "7400"]
    assert main(argv) == 1
    assert "declares labels" in capsys.readouterr().err and not (tmp_path / "d.nrrd").exists()
