"""DICOM NM/PT: reconstructed SPECT and PET volumes, units, timing fallbacks, vendor variants, projections."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import generate_uid

from dicom_builders import new_dataset
from VoxelDosimetryLib.errors import InputFormatError, MissingMetadataError
from VoxelDosimetryLib.io.dicom import read_dicom
from VoxelDosimetryLib.io.dicom_nm import (NMMetadata, nm_metadata_from_dataset, read_dicom_spect, read_nm_metadata,
                                          read_nm_projections)

NM_STORAGE = "1.2.840.10008.5.1.4.1.1.20"
PT_STORAGE = "1.2.840.10008.5.1.4.1.1.128"


# ---------------------------------------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------------------------------------

def _base(sop_class: str, modality: str) -> Dataset:
    ds = new_dataset(sop_class, modality, "TestVendor")
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid(), generate_uid()
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    return ds


def _radiopharm(**kwargs) -> Dataset:
    item = Dataset()
    for key, value in kwargs.items():
        setattr(item, key, value)
    return item


def _lu177_code() -> Dataset:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "C-145A4", "SRT", "^177^Lutetium"
    return code


def make_nm_recon(path: Path, array: np.ndarray, *, iop=(1, 0, 0, 0, 1, 0), ipp=(10.0, 20.0, 30.0),
                  spacing_between_slices: float | None = 4.0, pixel_spacing=(4.0, 3.0), units: str | None = "BQML",
                  slope: float | None = None, slice_vector=None, in_detector_sequence=True, **tags) -> Path:
    ds = _base(NM_STORAGE, "NM")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    n = array.shape[0]
    ds.NumberOfFrames = n
    ds.FrameIncrementPointer = Tag(0x0054, 0x0080)
    ds.SliceVector = list(slice_vector) if slice_vector is not None else list(range(1, n + 1))
    ds.NumberOfSlices = n
    if in_detector_sequence:
        det = Dataset()
        det.ImageOrientationPatient = [f"{v:.8f}" for v in iop]
        det.ImagePositionPatient = [f"{v:.4f}" for v in ipp]
        det.CollimatorGridName = "MEGP"
        ds.DetectorInformationSequence = [det]
    else:
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in iop]
        ds.ImagePositionPatient = [f"{v:.4f}" for v in ipp]
    ds.Rows, ds.Columns = array.shape[1:]
    ds.PixelSpacing = list(pixel_spacing)
    if spacing_between_slices is not None:
        ds.SpacingBetweenSlices = spacing_between_slices
    ds.SliceThickness = abs(spacing_between_slices or 5.0)
    if units is not None:
        ds.Units = units
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, 0
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(array).astype("<u2").tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def make_pt_series(folder: Path, array: np.ndarray, slopes, *, spacing=3.0, units="BQML", times=None,
                   private=None, **tags) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    paths = []
    for k in range(array.shape[0]):
        ds = _base(PT_STORAGE, "PT")
        ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.FrameOfReferenceUID = series, study, frame
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-50.0, -60.0, 100.0 - spacing * k]  # written head to feet
        ds.InstanceNumber = k + 1
        ds.Rows, ds.Columns = array.shape[1:]
        ds.PixelSpacing = [2.0, 2.0]
        ds.SliceThickness = spacing
        ds.RescaleSlope, ds.RescaleIntercept = slopes[k], 0
        if units is not None:
            ds.Units = units
        ds.DecayCorrection = "START"
        ds.SeriesDate, ds.SeriesTime = "20240301", "100000"
        ds.AcquisitionDate = "20240301"
        ds.AcquisitionTime = (times or ["100000"] * array.shape[0])[k]
        ds.RadiopharmaceuticalInformationSequence = [_radiopharm(
            RadiopharmaceuticalStartDateTime="20240301090000", RadionuclideTotalDose="370000000",
            RadionuclideHalfLife="6586.2", Radiopharmaceutical="FDG")]
        for key, value in tags.items():
            setattr(ds, key, value)
        if private:
            private(ds)
        ds.PixelData = np.ascontiguousarray(array[k]).astype("<u2").tobytes()
        path = folder / f"pt_{(k * 7) % array.shape[0]:03d}_{k}.dcm"
        ds.save_as(str(path), enforce_file_format=True)
        paths.append(path)
    return paths


def make_projections(path: Path, *, n_windows=2, n_detectors=2, n_views=4, rows=3, cols=5, shuffle=True,
                     **tags) -> tuple[Path, dict]:
    """TOMO projections whose frame value encodes (window, detector, view); frames stored in a scrambled order."""
    ds = _base(NM_STORAGE, "NM")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "TOMO", "EMISSION"]
    keys = [(e, d, v) for e in range(1, n_windows + 1) for d in range(1, n_detectors + 1)
            for v in range(1, n_views + 1)]
    order = list(range(len(keys)))
    if shuffle:
        rng = np.random.default_rng(3)
        order = list(rng.permutation(len(keys)))
    frames = [keys[i] for i in order]
    ds.NumberOfFrames = len(frames)
    ds.FrameIncrementPointer = [Tag(0x0054, 0x0010), Tag(0x0054, 0x0020), Tag(0x0054, 0x0050),
                                Tag(0x0054, 0x0090)]
    ds.EnergyWindowVector = [f[0] for f in frames]
    ds.DetectorVector = [f[1] for f in frames]
    ds.RotationVector = [1] * len(frames)
    ds.AngularViewVector = [f[2] for f in frames]
    ds.NumberOfEnergyWindows = n_windows
    windows = []
    for lo, hi, name in [(187.2, 228.8, "Lu177_EM"), (166.89, 186.31, "SC1"), (229.63, 251.16, "SC2")][:n_windows]:
        rng_item = Dataset()
        rng_item.EnergyWindowLowerLimit, rng_item.EnergyWindowUpperLimit = lo, hi
        w = Dataset()
        w.EnergyWindowRangeSequence = [rng_item]
        w.EnergyWindowName = name
        windows.append(w)
    ds.EnergyWindowInformationSequence = windows
    ds.NumberOfDetectors = n_detectors
    ds.DetectorInformationSequence = [Dataset() for _ in range(n_detectors)]
    rot = Dataset()
    rot.StartAngle, rot.AngularStep, rot.RotationDirection = 180.0, 360.0 / n_views, "CW"
    rot.NumberOfFramesInRotation, rot.ScanArc, rot.ActualFrameDuration = n_views, 360, 20000
    ds.RotationInformationSequence = [rot]
    ds.NumberOfRotations = 1
    ds.Rows, ds.Columns = rows, cols
    ds.PixelSpacing = [4.4196, 4.4196]
    for key, value in tags.items():
        setattr(ds, key, value)
    data = np.stack([np.full((rows, cols), 100 * e + 10 * d + v, dtype=np.uint16) for e, d, v in frames])
    ds.PixelData = data.astype("<u2").tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path, {"n_windows": n_windows, "n_detectors": n_detectors, "n_views": n_views}


def _values_match_sitk(volume, image: sitk.Image) -> None:
    """Every voxel of `volume` has the same value as the SimpleITK image at the same LPS point."""
    arr = sitk.GetArrayFromImage(image)
    nz, ny, nx = volume.shape
    for k in range(nz):
        for j in (0, ny - 1):
            for i in (0, nx - 1):
                point = volume.grid.index_to_world([i, j, k])
                idx = image.TransformPhysicalPointToIndex(tuple(float(p) for p in point))
                assert arr[idx[2], idx[1], idx[0]] == pytest.approx(float(volume.array[k, j, i]), rel=1e-6)


# ---------------------------------------------------------------------------------------------------------
# reconstructed NM
# ---------------------------------------------------------------------------------------------------------

def test_nm_recon_bqml_with_slope_matches_sitk(tmp_path):
    array = np.arange(5 * 4 * 3, dtype=np.uint16).reshape(5, 4, 3)
    path = make_nm_recon(tmp_path / "recon.dcm", array, slope=0.5)
    vol = read_dicom_spect(path)
    assert vol.quantity == "activity_concentration" and vol.unit == "Bq/mL"
    assert vol.array.dtype == np.float32
    np.testing.assert_allclose(vol.array, array * 0.5)
    assert vol.spacing == pytest.approx((3.0, 4.0, 4.0))
    assert vol.origin == pytest.approx((10.0, 20.0, 30.0))
    np.testing.assert_allclose(vol.direction, np.eye(3))
    assert "Units BQML" in vol.metadata["value_mapping"]
    assert vol.metadata["nm"]["kind"] == "reconstruction"
    _values_match_sitk(vol, sitk.ReadImage(str(path)))
    assert read_dicom(path).grid == vol.grid


@pytest.mark.parametrize("iop", [(1, 0, 0, 0, 1, 0), (-1, 0, 0, 0, 1, 0)])
def test_nm_recon_negative_spacing_is_reversed_to_right_handed(tmp_path, iop):
    array = np.arange(5 * 4 * 3, dtype=np.uint16).reshape(5, 4, 3)
    path = make_nm_recon(tmp_path / "recon.dcm", array, iop=iop, spacing_between_slices=-2.5)
    vol = read_dicom_spect(path)
    np.testing.assert_allclose(vol.array, array[::-1])
    assert np.linalg.det(vol.direction) == pytest.approx(1.0)
    normal = np.cross(iop[:3], iop[3:])
    # frame 0 (now the last slice) is at ImagePositionPatient; frame k at IPP + k * (-2.5) * normal
    np.testing.assert_allclose(vol.grid.index_to_world([0, 0, 4]), (10, 20, 30), atol=1e-6)
    np.testing.assert_allclose(vol.grid.index_to_world([0, 0, 0]), np.array((10, 20, 30)) - 4 * 2.5 * normal,
                               atol=1e-6)
    assert any("negative" in n for n in vol.metadata["notes"])
    _values_match_sitk(vol, sitk.ReadImage(str(path)))


def test_nm_recon_slice_vector_order_and_root_geometry(tmp_path):
    array = np.arange(4 * 2 * 2, dtype=np.uint16).reshape(4, 2, 2)
    path = make_nm_recon(tmp_path / "r.dcm", array, slice_vector=[2, 1, 4, 3], in_detector_sequence=False)
    vol = read_dicom_spect(path)
    np.testing.assert_allclose(vol.array, array[[1, 0, 3, 2]])
    assert any("top-level" in n for n in vol.metadata["notes"])


def test_nm_recon_units(tmp_path):
    array = np.ones((3, 2, 2), dtype=np.uint16) * 7
    cnts = read_dicom_spect(make_nm_recon(tmp_path / "c.dcm", array, units="CNTS"))
    assert (cnts.quantity, cnts.unit) == ("counts", "counts")
    none = read_dicom_spect(make_nm_recon(tmp_path / "n.dcm", array, units=None))
    assert (none.quantity, none.unit) == ("unknown", "unknown")
    assert "Units" in none.metadata["missing"]
    assert any("Units (0054,1001) is absent" in n for n in none.metadata["notes"])
    forced = read_dicom_spect(tmp_path / "n.dcm", default_quantity="counts")
    assert forced.quantity == "counts"
    assert any("set by the caller" in n for n in forced.metadata["notes"])
    cps = read_dicom_spect(make_nm_recon(tmp_path / "cps.dcm", array, units="CPS"))
    assert cps.quantity == "unknown" and any("counts per second" in n for n in cps.metadata["notes"])


def test_nm_recon_real_world_value_mapping(tmp_path):
    array = np.full((3, 2, 2), 10, dtype=np.uint16)
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "kBq/ml", "UCUM", "kBq/ml"
    item = Dataset()
    item.MeasurementUnitsCodeSequence = [code]
    item.RealWorldValueSlope, item.RealWorldValueIntercept = 0.25, 1.0
    item.RealWorldValueFirstValueMapped, item.RealWorldValueLastValueMapped = 0, 65535
    vol = read_dicom_spect(make_nm_recon(tmp_path / "rw.dcm", array, units="CNTS", slope=3.0,
                                         RealWorldValueMappingSequence=[item]))
    assert vol.quantity == "activity_concentration" and vol.unit == "Bq/mL"
    np.testing.assert_allclose(vol.array, (10 * 0.25 + 1.0) * 1000.0)  # RWVM on stored values, kBq -> Bq


def test_nm_recon_errors(tmp_path):
    array = np.ones((4, 2, 2), dtype=np.uint16)
    path = make_nm_recon(tmp_path / "g.dcm", array, NumberOfSlices=2)
    with pytest.raises(InputFormatError, match="several energy windows"):
        read_dicom_spect(path)
    ds_path = make_nm_recon(tmp_path / "nogeo.dcm", array, in_detector_sequence=False)
    import pydicom
    ds = pydicom.dcmread(str(ds_path))
    del ds.ImagePositionPatient
    ds.save_as(str(ds_path))
    with pytest.raises(MissingMetadataError, match="ImagePositionPatient"):
        read_dicom_spect(ds_path)
    nospacing = make_nm_recon(tmp_path / "nos.dcm", array, spacing_between_slices=None)
    vol = read_dicom_spect(nospacing)
    assert vol.spacing[2] == pytest.approx(5.0)
    assert any("SliceThickness" in n for n in vol.metadata["notes"])


# ---------------------------------------------------------------------------------------------------------
# PET / single-frame series
# ---------------------------------------------------------------------------------------------------------

def test_pt_series_per_slice_slopes_and_geometry(tmp_path):
    stored = np.arange(4 * 3 * 2, dtype=np.uint16).reshape(4, 3, 2)
    slopes = [1.0, 2.0, 0.5, 4.0]
    make_pt_series(tmp_path / "pt", stored, slopes, times=["100500", "100000", "101000", "101500"])
    vol = read_dicom_spect(tmp_path / "pt")
    assert vol.quantity == "activity_concentration"
    # written head to feet: slice k at z = 100 - 3k; sorted along +z the last written comes first
    expected = (stored * np.array(slopes)[:, None, None])[::-1]
    np.testing.assert_allclose(vol.array, expected)
    assert vol.origin == pytest.approx((-50.0, -60.0, 91.0))
    assert vol.spacing == pytest.approx((2.0, 2.0, 3.0))
    nm = vol.metadata["nm"]
    assert nm["acquisition_datetime"] == "2024-03-01T10:00:00"  # earliest slice
    assert nm["radiopharmaceutical_start_datetime"] == "2024-03-01T09:00:00"
    assert nm["administered_activity_bq"] == pytest.approx(3.7e8)
    assert nm["half_life_s"] == pytest.approx(6586.2)
    assert nm["decay_correction"] == "START" and nm["decay_correction_datetime"] == "2024-03-01T10:00:00"
    assert any("per-slice rescale" in n for n in vol.metadata["notes"])
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "pt")))
    image = reader.Execute()
    np.testing.assert_allclose(image.GetOrigin(), vol.origin, atol=1e-6)
    np.testing.assert_allclose(np.array(image.GetDirection()).reshape(3, 3), vol.direction, atol=1e-9)
    meta = read_nm_metadata(tmp_path / "pt")
    assert meta.acquisition_datetime == dt.datetime(2024, 3, 1, 10, 0)


def test_philips_cnts_activity_scale_factor(tmp_path):
    def philips(ds):
        block = ds.private_block(0x7053, "Philips PET Private Group", create=True)
        block.add_new(0x00, "DS", "0.000123")
        block.add_new(0x09, "DS", "12.5")
    stored = np.full((2, 2, 2), 8, dtype=np.uint16)
    make_pt_series(tmp_path / "ph", stored, [2.0, 2.0], units="CNTS", private=philips)
    vol = read_dicom_spect(tmp_path / "ph")
    assert vol.quantity == "activity_concentration"
    np.testing.assert_allclose(vol.array, 8 * 2.0 * 12.5)
    assert "Philips" in vol.metadata["value_mapping"]
    assert vol.metadata["nm"]["vendor"]["philips_suv_scale_factor"] == pytest.approx(0.000123)


def test_ge_private_scan_datetime(tmp_path):
    def ge(ds):
        ds.private_block(0x0009, "GEMS_PETD_01", create=True).add_new(0x0D, "DT", "20240301093000")
    stored = np.full((2, 2, 2), 1, dtype=np.uint16)
    # post-processed series: SeriesTime after the acquisition
    make_pt_series(tmp_path / "ge", stored, [1.0, 1.0], private=ge, SeriesTime="120000")
    meta = read_nm_metadata(tmp_path / "ge")
    assert meta.decay_correction_datetime == dt.datetime(2024, 3, 1, 9, 30)
    assert meta.vendor["ge_scan_datetime"] == "2024-03-01T09:30:00"
    assert any("GE private" in n for n in meta.notes)
    # with the standard acquisition tags blank the GE scan date-time is the acquisition fallback
    make_pt_series(tmp_path / "ge2", stored, [1.0, 1.0], private=ge, AcquisitionDate="", times=["", ""])
    meta2 = read_nm_metadata(tmp_path / "ge2")
    assert meta2.acquisition_datetime == dt.datetime(2024, 3, 1, 9, 30)
    assert "GEMS_PETD_01" in meta2.acquisition_datetime_source


# ---------------------------------------------------------------------------------------------------------
# metadata: timing fallbacks and missing tags
# ---------------------------------------------------------------------------------------------------------

def _timing_ds(**tags) -> Dataset:
    ds = _base(NM_STORAGE, "NM")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    ds.Units = "BQML"
    for key, value in tags.items():
        setattr(ds, key, value)
    return ds


def test_timing_primary_tags_and_timezone():
    rp = _radiopharm(RadiopharmaceuticalStartDateTime="20240110081500+0100", RadionuclideTotalDose="7400000000",
                     RadionuclideHalfLife="574300.8", RadionuclideCodeSequence=[_lu177_code()])
    ds = _timing_ds(AcquisitionDateTime="20240111093000.25+0100", SeriesDate="20240111", SeriesTime="092000",
                    ActualFrameDuration=30000, RadiopharmaceuticalInformationSequence=[rp])
    meta = nm_metadata_from_dataset(ds, "x")
    assert meta.acquisition_datetime == dt.datetime(2024, 1, 11, 9, 30, 0, 250000)
    assert meta.acquisition_datetime.tzinfo is None and meta.timezone_offset == "+0100"
    assert meta.acquisition_datetime_source == "AcquisitionDateTime"
    assert meta.series_datetime == dt.datetime(2024, 1, 11, 9, 20)
    assert meta.radiopharmaceutical_start_datetime == dt.datetime(2024, 1, 10, 8, 15)
    assert meta.administered_activity_bq == pytest.approx(7.4e9)
    assert meta.half_life_s == pytest.approx(574300.8)
    assert meta.radionuclide == "^177^Lutetium"
    assert meta.frame_duration_s == pytest.approx(30.0)
    assert set(meta.missing) == {"PixelSpacing", "EnergyWindowInformationSequence"}  # not in this bare header
    assert isinstance(meta.to_dict()["acquisition_datetime"], str)


@pytest.mark.parametrize("tags, expected, source", [
    ({"AcquisitionDate": "20240111", "AcquisitionTime": "093000"}, dt.datetime(2024, 1, 11, 9, 30),
     "AcquisitionDate+AcquisitionTime"),
    ({"AcquisitionTime": "093000", "SeriesDate": "20240111", "SeriesTime": "092000"},
     dt.datetime(2024, 1, 11, 9, 30), "SeriesDate+AcquisitionTime"),
    ({"SeriesDate": "20240111", "SeriesTime": "092000"}, dt.datetime(2024, 1, 11, 9, 20), "SeriesDate+SeriesTime"),
    ({"ContentDate": "20240111", "ContentTime": "100000"}, dt.datetime(2024, 1, 11, 10, 0),
     "ContentDate+ContentTime"),
])
def test_acquisition_time_fallbacks(tags, expected, source):
    meta = nm_metadata_from_dataset(_timing_ds(**tags), "x")
    assert meta.acquisition_datetime == expected
    assert meta.acquisition_datetime_source == source
    if source != "AcquisitionDate+AcquisitionTime":
        assert any(source in n for n in meta.notes)
    assert "AcquisitionDate" not in meta.missing


def test_injection_time_without_date_uses_series_date_with_warning():
    rp = _radiopharm(RadiopharmaceuticalStartTime="081500", RadionuclideTotalDose="7.4e9")
    meta = nm_metadata_from_dataset(_timing_ds(SeriesDate="20240111", SeriesTime="092000",
                                               RadiopharmaceuticalInformationSequence=[rp]), "x")
    assert meta.radiopharmaceutical_start_datetime == dt.datetime(2024, 1, 11, 8, 15)
    assert meta.radiopharmaceutical_start_source == "RadiopharmaceuticalStartTime+SeriesDate"
    assert any("later day" in n for n in meta.notes)


def test_frame_duration_from_rotation_and_suspicious_dose():
    rot = Dataset()
    rot.ActualFrameDuration = 25000
    rp = _radiopharm(RadionuclideTotalDose="7400")
    meta = nm_metadata_from_dataset(_timing_ds(RotationInformationSequence=[rot],
                                               RadiopharmaceuticalInformationSequence=[rp]), "x")
    assert meta.frame_duration_s == pytest.approx(25.0)
    assert meta.administered_activity_bq == pytest.approx(7400.0)
    assert any("MBq" in n for n in meta.notes)


def test_missing_tags_reported_never_guessed():
    rp = _radiopharm(RadionuclideTotalDose="0", RadiopharmaceuticalStartTime="")
    ds = _timing_ds(SeriesDate="", AcquisitionTime="", RadiopharmaceuticalInformationSequence=[rp])
    del ds.Units
    del ds.Manufacturer
    meta = nm_metadata_from_dataset(ds, "blank.dcm")
    for tag in ("SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime", "RadiopharmaceuticalStartDateTime",
                "RadiopharmaceuticalStartTime", "RadionuclideTotalDose", "RadionuclideHalfLife",
                "RadionuclideCodeSequence", "ActualFrameDuration", "Units", "Manufacturer"):
        assert tag in meta.missing, tag
    assert meta.acquisition_datetime is None and meta.radiopharmaceutical_start_datetime is None
    assert meta.administered_activity_bq is None and meta.half_life_s is None
    text = "\n".join(meta.report())
    assert "administered activity: MISSING" in text and "RadionuclideTotalDose" in text
    assert "does not guess" in text


# ---------------------------------------------------------------------------------------------------------
# projections
# ---------------------------------------------------------------------------------------------------------

def test_projections_array_order_and_metadata(tmp_path):
    path, info = make_projections(tmp_path / "proj.dcm", StudyDate="20240111")
    array, meta = read_nm_projections(path)
    assert isinstance(meta, NMMetadata)
    assert array.shape == (2, 2 * 4, 3, 5)
    for e in range(2):
        for p, (d, r, v) in enumerate(meta.projection_order):
            assert np.all(array[e, p] == 100 * (e + 1) + 10 * d + v)
    assert meta.projection_order[:2] == [(1, 1, 1), (1, 1, 2)]
    assert meta.kind == "projections" and meta.number_of_views == 4 and meta.number_of_detectors == 2
    assert meta.energy_window_index(208.0) == 0 and meta.energy_window_index(170.0) == 1
    assert meta.energy_window_index(300.0) is None
    assert meta.start_angle_deg == 180.0 and meta.rotation_direction == "CW" and meta.angular_step_deg == 90.0
    assert meta.frame_duration_s == pytest.approx(20.0)
    assert meta.pixel_spacing_mm == pytest.approx((4.4196, 4.4196))
    assert "Units" not in meta.missing  # projections are counts by construction
    with pytest.raises(InputFormatError, match="[Rr]econstruct"):
        read_dicom_spect(path)
    with pytest.raises(InputFormatError, match="read_nm_projections"):
        read_dicom(path)
    with pytest.raises(InputFormatError, match="projections"):
        read_dicom(tmp_path)  # a folder with only projections


def test_projections_reader_refuses_reconstruction(tmp_path):
    path = make_nm_recon(tmp_path / "r.dcm", np.ones((2, 2, 2), np.uint16))
    with pytest.raises(InputFormatError, match="read_dicom_spect"):
        read_nm_projections(path)


def test_folder_with_ct_and_nm_recon_picks_by_reader(tmp_path):
    from VoxelDosimetryLib.io.dicom_ct import read_dicom_ct_series, write_dicom_ct_series
    from VoxelDosimetryLib.volume.volume import Volume
    ct = Volume(np.zeros((3, 4, 4), np.int16), quantity="ct", unit="HU")
    write_dicom_ct_series(ct, tmp_path / "study" / "ct")
    make_nm_recon(tmp_path / "study" / "nm.dcm", np.ones((2, 2, 2), np.uint16))
    assert read_dicom_ct_series(tmp_path / "study").quantity == "ct"
    assert read_dicom_spect(tmp_path / "study").quantity == "activity_concentration"
    with pytest.raises(InputFormatError, match="series_uid"):
        read_dicom(tmp_path / "study")
