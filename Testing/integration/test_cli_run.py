"""`voxeldosimetry run` and `voxeldosimetry demo --from-ct` through the CLI entry point, in process."""
from __future__ import annotations

import json

import numpy as np
import pytest

from VoxelDosimetryLib.cli.main import main
from VoxelDosimetryLib.io import read_volume, write_volume
from VoxelDosimetryLib.simulate import build_virtual_patient
from VoxelDosimetryLib.simulate.ct_based_case import build_case_from_ct


@pytest.fixture(scope="module")
def patient():
    return build_virtual_patient(8.0)


@pytest.fixture(scope="module")
def case_folder(patient, tmp_path_factory):
    folder = tmp_path_factory.mktemp("case")
    build_case_from_ct(patient.ct, patient.labels, patient.label_names, folder, times_h=(4, 24, 96),
                       spect_voxel_mm=8.0, misregistration_mm=None, spect_unit="counts")
    return folder


def test_run_on_a_case_folder_prints_the_table_and_reports_progress(case_folder, tmp_path, capsys):
    assert main(["run", str(case_folder), "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith("Case ct-based-case: Lu-177, 3 timepoint(s) at 4, 24, 96 h")
    assert lines[1].split()[:4] == ["label", "name", "status", "volume_ml"] and "mean_gy" in lines[1]
    names = [line.split()[1] for line in lines[2:-1]]
    assert {"liver", "spleen", "kidney_left", "kidney_right", "tumour"} <= set(names)
    assert lines[-1] == f"report: {tmp_path / 'out' / 'report.md'}"
    assert "[run 0%] dose_grid: computing" in captured.err and "[run 100%] report: done" in captured.err
    # second run: everything reused, JSON result on request
    assert main(["run", str(case_folder), "--out", str(tmp_path / "out"), "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert set(result["steps"].values()) == {"reused"} and "reused" in captured.err
    liver = [row for row in result["segments"] if row["name"] == "liver"][0]
    assert liver["mean_gy"] > 0 and liver["tia_mbq_h"] > 0


def test_yaml_config_with_data_root_and_overrides(case_folder, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("case_id: yaml-case\nct: ct.nrrd\nspect_quantity: counts\n"
                      "calibration: {sensitivity_cps_per_mbq: 6.0, counts_duration_s: 1500}\n"
                      "timepoints:\n  - {time_h: 4, spect: spect_4h.nrrd}\n  - {time_h: 24, spect: spect_24h.nrrd}\n"
                      "segments: {labels: labels.nrrd}\n")
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--data-root", str(case_folder), "--model", "mono_exp",
                 "--dose-order", "dose_rate_then_integrate", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert "dose_integration" in result["steps"] and "dose_rate_24h" in result["steps"]
    assert json.loads((out / "integration" / "tia_info.json").read_text())["model"] == "mono_exp"
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["config"]["data_root"] == str(case_folder)
    assert manifest["config"]["case_id"] == "yaml-case"
    assert read_volume(out / "dose" / "dose.nrrd").quantity == "dose"


def test_run_errors_exit_1_with_the_fix(case_folder, tmp_path, capsys):
    assert main(["run", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "without case.json" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "o")]) == 1
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"case: {case_folder}\ntime_integration: {{model: hanscheid}}\n")
    assert main(["run", str(bad), "--out", str(tmp_path / "o")]) == 1
    assert "exactly 1" in capsys.readouterr().err
    assert main(["run", str(case_folder), "--out", str(tmp_path / "o"), "--method", "nope"]) == 1
    assert "available: " in capsys.readouterr().err


def test_demo_from_ct_builds_a_case_and_runs_the_pipeline(patient, tmp_path, capsys):
    ct = write_volume(patient.ct, tmp_path / "ct.nii.gz")
    labels = write_volume(patient.labels, tmp_path / "labels.nrrd")
    names = tmp_path / "names.json"
    names.write_text(json.dumps({str(k): v for k, v in patient.label_names.items()}))
    out = tmp_path / "demo"
    assert main(["demo", "--from-ct", str(ct), "--labels", str(labels), "--names", str(names), "--out", str(out),
                 "--counts"]) == 0
    captured = capsys.readouterr()
    assert "kidney_left" in captured.out and "tumour" in captured.out
    case = json.loads((out / "case" / "case.json").read_text())
    assert case["notes"]["timepoint_cts"][1] == "ct_24h.nrrd" and case["notes"]["calibration"]
    steps = {s["name"]: s["status"] for s in json.loads((out / "run" / "run.json").read_text())["steps"]}
    assert {"register_24h", "register_96h", "register_168h"} <= set(steps)
    dose = read_volume(out / "run" / "dose" / "dose.nrrd")
    assert np.isfinite(dose.array).all() and dose.array.max() > 0
    assert main(["demo", "--from-ct", str(ct), "--out", str(out)]) == 1
    assert "--labels" in capsys.readouterr().err


@pytest.fixture(scope="module")
def case_on_shipped_grid(patient, tmp_path_factory):
    """The same patient with a 4.8 mm SPECT grid: the dose grid of the shipped kernel set."""
    folder = tmp_path_factory.mktemp("case48")
    build_case_from_ct(patient.ct, patient.labels, patient.label_names, folder, times_h=(4, 24, 96),
                       spect_voxel_mm=4.8, misregistration_mm=None)
    return folder


def test_kernel_methods_run_in_the_pipeline_with_the_shipped_kernels(case_on_shipped_grid, tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.setenv("VOXELDOSIMETRY_CACHE_DIR", str(tmp_path / "empty_cache"))
    means = {}
    for method in ("svsv", "dvk", "mvsv"):
        out = tmp_path / method
        assert main(["run", str(case_on_shipped_grid), "--out", str(out), "--method", method, "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        means[method] = {row["name"]: row["mean_gy"] for row in result["segments"]}
        info = json.loads((out / "dose" / "dose_info.json").read_text())
        assert info["method"] == method
        kernels = info["density_bins"] if method == "mvsv" else [info["kernel"]]
        for kernel in kernels:
            assert kernel["voxel_mm"] == pytest.approx([4.8, 4.8, 4.8])
            assert kernel["command"].startswith("voxeldosimetry kernel --nuclide Lu-177 --voxel-mm 4.8 4.8 4.8")
    # in soft-tissue organs the three methods agree to the kernels' composition/density differences (~3 %);
    # in the lungs the density-aware methods give more dose per mass than the soft-tissue kernel
    for organ in ("liver", "kidney_left", "spleen"):
        assert means["dvk"][organ] == pytest.approx(means["svsv"][organ], rel=0.03)
        assert means["mvsv"][organ] == pytest.approx(means["svsv"][organ], rel=0.03)
    lung = [n for n in means["svsv"] if n.startswith("lung")]
    for name in lung:
        assert means["dvk"][name] > 1.5 * means["svsv"][name]
        assert means["mvsv"][name] > 1.5 * means["svsv"][name]
