"""`voxeldosimetry tia`: files in, TIA/dose file and JSON summary out, calibration on the fly, clear errors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from VoxelDosimetryLib.cli.main import main
from VoxelDosimetryLib.io import read_volume, write_volume
from VoxelDosimetryLib.physics import get_nuclide
from VoxelDosimetryLib.volume.volume import Volume

LAM = get_nuclide("Lu-177").decay_constant_per_s
TIMES_H = (4.0, 24.0, 96.0)
LAM_EFF = 2.0 * LAM
SPACING = (4.0, 4.0, 4.0)


def a0_map() -> np.ndarray:
    a0 = np.zeros((4, 5, 6), dtype=np.float32)
    a0[1:3, 1:4, 2:5] = np.linspace(1e4, 5e4, 18).reshape(2, 3, 3)
    return a0


def write_series(tmp_path, quantity="activity_concentration", unit=None, scale=1.0, origin_shift=None):
    args = []
    for i, h in enumerate(TIMES_H):
        values = a0_map() * np.exp(-LAM_EFF * h * 3600.0) * scale
        origin = (0.0, 0.0, 0.0) if origin_shift is None or i != 2 else origin_shift
        vol = Volume(values.astype(np.float32), spacing=SPACING, origin=origin, quantity=quantity, unit=unit)
        path = write_volume(vol, tmp_path / f"tp{i}.nrrd")
        args += ["--image", str(path), "--time-h", str(h)]
    return args


def test_mono_exp_tia_file_summary_and_report(tmp_path, capsys):
    report = tmp_path / "info.json"
    argv = ["tia", *write_series(tmp_path), "--nuclide", "Lu-177", "--model", "mono_exp",
            "--out", str(tmp_path / "tia.nrrd"), "--report", str(report)]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    tia = read_volume(tmp_path / "tia.nrrd")
    assert tia.quantity == "tia_concentration" and tia.unit == "Bq*s/mL"
    np.testing.assert_allclose(tia.array, a0_map() / LAM_EFF, rtol=1e-3)
    expected_total = float(a0_map().astype(float).sum()) / LAM_EFF * 0.064
    assert summary["model"] == "mono_exp"
    assert summary["total_tia_bq_s"] == pytest.approx(expected_total, rel=1e-3)
    assert summary["total_tia_mbq_h"] == pytest.approx(expected_total / 3.6e9, rel=1e-3)
    assert summary["info"]["times_h"] == list(TIMES_H)
    assert json.loads(report.read_text())["model"] == "mono_exp"


def test_counts_are_calibrated_on_the_fly(tmp_path, capsys):
    # counts = A [Bq/mL] * V [mL] * S [cps/MBq] * 1e-6 * D [s]
    factor = 0.064 * 6.0 * 1e-6 * 25.0
    argv = ["tia", *write_series(tmp_path, quantity="counts", scale=factor), "--model", "trapezoid",
            "--sensitivity-cps-per-mbq", "6", "--counts-duration-s", "25", "--out", str(tmp_path / "tia.nrrd")]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["info"]["calibrations"][0]["sensitivity_cps_per_mbq"] == 6.0
    assert summary["info"]["calibrations"][0]["source"]["counts_duration_s"] == "user"
    calibrated = read_volume(tmp_path / "tia.nrrd")
    (tmp_path / "ref").mkdir()
    assert main(["tia", *write_series(tmp_path / "ref"), "--out", str(tmp_path / "ref.nrrd")]) == 0
    reference = read_volume(tmp_path / "ref.nrrd")
    np.testing.assert_allclose(calibrated.array, reference.array, rtol=1e-5, atol=1e-3)


def test_counts_without_calibration_and_unknown_quantity(tmp_path, capsys):
    argv = ["tia", *write_series(tmp_path, quantity="counts"), "--out", str(tmp_path / "t.nrrd")]
    assert main(argv) == 1
    assert "--sensitivity-cps-per-mbq" in capsys.readouterr().err
    argv = ["tia", *write_series(tmp_path, quantity="counts"), "--sensitivity-cps-per-mbq", "6",
            "--out", str(tmp_path / "t.nrrd")]
    assert main(argv) == 1
    assert "--counts-duration-s" in capsys.readouterr().err


def test_grid_mismatch_and_count_mismatch_errors(tmp_path, capsys):
    argv = ["tia", *write_series(tmp_path, origin_shift=(0.0, 0.0, 4.0)), "--out", str(tmp_path / "t.nrrd")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "timepoint 3" in err and "voxeldosimetry register" in err
    argv = ["tia", *write_series(tmp_path)[:-2], "--time-h", "96", "--time-h", "168", "--out", str(tmp_path / "t.nrrd")]
    assert main(argv) == 1
    assert "--time-h" in capsys.readouterr().err


def test_hanscheid_and_dose_rate(tmp_path, capsys):
    vol = Volume(np.full((2, 2, 2), 1e-6, dtype=np.float32), spacing=SPACING, quantity="dose_rate")
    path = write_volume(vol, tmp_path / "rate.nrrd")
    argv = ["tia", "--image", str(path), "--time-h", "96", "--model", "hanscheid", "--effective-half-life-h", "60",
            "--out", str(tmp_path / "dose.nrrd")]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    lam = math.log(2) / (60 * 3600.0)
    dose = read_volume(tmp_path / "dose.nrrd")
    assert dose.quantity == "dose"
    np.testing.assert_allclose(dose.array, 1e-6 * math.exp(lam * 96 * 3600.0) / lam, rtol=1e-5)
    assert summary["max_dose_gy"] == pytest.approx(float(dose.array.max()), rel=1e-6)


def test_help_lists_models(capsys):
    with pytest.raises(SystemExit):
        main(["tia", "--help"])
    out = capsys.readouterr().out
    for name in ("trapezoid_fit_tail", "bi_exp", "hanscheid", "--sensitivity-cps-per-mbq"):
        assert name in out


def test_decay_during_acquisition_option(tmp_path, capsys):
    factor = 0.064 * 6.0 * 1e-6 * 25.0
    series = write_series(tmp_path, quantity="counts", scale=factor)
    base = ["tia", *series, "--sensitivity-cps-per-mbq", "6", "--counts-duration-s", "25"]
    assert main(base + ["--decay-correct-acquisition", "--out", str(tmp_path / "x.nrrd")]) == 1
    assert "--acquisition-duration-s" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "plain.nrrd")]) == 0
    capsys.readouterr()
    assert main(base + ["--decay-correct-acquisition", "--acquisition-duration-s", "1500",
                        "--out", str(tmp_path / "corr.nrrd")]) == 0
    cal = json.loads(capsys.readouterr().out)["info"]["calibrations"][0]
    expected = LAM * 1500 / (1 - math.exp(-LAM * 1500))
    assert cal["acquisition_decay_factor"] == pytest.approx(expected, rel=1e-12)
    assert cal["nuclide"] == "Lu-177"
    ratio = read_volume(tmp_path / "corr.nrrd").array.sum() / read_volume(tmp_path / "plain.nrrd").array.sum()
    assert ratio == pytest.approx(expected, rel=1e-5)
