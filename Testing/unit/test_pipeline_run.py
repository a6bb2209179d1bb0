"""run_pipeline on a small generated case (8 mm phantom, three timepoints, known patient shifts)."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from VoxelDosimetryLib.io import read_volume, write_volume
from VoxelDosimetryLib.io.safe_write import OutputPathError
from VoxelDosimetryLib.pipeline import PipelineCancelled, PipelineConfig, run_pipeline
from VoxelDosimetryLib.pipeline.cache import file_sha256
from VoxelDosimetryLib.simulate import build_virtual_patient
from VoxelDosimetryLib.simulate.ct_based_case import build_case_from_ct

SHIFTS = ((4.0, -3.0, 5.0), (-5.0, 4.0, 3.0))
ORGANS = ("liver", "spleen", "kidney_left", "kidney_right", "tumour")


@pytest.fixture(scope="module")
def patient():
    return build_virtual_patient(8.0)


@pytest.fixture(scope="module")
def case_folder(patient, tmp_path_factory):
    folder = tmp_path_factory.mktemp("case")
    build_case_from_ct(patient.ct, patient.labels, patient.label_names, folder, times_h=(4, 24, 96),
                       spect_voxel_mm=8.0, misregistration_mm=SHIFTS)
    return folder


@pytest.fixture(scope="module")
def base_run(case_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    messages = []
    result = run_pipeline(PipelineConfig.from_case(case_folder), out, progress=lambda f, m: messages.append((f, m)))
    return out, result, messages


def _statuses(out) -> dict:
    return {s["name"]: s["status"] for s in json.loads((out / "run.json").read_text())["steps"]}


def _copy(base_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(base_run[0], target)
    return target


def test_run_writes_every_output_the_manifest_and_the_report(base_run):
    out, result, _ = base_run
    for name, path in result.outputs.items():
        assert Path(path).is_file() and out.resolve() in Path(path).resolve().parents, name
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["format"] == "voxeldosimetry-run" and manifest["packages"]["numpy"]
    assert set(_statuses(out).values()) == {"computed"}
    assert [s["name"] for s in manifest["steps"]] == [
        "dose_grid", "register_24h", "register_96h", "activity_4h", "activity_24h", "activity_96h",
        "time_integration", "dose", "labels", "tables"]
    for entry in manifest["outputs"].values():
        assert file_sha256(out / entry["path"]) == entry["sha256"]
    for key in ("transform_24h", "registration_report_96h", "activity_24h_calibrated", "activity_96h", "tia",
                "dose", "labels_on_dose_grid", "segments_csv", "segments_json", "dvh_csv", "dvh_png",
                "segment_activity_csv", "report", "manifest"):
        assert key in manifest["outputs"] or key == "manifest", key
    report = (out / "report.md").read_text()
    for heading in ("## Inputs", "## Steps", "## Registration", "## Time-integrated activity per segment",
                    "## Absorbed dose per segment", "![Cumulative DVH](tables/dvh.png)", "## Warnings"):
        assert heading in report
    assert (out / "tables" / "dvh.png").read_bytes()[:4] == b"\x89PNG"


def test_registration_recovers_the_shifts_and_the_activity_lands_in_the_reference_frame(base_run, case_folder):
    out, result, _ = base_run
    for tag, shift in zip(("24h", "96h"), SHIFTS):
        transform = json.loads((out / "registration" / f"registration_{tag}.json").read_text())["transform"]
        assert np.allclose(transform["offset_mm"], shift, atol=0.5)
    truth = read_volume(case_folder / "activity_true_96h.nrrd")
    moved = read_volume(out / "activity" / "activity_96h.nrrd")
    labels = read_volume(out / "grid" / "labels_on_dose_grid.nrrd")
    names = json.loads((out / "grid" / "label_names.json").read_text())["names"]
    liver = int([k for k, v in names.items() if v == "liver"][0])
    total_liver = moved.array[labels.array == liver].sum() * moved.voxel_volume_ml
    true_total = truth.array[read_volume(case_folder / "labels.nrrd", quantity="labels").array == liver].sum() \
        * truth.voxel_volume_ml
    assert total_liver == pytest.approx(true_total, rel=0.10)  # blur and grid change only


def test_segment_table_has_finite_positive_doses_and_tia_close_to_truth(base_run, case_folder):
    _, result, _ = base_run
    truth = json.loads((case_folder / "case.json").read_text())["notes"]["true_organ_tia_bq_s"]
    rows = {row["name"]: row for row in result.segment_rows}
    for organ in ORGANS:
        row = rows[organ]
        assert math.isfinite(row["mean_gy"]) and row["mean_gy"] > 0 and row["mass_g"] > 0
    assert rows["liver"]["tia_mbq_h"] * 3.6e9 == pytest.approx(truth["liver"], rel=0.10)
    for organ in ("spleen", "kidney_left", "kidney_right"):  # 8 mm voxels, 10 mm FWHM: partial-volume loss
        assert 0.6 * truth[organ] < rows[organ]["tia_mbq_h"] * 3.6e9 < 1.05 * truth[organ]
    assert rows["tumour"]["mean_gy"] > rows["liver"]["mean_gy"]
    csv_text = (result.out_dir / "tables" / "segment_activity.csv").read_text()
    assert csv_text.splitlines()[0] == "label,name,activity_4h_mbq,activity_24h_mbq,activity_96h_mbq,tia_mbq_h"


def test_progress_is_monotonic_and_names_each_step(base_run):
    _, _, messages = base_run
    fractions = [f for f, _ in messages]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    named = {m.split(":")[0] for _, m in messages}
    assert {"dose_grid", "register_24h", "activity_4h", "time_integration", "dose", "labels", "tables"} <= named


def test_rerun_reuses_every_step_and_force_recomputes(base_run, case_folder, tmp_path):
    out = _copy(base_run, tmp_path)
    messages = []
    result = run_pipeline(PipelineConfig.from_case(case_folder), out, progress=lambda f, m: messages.append(m))
    assert set(result.steps.values()) == {"reused"} and set(_statuses(out).values()) == {"reused"}
    assert sum("reused" in m for m in messages) == len(result.steps)
    assert result.segment_rows == base_run[1].segment_rows
    forced = run_pipeline(PipelineConfig.from_case(case_folder).with_changes(registration={"kind": "none"}), out,
                          force=True)
    assert set(forced.steps.values()) == {"computed"} and not any(s.startswith("register") for s in forced.steps)


def test_changing_the_model_reruns_only_integration_dose_and_tables(base_run, case_folder, tmp_path):
    out = _copy(base_run, tmp_path)
    config = PipelineConfig.from_case(case_folder).with_changes(time_integration={"model": "mono_exp"})
    result = run_pipeline(config, out)
    computed = {name for name, status in result.steps.items() if status == "computed"}
    assert computed == {"time_integration", "dose", "tables"}
    assert json.loads((out / "integration" / "tia_info.json").read_text())["model"] == "mono_exp"


def test_an_edited_output_is_recomputed(base_run, case_folder, tmp_path):
    out = _copy(base_run, tmp_path)
    dose = read_volume(out / "dose" / "dose.nrrd")
    write_volume(dose.with_array(dose.array * 2), out / "dose" / "dose.nrrd")
    # an output changed since the run wrote it is not replaced without force (write policy, docs/RELIABILITY.md)
    with pytest.raises(OutputPathError, match="--force"):
        run_pipeline(PipelineConfig.from_case(case_folder), out)
    result = run_pipeline(PipelineConfig.from_case(case_folder), out, force=True)
    assert result.steps["dose"] == "computed"
    assert np.allclose(read_volume(out / "dose" / "dose.nrrd").array, dose.array)


def test_dose_rate_then_integrate_equals_tia_then_dose_for_local_deposition(base_run, case_folder, tmp_path):
    config = PipelineConfig.from_case(case_folder).with_changes(dose={"order": "dose_rate_then_integrate"})
    out = _copy(base_run, tmp_path)
    result = run_pipeline(config, out)
    assert {"dose_rate_4h", "dose_rate_96h", "dose_integration"} <= set(result.steps)
    assert result.steps["register_24h"] == "reused" and "dose" not in result.steps
    rate = read_volume(out / "dose" / "dose_rate_24h.nrrd")
    assert rate.quantity == "dose_rate"
    # LED is linear in activity and the trapezoid-with-fitted-tail model is scale-free, so both orders agree
    reference = read_volume(base_run[0] / "dose" / "dose.nrrd").array
    assert np.allclose(read_volume(out / "dose" / "dose.nrrd").array, reference, rtol=1e-4,
                       atol=1e-6 * reference.max())


def test_counts_spects_are_calibrated_to_the_same_activity(patient, base_run, tmp_path):
    folder = tmp_path / "counts_case"
    build_case_from_ct(patient.ct, patient.labels, patient.label_names, folder, times_h=(4, 24, 96),
                       spect_voxel_mm=8.0, misregistration_mm=SHIFTS, spect_unit="counts")
    config = PipelineConfig.from_case(folder).with_changes(registration={"kind": "none"})
    result = run_pipeline(config, tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "run.json").read_text())
    info = [s["info"] for s in manifest["steps"] if s["name"] == "activity_24h"][0]
    assert info["spect_quantity"] == "counts" and "sensitivity_cps_per_mbq: 6.0 (user)" in info["calibration"]
    bq_ml = read_volume(folder / "spect_24h.nrrd").array / (6e-6 * 1500 * 0.512)
    assert np.allclose(read_volume(tmp_path / "out" / "activity" / "activity_24h_calibrated.nrrd").array, bq_ml,
                       rtol=1e-5)
    assert any("registration is 'none'" in w for w in result.warnings)


def test_without_labels_a_body_segment_gives_the_table_and_one_timepoint_uses_hanscheid(case_folder, tmp_path):
    config = PipelineConfig.from_dict({"ct": str(case_folder / "ct.nrrd"),
                                       "timepoints": [{"time_h": 24, "spect": str(case_folder / "spect_4h.nrrd")}]})
    result = run_pipeline(config, tmp_path / "out")
    assert [row["name"] for row in result.segment_rows] == ["body"]
    assert result.segment_rows[0]["mean_gy"] > 0
    assert any("automatic 'body' segment" in w for w in result.warnings)
    assert any("Single timepoint at 24 h: TIA by hanscheid" in w for w in result.warnings)
    activity = read_volume(tmp_path / "out" / "activity" / "activity_24h.nrrd")
    tia = read_volume(tmp_path / "out" / "integration" / "tia.nrrd")
    assert tia.array.sum(dtype=np.float64) == pytest.approx(
        activity.array.sum(dtype=np.float64) * 2 * 24 * 3600 / math.log(2), rel=1e-5)  # Hänscheid 2018


def test_dose_on_the_ct_grid(case_folder, tmp_path):
    config = PipelineConfig.from_case(case_folder).with_changes(dose_grid="ct", registration={"kind": "none"})
    run_pipeline(config, tmp_path / "out")
    assert read_volume(tmp_path / "out" / "dose" / "dose.nrrd").grid == read_volume(case_folder / "ct.nrrd").grid


def test_cancel_stops_the_run_and_finished_steps_are_reused(case_folder, tmp_path):
    config = PipelineConfig.from_case(case_folder).with_changes(registration={"kind": "none"})
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 3  # let three steps start

    with pytest.raises(PipelineCancelled, match="cancelled"):
        run_pipeline(config, tmp_path / "out", cancel=cancel)
    result = run_pipeline(config, tmp_path / "out")
    assert [result.steps[s] for s in ("dose_grid", "activity_4h", "activity_24h")] == ["reused"] * 3
    assert result.steps["activity_96h"] == "computed"


def test_missing_inputs_fail_before_any_work(tmp_path):
    config = PipelineConfig.from_dict({"ct": "nope.nrrd", "timepoints": [{"time_h": 4, "spect": "s.nrrd"}]},
                                      base_dir=tmp_path)
    with pytest.raises(Exception, match="not found"):
        run_pipeline(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.fixture
def one_torch_thread():
    """Small Monte Carlo runs on a shared, loaded CPU are 10-40x slower with 2 OpenMP threads than with 1."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_monte_carlo_dose_with_its_uncertainty(base_run, case_folder, tmp_path, one_torch_thread):
    out = _copy(base_run, tmp_path)
    config = PipelineConfig.from_case(case_folder).with_changes(dose={"method": "mc", "histories": 20000,
                                                                      "device": "cpu", "seed": 1})
    result = run_pipeline(config, out)
    assert result.steps["dose"] == "computed" and result.steps["time_integration"] == "reused"
    dose = read_volume(out / "dose" / "dose.nrrd")
    uncertainty = read_volume(out / "dose" / "dose_uncertainty.nrrd")
    assert dose.quantity == "dose" and uncertainty.quantity == "relative_uncertainty"
    assert "dose_uncertainty" in json.loads((out / "run.json").read_text())["outputs"]
    led = {row["name"]: row["mean_gy"] for row in base_run[1].segment_rows}
    mc = {row["name"]: row["mean_gy"] for row in result.segment_rows}
    assert mc["liver"] == pytest.approx(led["liver"], rel=0.3)  # photons leave the organ; LED keeps them
    # the same cancel callable stops the Monte Carlo inside the dose step
    stop = {"now": False}

    def progress(fraction, message):
        stop["now"] = stop["now"] or message.startswith("dose: batch")

    with pytest.raises(PipelineCancelled, match="during dose"):
        run_pipeline(config.with_changes(dose={"seed": 2}), out, progress=progress, cancel=lambda: stop["now"])


def test_a_ct_stored_as_hu_plus_1000_gives_the_same_run_with_ct_offset_hu(case_folder, base_run, tmp_path):
    def shifted(path):  # the file as an attenuation map storing HU + 1000 (like the patient15 phantom)
        ct = read_volume(path)
        target = tmp_path / f"{Path(path).stem}_plus_1000.nrrd"
        write_volume(ct.with_array(ct.array.astype(np.float32) + 1000.0), target)
        return str(target)

    config = PipelineConfig.from_case(case_folder)
    timepoints = [{"time_h": tp.time_h, "spect": tp.spect, "ct": shifted(tp.ct) if tp.ct else None}
                  for tp in config.timepoints]
    config = config.with_changes(ct=shifted(config.ct), timepoints=timepoints, ct_offset_hu="-1e3")
    assert config.ct_offset_hu == -1000.0
    result = run_pipeline(config, tmp_path / "out")
    reference = {row["name"]: row for row in base_run[1].segment_rows}
    for row in result.segment_rows:
        assert row["mass_g"] == pytest.approx(reference[row["name"]]["mass_g"], rel=1e-6)
        assert row["mean_gy"] == pytest.approx(reference[row["name"]]["mean_gy"], rel=1e-6)


def test_a_label_map_that_declares_another_quantity_is_refused(case_folder, tmp_path):
    from VoxelDosimetryLib.errors import UnitError

    config = PipelineConfig.from_case(case_folder).with_changes(segments={"labels": str(case_folder / "spect_4h.nrrd")})
    with pytest.raises(UnitError, match="not a label map"):
        run_pipeline(config, tmp_path / "out")


def test_settings_never_override_what_a_spect_declares(case_folder, tmp_path):
    from VoxelDosimetryLib.errors import UnitError

    config = PipelineConfig.from_case(case_folder).with_changes(spect_quantity="counts")
    with pytest.raises(UnitError, match="declares activity_concentration .* spect_quantity says counts"):
        run_pipeline(config, tmp_path / "out")


def test_a_changed_data_file_of_a_multi_file_input_is_seen_by_the_cache(case_folder, tmp_path):
    config = PipelineConfig.from_case(case_folder).with_changes(registration={"kind": "none"})
    spects = []
    for tp in config.timepoints:  # the SPECTs as MetaImage: header + .raw data file
        target = tmp_path / (Path(tp.spect).stem + ".mhd")
        write_volume(read_volume(tp.spect), target)
        spects.append({"time_h": tp.time_h, "spect": str(target)})
    config = config.with_changes(timepoints=spects)
    run_pipeline(config, tmp_path / "out")
    raw = tmp_path / (Path(spects[1]["spect"]).stem + ".raw")
    data = np.fromfile(raw, dtype=np.float32)
    (data * 10).astype(np.float32).tofile(raw)  # the header is unchanged
    result = run_pipeline(config, tmp_path / "out")
    assert result.steps[f"activity_{spects[1]['time_h']:g}h"] == "computed"
    assert result.steps[f"activity_{spects[0]['time_h']:g}h"] == "reused"
