"""`voxeldosimetry compare`: report files, metrics JSON on stdout, grid/unit errors, realisations."""
from __future__ import annotations

import json

import numpy as np
import pytest

from VoxelDosimetryLib import Volume
from VoxelDosimetryLib.cli.main import main
from VoxelDosimetryLib.io import write_volume


@pytest.fixture
def files(tmp_path):
    z, y, x = np.meshgrid(np.arange(6), np.arange(8), np.arange(10), indexing="ij")
    dose = 2.0 + 0.1 * x + np.where((abs(x - 5) < 2) & (abs(y - 4) < 2) & (abs(z - 3) < 2), 10.0, 0.0)
    reference = Volume(dose, spacing=(3, 3, 3), origin=(-15, -12, 0), quantity="dose", unit="Gy")
    ct = reference.with_array(np.where(x > 0, 20.0, -1000.0), quantity="ct", unit="HU")
    labels = reference.with_array((dose > 5).astype(np.uint8) + 2 * ((dose < 5) & (z < 2)), quantity="labels",
                                  unit="label")
    (tmp_path / "names.json").write_text(json.dumps({"label_names": {"1": "tumour", "2": "liver"}}))
    paths = {"reference": write_volume(reference, tmp_path / "mc.nrrd"),
             "test": write_volume(reference.with_array(dose * 1100.0).replace(unit="mGy"), tmp_path / "svsv.nrrd"),
             "r2": write_volume(reference.with_array(dose * 1.2), tmp_path / "svsv2.nrrd"),
             "ct": write_volume(ct, tmp_path / "ct.nrrd"), "labels": write_volume(labels, tmp_path / "labels.nrrd"),
             "names": tmp_path / "names.json",
             "shifted": write_volume(reference.replace(grid=reference.grid.__class__(
                 reference.shape, (3, 3, 3), (-14, -12, 0))), tmp_path / "shifted.nrrd"),
             "rate": write_volume(reference.replace(quantity="dose_rate", unit="Gy/s"), tmp_path / "rate.nrrd")}
    return {k: str(v) for k, v in paths.items()}


def test_compare_writes_the_report_and_prints_metrics(tmp_path, files, capsys):
    out = tmp_path / "report" / "report.md"
    code = main(["compare", "--test", files["test"], "--reference", files["reference"], "--labels", files["labels"],
                 "--names", files["names"], "--ct", files["ct"], "--out", str(out),
                 "--test-realisation", files["r2"]])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    metrics = json.loads(captured.out)
    assert metrics["report"] == str(out)
    assert metrics["unit"] == "Gy" and metrics["mask"].startswith("body")
    assert metrics["voxel_mae_percent"] == pytest.approx(10.0, rel=1e-6)  # mGy converted to Gy
    assert metrics["nrmse"] == pytest.approx(0.1, rel=1e-6)
    assert metrics["n_realisations"] == 2 and metrics["ensemble_noise_percent"] > 0
    assert {row["name"] for row in metrics["per_segment"]} == {"tumour", "liver"}
    for row in metrics["per_segment"]:
        assert row["mae_percent"] == pytest.approx(10.0, rel=1e-6)
    for name in ("report.md", "metrics.json", "difference_gy.nrrd", "relative_error.nrrd", "scatter.png",
                 "bland_altman_voxels.png", "bland_altman_segments.png", "profiles.png", "slices.png"):
        assert (out.parent / name).is_file(), name
    text = out.read_text()
    for png in out.parent.glob("*.png"):
        assert f"]({png.name})" in text


def test_grid_mismatch_fails_with_a_hint_and_resample_fixes_it(tmp_path, files, capsys):
    args = ["compare", "--test", files["shifted"], "--reference", files["reference"], "--out",
            str(tmp_path / "r" / "report.md")]
    assert main(args) == 1
    assert "--resample" in capsys.readouterr().err
    assert main(args + ["--resample", "--point-lps", "0", "0", "6"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["profile_point_lps_mm"] == pytest.approx([0.0, 0.0, 6.0])


def test_quantity_mismatch_and_unlabelled_files(tmp_path, files, capsys):
    out = str(tmp_path / "r" / "report.md")
    assert main(["compare", "--test", files["rate"], "--reference", files["reference"], "--out", out]) == 1
    assert "dose rate" in capsys.readouterr().err
    bare = tmp_path / "bare.nrrd"
    write_volume(Volume(np.full((6, 8, 10), 2.0), spacing=(3, 3, 3), origin=(-15, -12, 0)), bare)
    assert main(["compare", "--test", str(bare), "--reference", files["reference"], "--out", out]) == 1
    assert "--quantity" in capsys.readouterr().err
    assert main(["compare", "--test", str(bare), "--reference", files["reference"], "--out", out,
                 "--quantity", "dose"]) == 0
    assert json.loads(capsys.readouterr().out)["unit"] == "Gy"
