"""PipelineConfig: YAML/JSON files, case folders, path resolution, settings checks with clear errors."""
from __future__ import annotations

import json

import pytest

from VoxelDosimetryLib.dose import UnknownDoseMethodError
from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.pipeline import PipelineConfig
from VoxelDosimetryLib.simulate import build_virtual_patient
from VoxelDosimetryLib.simulate.ct_based_case import build_case_from_ct

YAML_TEXT = """
case_id: patient-7
ct: ct.nrrd
timepoints:
  - {time_h: 4, spect: spect_4h.nrrd}
  - {time_h: 24, spect: spect_24h.nrrd, ct: ct_24h.nrrd, calibration: {counts_duration_s: 30}}
spect_quantity: counts
calibration: {sensitivity_cps_per_mbq: 6.0, counts_duration_s: 25.0}
registration: none
time_integration: {model: mono_exp}
dose: {method: led, order: dose_rate_then_integrate}
segments: {labels: labels.nrrd, names: {1: liver}, vx_gy: [20]}
"""


def test_yaml_file_gives_sections_and_round_trips_through_to_dict(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(YAML_TEXT)
    config = PipelineConfig.from_file(path)
    assert config.case_id == "patient-7" and [tp.time_h for tp in config.timepoints] == [4, 24]
    assert config.registration.kind == "none" and config.time_integration.model == "mono_exp"
    assert config.dose.order == "dose_rate_then_integrate" and config.segments.vx_gy == [20]
    assert config.timepoints[1].calibration == {"counts_duration_s": 30}
    assert config.resolve("ct.nrrd") == tmp_path.resolve() / "ct.nrrd"
    assert config.timepoint_ct(0) == tmp_path.resolve() / "ct.nrrd"
    assert config.timepoint_ct(1) == tmp_path.resolve() / "ct_24h.nrrd"
    again = PipelineConfig.from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict()
    json_path = tmp_path / "run.json"
    json_path.write_text(json.dumps(config.to_dict()))
    assert PipelineConfig.from_file(json_path).to_dict() == config.to_dict()


def test_data_root_from_environment_or_argument(tmp_path, monkeypatch):
    path = tmp_path / "run.yaml"
    path.write_text("data_root: ${VD_TEST_ROOT}\nct: a/ct.nrrd\ntimepoints: [{time_h: 24, spect: a/s.nrrd}]\n")
    monkeypatch.setenv("VD_TEST_ROOT", str(tmp_path / "data"))
    assert PipelineConfig.from_file(path).resolve("a/ct.nrrd") == tmp_path / "data" / "a" / "ct.nrrd"
    assert PipelineConfig.from_file(path, data_root="/elsewhere").resolve("x.nrrd").as_posix() == "/elsewhere/x.nrrd"
    monkeypatch.delenv("VD_TEST_ROOT")
    with pytest.raises(InputFormatError, match="--data-root"):
        PipelineConfig.from_file(path).resolve("a/ct.nrrd")


def test_auto_model_is_hanscheid_for_one_timepoint_and_trapezoid_fit_tail_otherwise():
    one = PipelineConfig.from_dict({"ct": "ct.nrrd", "timepoints": [{"time_h": 24, "spect": "s.nrrd"}]})
    two = PipelineConfig.from_dict({"ct": "ct.nrrd", "timepoints": [{"time_h": 4, "spect": "a.nrrd"},
                                                                    {"time_h": 24, "spect": "b.nrrd"}]})
    assert one.model_for_run() == "hanscheid" and two.model_for_run() == "trapezoid_fit_tail"
    changed = two.with_changes(time_integration={"model": "mono_exp"}, dose={"method": "mc", "histories": 1000})
    assert changed.model_for_run() == "mono_exp" and changed.dose.method == "mc" and changed.dose.histories == 1000
    assert two.dose.method == "led"  # with_changes returns a copy


@pytest.mark.parametrize("change,message", [
    ({"timepoints": [{"time_h": 24, "spect": "a"}, {"time_h": 4, "spect": "b"}]}, "strictly increasing"),
    ({"time_integration": {"model": "hanscheid"}}, "exactly 1"),
    ({"time_integration": {"model": "cubic"}}, "time_integration.model"),
    ({"dose": {"order": "sideways"}}, "dose.order"),
    ({"dose_grid": "mri"}, "dose_grid"),
    ({"registration": "warp"}, "registration"),
    ({"colour": "blue"}, "Unknown key.*colour"),
    ({"dose": {"metod": "led"}}, "Unknown key.*metod"),
    ({"timepoints": [{"time_h": 4}]}, "needs time_h .* and spect"),
])
def test_invalid_settings_are_refused_naming_the_problem(change, message):
    data = {"ct": "ct.nrrd", "timepoints": [{"time_h": 4, "spect": "a"}, {"time_h": 24, "spect": "b"}], **change}
    with pytest.raises(InputFormatError, match=message):
        PipelineConfig.from_dict(data)


def test_unknown_dose_method_lists_the_registered_ones():
    with pytest.raises(UnknownDoseMethodError, match="led"):
        PipelineConfig.from_dict({"ct": "c", "timepoints": [{"time_h": 4, "spect": "a"}], "dose": {"method": "x"}})


def test_missing_files_are_all_named(tmp_path):
    config = PipelineConfig.from_dict({"ct": "ct.nrrd", "timepoints": [{"time_h": 4, "spect": "a.nrrd"},
                                                                       {"time_h": 8, "spect": "b.nrrd"}]},
                                      base_dir=tmp_path)
    (tmp_path / "ct.nrrd").write_text("x")
    (tmp_path / "b.nrrd").write_text("x")
    with pytest.raises(InputFormatError, match=r"timepoints\[0\]\.spect: .*a\.nrrd") as error:
        config.check_files()
    assert "ct.nrrd" not in str(error.value) and "b.nrrd" not in str(error.value)


@pytest.fixture(scope="module")
def case_folder(tmp_path_factory):
    patient = build_virtual_patient(8.0)
    folder = tmp_path_factory.mktemp("case")
    build_case_from_ct(patient.ct, patient.labels, patient.label_names, folder, times_h=(4, 24), spect_voxel_mm=8.0,
                       misregistration_mm=[(3.0, 0.0, 0.0)], spect_unit="counts")
    return folder


def test_from_case_reads_timepoint_cts_calibration_truth_and_labels(case_folder):
    config = PipelineConfig.from_case(case_folder)
    assert config.timepoints[0].ct is None
    assert config.timepoints[1].ct == str(case_folder.resolve() / "ct_24h.nrrd")
    assert config.calibration == {"sensitivity_cps_per_mbq": 6.0, "counts_duration_s": 1500.0}
    assert config.truth_organ_tia_bq_s["liver"] > 0 and config.administered_activity_bq == 7.4e9
    assert config.segments.labels.endswith("labels.nrrd") and "liver" in config.segments.names.values()
    config.check_files()


def test_a_config_file_can_name_a_case_and_override_its_settings(case_folder, tmp_path):
    path = tmp_path / "over.yaml"
    path.write_text(f"case: {case_folder}\nregistration: none\ndose: {{method: led, seed: 3}}\n"
                    "time_integration: {model: trapezoid}\n")
    config = PipelineConfig.from_file(path)
    assert config.registration.kind == "none" and config.dose.seed == 3
    assert config.time_integration.model == "trapezoid"
    assert config.timepoints[1].ct.endswith("ct_24h.nrrd") and config.calibration["counts_duration_s"] == 1500.0
