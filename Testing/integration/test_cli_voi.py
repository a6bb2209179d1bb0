"""`voxeldosimetry voi`: files written, stdout text or JSON, dose-rate naming, errors and exit codes."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from VoxelDosimetryLib import Volume
from VoxelDosimetryLib.cli.main import main
from VoxelDosimetryLib.io import write_volume


@pytest.fixture
def case(tmp_path):
    """Dose 1..100 Gy in label 1 on a 4 mm grid; labels and CT on a 2 mm grid covering the same field."""
    dose = np.zeros((2, 10, 10))
    dose[0] = np.arange(1, 101).reshape(10, 10)
    dose_vol = Volume(dose, spacing=(4, 4, 4), origin=(0, 0, 0), quantity="dose")
    labels = np.zeros((4, 20, 20), np.uint8)
    labels[0:2] = 1  # the first dose slice
    labels[2:4, :, :10] = 2
    lab_vol = Volume(labels, spacing=(2, 2, 2), origin=(-1, -1, -1), quantity="labels")
    ct_vol = Volume(np.zeros((4, 20, 20), np.int16), spacing=(2, 2, 2), origin=(-1, -1, -1), quantity="ct")
    files = {"dose": write_volume(dose_vol, tmp_path / "dose.nrrd"),
             "labels": write_volume(lab_vol, tmp_path / "labels.nii.gz"),
             "ct": write_volume(ct_vol, tmp_path / "ct.nrrd"),
             "names": tmp_path / "names.json"}
    files["names"].write_text(json.dumps({"1": "ramp", "2": "half", "5": "missing"}))
    return tmp_path, files


def test_voi_writes_table_json_dvh_and_plot(case, capsys):
    folder, f = case
    argv = ["voi", "--dose", str(f["dose"]), "--ct", str(f["ct"]), "--labels", str(f["labels"]),
            "--names", str(f["names"]), "--out", str(folder / "t.csv"), "--json", str(folder / "t.json"),
            "--dvh", str(folder / "dvh.csv"), "--plot", str(folder / "dvh.png"), "--dx", "50", "90",
            "--dx-cc", "6.4", "--vx-gy", "50"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "ramp" in captured.out and "missing" in captured.out and "label" in captured.out.splitlines()[0]
    assert "table written" in captured.err
    with open(folder / "t.csv", newline="") as fh:
        rows = {r["name"]: r for r in csv.DictReader(fh)}
    ramp = rows["ramp"]
    assert float(ramp["d50_gy"]) == 51.0 and float(ramp["d90_gy"]) == 11.0 and float(ramp["v50gy_pct"]) == 51.0
    assert float(ramp["volume_ml"]) == pytest.approx(6.4) and float(ramp["d6.4cc_gy"]) == 1.0
    assert "d2_gy" not in ramp  # --dx replaced the defaults
    assert rows["missing"]["status"] == "empty"
    assert rows["ramp"]["density_source"].startswith("CT")
    content = json.loads((folder / "t.json").read_text())
    assert [r["label"] for r in content["rows"]] == [1, 2, 5]
    assert (folder / "dvh.csv").read_text().startswith("label,name,dose_gy,")
    assert (folder / "dvh.png").read_bytes()[:4] == b"\x89PNG"


def test_voi_json_on_stdout_and_dose_rate_suffixes(case, capsys):
    folder, f = case
    rate = Volume(np.full((2, 10, 10), 2e-3), spacing=(4, 4, 4), quantity="dose_rate", unit="mGy/h")
    rate_path = write_volume(rate, folder / "rate.nrrd")
    assert main(["voi", "--dose", str(rate_path), "--labels", str(f["labels"]), "--out", str(folder / "r.csv"),
                 "--json", "-", "--vx-gy", "1e-7"]) == 0
    captured = capsys.readouterr()
    content = json.loads(captured.out)
    row = content["rows"][0]
    assert content["unit"] == "Gy/s" and row["name"] == "label_1"
    assert row["mean_gy_per_s"] == pytest.approx(2e-3 * 1e-3 / 3600)
    assert row["v1e-07gy_per_s_pct"] == 0.0 and "1.0 g/cm3" in captured.err


def test_voi_errors_exit_1_with_a_message(case, capsys):
    folder, f = case
    activity = write_volume(Volume(np.ones((2, 10, 10)), spacing=(4, 4, 4), quantity="activity_concentration"),
                            folder / "act.nrrd")
    assert main(["voi", "--dose", str(activity), "--labels", str(f["labels"]), "--out", str(folder / "x.csv")]) == 1
    assert "not a dose (Gy) or dose rate (Gy/s)" in capsys.readouterr().err
    assert main(["voi", "--dose", str(f["dose"]), "--labels", str(folder / "nope.nrrd"),
                 "--out", str(folder / "x.csv")]) == 1
    assert "No such file" in capsys.readouterr().err
    assert main(["voi", "--dose", str(f["dose"]), "--labels", str(f["labels"]), "--out", str(folder / "x.csv"),
                 "--dx", "150"]) == 1
    assert "between 0 and 100" in capsys.readouterr().err
    unlabelled = write_volume(Volume(np.full((2, 10, 10), 2.0), spacing=(4, 4, 4)), folder / "plain.nrrd")
    base = ["voi", "--labels", str(f["labels"]), "--out", str(folder / "p.csv")]
    assert main(base + ["--dose", str(unlabelled)]) == 1
    assert "--dose-unit" in capsys.readouterr().err
    assert main(base + ["--dose", str(unlabelled), "--dose-unit", "cGy"]) == 0
    assert "0.02" in capsys.readouterr().out  # 2 cGy
    with pytest.raises(SystemExit) as usage:
        main(["voi", "--dose", str(f["dose"])])
    assert usage.value.code == 2
