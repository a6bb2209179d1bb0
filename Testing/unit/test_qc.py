"""QC warnings (qc.py): collected by nested collectors, shown once, replayed from records, always on the CLI."""
from __future__ import annotations

import logging

import numpy as np

from VoxelDosimetryLib.cli.main import main
from VoxelDosimetryLib.io import write_volume
from VoxelDosimetryLib.qc import QcLog, collect_qc, qc_warn, replay
from VoxelDosimetryLib.volume import Volume


def test_nested_collectors_each_get_the_warning_and_repeats_are_dropped(caplog):
    with caplog.at_level(logging.WARNING, logger="VoxelDosimetryLib.qc"):
        with collect_qc() as outer:
            with collect_qc() as inner:
                qc_warn("a_code", "something odd", fraction=np.float32(0.25))
                qc_warn("a_code", "something odd", fraction=0.25)
            qc_warn("b_code", "another")
    assert inner.codes() == ["a_code"] and outer.codes() == ["a_code", "b_code"]
    assert outer.items[0].details == {"fraction": 0.25} and type(outer.items[0].details["fraction"]) is float
    assert [r.getMessage() for r in caplog.records] == ["[a_code] something odd", "[b_code] another"]


def test_stored_warnings_replay_into_the_open_collector():
    stored = QcLog()
    with collect_qc(stored):
        qc_warn("negative_voxels_zeroed", "3 voxels", voxels=3)
    with collect_qc() as log:
        replay(stored.to_list())
    assert log.to_list() == [{"code": "negative_voxels_zeroed", "message": "3 voxels", "details": {"voxels": 3}}]


def test_the_cli_shows_warnings_with_their_code_even_when_quiet(tmp_path, capsys):
    hu = np.full((8, 8, 8), -1000.0, np.float32)
    hu[2:6, 2:6, 2:6] = 0.0
    ct = Volume(hu, spacing=(4.0, 4.0, 4.0), quantity="ct", unit="HU")
    activity = np.zeros_like(hu)
    activity[2:6, 2:6, 2:6] = 100.0
    activity[3, 3, 3] = -1.0  # reconstruction noise
    write_volume(ct, tmp_path / "ct.nrrd")
    write_volume(ct.with_array(activity, quantity="activity_concentration", unit="Bq/mL"), tmp_path / "a.nrrd")
    argv = ["dose", "--activity", str(tmp_path / "a.nrrd"), "--ct", str(tmp_path / "ct.nrrd"), "--method", "led",
            "--out", str(tmp_path / "d.nrrd")]
    assert main(argv + ["-q"]) == 0
    err = capsys.readouterr().err
    assert err.count("voxeldosimetry dose: warning: [negative_voxels_zeroed]") == 1
    assert "[dose" not in err  # progress lines are silenced by -q, warnings are not
    assert main(argv) == 0  # a rerun replaces its own output and reports the same finding again
    assert "warning: [negative_voxels_zeroed]" in capsys.readouterr().err
