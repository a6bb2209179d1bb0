"""cli/inputs.read_input and read_as: a file's own quantity/unit win; options only fill in what it does not say."""
from __future__ import annotations

import nrrd
import numpy as np
import pytest
import SimpleITK as sitk

from VoxelDosimetryLib.cli.inputs import declared_labels, read_ct, read_input, read_labels
from VoxelDosimetryLib.errors import UnitError
from VoxelDosimetryLib.io import write_volume
from VoxelDosimetryLib.volume import Volume

ARRAY = np.arange(24, dtype=np.float32).reshape(2, 3, 4)


def _nrrd(path, **fields):
    """A NRRD with only the given key/value fields (e.g. a quantity and no unit)."""
    header = {"space": "left-posterior-superior", "space directions": np.eye(3), "space origin": [0.0, 0.0, 0.0],
              "kinds": ["domain"] * 3, **fields}
    nrrd.write(str(path), ARRAY.T.copy(), header)
    return path


def test_declared_unit_contradicted_is_refused_with_the_scale(tmp_path):
    path = write_volume(Volume(ARRAY, quantity="dose_rate", unit="Gy/s"), tmp_path / "d3.nrrd")
    with pytest.raises(UnitError, match=r"declares dose_rate \(Gy/s\), but --dose-unit says Gy\."):
        read_input(path, unit="Gy", option="--dose-unit")
    with pytest.raises(UnitError, match="1000 times lower"):
        read_input(path, unit="mGy/s", option="--dose-unit")
    same = read_input(path, unit="Gy/s", option="--dose-unit")  # equal values are fine
    assert (same.quantity, same.unit) == ("dose_rate", "Gy/s")
    np.testing.assert_array_equal(same.array, ARRAY)


def test_declared_quantity_contradicted_is_refused(tmp_path):
    path = write_volume(Volume(ARRAY, quantity="ct", unit="HU"), tmp_path / "ct.nrrd")
    with pytest.raises(UnitError, match=r"declares ct \(HU\), but --quantity says activity_concentration.*"
                                         r"convert \S*ct\.nrrd COPY\.nrrd --relabel --quantity activity_concentration"):
        read_input(path, "activity_concentration")


def test_relabel_replaces_the_declaration(tmp_path):
    path = write_volume(Volume(ARRAY, quantity="ct", unit="HU"), tmp_path / "ct.nrrd")
    volume = read_input(path, "dose", "Gy", relabel=True)
    assert (volume.quantity, volume.unit) == ("dose", "Gy")
    assert any("set by argument" in note for note in volume.metadata["source"]["notes"])


def test_options_fill_an_unlabelled_file(tmp_path):
    path = write_volume(Volume(ARRAY), tmp_path / "bare.nrrd")
    assert declared_labels(read_input(path)) == (None, None)
    volume = read_input(path, unit="mGy")
    assert (volume.quantity, volume.unit) == ("dose", "mGy")
    volume = read_input(path, "counts")
    assert (volume.quantity, volume.unit) == ("counts", "counts")


def test_a_quantity_without_a_unit_takes_a_scaled_unit_of_it(tmp_path):
    path = _nrrd(tmp_path / "q.nrrd", quantity="dose")
    assert declared_labels(read_input(path)) == ("dose", None)
    volume = read_input(path, unit="mGy")
    assert (volume.quantity, volume.unit) == ("dose", "mGy")
    with pytest.raises(UnitError, match="--unit says Gy/s, which is not a unit of dose"):
        read_input(path, unit="Gy/s")


def test_gate_file_name_gives_the_quantity_not_the_unit(tmp_path):
    path = tmp_path / "output-Dose.mhd"
    sitk.WriteImage(sitk.GetImageFromArray(ARRAY), str(path))
    assert declared_labels(read_input(path)) == ("dose", None)
    assert read_input(path, unit="cGy").unit == "cGy"
    with pytest.raises(UnitError, match="--quantity says dose_rate"):
        read_input(path, "dose_rate")


def test_an_unknown_unit_names_the_option(tmp_path):
    path = write_volume(Volume(ARRAY), tmp_path / "bare.nrrd")
    with pytest.raises(UnitError, match=r"--dose-unit grey: Unknown unit"):
        read_input(path, unit="grey", option="--dose-unit")


def test_role_inputs(tmp_path):
    activity = write_volume(Volume(ARRAY, quantity="activity_concentration"), tmp_path / "act.nrrd")
    with pytest.raises(UnitError, match=r"declares activity_concentration \(Bq/mL\), but --labels needs a label map"):
        read_labels(activity)
    with pytest.raises(UnitError, match="but --fixed needs a CT in HU"):
        read_ct(activity, "--fixed")
    bare = write_volume(Volume(ARRAY), tmp_path / "bare.nrrd")
    assert read_labels(bare).quantity == "labels"
    assert (read_ct(bare).quantity, read_ct(bare).unit) == ("ct", "HU")
    mask = write_volume(Volume(ARRAY > 3, quantity="mask"), tmp_path / "mask.nrrd")
    assert read_labels(mask).quantity == "mask"
