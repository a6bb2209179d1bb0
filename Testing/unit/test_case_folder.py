"""Case folders: writing, reading, validation errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from VoxelDosimetryLib import Volume
from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.io.case import Case, Timepoint, read_case, write_case
from VoxelDosimetryLib.pipeline import PipelineConfig


def small_case(tmp_path, times=(4.0, 24.0)):
    ct = Volume(np.zeros((4, 5, 6), np.int16), spacing=(2, 2, 2), quantity="ct")
    spect = Volume(np.ones((4, 5, 6), np.float32), spacing=(2, 2, 2), quantity="activity_concentration")
    tps = [Timepoint(t, f"spect_{t:g}h.nrrd") for t in times]
    case = Case(id="c1", nuclide="lu177", timepoints=tps, administered_activity_bq=1e9,
                injection_datetime="2026-01-01T08:00:00")
    volumes = {"ct.nrrd": ct, **{tp.spect: spect for tp in tps}}
    return write_case(case, tmp_path / "case", volumes)


def test_round_trip(tmp_path):
    written = small_case(tmp_path)
    case = read_case(tmp_path / "case")
    assert case.id == "c1" and [tp.time_h for tp in case.timepoints] == [4.0, 24.0]
    assert case.load_ct().quantity == "ct"
    spect = case.load_spect(1)
    assert spect.quantity == "activity_concentration" and spect.unit == "Bq/mL"
    assert written.to_json() == case.to_json()


def test_validation_lists_every_problem(tmp_path):
    small_case(tmp_path)
    path = tmp_path / "case" / "case.json"
    data = json.loads(path.read_text())
    data["timepoints"] = [{"time_h": 24.0, "spect": "spect_24h.nrrd"}, {"time_h": -4.0, "spect": "gone.nrrd"}]
    data["injection_datetime"] = "yesterday"
    path.write_text(json.dumps(data))
    with pytest.raises(InputFormatError) as err:
        read_case(tmp_path / "case")
    message = str(err.value)
    for fragment in ("> 0 h", "strictly increasing", "ISO 8601", "'gone.nrrd' is missing"):
        assert fragment in message


def test_unknown_nuclide_and_bad_json(tmp_path):
    small_case(tmp_path)
    path = tmp_path / "case" / "case.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "nuclide": "Lu-178x"}))
    assert read_case(tmp_path / "case").nuclide == "Lu-178x"  # io reads the folder; the name is checked above io
    with pytest.raises(InputFormatError, match="Lu-178x"):  # one error lists every config problem
        PipelineConfig.from_case(tmp_path / "case")
    path.write_text("{not json")
    with pytest.raises(InputFormatError, match="not valid JSON"):
        read_case(tmp_path / "case")
    with pytest.raises(InputFormatError, match="case.json"):
        read_case(tmp_path / "nowhere")


def test_time_h_must_agree_with_the_date_times(tmp_path):
    small_case(tmp_path)
    path = tmp_path / "case" / "case.json"
    data = json.loads(path.read_text())
    data["timepoints"][0]["acquisition_datetime"] = "2026-01-01T12:10:00"  # 4 h 10 min after injection: rounding
    data["timepoints"][1]["acquisition_datetime"] = "2026-01-02T08:00:00"  # 24 h after injection, but time_h 24
    path.write_text(json.dumps(data))
    read_case(tmp_path / "case")
    data["timepoints"][1]["time_h"] = 48.0
    path.write_text(json.dumps(data))
    with pytest.raises(InputFormatError, match=r"timepoints\[1\].time_h is 48 h but its acquisition_datetime is 24 h"):
        read_case(tmp_path / "case")
