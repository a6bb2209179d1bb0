"""Real GE SPECT/CT DICOM (real_lu177_spect_ct): CT series geometry and HU, NM projection metadata."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import require_data
from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.io.dicom import read_dicom
from VoxelDosimetryLib.io.dicom_nm import read_dicom_spect, read_nm_metadata, read_nm_projections

pytestmark = pytest.mark.realdata

FOLDER = "real_lu177_spect_ct"


@pytest.fixture(scope="module")
def ct_zip(test_data_dir):
    return require_data(test_data_dir, FOLDER, "ct_dicom.zip")


@pytest.fixture(scope="module")
def ct_volume(ct_zip):
    return read_dicom(ct_zip)


@pytest.fixture(scope="module")
def ct_extracted(ct_zip, tmp_path_factory):
    folder = tmp_path_factory.mktemp("real_ct")
    with zipfile.ZipFile(ct_zip) as z:
        z.extractall(folder)
    return folder / "CT"


def test_real_ct_geometry_and_tags(ct_volume):
    vol = ct_volume
    assert vol.quantity == "ct" and vol.unit == "HU"
    assert vol.shape == (303, 512, 512)
    assert vol.spacing == pytest.approx((0.976562, 0.976562, 2.5), abs=1e-6)
    assert vol.origin == pytest.approx((-250.0, -250.0, -378.0))
    np.testing.assert_allclose(vol.direction, np.eye(3))
    md = vol.metadata
    assert md["PatientPosition"] == "FFS"
    assert md["Manufacturer"] == "GE MEDICAL SYSTEMS" and md["ManufacturerModelName"] == "Optima CT540"
    assert md["KVP"] == 120.0
    assert md["rescale_slope"] == 1.0 and md["rescale_intercept"] == -1024.0
    assert md["number_of_slices"] == 303
    # feet-first: instance 303 is the most inferior slice, so it comes first along +z
    assert md["first_file"].endswith("CT303_anon.dcm")
    assert vol.grid.index_to_world([0, 0, 302])[2] == pytest.approx(377.0)


def test_real_ct_hu_plausible(ct_volume):
    a = ct_volume.array
    assert a.dtype == np.int16
    assert a.min() >= -3024 and a.max() <= 3071
    padding = ct_volume.metadata["padding_voxels"]
    assert padding > 0 and ct_volume.metadata["PixelPaddingValue"] == -2000  # outside the reconstruction circle
    centre = a[150, 200:312, 200:312].astype(float)  # mid-slice, central square: inside the body
    assert -200 < np.median(centre) < 150  # soft tissue
    assert np.mean(a[150, :5, :] < -900) > 0.9  # air / padding at the anterior edge of the field
    assert (a > 300).sum() > 10_000  # bone


def test_real_ct_matches_sitk_series_reader(ct_volume, ct_extracted):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(ct_extracted)))
    image = reader.Execute()
    assert tuple(reversed(image.GetSize())) == ct_volume.shape
    np.testing.assert_allclose(image.GetSpacing(), ct_volume.spacing, atol=1e-6)
    np.testing.assert_allclose(image.GetOrigin(), ct_volume.origin, atol=1e-4)
    np.testing.assert_allclose(np.array(image.GetDirection()).reshape(3, 3), ct_volume.direction, atol=1e-9)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(image), ct_volume.array)
    from_folder = read_dicom(ct_extracted)
    assert from_folder.grid == ct_volume.grid


@pytest.mark.parametrize("bed, start, direction, counts", [(1, 180.16, "CC", 5692479), (2, 0.16, "CW", 12190080)])
def test_real_nm_projections(test_data_dir, ct_volume, bed, start, direction, counts):
    path = require_data(test_data_dir, FOLDER, f"nm_projections_bed{bed}.dcm")
    array, meta = read_nm_projections(path)
    assert array.shape == (6, 60, 128, 128)
    assert int(array.sum(dtype=np.int64)) == counts == meta.counts_accumulated
    assert meta.modality == "NM" and meta.kind == "projections"
    assert meta.manufacturer == "GE MEDICAL SYSTEMS"
    assert meta.number_of_energy_windows == 6 and len(meta.energy_windows) == 6
    peak = meta.energy_windows[meta.energy_window_index(208.4)]
    assert (peak.lower_kev, peak.upper_kev) == pytest.approx((187.2, 228.8))
    lower = meta.energy_windows[meta.energy_window_index(176.0)]
    upper = meta.energy_windows[meta.energy_window_index(240.0)]
    assert (lower.lower_kev, lower.upper_kev) == pytest.approx((166.89, 186.31))
    assert (upper.lower_kev, upper.upper_kev) == pytest.approx((229.63, 251.16))
    assert meta.number_of_views == 60 and meta.number_of_detectors == 1
    assert meta.frame_duration_s == pytest.approx(25.0)
    assert meta.pixel_spacing_mm == pytest.approx((4.4196, 4.4196))
    assert meta.start_angle_deg == pytest.approx(start) and meta.rotation_direction == direction
    assert meta.angular_step_deg == pytest.approx(6.0)
    assert meta.collimator == "MEGP"
    assert meta.patient_position == "FFS"
    # blank in these files: reported, never filled in
    for tag in ("RadionuclideTotalDose", "RadiopharmaceuticalStartDateTime", "RadiopharmaceuticalStartTime",
                "AcquisitionDate", "AcquisitionTime", "SeriesDate", "SeriesTime"):
        assert tag in meta.missing
    assert meta.administered_activity_bq is None and meta.radiopharmaceutical_start_datetime is None
    assert meta.acquisition_datetime is None
    assert any("MISSING" in line for line in meta.report())
    # same study and frame of reference as the CT
    assert meta.study_instance_uid == ct_volume.metadata["StudyInstanceUID"]
    assert meta.frame_of_reference_uid == ct_volume.metadata["FrameOfReferenceUID"]
    assert read_nm_metadata(path).missing == meta.missing
    with pytest.raises(InputFormatError, match="[Rr]econstruct"):
        read_dicom(path)
    with pytest.raises(InputFormatError, match="[Rr]econstruct"):
        read_dicom_spect(path)
