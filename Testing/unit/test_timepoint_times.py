"""io.timepoints: the one timepoint-time check, and the same sentence from each of its four users."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.io.case import Case, Timepoint
from VoxelDosimetryLib.io.timepoints import check_timepoint_times, timepoint_time_problems
from VoxelDosimetryLib.kinetics.timepoint_checks import check_times
from VoxelDosimetryLib.pipeline import PipelineConfig

MODULE_DIR = Path(__file__).resolve().parents[2] / "VoxelDosimetry"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

from VoxelDosimetrySlicer import timepoints as slicer_timepoints  # noqa: E402

DUPLICATE = "same time after injection (4 h) as"


def test_valid_times_pass_and_come_back_as_floats():
    assert timepoint_time_problems([4, 24.0, "96"]) == []
    assert check_timepoint_times([4, 24]) == [4.0, 24.0]


@pytest.mark.parametrize("times, fragment", [
    ([4, 4, 96], "timepoint 2: same time after injection (4 h) as timepoint 1"),
    ([24, 4, 96], "timepoint 2 (4 h) comes after timepoint 1 (24 h)"),
    ([0, 24], "timepoint 1: 0.00 h after injection is not after the injection; times must be > 0 h"),
    ([-5 / 3600, 24], "timepoint 1: -5 s after injection"),
    ([4, float("nan")], "timepoint 2: the time nan h is not finite"),
    ([4, float("inf")], "timepoint 2: the time inf h is not finite"),
    ([4, "soon"], "timepoint 2: the time 'soon' is not a number of hours"),
    ([4, True], "timepoint 2: the time True is not a number of hours"),
    ([], "no timepoints are listed"),
])
def test_each_problem_names_the_timepoint(times, fragment):
    problems = timepoint_time_problems(times)
    assert any(fragment in p for p in problems), problems
    with pytest.raises(InputFormatError, match="Invalid timepoint times"):
        check_timepoint_times(times)


def test_counts_labels_order_and_every_problem_at_once():
    assert timepoint_time_problems([4, 24], n_images=3) == [
        "3 image(s) but 2 time(s): give exactly one time after injection per image, in the same order"]
    problems = timepoint_time_problems([24, 4, 4, -1], labels=["A", "B", "C", "D"])
    assert len(problems) == 4  # B before A, C equal to B, D not > 0, D before C
    assert timepoint_time_problems([24, 4], ordered=False) == []
    assert timepoint_time_problems([4, 4], ordered=False)[0].startswith("timepoint 2: same time")


def test_the_four_users_give_the_same_sentence():
    with pytest.raises(InputFormatError, match=r"timepoint 2: same time after injection \(4 h\) as timepoint 1"):
        check_times([4 * 3600.0, 4 * 3600.0])  # time integration (seconds in, hours in the message)
    with pytest.raises(InputFormatError) as config_error:
        PipelineConfig.from_dict({"ct": "ct.nrrd", "timepoints": [{"time_h": 4, "spect": "a.nrrd"},
                                                                  {"time_h": 4, "spect": "b.nrrd"}]})
    assert f"timepoints[1].time_h: {DUPLICATE} timepoints[0].time_h" in str(config_error.value)
    case = Case(id="c", nuclide="Lu-177", timepoints=[Timepoint(4.0, "a.nrrd"), Timepoint(4.0, "b.nrrd")])
    with pytest.raises(InputFormatError) as case_error:
        case.validate()
    assert f"timepoints[1].time_h: {DUPLICATE} timepoints[0].time_h" in str(case_error.value)
    tps = [slicer_timepoints.Timepoint(name, 4.0, slicer_timepoints.TIME_SOURCE_ENTERED, node_id=name)
           for name in ("A", "B")]
    problems = slicer_timepoints.validate_inputs("CT", tps, "Lu-177", ["Lu-177"], 7400.0)
    assert problems == [f"Timepoint 2 (B): {DUPLICATE} Timepoint 1 (A); each timepoint needs its own time: drop or "
                        "merge the duplicate."]


def test_the_slicer_table_may_list_timepoints_in_any_order():
    tps = [slicer_timepoints.Timepoint(name, hours, slicer_timepoints.TIME_SOURCE_ENTERED, node_id=name)
           for name, hours in (("late", 24.0), ("early", 4.0))]
    assert slicer_timepoints.validate_inputs("CT", tps, "Lu-177", ["Lu-177"], 7400.0) == []
