"""segment_statistics on constructed volumes: mass weighting, DVH metrics, grids, statuses, names, errors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from VoxelDosimetryLib import Volume
from VoxelDosimetryLib.errors import InputFormatError, UnitError
from VoxelDosimetryLib.physics import hu_to_density
from VoxelDosimetryLib.voi import segment_statistics


def _ramp_case(spacing=(2.0, 2.0, 2.0)):
    """Label 1 holds doses 1..100 Gy (one voxel each); label 2 a uniform 5 Gy; background 0 Gy."""
    dose = np.zeros((4, 10, 10))
    labels = np.zeros((4, 10, 10), np.uint8)
    dose[0] = np.arange(1, 101).reshape(10, 10)
    labels[0] = 1
    dose[2, :5] = 5.0
    labels[2, :5] = 2
    return (Volume(dose, spacing=spacing, quantity="dose"),
            Volume(labels, spacing=spacing, quantity="labels"))


def test_ramp_segment_metrics_are_exact():
    dose, labels = _ramp_case()
    table = segment_statistics(dose, labels, dx_cc=(0.8,), vx_gy=(50,))
    row = table.row(1)
    vv = 0.008  # mL per 2 mm voxel
    assert row["status"] == "ok" and row["voxels"] == 100
    assert row["volume_ml"] == pytest.approx(100 * vv) and row["mass_g"] == pytest.approx(100 * vv)
    assert row["mean_gy"] == pytest.approx(50.5) and row["mean_volume_gy"] == pytest.approx(50.5)
    assert (row["min_gy"], row["max_gy"], row["median_gy"]) == (1.0, 100.0, 50.5)
    assert row["std_gy"] == pytest.approx(np.arange(1, 101).std())
    expected = {"d2_gy": 99, "d10_gy": 91, "d30_gy": 71, "d50_gy": 51, "d70_gy": 31, "d90_gy": 11, "d98_gy": 3}
    assert {k: row[k] for k in expected} == pytest.approx(expected)
    assert row["d0.8cc_gy"] == pytest.approx(1.0)  # 0.8 mL is the whole segment
    assert row["v50gy_ml"] == pytest.approx(51 * vv) and row["v50gy_pct"] == pytest.approx(51.0)
    uniform = table.row(2)
    assert {uniform[k] for k in expected} == {5.0} and uniform["std_gy"] == 0.0
    assert uniform["v50gy_pct"] == 0.0


def test_mean_is_mass_weighted_with_two_densities():
    # Kim et al. Eq. 2: (1 g/cm3 x 1 Gy + 2 g/cm3 x 3 Gy) / (1 + 2) = 7/3 Gy per equal-volume voxel pair
    dose = Volume(np.array([[[1.0, 3.0, 9.0]]]), spacing=(10, 10, 10), quantity="dose")
    labels = Volume(np.array([[[1, 1, 0]]], np.uint8), spacing=(10, 10, 10), quantity="labels")
    density = Volume(np.array([[[1.0, 2.0, 5.0]]]), spacing=(10, 10, 10), quantity="density")
    row = segment_statistics(dose, labels, density=density).row(1)
    assert row["mean_gy"] == pytest.approx(7.0 / 3.0)
    assert row["mean_volume_gy"] == pytest.approx(2.0)
    assert row["mass_g"] == pytest.approx(3.0)  # 1 mL x (1 + 2) g/cm3
    assert row["density_source"] == "density volume"


def test_ct_masses_use_schneider_density():
    hu = np.array([[[-100.0, 0.0, 1000.0]]])
    ct = Volume(hu, spacing=(10, 10, 10), quantity="ct")
    dose = Volume(np.array([[[2.0, 4.0, 6.0]]]), spacing=(10, 10, 10), quantity="dose")
    labels = Volume(np.ones((1, 1, 3), np.uint8), spacing=(10, 10, 10), quantity="labels")
    rho = hu_to_density(hu).reshape(-1)
    row = segment_statistics(dose, labels, ct=ct).row(1)
    assert row["mass_g"] == pytest.approx(rho.sum())
    assert row["mean_gy"] == pytest.approx(np.dot(rho, [2, 4, 6]) / rho.sum())
    assert row["density_source"].startswith("CT")


def test_without_ct_masses_assume_water_and_say_so():
    dose, labels = _ramp_case()
    table = segment_statistics(dose, labels)
    assert table.row(1)["mass_g"] == pytest.approx(table.row(1)["volume_ml"])
    assert table.row(1)["density_source"] == "assumed 1.0 g/cm3 (no CT)"
    assert table.metadata["density_source"] == "assumed 1.0 g/cm3 (no CT)"


def test_dose_rate_columns_and_unit_conversion():
    dose, labels = _ramp_case()
    rate = Volume(dose.array * 1e3, grid=dose.grid, quantity="dose_rate", unit="mGy/s")
    table = segment_statistics(rate, labels, vx_gy=(50,), dx_cc=(0.1,))
    row = table.row(1)
    assert table.unit == "Gy/s" and "mean_gy" not in row
    assert row["mean_gy_per_s"] == pytest.approx(50.5) and row["d50_gy_per_s"] == pytest.approx(51)
    assert row["v50gy_per_s_pct"] == pytest.approx(51) and "d0.1cc_gy_per_s" in row


def test_labels_on_a_finer_grid_are_resampled_by_nearest_neighbour():
    # dose 4 mm voxels; labels 2 mm voxels covering the same field: each dose voxel takes one label voxel
    dose = Volume(np.arange(8, dtype=float).reshape(2, 2, 2), spacing=(4, 4, 4), origin=(0, 0, 0), quantity="dose")
    fine = np.zeros((4, 4, 4), np.uint8)
    fine[:, :, :2] = 3  # x < 4 mm
    labels = Volume(fine, spacing=(2, 2, 2), origin=(-1, -1, -1), quantity="labels")
    table = segment_statistics(dose, labels)
    row = table.row(3)
    assert row["voxels"] == 4 and row["volume_ml"] == pytest.approx(4 * 0.064)
    assert row["label_map_volume_ml"] == pytest.approx(32 * 0.008)
    assert row["mean_gy"] == pytest.approx(np.mean([0, 2, 4, 6]))
    assert table.metadata["labels"]["resampled_to_dose_grid"] is True


def test_segments_outside_partly_outside_and_empty_are_reported():
    dose = Volume(np.ones((1, 4, 4)), spacing=(1, 1, 1), quantity="dose")
    lab = np.zeros((1, 4, 8), np.uint8)  # same spacing, twice as wide in x: x >= 4 is outside the dose image
    lab[0, :, 0:2] = 1  # inside
    lab[0, :, 3:5] = 2  # half inside
    lab[0, :, 6:8] = 3  # outside
    labels = Volume(lab, spacing=(1, 1, 1), quantity="labels")
    table = segment_statistics(dose, labels, names={1: "a", 2: "b", 3: "c", 4: "d"})
    assert [r["status"] for r in table.rows] == ["ok", "partly outside image", "outside image", "empty"]
    assert table.row(2)["fraction_inside"] == pytest.approx(0.5) and "50.0%" in table.row(2)["note"]
    assert table.row(2)["volume_ml"] == pytest.approx(0.004) and table.row(2)["mean_gy"] == 1.0
    assert table.row(3)["mean_gy"] is None and table.row(4)["label_map_volume_ml"] == 0
    assert set(table.dvhs) == {1, 2}
    text = json.dumps(table.to_dict(), allow_nan=False)  # no NaN anywhere
    assert "NaN" not in text


def test_segment_smaller_than_a_dose_voxel_is_reported_empty():
    dose = Volume(np.ones((1, 1, 1)), spacing=(8, 8, 8), origin=(0, 0, 0), quantity="dose")
    lab = np.zeros((8, 8, 8), np.uint8)
    lab[0, 0, 0] = 7  # one corner 1 mm voxel; the dose-voxel centre takes the background
    labels = Volume(lab, spacing=(1, 1, 1), origin=(-3.5, -3.5, -3.5), quantity="labels")
    row = segment_statistics(dose, labels).row(7)
    assert row["status"] == "empty" and "smaller than a dose voxel" in row["note"]
    assert row["fraction_inside"] == 1.0 and row["voxels"] == 0


def test_names_from_argument_metadata_and_default():
    dose, labels = _ramp_case()
    fields = {"Segment0_Name": "tumour", "Segment0_LabelValue": "1", "Segment1_Name": "kidney",
              "Segment1_LabelValue": "2"}
    labels = labels.replace(metadata={"source": {"nrrd_fields": fields}})
    assert segment_statistics(dose, labels).names() == {1: "tumour", 2: "kidney"}
    assert segment_statistics(dose, labels, names={"2": "left kidney"}).names() == {1: "tumour", 2: "left kidney"}
    plain = labels.replace(metadata={})
    assert segment_statistics(dose, plain).names() == {1: "label_1", 2: "label_2"}


def test_nonfinite_and_negative_doses():
    dose, labels = _ramp_case()
    bad = dose.array.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputFormatError, match="NaN"):
        segment_statistics(dose.with_array(bad), labels)
    outside = dose.array.copy()
    outside[3, 9, 9] = np.nan  # background voxel: ignored
    assert segment_statistics(dose.with_array(outside), labels).row(1)["status"] == "ok"
    negative = dose.array.copy()
    negative[0, 0, 0] = -2.0
    row = segment_statistics(dose.with_array(negative), labels).row(1)
    assert row["min_gy"] == -2.0 and "negative" in row["note"]


def test_wrong_quantities_raise_with_the_fix():
    dose, labels = _ramp_case()
    with pytest.raises(UnitError, match="quantity='labels'"):
        segment_statistics(dose, Volume(labels.array, grid=labels.grid))  # quantity unknown
    with pytest.raises(UnitError, match="dose or dose_rate"):
        segment_statistics(labels.replace(quantity="activity_concentration", unit="Bq/mL",
                                          array=labels.array.astype(float)), labels)
    with pytest.raises(InputFormatError, match="non-integer"):
        segment_statistics(dose, labels.replace(array=labels.array + 0.5))
    with pytest.raises(InputFormatError, match="between 0 and 100"):
        segment_statistics(dose, labels, dx_percent=(120,))
    with pytest.raises(UnitError):
        segment_statistics(dose, labels, ct=dose)


def test_float_labels_with_whole_values_are_accepted_and_inputs_unchanged():
    dose, labels = _ramp_case()
    as_float = labels.replace(array=labels.array.astype(np.float32))
    before = (dose.array.copy(), as_float.array.copy())
    table = segment_statistics(dose, as_float)
    assert table.row(1)["d50_gy"] == pytest.approx(51)
    assert np.array_equal(dose.array, before[0]) and np.array_equal(as_float.array, before[1])
    assert all(not (isinstance(v, float) and math.isnan(v)) for r in table.rows for v in r.values())
