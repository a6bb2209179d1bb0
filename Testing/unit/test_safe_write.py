"""The write policy (io/safe_write.py): outputs checked up front, atomic writes, inputs never written."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from VoxelDosimetryLib.io import read_volume, write_volume
from VoxelDosimetryLib.io.safe_write import (
    LEDGER_NAME, STAGING_PREFIX, OutputPathError, atomic_output, check_outputs, input_files, made_by,
    output_session, write_text_atomic,
)
from VoxelDosimetryLib.volume import Volume


def volume() -> Volume:
    return Volume(np.arange(24, dtype=np.float32).reshape(2, 3, 4), quantity="dose", unit="Gy")


def test_an_output_equal_to_an_input_is_refused_by_path_symlink_and_hard_link(tmp_path):
    source = write_volume(volume(), tmp_path / "act.nrrd")
    (tmp_path / "link.nrrd").symlink_to(source)
    os.link(source, tmp_path / "hard.nrrd")
    for name in ("act.nrrd", "link.nrrd", "hard.nrrd"):
        with pytest.raises(OutputPathError, match="would overwrite the input"):
            check_outputs({"--out": tmp_path / name}, [source], force=True)


def test_outputs_inside_an_input_folder_or_with_a_companion_on_an_input_are_refused(tmp_path):
    dicom = tmp_path / "ct_dicom"
    dicom.mkdir()
    with pytest.raises(OutputPathError, match="would overwrite the input"):
        check_outputs({"--out": dicom / "dose.nrrd"}, [dicom])
    raw = tmp_path / "dose.raw"
    raw.write_bytes(b"\0" * 8)
    with pytest.raises(OutputPathError, match="dose.raw"):
        check_outputs({"--out": tmp_path / "dose.mhd"}, [raw])  # MetaImage writes dose.raw beside dose.mhd


def test_every_problem_is_reported_at_once(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OutputPathError) as err:
        check_outputs({"--out": tmp_path / "table.nrrd", "--plot": blocker / "dvh.png", "--dvh": tmp_path / "d.csv",
                       "--json": tmp_path / "d.csv"}, [], extensions={"--out": (".csv",)})
    message = str(err.value)
    assert "--out" in message and "unsupported extension '.nrrd'; use .csv" in message
    assert "--plot" in message and "is a file, not a folder" in message
    assert "--json" in message and "the same file as --dvh" in message


def test_existing_outputs_are_replaced_only_by_their_command_or_with_force(tmp_path):
    target = tmp_path / "dose.nrrd"
    with output_session("dose"):
        write_volume(volume(), target)
        assert made_by(target) == "dose"
        check_outputs({"--out": target}, [])  # a rerun of the same command may replace it
    with output_session("convert"), pytest.raises(OutputPathError, match="made by 'dose'.*--force"):
        check_outputs({"OUT": target}, [])
    with output_session("convert", force=True):
        check_outputs({"OUT": target}, [])
        write_volume(volume().with_array(np.ones((2, 3, 4), np.float32)), target)
    assert made_by(target) == "convert"
    target.write_bytes(target.read_bytes() + b"\0")  # changed by someone else since
    assert made_by(target) is None
    with output_session("convert"), pytest.raises(OutputPathError, match="changed since"):
        check_outputs({"OUT": target}, [])
    user_file = tmp_path / "notes.csv"
    user_file.write_text("mine")
    with output_session("voi"):
        with pytest.raises(OutputPathError, match="--force"):
            write_text_atomic(user_file, "theirs")  # the write-time guard too, even if nobody checked up front
    assert user_file.read_text() == "mine"


def test_inputs_are_never_written_inside_a_session_even_with_force(tmp_path):
    source = write_volume(volume(), tmp_path / "act.nrrd")
    before = source.read_bytes()
    with output_session("dose", inputs=[source], force=True):
        with pytest.raises(OutputPathError, match="it is the input"):
            write_volume(volume().with_array(np.zeros((2, 3, 4), np.float32)), source)
    assert source.read_bytes() == before


def test_an_interrupted_write_leaves_the_old_file_and_no_partial_file(tmp_path):
    target = tmp_path / "report.md"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as staged:
            staged.write_text("half of the new")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert not list(tmp_path.glob(STAGING_PREFIX + "*"))


def test_stale_staging_of_a_dead_process_is_removed(tmp_path):
    stale = tmp_path / f"{STAGING_PREFIX}999999999-deadbeef"  # no such process
    stale.mkdir()
    (stale / "dose.nrrd").write_bytes(b"partial")
    write_text_atomic(tmp_path / "x.json", "{}\n")
    assert not stale.exists() and (tmp_path / "x.json").read_text() == "{}\n"


def test_multi_file_formats_move_into_place_together(tmp_path):
    with output_session("convert"):
        write_volume(volume(), tmp_path / "dose.mhd")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([LEDGER_NAME, "dose.json", "dose.mhd", "dose.raw"])
    np.testing.assert_array_equal(read_volume(tmp_path / "dose.mhd").array, volume().array)
    assert made_by(tmp_path / "dose.raw") == "convert" and made_by(tmp_path / "dose.mhd") == "convert"


# --------------------------------------------------------------------------- 1. files an input consists of
def _write_text(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="latin-1")
    return path


def test_input_files_finds_sidecars_and_the_data_files_headers_name(tmp_path):
    nhdr = _write_text(tmp_path / "slicer_spect.nhdr", "NRRD0004\ntype: float\ndimension: 1\nsizes: 2\n"
                       "encoding: raw\nDATA FILE: slicer_spect.raw\n\n")
    assert input_files(nhdr) == [nhdr, tmp_path / "slicer_spect.raw"]
    listed = _write_text(tmp_path / "listed.nhdr", "NRRD0005\ntype: float\nsizes: 2 2\ndata file: LIST\n"
                         "s0.raw\nsub/s1.raw\n")
    assert input_files(listed) == [listed, tmp_path / "s0.raw", tmp_path / "sub" / "s1.raw"]
    mhd = _write_text(tmp_path / "ct.mhd", "ObjectType = Image\nNDims = 3\nelementdatafile = ct_data.zraw\n")
    assert input_files(mhd) == [mhd, tmp_path / "ct_data.zraw"]
    mha = _write_text(tmp_path / "x.mha", "NDims = 3\nElementDataFile = LOCAL\n\0\1binary")
    assert input_files(mha) == [mha]
    h33 = _write_text(tmp_path / "hdr.h33", "!INTERFILE :=\n!Name Of Data File := patient15_src.i33\n")
    assert input_files(h33) == [h33, tmp_path / "patient15_src.i33"]
    with output_session("convert"):
        nifti = write_volume(volume(), tmp_path / "d.nii.gz")
    assert input_files(nifti) == [nifti, tmp_path / "d.json"]
    # damaged, binary or missing inputs: what can be read, never an exception
    broken = tmp_path / "broken.nhdr"
    broken.write_bytes(b"NRRD0004\ndata file: \xff\xfe%d 1 x 1\n")
    assert input_files(broken) == [broken]
    assert input_files(tmp_path / "missing.h33") == [tmp_path / "missing.h33"]
    assert input_files(tmp_path) == [tmp_path]


def test_data_files_and_sidecars_of_inputs_are_inputs_even_with_force(tmp_path):
    nhdr = _write_text(tmp_path / "slicer_spect.nhdr", "NRRD0004\ndata file: slicer_spect.raw\n\n")
    raw = tmp_path / "slicer_spect.raw"
    raw.write_bytes(b"\1" * 8)
    with pytest.raises(OutputPathError, match=r"would overwrite the input .*slicer_spect\.nhdr \(its file .*"
                                              r"slicer_spect\.raw\)"):
        check_outputs({"OUT": tmp_path / "slicer_spect.mhd"}, [nhdr], force=True)  # .mhd writes slicer_spect.raw
    h33 = _write_text(tmp_path / "hdr.h33", "!INTERFILE :=\nname of data file := patient15_src.i33\n")
    with pytest.raises(OutputPathError, match=r"patient15_src\.i33"):
        check_outputs({"--out": tmp_path / "patient15_src.h33"}, [h33], force=True)
    with output_session("dose"):
        dose = write_volume(volume(), tmp_path / "d.nii.gz")
    with pytest.raises(OutputPathError, match=r"would overwrite the input .*d\.nii\.gz \(its file .*d\.json\)"):
        check_outputs({"--json": tmp_path / "d.json"}, [dose], force=True)
    # the write-time guard knows them too
    with output_session("convert", inputs=[nhdr], force=True), pytest.raises(OutputPathError, match="input"):
        write_text_atomic(raw, "over the data")
    assert raw.read_bytes() == b"\1" * 8


# --------------------------------------------------------------------------- 2. outputs sharing a companion
def test_two_outputs_sharing_a_companion_are_refused_up_front(tmp_path):
    with pytest.raises(OutputPathError, match=r"--report .*tt\.json: tt\.json would be written by both this and "
                                              r"--out .*tt\.nii\.gz"):
        check_outputs({"--out": tmp_path / "tt.nii.gz", "--report": tmp_path / "tt.json"}, [])
    with pytest.raises(OutputPathError, match=r"--uncertainty .*d\.mha: d\.json would be written by both this "
                                              r"and --out"):
        check_outputs({"--out": tmp_path / "d.mhd", "--uncertainty": tmp_path / "d.mha"}, [])
    check_outputs({"--out": tmp_path / "d.mhd", "--uncertainty": tmp_path / "d_unc.mha"}, [])


# --------------------------------------------------------------------------- 3. folder outputs
SERIES = {"OUT": (".nrrd", ".nii.gz", "")}  # a volume or a DICOM series folder, as `convert OUT`


def _series(folder, session="convert", force=False):
    """Write a two-file folder as a whole (as a DICOM series is written)."""
    with output_session(session, force=force), atomic_output(folder) as staged:
        staged.mkdir()
        (staged / "1.dcm").write_bytes(b"a")
        (staged / "2.dcm").write_bytes(b"b")


def test_a_folder_is_never_replaced_unless_ours_and_unchanged_even_with_force(tmp_path):
    user = tmp_path / "userfolder"
    (user / "sub").mkdir(parents=True)
    (user / "notes.txt").write_text("mine")
    (user / "sub" / "more.txt").write_text("mine too")
    with pytest.raises(OutputPathError, match=r"userfolder: the folder is not empty .*notes\.txt.*even with "
                                              r"--force: choose a new folder or empty it"):
        check_outputs({"OUT": user}, [], command="convert", force=True, extensions=SERIES)
    with pytest.raises(OutputPathError, match="never replaced, even with --force"):
        _series(user, force=True)  # the write-time guard, even if nobody checked up front
    assert (user / "notes.txt").read_text() == "mine" and (user / "sub" / "more.txt").is_file()

    series = tmp_path / "series"
    _series(series)
    assert made_by(series) == "convert"
    check_outputs({"OUT": series}, [], command="convert", extensions=SERIES)  # a rerun may replace it
    _series(series)
    (series / "README.txt").write_text("what this series is")
    assert made_by(series) is None
    with pytest.raises(OutputPathError, match=r"README\.txt was added; a folder is never replaced, even with --force"):
        check_outputs({"OUT": series}, [], command="convert", force=True, extensions=SERIES)
    for force in (False, True):
        with pytest.raises(OutputPathError, match=r"README\.txt"):
            _series(series, force=force)
    assert (series / "README.txt").read_text() == "what this series is"
    (series / "README.txt").unlink()
    assert made_by(series) == "convert"
    _series(series, session="gate export", force=True)  # ours and unchanged: --force replaces it
    assert made_by(series) == "gate export"


def test_the_current_folder_is_no_series_target_when_it_holds_anything(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_outputs({"OUT": "."}, [], command="convert", extensions=SERIES)  # empty: the series may go there
    (tmp_path / "ct.nrrd").write_bytes(b"x")
    with pytest.raises(OutputPathError, match="holds the current folder"):
        check_outputs({"OUT": "."}, [], command="convert", force=True, extensions=SERIES)
    with pytest.raises(OutputPathError, match="holds the current folder"):
        _series(Path("."), force=True)
    assert (tmp_path / "ct.nrrd").read_bytes() == b"x"


def test_convert_force_into_a_users_folder_is_refused_on_the_command_line(tmp_path, capsys):
    from VoxelDosimetryLib.cli.main import main

    ct = write_volume(Volume(np.zeros((2, 3, 4), np.int16), quantity="ct", unit="HU"), tmp_path / "ct.nrrd")
    user = tmp_path / "userfolder"
    (user / "sub").mkdir(parents=True)
    (user / "notes.txt").write_text("mine")
    assert main(["convert", str(ct), str(user), "--force"]) == 1
    assert "choose a new folder or empty it" in capsys.readouterr().err
    assert (user / "notes.txt").read_text() == "mine" and (user / "sub").is_dir()


# --------------------------------------------------------------------------- 4. companions and extensions up front
def test_companions_are_checked_before_the_work(tmp_path):
    (tmp_path / "mydose.json").write_text('{"my": "notes"}')
    for force in (False, True):  # a JSON file that is not this image's sidecar is never overwritten
        with pytest.raises(OutputPathError, match=r"--out .*mydose\.nii\.gz: .*mydose\.json exists and is not a "
                                                  r"VoxelDosimetry sidecar"):
            check_outputs({"--out": tmp_path / "mydose.nii.gz"}, [], command="dose", force=force)
    with output_session("convert"):
        write_volume(volume(), tmp_path / "ct.mha")  # ct.json describes ct.mha
    with pytest.raises(OutputPathError, match=r"ct\.json already describes ct\.mha"):
        check_outputs({"--out": tmp_path / "ct.nii.gz"}, [], command="dose", force=True)
    (tmp_path / "d.raw").write_bytes(b"user data")
    with pytest.raises(OutputPathError, match=r"it also writes d\.raw, which exists and was not made by this command"):
        check_outputs({"--out": tmp_path / "d.mhd"}, [], command="dose")
    check_outputs({"--out": tmp_path / "d.mhd"}, [], command="dose", force=True)


def test_extensions_must_have_their_lower_case_spelling(tmp_path):
    allowed = {"--out": (".nrrd", ".nii.gz", ".mhd")}
    with pytest.raises(OutputPathError, match=r"up2\.Nii\.Gz: the extension '\.Nii\.Gz' must be written in lower "
                                              r"case; use \.nii\.gz"):
        check_outputs({"--out": tmp_path / "up2.Nii.Gz"}, [], extensions=allowed)
    with pytest.raises(OutputPathError, match=r"use \.nrrd"):
        check_outputs({"--out": tmp_path / "d.NRRD"}, [], extensions=allowed)
    check_outputs({"--out": tmp_path / "up2.nii.gz"}, [], extensions=allowed)


# --------------------------------------------------------------------------- 5. empty paths
def test_an_empty_path_is_a_problem_and_none_is_not_requested(tmp_path, capsys):
    with pytest.raises(OutputPathError, match="--report: an empty path"):
        check_outputs({"--out": tmp_path / "t.nii.gz", "--report": "", "--plot": None}, [])
    from VoxelDosimetryLib.cli.main import main

    source = write_volume(volume(), tmp_path / "d.nrrd")
    assert main(["convert", str(source), ""]) == 1
    assert "OUT: an empty path" in capsys.readouterr().err


# --------------------------------------------------------------------------- 6. which file of an output folder changed
def test_an_edited_file_in_an_output_folder_is_named_and_deleting_it_lets_the_rerun_write_it(tmp_path):
    out = tmp_path / "real_int"
    with output_session("run"):
        write_text_atomic(out / "report.md", "# report\n")
        write_text_atomic(out / "tables" / "segments.csv", "a,b\n")
    (out / "report.md").write_text("# my edits\n")
    (out / "notes.txt").write_text("a file of mine")  # not replaced by anything: does not count
    with output_session("run"), pytest.raises(OutputPathError) as err:
        check_outputs({"output folder": out}, [])
    message = str(err.value)
    assert "report.md changed since 'run' wrote it" in message and "segments.csv" not in message
    assert "--force to recompute everything" in message and "delete the changed file" in message
    (out / "report.md").unlink()
    with output_session("run"):
        check_outputs({"output folder": out}, [])
        write_text_atomic(out / "report.md", "# report\n")  # a missing file is not "owned by another"
    assert made_by(out) == "run" and (out / "notes.txt").read_text() == "a file of mine"


def test_a_pipeline_rerun_recomputes_the_step_whose_output_was_deleted(tmp_path):
    from VoxelDosimetryLib.pipeline import PipelineConfig, run_pipeline
    from VoxelDosimetryLib.simulate import build_virtual_patient
    from VoxelDosimetryLib.simulate.ct_based_case import build_case_from_ct

    patient = build_virtual_patient(12.0)
    build_case_from_ct(patient.ct, patient.labels, patient.label_names, tmp_path / "case", times_h=(4, 24),
                       spect_voxel_mm=12.0, spect_unit="Bq/mL")
    config = PipelineConfig.from_case(tmp_path / "case")
    out = tmp_path / "out"
    run_pipeline(config, out)
    table = out / "tables" / "segments.csv"
    original = table.read_text()
    table.write_text(original + "edited\n")
    with pytest.raises(OutputPathError, match=r"tables/segments\.csv changed since 'run' wrote it; pass --force to "
                                              r"recompute everything, or delete the changed file"):
        run_pipeline(config, out)
    table.unlink()
    result = run_pipeline(config, out)  # no --force needed
    assert result.steps["tables"] == "computed" and result.steps["dose"] == "reused"
    assert table.read_text() == original


# --------------------------------------------------------------------------- 7. unwritable places, error messages
def test_unwritable_places_are_found_up_front_and_errors_name_the_target(tmp_path):
    with pytest.raises(OutputPathError, match=r"/proc/dose\.nrrd: cannot write there") as err:
        check_outputs({"--out": "/proc/dose.nrrd"}, [])
    assert STAGING_PREFIX not in str(err.value)
    with pytest.raises(OutputPathError, match=r"Cannot write /proc/x\.txt") as err:
        write_text_atomic("/proc/x.txt", "x")
    assert STAGING_PREFIX not in str(err.value)
    target = tmp_path / "d.nrrd"
    for raised in (lambda staged: OSError(28, "No space left on device", str(staged)),
                   lambda staged: RuntimeError(f"ITK ERROR: could not write {staged}")):
        with pytest.raises(OutputPathError) as err:
            with atomic_output(target) as staged:
                raise raised(staged)
        assert str(target) in str(err.value) and STAGING_PREFIX not in str(err.value)
    assert not target.exists() and not list(tmp_path.glob(STAGING_PREFIX + "*"))


def test_a_json_output_never_becomes_the_sidecar_of_an_image_beside_it(tmp_path):
    import json as _json

    image = tmp_path / "dose_mgy.nii.gz"
    write_volume(volume(), image)
    (tmp_path / "dose_mgy.json").unlink()  # an image from another tool: no sidecar
    with pytest.raises(OutputPathError, match="JSON sidecar of the image dose_mgy.nii.gz"):
        check_outputs({"--json": tmp_path / "dose_mgy.json"}, [], force=True)
    # and a table JSON that shares the stem anyway is not read as its sidecar
    (tmp_path / "dose_mgy.json").write_text(_json.dumps({"quantity": "dose", "unit": "Gy", "columns": [], "rows": []}))
    assert read_volume(image).quantity == "unknown"


def test_a_kill_between_recording_and_renaming_leaves_the_file_ours(tmp_path, monkeypatch):
    from VoxelDosimetryLib.io import safe_write

    target = tmp_path / "report.md"
    with output_session("run"):
        write_text_atomic(target, "first")
    real_replace = os.replace

    def killed(src, dst):  # the process dies at the rename of the data file, after the ledger was written
        if Path(dst) == target:
            raise KeyboardInterrupt("killed")
        return real_replace(src, dst)

    monkeypatch.setattr(safe_write.os, "replace", killed)
    with output_session("run"), pytest.raises(KeyboardInterrupt):
        write_text_atomic(target, "second, longer")
    monkeypatch.setattr(safe_write.os, "replace", real_replace)
    assert target.read_text() == "first" and made_by(target) == "run"  # the old file is still recognised
    with output_session("run"):
        check_outputs({"--out": target}, [])
        write_text_atomic(target, "second, longer")
    assert made_by(target) == "run"


def test_a_nested_session_keeps_the_inputs_of_the_enclosing_one(tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text("case: case\n")
    with output_session("run", inputs=[config]):
        with output_session("run", inputs=[tmp_path / "ct.nrrd"]):  # the pipeline's own session
            with pytest.raises(OutputPathError, match="it is the input"):
                write_text_atomic(config, "overwritten")
    assert config.read_text() == "case: case\n"
