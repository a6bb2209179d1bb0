"""Segment statistics on the TotalSegmentator example: real CT + 61-organ label map, synthetic dose on a 4.8 mm grid."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from conftest import require_data
from VoxelDosimetryLib import Volume
from VoxelDosimetryLib.cli.main import main
from VoxelDosimetryLib.geometry import resample_to
from VoxelDosimetryLib.io import read_volume, write_volume
from VoxelDosimetryLib.volume import Grid
from VoxelDosimetryLib.voi import read_label_names, segment_statistics

FOLDER = "totalsegmentator_example"
SPLEEN, LIVER, KIDNEY_RIGHT = 1, 5, 2


@pytest.fixture(scope="module")
def inputs(test_data_dir):
    seg = read_volume(require_data(test_data_dir, FOLDER, "example_seg_fast_force_split.nii.gz"), quantity="labels")
    ct = read_volume(require_data(test_data_dir, FOLDER, "example_ct.nii.gz"), quantity="ct")
    names = read_label_names(require_data(test_data_dir, FOLDER, "class_map_total.json"))
    return seg, ct, names


def _dose_grid(seg: Volume, z_fraction: float = 1.0) -> Grid:
    """A 4.8 mm grid over the label map's field (first `z_fraction` of its slices), same orientation."""
    extent_mm = np.asarray(seg.spacing) * np.asarray(seg.grid.size_xyz)
    nx, ny, nz = (int(n) for n in np.ceil(extent_mm / 4.8))
    first_centre = seg.grid.index_to_world(np.full(3, -0.5) + 2.4 / np.asarray(seg.spacing))
    return Grid((int(nz * z_fraction), ny, nx), (4.8, 4.8, 4.8), first_centre, seg.direction)


def test_names_volumes_and_masses_on_the_native_grid(inputs):
    seg, ct, names = inputs
    dose = Volume(np.full(seg.shape, 3.0, np.float32), grid=seg.grid, quantity="dose")
    start = time.perf_counter()
    table = segment_statistics(dose, seg, ct=ct, names=names)
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0
    spleen, liver = table.row(SPLEEN), table.row(LIVER)
    assert (spleen["name"], liver["name"]) == ("spleen", "liver")
    assert spleen["volume_ml"] == pytest.approx(261.0, rel=0.01)  # MANIFEST: 261 mL
    assert liver["volume_ml"] == pytest.approx(1126.0, rel=0.01)
    assert 1000 < liver["mass_g"] < 1300  # soft tissue ~1.05 g/cm3
    assert 1.0 < spleen["mass_g"] / spleen["volume_ml"] < 1.1
    assert liver["mean_gy"] == pytest.approx(3.0) and liver["d98_gy"] == pytest.approx(3.0)
    present = [r for r in table.rows if r["voxels"] > 0]
    assert len(present) == 61 and all(r["status"] == "ok" for r in present)
    assert len(table.rows) == len(names)  # the 56 classes absent from this scan are listed as empty
    assert {r["status"] for r in table.rows if r["voxels"] == 0} == {"empty"}


def test_coarse_dose_grid_partly_covering_the_segmentation(inputs):
    seg, ct, names = inputs
    grid = _dose_grid(seg, z_fraction=0.7)
    labels_on_dose = resample_to(seg, grid, mode="nearest").array
    z_mm = grid.index_to_world(np.stack(np.meshgrid(0, 0, np.arange(grid.shape[0]), indexing="ij"), -1))[..., 2]
    gradient = (z_mm.reshape(-1, 1, 1) - z_mm.min()) / 100.0  # 0 .. ~2.3 Gy along z
    dose = Volume((0.5 * labels_on_dose + gradient).astype(np.float32), grid=grid, quantity="dose")
    start = time.perf_counter()
    table = segment_statistics(dose, seg, ct=ct, names=names, dx_cc=(2,), vx_gy=(5,))
    assert time.perf_counter() - start < 5.0
    statuses = {r["status"] for r in table.rows}
    assert {"ok", "partly outside image", "outside image", "empty"} <= statuses
    for row in table.rows:
        if row["status"] == "partly outside image":
            assert 0 < row["fraction_inside"] < 1
            # the volume on the dose grid follows the fraction inside (nearest-neighbour sampling, 4.8 mm voxels)
            assert row["volume_ml"] == pytest.approx(row["fraction_inside"] * row["label_map_volume_ml"],
                                                     rel=0.5, abs=10)
        if row["voxels"]:
            s = [row[k] for k in ("min_gy", "d98_gy", "d90_gy", "d50_gy", "d10_gy", "d2_gy", "max_gy")]
            assert s == sorted(s) and row["min_gy"] >= 0.5 * row["label"]
            assert row["mean_gy"] == pytest.approx(row["mean_volume_gy"], rel=0.05)
    bladder = [r for r in table.rows if r["name"] == "urinary_bladder"][0]
    assert bladder["status"] == "ok"
    assert bladder["volume_ml"] == pytest.approx(bladder["label_map_volume_ml"], rel=0.1)


def test_cli_on_real_data(inputs, test_data_dir, tmp_path, capsys):
    seg, _ct, _names = inputs
    grid = _dose_grid(seg)
    dose = Volume(np.full(grid.shape, 0.25, np.float32), grid=grid, quantity="dose")
    dose_path = write_volume(dose, tmp_path / "dose.nrrd")
    folder = test_data_dir / FOLDER
    start = time.perf_counter()
    assert main(["voi", "--dose", str(dose_path), "--ct", str(folder / "example_ct.nii.gz"),
                 "--labels", str(folder / "example_seg_fast_force_split.nii.gz"),
                 "--names", str(folder / "class_map_total.json"), "--out", str(tmp_path / "t.csv"),
                 "--json", str(tmp_path / "t.json"), "--dvh", str(tmp_path / "dvh.csv"),
                 "--plot", str(tmp_path / "dvh.png")]) == 0
    assert time.perf_counter() - start < 10.0
    assert "spleen" in capsys.readouterr().out
    rows = {r["name"]: r for r in json.loads((tmp_path / "t.json").read_text())["rows"]}
    assert rows["spleen"]["mean_gy"] == pytest.approx(0.25)
    assert rows["spleen"]["volume_ml"] == pytest.approx(261.0, rel=0.05)  # on the 4.8 mm grid
    assert (tmp_path / "dvh.png").stat().st_size > 10000
