"""SPECT calibration: counts -> Bq/mL, decay factors, metadata sources and missing-value errors."""
from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from VoxelDosimetryLib.errors import InputFormatError, MissingMetadataError, UnitError
from VoxelDosimetryLib.io.dicom_nm import NMMetadata, RotationInfo
from VoxelDosimetryLib.kinetics.quantification import (SpectCalibration, calibrate_counts,
                                                       decay_during_acquisition_factor, nuclide_from_dicom)
from VoxelDosimetryLib.physics import get_nuclide
from VoxelDosimetryLib.volume.volume import Volume

LAM_LU = get_nuclide("Lu-177").decay_constant_per_s


def counts_volume(value: float = 150.0, spacing=(4.0, 4.0, 4.0)) -> Volume:
    return Volume(np.full((2, 3, 4), value, dtype=np.float32), spacing=spacing, quantity="counts", unit="counts")


def test_counts_to_bq_per_ml_matches_hand_calculation():
    cal = SpectCalibration(sensitivity_cps_per_mbq=6.0, counts_duration_s=25.0)
    vol = counts_volume(150.0)
    out = calibrate_counts(vol, cal)
    # 150 counts / (6 cps/MBq * 25 s) = 1 MBq per voxel; voxel 0.064 mL
    assert out.quantity == "activity_concentration" and out.unit == "Bq/mL"
    np.testing.assert_allclose(out.array, 1e6 / 0.064, rtol=1e-6)
    assert out.metadata["calibration"]["sensitivity_cps_per_mbq"] == 6.0
    assert out.metadata["calibration"]["bq_per_ml_per_count"] == pytest.approx(1e6 / 150 / 0.064)
    assert vol.array[0, 0, 0] == 150.0  # input untouched


def test_decay_during_acquisition_factor_is_the_exact_integral():
    lam, T = math.log(2) / 6 / 3600, 3600.0  # Tc-99m-like, 1 h acquisition
    # mean of exp(-lam t) over [0, T] by quadrature
    t = np.linspace(0, T, 200001)
    y = np.exp(-lam * t)
    mean = float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(t))) / T
    assert decay_during_acquisition_factor(lam, T) == pytest.approx(1 / mean, rel=1e-9)
    assert decay_during_acquisition_factor(1e-15, 10.0) == pytest.approx(1.0, abs=1e-12)


def test_decay_corrections_applied_and_recorded():
    start = dt.datetime(2024, 5, 2, 10, 0, 0)
    injection = dt.datetime(2024, 5, 1, 10, 0, 0)
    cal = SpectCalibration(sensitivity_cps_per_mbq=6.0, counts_duration_s=25.0, nuclide="Lu-177",
                           decay_correct_during_acquisition=True, acquisition_duration_s=1500.0,
                           acquisition_start=start, reference_time=injection)
    out = calibrate_counts(counts_volume(150.0), cal)
    f_acq = LAM_LU * 1500 / (1 - math.exp(-LAM_LU * 1500))
    f_ref = math.exp(LAM_LU * 86400)
    np.testing.assert_allclose(out.array, 1e6 / 0.064 * f_acq * f_ref, rtol=1e-6)
    meta = out.metadata["calibration"]
    assert meta["decay_corrected_to_reference"] is True
    assert meta["acquisition_decay_factor"] == pytest.approx(f_acq)
    assert meta["reference_time"] == injection.isoformat()


def test_bqml_passes_through():
    vol = Volume(np.full((2, 2, 2), 3.0, dtype=np.float32), quantity="activity_concentration", unit="kBq/mL")
    out = calibrate_counts(vol, SpectCalibration())
    np.testing.assert_allclose(out.array, 3000.0)
    assert out.unit == "Bq/mL" and out.metadata["calibration"]["pass_through"] is True


def test_wrong_quantities_and_nan_are_refused():
    cal = SpectCalibration(sensitivity_cps_per_mbq=6.0, counts_duration_s=25.0)
    with pytest.raises(UnitError, match="quantity='counts'"):
        calibrate_counts(Volume(np.ones((1, 1, 2))), cal)
    with pytest.raises(UnitError):
        calibrate_counts(Volume(np.ones((1, 1, 2)), quantity="dose", unit="Gy"), cal)
    bad = counts_volume().array.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputFormatError, match="NaN"):
        calibrate_counts(Volume(bad, quantity="counts"), cal)
    with pytest.raises(InputFormatError, match="positive"):
        SpectCalibration(sensitivity_cps_per_mbq=-1.0)


def test_missing_values_are_named_with_their_cli_options():
    with pytest.raises(MissingMetadataError) as err:
        SpectCalibration.from_metadata(None)
    text = str(err.value)
    assert "sensitivity_cps_per_mbq (tia: --sensitivity-cps-per-mbq)" in text
    assert "counts_duration_s (tia: --counts-duration-s)" in text and "pipeline config under 'calibration:'" in text
    with pytest.raises(MissingMetadataError, match="--acquisition-duration-s"):
        SpectCalibration.from_metadata({}, sensitivity_cps_per_mbq=6, counts_duration_s=25,
                                       decay_correct_during_acquisition=True, nuclide="Lu-177")
    partial = SpectCalibration.from_metadata(None, require_complete=False, sensitivity_cps_per_mbq=6)
    assert partial.missing() == ["counts_duration_s"]


def nm_metadata() -> NMMetadata:
    rot = RotationInfo(180.0, "CC", 6.0, 60, 360.0, 25.0, None, None, None)
    return NMMetadata(source="test", modality="NM", kind="reconstruction", frame_duration_s=25.0,
                      number_of_views=60, number_of_rotations=1, rotations=[rot],
                      acquisition_datetime=dt.datetime(2024, 5, 2, 10, 0),
                      radiopharmaceutical_start_datetime=dt.datetime(2024, 5, 1, 9, 0),
                      radionuclide="^177^Lutetium")


def test_from_metadata_fills_dicom_values_with_sources():
    cal = SpectCalibration.from_metadata(nm_metadata(), sensitivity_cps_per_mbq=6.0)
    assert cal.counts_duration_s == 25.0 and cal.source["counts_duration_s"] == "dicom"
    assert cal.acquisition_duration_s == 1500.0 and cal.source["acquisition_duration_s"] == "dicom"
    assert cal.nuclide == "Lu-177" and cal.source["nuclide"] == "dicom"
    assert cal.sensitivity_cps_per_mbq == 6.0 and cal.source["sensitivity_cps_per_mbq"] == "user"
    assert cal.source["decay_correct_during_acquisition"] == "default"
    assert cal.reference_time is None
    # the Volume.metadata layout of the DICOM reader works the same
    same = SpectCalibration.from_metadata({"nm": nm_metadata().to_dict()}, sensitivity_cps_per_mbq=6.0)
    assert same.to_dict() == cal.to_dict()
    # user overrides win and say so
    user = SpectCalibration.from_metadata(nm_metadata(), sensitivity_cps_per_mbq=6.0, counts_duration_s=1500.0)
    assert user.counts_duration_s == 1500.0 and user.source["counts_duration_s"] == "user"
    assert any("view" in n for n in cal.notes)


def test_reference_time_injection_from_dicom():
    cal = SpectCalibration.from_metadata(nm_metadata(), sensitivity_cps_per_mbq=6.0, reference_time="injection")
    assert cal.reference_time == dt.datetime(2024, 5, 1, 9, 0)
    assert cal.reference_decay_factor() == pytest.approx(math.exp(LAM_LU * 25 * 3600))
    meta = nm_metadata()
    meta.radiopharmaceutical_start_datetime = None
    with pytest.raises(MissingMetadataError, match="--reference-time"):
        SpectCalibration.from_metadata(meta, sensitivity_cps_per_mbq=6.0, reference_time="injection")


def test_replace_marks_user_and_nuclide_parsing():
    cal = SpectCalibration.from_metadata(nm_metadata(), sensitivity_cps_per_mbq=6.0)
    changed = cal.replace(counts_duration_s=30.0)
    assert changed.counts_duration_s == 30.0 and changed.source["counts_duration_s"] == "user"
    assert cal.counts_duration_s == 25.0
    assert nuclide_from_dicom("Lu-177") == "Lu-177"
    assert nuclide_from_dicom("^99m^Technetium") == "Tc-99m"
    assert nuclide_from_dicom("Lutetium^177^") == "Lu-177"
    assert nuclide_from_dicom("unobtainium") is None
    assert any("sensitivity_cps_per_mbq: 6.0 (user)" == line for line in cal.describe())
