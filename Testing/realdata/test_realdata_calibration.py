"""Real Lu-177 SPECT (counts per projection view, 25 s): calibration to Bq/mL and a single-timepoint TIA.

MANIFEST.md: activity [MBq] = counts / (S x 25 s); with the nominal S = 6 cps/MBq the field holds ~1.2 GBq.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import require_data
from VoxelDosimetryLib.cli.main import main
from VoxelDosimetryLib.io import read_volume
from VoxelDosimetryLib.kinetics.quantification import SpectCalibration, calibrate_counts

pytestmark = pytest.mark.realdata

SPECT = ("real_lu177_spect_ct", "spect_counts.nrrd")


def read_counts(test_data_dir):
    path = require_data(test_data_dir, *SPECT)
    volume = read_volume(path)
    if volume.quantity == "unknown":  # the file states no quantity
        volume = read_volume(path, quantity="counts", unit="counts")
    return path, volume


def test_real_spect_calibrates_to_about_1_2_gbq(test_data_dir):
    _, counts = read_counts(test_data_dir)
    calibration = SpectCalibration.from_metadata(counts.metadata, sensitivity_cps_per_mbq=6.0, counts_duration_s=25.0)
    activity = calibrate_counts(counts, calibration)
    assert activity.quantity == "activity_concentration" and activity.unit == "Bq/mL"
    total_bq = float(activity.array.astype(np.float64).sum()) * activity.voxel_volume_ml
    assert total_bq == pytest.approx(1.2e9, rel=0.05)
    by_hand = float(counts.array.astype(np.float64).sum()) / (6.0 * 25.0) * 1e6
    assert total_bq == pytest.approx(by_hand, rel=1e-5)
    assert activity.metadata["calibration"]["source"]["sensitivity_cps_per_mbq"] == "user"
    assert activity.grid == counts.grid


def test_real_spect_single_timepoint_tia_from_the_cli(test_data_dir, tmp_path, capsys):
    path, counts = read_counts(test_data_dir)
    argv = ["tia", "--image", str(path), "--time-h", "96", "--quantity", "counts", "--model", "hanscheid",
            "--sensitivity-cps-per-mbq", "6", "--counts-duration-s", "25", "--out", str(tmp_path / "tia.nrrd")]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    activity_bq = float(np.clip(counts.array.astype(np.float64), 0, None).sum()) / (6.0 * 25.0) * 1e6
    expected = activity_bq * 2 * 96 * 3600.0 / math.log(2)
    assert summary["total_tia_bq_s"] == pytest.approx(expected, rel=1e-4)
    assert summary["info"]["negative_voxels_set_to_zero"][0] >= 0
