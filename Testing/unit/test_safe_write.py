"""The write policy (io/safe_write.py): outputs checked up front, atomic writes, inputs never written."""
from __future__ import annotations

import os

import numpy as np
import pytest

from VoxelDosimetryLib.io import read_volume, write_volume
from VoxelDosimetryLib.io.safe_write import (
    LEDGER_NAME, STAGING_PREFIX, OutputPathError, atomic_output, check_outputs, made_by, output_session,
    write_text_atomic,
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
