"""PipelineConfig: YAML/JSON files, case folders, path resolution, settings checks with clear errors."""
from __future__ import annotations

import json

import pytest

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
    with pytest.raises(InputFormatError, match="dose.method: Unknown dose method 'x'; available: .*led"):
        PipelineConfig.from_dict({"ct": "c", "timepoints": [{"time_h": 4, "spect": "a"}], "dose": {"method": "x"}})


NUMBERS_YAML = """
ct: ct.nrrd
administered_activity_bq: 7.4e9
reference_timepoint: 0e0
calibration: {sensitivity_cps_per_mbq: 6e0, counts_duration_s: 0.5 min}
timepoints:
  - {time_h: 4, spect: a.nrrd}
  - {time_h: 24, spect: b.nrrd, calibration: {acquisition_duration_s: 1.2e3}}
  - {time_h: 4 d, spect: c.nrrd}
registration: {kind: none, seed: 1e1}
dose: {method: led, histories: 1e4, seed: 4.2e1}
segments: {dx_percent: [9e1], dx_cc: [2 cc], vx_gy: [2e1, 2000 cGy]}
truth_organ_tia_bq_s: {liver: 1e12}
"""


def test_numbers_in_any_notation_load_as_floats_and_ints(tmp_path):
    """PyYAML reads 7.4e9 and 1e4 as strings (YAML 1.1); they must load as numbers, units converted."""
    path = tmp_path / "run.yaml"
    path.write_text(NUMBERS_YAML)
    config = PipelineConfig.from_file(path)
    assert config.administered_activity_bq == 7.4e9 and isinstance(config.administered_activity_bq, float)
    assert [tp.time_h for tp in config.timepoints] == [4.0, 24.0, 96.0]
    assert all(isinstance(tp.time_h, float) for tp in config.timepoints)
    assert config.reference_timepoint == 0 and isinstance(config.reference_timepoint, int)
    assert config.dose.histories == 10_000 and isinstance(config.dose.histories, int)
    assert config.dose.seed == 42 and config.registration.seed == 10
    assert config.calibration == {"sensitivity_cps_per_mbq": 6.0, "counts_duration_s": 30.0}
    assert config.timepoints[1].calibration == {"acquisition_duration_s": 1200.0}
    assert config.segments.dx_percent == [90.0] and config.segments.dx_cc == [2.0]
    assert config.segments.vx_gy == [20.0, 20.0]
    assert config.truth_organ_tia_bq_s == {"liver": 1e12}
    assert PipelineConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()
    changed = config.with_changes(dose={"histories": "2e6"}, administered_activity_bq="7.4 GBq")
    assert changed.dose.histories == 2_000_000 and changed.administered_activity_bq == 7.4e9


def test_every_problem_is_reported_at_once():
    data = {"ct": "ct.nrrd", "nuclide": "Lu-178x", "administered_activity_bq": "lots",
            "timepoints": [{"time_h": 4, "spect": "a"}, {"time_h": "24 Gy", "spect": "b", "colour": "red"}],
            "dose": {"method": "nope", "histories": "2.5e3.1", "order": "sideways"},
            "segments": {"vx_gy": ["twenty"]}, "calibration": {"sensitivity": 6}, "extra": 1}
    with pytest.raises(InputFormatError) as error:
        PipelineConfig.from_dict(data)
    message = str(error.value)
    expected = ["Unknown key(s) ['extra'] in the pipeline config", "Unknown key(s) ['colour'] in timepoints[1]",
                "Unknown key(s) ['sensitivity'] in calibration", "Lu-178x", "administered_activity_bq must be",
                "timepoints[1].time_h must be a number in h; got '24 Gy'", "dose.histories must be",
                "dose.order must be", "dose.method: Unknown dose method 'nope'", "segments.vx_gy[0] must be"]
    for fragment in expected:
        assert fragment in message, fragment
    assert message.startswith(f"Invalid pipeline config, {len(expected)} problems:")
    assert "Example: 7.4e9 or '7.4 GBq'" in message


def test_five_different_mistakes_in_a_yaml_file_are_reported_together(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("ct: ct.nrrd\nnuclide: Xx-999\nadministered_activity_bq: true\n"
                    "timepoints: [{time_h: 4 h, spect: a.nrrd}, {time_h: yesterday, spect: b.nrrd}]\n"
                    "dose: {method: led, histories: 1.5}\ndose_grid: mri\n")
    with pytest.raises(InputFormatError) as error:
        PipelineConfig.from_file(path)
    lines = str(error.value).splitlines()
    assert lines[0] == "Invalid pipeline config, 5 problems:" and len(lines) == 6
    for fragment in ["Xx-999", "administered_activity_bq", "timepoints[1].time_h", "dose.histories", "dose_grid"]:
        assert sum(fragment in line for line in lines[1:]) == 1, fragment


def test_cli_numeric_flags_accept_scientific_notation_and_units():
    from VoxelDosimetryLib.cli.main import build_parser

    parser = build_parser()
    args = parser.parse_args(["run", "case", "--out", "o", "--histories", "2e6", "--seed", "1e1"])
    assert args.histories == 2_000_000 and isinstance(args.histories, int) and args.seed == 10
    args = parser.parse_args(["dose", "--activity", "a", "--ct", "c", "--method", "mc", "--out", "d",
                              "--histories", "1e4", "--total-activity-mbq", "7.4 GBq", "--ct-offset-hu=-1e3"])
    assert args.histories == 10_000 and args.total_activity_mbq == 7400.0 and args.ct_offset_hu == -1000.0
    args = parser.parse_args(["tia", "--image", "a", "--time-h", "4", "--image", "b", "--time-h", "1 d",
                              "--out", "t", "--counts-duration-s", "2.5e1"])
    assert args.time_h == [4.0, 24.0] and args.counts_duration_s == 25.0
    args = parser.parse_args(["voi", "--dose", "d", "--labels", "l", "--out", "o", "--dx", "9e1",
                              "--dx-cc", "2 cc", "--vx-gy", "2e1", "--dvh-samples", "2e2"])
    assert args.dx == [90.0] and args.dx_cc == [2.0] and args.vx_gy == [20.0] and args.dvh_samples == 200
    with pytest.raises(SystemExit) as usage:
        parser.parse_args(["run", "case", "--out", "o", "--histories", "2.5"])
    assert usage.value.code == 2


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


def test_numbers_inside_method_options_and_names_as_a_list():
    import yaml

    base = "ct: ct.nrrd\ntimepoints: [{time_h: 4, spect: a.nrrd}]\n"
    config = PipelineConfig.from_dict(yaml.safe_load(
        base + "time_integration: {model: hanscheid, options: {effective_half_life_s: 1 d}}\n"
               "registration: {options: {iterations: 1e1, initializer: moments}}\n"))
    assert config.time_integration.options == {"effective_half_life_s": 86400.0}
    assert config.registration.options == {"iterations": 10, "initializer": "moments"}
    with pytest.raises(InputFormatError, match=r"segments.names must be a names file or a mapping"):
        PipelineConfig.from_dict(yaml.safe_load(base + "segments: {names: [liver, spleen]}\n"))
    with pytest.raises(InputFormatError, match=r"registration.options.iterations"):
        PipelineConfig.from_dict(yaml.safe_load(base + "registration: {options: {iterations: 1e1x}}\n"))


def test_backend_and_device_are_checked_before_any_step():
    with pytest.raises(InputFormatError) as err:
        PipelineConfig.from_dict({"ct": "ct.nrrd", "timepoints": [{"time_h": 4, "spect": "a.nrrd"}],
                                  "registration": {"backend": "ants"}, "dose": {"device": "gpu"}})
    assert "registration.backend must be one of" in str(err.value) and "dose.device must be auto" in str(err.value)


def test_a_misspelled_dose_option_is_reported_up_front():
    with pytest.raises(InputFormatError, match=r"has no dose.options \['componnent'\]"):
        PipelineConfig.from_dict({"ct": "ct.nrrd", "timepoints": [{"time_h": 4, "spect": "a.nrrd"}],
                                  "dose": {"method": "led", "options": {"componnent": "electrons"}}})
