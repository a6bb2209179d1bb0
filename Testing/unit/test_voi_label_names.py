"""Label names: JSON maps, Slicer .seg.nrrd fields (file and volume metadata), colour tables, errors."""
from __future__ import annotations

import json

import nrrd
import numpy as np
import pytest

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.io import read_volume
from VoxelDosimetryLib.voi import label_names_from_metadata, names_from_segment_fields, read_label_names


def _write_seg_nrrd(path):
    data = np.zeros((3, 4, 5), np.uint8)  # x, y, z file order (pynrrd default Fortran order)
    data[1, 1, 1] = 4
    header = {"space": "right-anterior-superior", "space directions": np.eye(3) * 2.0,
              "space origin": [0.0, 0.0, 0.0], "kinds": ["domain"] * 3,
              "Segment0_ID": "Segment_1", "Segment0_Name": "left kidney", "Segment0_LabelValue": "4",
              "Segment0_Layer": "0", "Segment1_ID": "Segment_2", "Segment1_Name": "tumour",
              "Segment1_LabelValue": "9", "Segment1_Layer": "0"}
    nrrd.write(str(path), data, header)
    return path


def test_totalsegmentator_style_json(tmp_path):
    path = tmp_path / "class_map.json"
    path.write_text(json.dumps({"1": "spleen", "2": "kidney_right", "0": "background"}))
    assert read_label_names(path) == {1: "spleen", 2: "kidney_right"}  # background dropped


def test_case_json_label_names_key(tmp_path):
    path = tmp_path / "case.json"
    path.write_text(json.dumps({"id": "x", "label_names": {"3": "liver"}}))
    assert read_label_names(path) == {3: "liver"}


def test_run_pipeline_label_names_document(tmp_path):
    """The `run` pipeline writes grid/label_names.json as {"source", "names", "named_but_absent"}."""
    path = tmp_path / "label_names.json"
    path.write_text(json.dumps({"source": "labels.nrrd", "names": {"1": "liver", "5": "tumour"},
                                "named_but_absent": ["7"]}))
    assert read_label_names(path) == {1: "liver", 5: "tumour"}


def test_slicer_segmentation_nrrd_header_and_metadata(tmp_path):
    path = _write_seg_nrrd(tmp_path / "seg.seg.nrrd")
    assert read_label_names(path) == {4: "left kidney", 9: "tumour"}
    volume = read_volume(path, quantity="labels")
    assert label_names_from_metadata(volume.metadata) == {4: "left kidney", 9: "tumour"}


def test_segment_fields_without_label_value_use_index_plus_one():
    assert names_from_segment_fields({"Segment0_Name": "a", "Segment2_Name": "c", "Other": "x"}) == {1: "a", 3: "c"}


def test_slicer_colour_table(tmp_path):
    path = tmp_path / "colors.txt"
    path.write_text("# Color table file\n0 Background 0 0 0 0\n1 spleen 157 108 162 255\n\n12 liver 1 2 3 255\n")
    assert read_label_names(path) == {1: "spleen", 12: "liver"}


def test_malformed_name_files_raise(tmp_path):
    bad_key = tmp_path / "bad.json"
    bad_key.write_text(json.dumps({"one": "spleen"}))
    with pytest.raises(InputFormatError, match="whole number"):
        read_label_names(bad_key)
    not_object = tmp_path / "list.json"
    not_object.write_text("[1, 2]")
    with pytest.raises(InputFormatError, match="JSON object"):
        read_label_names(not_object)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(InputFormatError, match="Fix the JSON"):
        read_label_names(broken)
    with pytest.raises(InputFormatError, match="No such"):
        read_label_names(tmp_path / "missing.json")
    with pytest.raises(InputFormatError, match=".json map"):
        other = tmp_path / "names.xml"
        other.write_text("<x/>")
        read_label_names(other)
    plain = tmp_path / "plain.nrrd"
    nrrd.write(str(plain), np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(InputFormatError, match="not a Slicer segmentation"):
        read_label_names(plain)
