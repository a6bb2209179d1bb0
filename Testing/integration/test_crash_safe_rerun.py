"""Crash safety: `voxeldosimetry run` killed with SIGKILL at several points, then started again, completes with
results identical to an uninterrupted run, and the step cache never reuses an output whose write did not finish."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from VoxelDosimetryLib.pipeline.cache import file_sha256
from VoxelDosimetryLib.simulate import build_virtual_patient
from VoxelDosimetryLib.simulate.ct_based_case import build_case_from_ct

# Progress lines after which the run is killed: inside registration, activity, integration, dose, labels, tables.
KILL_AFTER = ("register_24h: computing", "activity_24h: computing", "time_integration: computing",
              "dose: computing", "labels: computing", "tables: computing")
COMPARED = ("grid/ct_on_dose_grid.nrrd", "registration/transform_24h.tfm", "activity/activity_96h.nrrd",
            "integration/tia.nrrd", "dose/dose.nrrd", "grid/labels_on_dose_grid.nrrd", "tables/segments.csv",
            "tables/dvh.csv", "tables/segment_activity.csv")


@pytest.fixture(scope="module")
def case_folder(tmp_path_factory):
    patient = build_virtual_patient(8.0)
    folder = tmp_path_factory.mktemp("crash_case")
    build_case_from_ct(patient.ct, patient.labels, patient.label_names, folder, times_h=(4, 24, 96),
                       spect_voxel_mm=8.0, spect_unit="Bq/mL")
    return folder


def _command(case: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "VoxelDosimetryLib.cli.main", "run", str(case), "--out", str(out)]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", SITK_NUM_THREADS="1", ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS="1")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run_to_end(case: Path, out: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(_command(case, out), env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _kill_after(case: Path, out: Path, phrase: str) -> bool:
    """Start a run and SIGKILL it as soon as `phrase` appears in its progress; True when it was killed."""
    process = subprocess.Popen(_command(case, out), env=_env(), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               text=True)
    killed = False
    for line in process.stderr:
        if phrase in line:  # killed at once: the step has begun and cannot have finished
            process.send_signal(signal.SIGKILL)
            killed = True
            break
    process.wait(timeout=600)
    process.stderr.close()
    return killed


def _hashes(out: Path) -> dict:
    """Volumes by voxel values, grid, quantity and unit (their metadata names the run's own folder); other files
    by their bytes."""
    import hashlib

    from VoxelDosimetryLib.io import read_volume

    hashes = {}
    for name in COMPARED:
        if name.endswith(".nrrd"):
            volume = read_volume(out / name)
            text = json.dumps([volume.grid.to_dict(), volume.quantity, volume.unit, str(volume.array.dtype)])
            hashes[name] = hashlib.sha256(text.encode() + volume.array.tobytes()).hexdigest()
        else:
            hashes[name] = file_sha256(out / name)
    return hashes


def test_killed_runs_resume_to_identical_results(case_folder, tmp_path):
    reference = tmp_path / "uninterrupted"
    _run_to_end(case_folder, reference)
    expected = _hashes(reference)
    out = tmp_path / "killed"
    killed = [phrase for phrase in KILL_AFTER if _kill_after(case_folder, out, phrase)]
    assert killed == list(KILL_AFTER), f"the run finished before some kill points: killed after {killed}"
    # no half-written file under a final name: every NRRD present reads back
    from VoxelDosimetryLib.io import read_volume

    for path in out.rglob("*.nrrd"):
        if ".voxeldosimetry-partial-" not in str(path):
            read_volume(path)
    finished = _run_to_end(case_folder, out)
    assert _hashes(out) == expected
    assert "reused" in finished.stderr  # finished steps of the killed runs were kept
    assert not list(out.rglob(".voxeldosimetry-partial-*"))  # staging folders of killed runs were cleaned up


def test_a_changed_output_is_never_reused(case_folder, tmp_path):
    from VoxelDosimetryLib.io.safe_write import OutputPathError
    from VoxelDosimetryLib.pipeline import PipelineConfig, run_pipeline

    out = tmp_path / "run"
    _run_to_end(case_folder, out)
    dose = out / "dose" / "dose.nrrd"
    original = file_sha256(dose)
    data = dose.read_bytes()
    dose.write_bytes(data[: len(data) // 2])  # cut short (or edited) outside our control
    config = PipelineConfig.from_case(case_folder)
    # the cache sees the change and recomputes the step, but a file changed since 'run' wrote it is not replaced
    # without force
    with pytest.raises(OutputPathError, match="--force"):
        run_pipeline(config, out)
    assert dose.read_bytes() == data[: len(data) // 2]
    result = run_pipeline(config, out, force=True)
    assert result.steps["dose"] == "computed" and file_sha256(dose) == original
    result = run_pipeline(config, out)
    assert set(result.steps.values()) == {"reused"}
