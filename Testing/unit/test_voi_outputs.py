"""SegmentTable outputs: CSV, JSON, long-format DVH CSV, aligned text and the DVH plot."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from VoxelDosimetryLib import Volume
from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.voi import cumulative_dvh, plot_dvh, segment_statistics


@pytest.fixture
def table():
    dose = np.zeros((2, 10, 10))
    labels = np.zeros((2, 10, 10), np.uint8)
    dose[0] = np.arange(1, 101).reshape(10, 10)
    labels[0] = 1
    dose[1, :4] = 20.0
    labels[1, :4] = 2
    return segment_statistics(Volume(dose, spacing=(10, 10, 10), quantity="dose"),
                              Volume(labels, spacing=(10, 10, 10), quantity="labels"),
                              names={1: "ramp", 2: "uniform", 3: "absent"}, vx_gy=(20,), dx_cc=(5,))


def test_csv_has_the_design_columns_and_empty_cells_for_undefined(tmp_path, table):
    path = table.to_csv(tmp_path / "t.csv")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    required = ["label", "name", "volume_ml", "mass_g", "mean_gy", "min_gy", "max_gy", "median_gy", "d10_gy",
                "d30_gy", "d50_gy", "d70_gy", "d90_gy", "d98_gy", "d2_gy", "v20gy_ml", "v20gy_pct", "d5cc_gy",
                "mean_volume_gy", "status", "note", "density_source"]
    assert set(required) <= set(rows[0])
    assert [r["name"] for r in rows] == ["ramp", "uniform", "absent"]
    assert float(rows[0]["d50_gy"]) == 51.0 and float(rows[0]["volume_ml"]) == pytest.approx(100.0)
    assert float(rows[0]["v20gy_pct"]) == 81.0
    assert rows[2]["status"] == "empty" and rows[2]["mean_gy"] == ""


def test_json_round_trips_with_nulls(tmp_path, table):
    content = json.loads(table.to_json(tmp_path / "t.json").read_text())
    assert content["unit"] == "Gy" and content["columns"][:2] == ["label", "name"]
    assert content["rows"][2]["mean_gy"] is None and content["rows"][0]["d90_gy"] == 11.0
    assert content["metadata"]["density_source"].startswith("assumed")


def test_dvh_csv_is_long_format_on_a_shared_axis(tmp_path, table):
    with open(table.dvh_to_csv(tmp_path / "dvh.csv", samples=10), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["label", "name", "dose_gy", "cumulative_volume_ml", "cumulative_volume_pct",
                             "differential_volume_ml", "differential_volume_pct"]
    assert len(rows) == 2 * 11  # two segments with voxels, 11 dose points each (0..100 Gy); none for 'absent'
    ramp = [r for r in rows if r["label"] == "1"]
    assert [float(r["dose_gy"]) for r in ramp][:3] == [0.0, 10.0, 20.0]
    assert float(ramp[2]["cumulative_volume_pct"]) == 81.0
    assert sum(float(r["differential_volume_ml"]) for r in ramp) == pytest.approx(100.0)
    uniform = [r for r in rows if r["label"] == "2"]
    assert float(uniform[2]["cumulative_volume_ml"]) == pytest.approx(40.0)
    assert float(uniform[3]["cumulative_volume_ml"]) == 0.0


def test_text_table_is_aligned(table):
    lines = table.to_text().splitlines()
    assert lines[0].startswith("label") and len(lines) == 4
    assert lines[1].index("ramp") == lines[0].index("name") and lines[3].split()[2] == "empty"


def test_plot_writes_a_png(tmp_path, table):
    path = plot_dvh(table, tmp_path / "dvh.png", title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    rate = {"a": cumulative_dvh([1e-6, 2e-6], 1.0, unit="Gy/s")}
    assert plot_dvh(rate, tmp_path / "rate.png").exists()


def test_plot_refuses_nothing_or_mixed_units(tmp_path):
    with pytest.raises(InputFormatError, match="no DVH"):
        plot_dvh({}, tmp_path / "x.png")
    mixed = {"a": cumulative_dvh([1.0], 1.0), "b": cumulative_dvh([1.0], 1.0, unit="Gy/s")}
    with pytest.raises(InputFormatError, match="mix units"):
        plot_dvh(mixed, tmp_path / "x.png")
