"""`voxeldosimetry gate export|import` in-process: demo case -> GATE 10 export -> (fake) GATE outputs -> mc/."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from VoxelDosimetryLib.cli.main import main
from VoxelDosimetryLib.io import read_volume
from VoxelDosimetryLib.montecarlo.gate_export import opengate_installed
from VoxelDosimetryLib.io.case import read_case
from VoxelDosimetryLib.simulate.demo_case import generate_demo_case

N_EVENTS = 4000


@pytest.fixture(scope="module")
def demo_case(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("gate_cli") / "case"
    generate_demo_case(folder, times_h=(24.0,), ct_voxel_mm=8.0)
    return folder


def fake_gate10_run(export_dir: Path, origin_shift=(0.0, 0.0, 0.0)) -> Path:
    """What run_gate.py would leave in export_dir/output: DoseActor images on the exported CT's grid + stats."""
    ct = sitk.ReadImage(str(export_dir / "ct.mhd"))
    activity = sitk.GetArrayFromImage(sitk.ReadImage(str(export_dir / "activity.mhd"))).astype(np.float64)
    dose = activity / activity.sum() * 1e-3  # any non-negative map
    unc = np.where(dose > 0, 0.02, 0.0)
    out = export_dir / "output"
    out.mkdir(exist_ok=True)
    for name, arr in (("dose_dose", dose), ("dose_dose_uncertainty", unc)):
        image = sitk.GetImageFromArray(arr)
        image.CopyInformation(ct)
        image.SetOrigin(tuple(o + s for o, s in zip(ct.GetOrigin(), origin_shift)))
        sitk.WriteImage(image, str(out / f"{name}.mhd"))
    (out / "stats.json").write_text(json.dumps({"events": {"value": N_EVENTS, "unit": None},
                                                "duration": {"value": 12.0, "unit": "s"}}))
    (out / "run_info.json").write_text(json.dumps({"opengate_version": "10.1.1"}))
    return out


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_export_then_import_round_trip(demo_case, tmp_path, capsys):
    export_dir = tmp_path / "gate"
    code, out, err = run_cli(capsys, "gate", "export", "--case", str(demo_case), "--activity",
                             str(demo_case / "activity_true_24h.nrrd"), "--out", str(export_dir),
                             "--histories", "5000", "--seed", "3")
    assert code == 0, err
    report = json.loads(out)
    assert report["histories"] == 5000 and report["seed"] == 3 and report["ion"]["Z"] == 71
    assert report["source"]["total_unit"] == "Bq" and report["materials"] == 74
    ct = read_case(demo_case).load_ct()
    assert read_volume(export_dir / "ct.mhd").grid.mismatch(ct.grid) is None
    assert read_volume(export_dir / "activity.mhd").grid.mismatch(ct.grid) is None

    fake_gate10_run(export_dir)
    code, out, err = run_cli(capsys, "gate", "import", str(export_dir / "output"), "--case", str(demo_case),
                             "--total-tia-bq-s", "2e12")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["mc"]["engine"] == "GATE" and summary["mc"]["engine_version"] == "10.1.1"
    assert summary["mc"]["histories"] == N_EVENTS and summary["mc"]["quantity"] == "dose"
    assert summary["geometry"]["matches"] and "MC minus CT origin" in err
    case = read_case(demo_case)
    assert case.mc["dose"] == "mc/dose.nrrd"
    dose = read_volume(demo_case / "mc" / "dose.nrrd")
    gate_dose = read_volume(export_dir / "output" / "dose_dose.mhd")
    np.testing.assert_allclose(dose.array, gate_dose.array / N_EVENTS * 2e12, rtol=1e-6)


def test_import_of_a_shifted_grid_needs_align_to_ct(demo_case, tmp_path, capsys):
    export_dir = tmp_path / "gate"
    assert run_cli(capsys, "gate", "export", "--case", str(demo_case), "--activity",
                   str(demo_case / "activity_true_24h.nrrd"), "--out", str(export_dir), "--histories", "10")[0] == 0
    output = fake_gate10_run(export_dir, origin_shift=(0.0, 0.0, 8.0))
    code, out, err = run_cli(capsys, "gate", "import", str(output), "--case", str(demo_case))
    assert code == 1 and "--align-to-ct" in err and "+8.000" in err and out == ""
    code, out, err = run_cli(capsys, "gate", "import", str(output), "--case", str(demo_case), "--align-to-ct")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["geometry"]["aligned_to_ct"] and summary["geometry"]["offset_mm"] == [0.0, 0.0, 8.0]
    assert summary["mc"]["quantity"] == "dose_per_decay"


def test_usage_errors_exit_non_zero(demo_case, tmp_path, capsys):
    code, _, err = run_cli(capsys, "gate", "export", "--out", str(tmp_path / "x"))
    assert code == 1 and "--case CASE_DIR, or both --ct CT and --activity" in err
    code, _, err = run_cli(capsys, "gate", "export", "--case", str(demo_case), "--out", str(tmp_path / "x"))
    assert code == 1 and "no TIA image" in err
    code, _, err = run_cli(capsys, "gate", "import", str(tmp_path), "--case", str(demo_case))
    assert code == 1 and "No DoseActor outputs" in err
    with pytest.raises(SystemExit):
        main(["gate", "import", str(tmp_path), "--case", str(demo_case), "--total-tia-bq-s", "1",
              "--total-activity-bq", "1"])


def test_export_from_ct_and_activity_files_and_build(demo_case, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GATEONRTD", "1")
    code, out, err = run_cli(capsys, "gate", "export", "--ct", str(demo_case / "ct.nrrd"), "--activity",
                             str(demo_case / "spect_24h.nrrd"), "--out", str(tmp_path / "gate"), "--histories",
                             "100", "--threads", "4", "--build")
    if not opengate_installed():
        assert code == 1 and "export in" in err and "pip install opengate" in err
        assert (tmp_path / "gate" / "run_gate.py").is_file()  # the files are written before the build
        return
    assert code == 0, err
    report = json.loads(out)
    assert report["build"]["source"]["n_per_thread"] == 25 and report["build"]["voxel_materials"] == 74
    assert any("resampled" in note for note in report["notes"])  # the SPECT is on its own 4.8 mm grid
