"""DICOM CT series: writer round trips, hand-built series in any order/orientation, SimpleITK agreement, errors."""
from __future__ import annotations

import random
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import generate_uid

from dicom_builders import new_dataset
from VoxelDosimetryLib.errors import InputFormatError, MissingMetadataError, UnitError
from VoxelDosimetryLib.io.dicom import list_dicom_series, read_dicom
from VoxelDosimetryLib.io.dicom_ct import read_dicom_ct_series, write_dicom_ct_series
from VoxelDosimetryLib.io.datetime_parse import combine_date_time, parse_dt, parse_tm
from VoxelDosimetryLib.volume.volume import Grid, Volume

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------

def sitk_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def assert_matches_sitk(volume: Volume, image: sitk.Image) -> None:
    assert tuple(reversed(image.GetSize())) == volume.shape
    np.testing.assert_allclose(image.GetSpacing(), volume.spacing, atol=1e-4)
    np.testing.assert_allclose(image.GetOrigin(), volume.origin, atol=1e-3)
    np.testing.assert_allclose(np.array(image.GetDirection()).reshape(3, 3), volume.direction, atol=1e-5)
    np.testing.assert_allclose(sitk.GetArrayFromImage(image).astype(float), volume.array.astype(float), atol=1e-3)


def hand_slice(path: Path, *, position, iop, pixels: np.ndarray, instance: int, series_uid: str, study_uid: str,
               frame_uid: str, pixel_spacing=(0.8, 0.7), slope: float = 1.0, intercept: float = -1024.0,
               patient_position: str = "HFS", thickness: float | None = None, with_ipp: bool = True,
               extra: dict | None = None) -> None:
    """One CT slice written directly with pydicom (independent of write_dicom_ct_series)."""
    ds = new_dataset(CT_STORAGE, "CT", "HandBuilt")
    ds.ManufacturerModelName = "Test CT"
    ds.KVP = "120"
    ds.SeriesDate, ds.SeriesTime = "20240105", "101500"
    ds.AcquisitionDate, ds.AcquisitionTime = "20240105", "101623.5"
    ds.PatientPosition = patient_position
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
    ds.InstanceNumber = instance
    if with_ipp:
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in iop]
    if thickness is not None:
        ds.SliceThickness = thickness
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelSpacing = [pixel_spacing[0], pixel_spacing[1]]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = f"{slope:g}", f"{intercept:g}"
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    ds.PixelData = pixels.astype("<i2").tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def build_series(folder: Path, *, iop, origin, step_dir, n=7, rows=6, cols=5, spacing_z=2.5, pixel_spacing=(0.8, 0.7),
                 positions=None, shuffle=True, instance_order="ascending", **kwargs) -> list[dict]:
    """Slices whose pixels encode their index k (value 10*k) plus a marker at (row 1, col 3)."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    origin, step_dir = np.asarray(origin, float), np.asarray(step_dir, float)
    if positions is None:
        positions = [origin + k * spacing_z * step_dir for k in range(n)]
    order = list(range(len(positions)))
    names = [f"IMG{random.Random(k).randint(0, 10**8):09d}_{k}.dcm" for k in order]
    if shuffle:
        random.Random(7).shuffle(names)
    slices = []
    for k, pos in enumerate(positions):
        pixels = np.full((rows, cols), 10 * k + 1024, dtype=np.int16)
        pixels[1, 3] = 3000
        instance = k + 1 if instance_order == "ascending" else len(positions) - k
        hand_slice(folder / names[k], position=pos, iop=iop, pixels=pixels, instance=instance, series_uid=series,
                   study_uid=study, frame_uid=frame, pixel_spacing=pixel_spacing, **kwargs)
        slices.append({"k": k, "position": np.asarray(pos, float), "file": folder / names[k]})
    return slices


def check_geometry(volume: Volume, slices: list[dict], iop) -> None:
    """Each file's IPP is the world position of (0, 0, k) for the k holding that file's pixels."""
    row, col = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    np.testing.assert_allclose(volume.direction[:, 0], row, atol=1e-6)
    np.testing.assert_allclose(volume.direction[:, 1], col, atol=1e-6)
    np.testing.assert_allclose(volume.direction[:, 2], np.cross(row, col), atol=1e-6)
    for s in slices:
        hu = 10 * s["k"]
        ks = [k for k in range(volume.shape[0]) if volume.array[k, 0, 0] == hu]
        assert len(ks) == 1
        np.testing.assert_allclose(volume.grid.index_to_world([0, 0, ks[0]]), s["position"], atol=1e-4)
        assert volume.array[ks[0], 1, 3] == 3000 - 1024
    # neighbouring slices are one spacing apart along the third direction column
    p0 = volume.grid.index_to_world([0, 0, 0])
    p1 = volume.grid.index_to_world([0, 0, 1])
    assert np.linalg.norm(p1 - p0) == pytest.approx(volume.spacing[2])


# ---------------------------------------------------------------------------------------------------------
# writer round trips
# ---------------------------------------------------------------------------------------------------------

def _ct_volume(direction=None, origin=(-12.5, 30.0, -100.25), spacing=(0.9, 1.1, 2.5), shape=(6, 7, 8), seed=0):
    rng = np.random.default_rng(seed)
    array = rng.integers(-1024, 2500, size=shape).astype(np.int16)
    return Volume(array, spacing=spacing, origin=origin, direction=direction, quantity="ct", unit="HU",
                  metadata={"StudyInstanceUID": "1.2.3.4.5", "PatientPosition": "FFS"})


def test_writer_round_trip_axial_matches_sitk(tmp_path):
    vol = _ct_volume()
    paths = write_dicom_ct_series(vol, tmp_path / "ct")
    assert len(paths) == vol.shape[0] and all(p.exists() for p in paths)
    back = read_dicom_ct_series(tmp_path / "ct")
    assert back.quantity == "ct" and back.unit == "HU"
    assert back.array.dtype == np.int16
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.grid == vol.grid
    assert back.metadata["StudyInstanceUID"] == "1.2.3.4.5"  # taken from the volume's metadata
    assert back.metadata["PatientPosition"] == "FFS"
    assert back.metadata["rescale_intercept"] == -1024.0
    assert_matches_sitk(back, sitk_series(tmp_path / "ct"))
    ds = pydicom.dcmread(str(paths[0]))
    assert ds.SOPClassUID == CT_STORAGE and ds.Modality == "CT"
    assert ds.PatientName == "Anonymous"
    assert float(ds.SliceLocation) == pytest.approx(vol.origin[2])


def test_writer_round_trip_oblique(tmp_path, oblique_direction):
    vol = _ct_volume(direction=oblique_direction)
    write_dicom_ct_series(vol, tmp_path / "ct")
    back = read_dicom_ct_series(tmp_path / "ct")
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.grid.mismatch(vol.grid) is None
    assert_matches_sitk(back, sitk_series(tmp_path / "ct"))


def test_writer_left_handed_direction_reads_back_reversed(tmp_path):
    direction = np.diag([1.0, 1.0, -1.0])  # slices stepping towards the feet
    vol = _ct_volume(direction=direction)
    write_dicom_ct_series(vol, tmp_path / "ct")
    back = read_dicom_ct_series(tmp_path / "ct")
    np.testing.assert_array_equal(back.array, vol.array[::-1])
    np.testing.assert_allclose(back.direction, np.eye(3), atol=1e-9)
    corners = np.array([[0, 0, 0], [7, 6, 5], [3, 2, 1]], float)
    flipped = corners.copy()
    flipped[:, 2] = vol.shape[0] - 1 - corners[:, 2]
    np.testing.assert_allclose(back.grid.index_to_world(flipped), vol.grid.index_to_world(corners), atol=1e-4)


def test_writer_float_values_use_a_slope(tmp_path):
    vol = _ct_volume().with_array(np.linspace(-1000.3, 3000.7, 6 * 7 * 8).reshape(6, 7, 8))
    write_dicom_ct_series(vol, tmp_path / "ct")
    back = read_dicom_ct_series(tmp_path / "ct")
    assert back.array.dtype == np.float32
    slope = (3000.7 + 1000.3) / 65000.0
    np.testing.assert_allclose(back.array, vol.array, atol=slope)


def test_writer_does_not_modify_input_and_refuses_bad_input(tmp_path):
    vol = _ct_volume()
    before = vol.array.copy()
    write_dicom_ct_series(vol, tmp_path / "ct")
    np.testing.assert_array_equal(vol.array, before)
    with pytest.raises(InputFormatError, match="already exists"):
        write_dicom_ct_series(vol, tmp_path / "ct")
    write_dicom_ct_series(vol, tmp_path / "ct", overwrite=True)
    dose = Volume(np.zeros((2, 3, 4)), quantity="dose", unit="Gy")
    with pytest.raises(UnitError, match="HU"):
        write_dicom_ct_series(dose, tmp_path / "dose")
    nan = vol.with_array(np.where(vol.array > 0, np.nan, vol.array.astype(float)))
    with pytest.raises(InputFormatError, match="NaN"):
        write_dicom_ct_series(nan, tmp_path / "nan")


def test_zip_and_single_file_inputs(tmp_path):
    vol = _ct_volume()
    paths = write_dicom_ct_series(vol, tmp_path / "ct")
    zpath = tmp_path / "ct.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for p in paths[::-1]:
            z.write(p, f"nested/dir/{p.name}")
        z.writestr("nested/README.txt", "not dicom")
    from_zip = read_dicom_ct_series(zpath)
    np.testing.assert_array_equal(from_zip.array, vol.array)
    assert from_zip.grid == vol.grid
    assert from_zip.metadata["ignored_files"] == 1
    from_file = read_dicom_ct_series(paths[3])
    assert from_file.grid == vol.grid
    assert read_dicom(zpath).grid == vol.grid


# ---------------------------------------------------------------------------------------------------------
# hand-built series: orientation and order
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["hfs", "ffs_siemens", "ffs_ge", "descending_instances", "sagittal"])
def test_hand_built_series_geometry(tmp_path, case):
    iops = {"hfs": [1, 0, 0, 0, 1, 0], "ffs_siemens": [-1, 0, 0, 0, 1, 0], "ffs_ge": [1, 0, 0, 0, 1, 0],
            "descending_instances": [1, 0, 0, 0, 1, 0], "sagittal": [0, 1, 0, 0, 0, -1]}
    iop = iops[case]
    normal = np.cross(iop[:3], iop[3:])
    # feet-first cases write the positions against the slice normal (ffs_ge: descending z like the real GE CT)
    step = -normal if case.startswith("ffs") else normal
    slices = build_series(tmp_path / case, iop=iop, origin=(-20.0, -30.0, 50.0), step_dir=step,
                          patient_position="FFS" if case.startswith("ffs") else "HFS",
                          instance_order="descending" if case == "descending_instances" else "ascending")
    vol = read_dicom_ct_series(tmp_path / case)
    assert vol.shape == (7, 6, 5)
    assert vol.spacing == pytest.approx((0.7, 0.8, 2.5))
    check_geometry(vol, slices, iop)
    assert np.linalg.det(vol.direction) == pytest.approx(1.0)
    assert_matches_sitk(vol, sitk_series(tmp_path / case))
    assert vol.metadata["PatientPosition"] == ("FFS" if case.startswith("ffs") else "HFS")
    assert vol.metadata["SeriesDateTime"] == "2024-01-05T10:15:00"
    assert vol.metadata["AcquisitionDateTime"] == "2024-01-05T10:16:23.500000"
    assert vol.metadata["KVP"] == 120.0 and vol.metadata["Manufacturer"] == "HandBuilt"


def test_hand_built_oblique_shuffled(tmp_path, oblique_direction):
    iop = list(oblique_direction[:, 0]) + list(oblique_direction[:, 1])
    slices = build_series(tmp_path / "obl", iop=iop, origin=(5.0, -7.0, 11.0), step_dir=-oblique_direction[:, 2],
                          n=9, spacing_z=3.0)
    vol = read_dicom_ct_series(tmp_path / "obl")
    check_geometry(vol, slices, iop)
    np.testing.assert_allclose(vol.direction, oblique_direction, atol=1e-6)
    assert_matches_sitk(vol, sitk_series(tmp_path / "obl"))


def test_per_slice_rescale_and_padding(tmp_path):
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(3):
        pixels = np.full((4, 4), 100, dtype=np.int16)
        pixels[0, 0] = -2000
        hand_slice(tmp_path / f"s{k}.dcm", position=(0, 0, 2.0 * k), iop=[1, 0, 0, 0, 1, 0], pixels=pixels,
                   instance=k + 1, series_uid=series, study_uid=study, frame_uid=frame,
                   slope=2.0 if k == 1 else 1.0, intercept=-1000.0 if k == 1 else -1024.0,
                   extra={"PixelPaddingValue": -2000})
    vol = read_dicom_ct_series(tmp_path)
    assert vol.array[0, 1, 1] == 100 - 1024 and vol.array[1, 1, 1] == 2 * 100 - 1000
    assert vol.metadata["padding_voxels"] == 3
    assert vol.array[0, 0, 0] == -2000 - 1024
    padded = read_dicom_ct_series(tmp_path, padding_value_hu=-1000)
    assert np.all(padded.array[:, 0, 0] == -1000)
    assert padded.array[1, 1, 1] == 2 * 100 - 1000


# ---------------------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------------------

def test_empty_folder_and_missing_path(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hello")
    with pytest.raises(InputFormatError, match="No DICOM files"):
        read_dicom_ct_series(tmp_path / "empty")
    with pytest.raises(InputFormatError, match="does not exist"):
        read_dicom_ct_series(tmp_path / "nowhere")


def test_mixed_series_listed_and_selectable(tmp_path):
    a = build_series(tmp_path / "mix", iop=[1, 0, 0, 0, 1, 0], origin=(0, 0, 0), step_dir=(0, 0, 1), n=3)
    build_series(tmp_path / "mix" / "b", iop=[1, 0, 0, 0, 1, 0], origin=(0, 0, 0), step_dir=(0, 0, 1), n=4)
    uid_a = pydicom.dcmread(str(a[0]["file"])).SeriesInstanceUID
    with pytest.raises(InputFormatError, match="2 CT series") as info:
        read_dicom_ct_series(tmp_path / "mix")
    assert uid_a in str(info.value)
    assert len(list_dicom_series(tmp_path / "mix")) == 2
    vol = read_dicom_ct_series(tmp_path / "mix", series_uid=uid_a)
    assert vol.shape[0] == 3
    with pytest.raises(InputFormatError, match="not in"):
        read_dicom_ct_series(tmp_path / "mix", series_uid="1.2.3")


def test_missing_image_position(tmp_path):
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(3):
        hand_slice(tmp_path / f"s{k}.dcm", position=(0, 0, k), iop=[1, 0, 0, 0, 1, 0],
                   pixels=np.zeros((4, 4), np.int16), instance=k + 1, series_uid=series, study_uid=study,
                   frame_uid=frame, with_ipp=k != 1)
    with pytest.raises(MissingMetadataError, match="ImagePositionPatient"):
        read_dicom_ct_series(tmp_path)


def test_non_uniform_spacing_and_tolerance(tmp_path):
    positions = [(0, 0, z) for z in (0.0, 2.5, 5.0, 10.0, 12.5)]  # one slice missing at 7.5
    build_series(tmp_path / "gap", iop=[1, 0, 0, 0, 1, 0], origin=(0, 0, 0), step_dir=(0, 0, 1), positions=positions)
    with pytest.raises(InputFormatError, match="uniform slice spacing") as info:
        read_dicom_ct_series(tmp_path / "gap")
    assert "missing slice" in str(info.value)
    positions = [(0, 0, z) for z in (0.0, 2.5, 5.02, 7.5, 10.0)]
    build_series(tmp_path / "jitter", iop=[1, 0, 0, 0, 1, 0], origin=(0, 0, 0), step_dir=(0, 0, 1),
                 positions=positions)
    with pytest.raises(InputFormatError, match="uniform"):
        read_dicom_ct_series(tmp_path / "jitter")
    vol = read_dicom_ct_series(tmp_path / "jitter", spacing_tolerance_mm=0.05)
    assert vol.spacing[2] == pytest.approx(2.5)
    assert vol.metadata["notes"]


def test_duplicate_positions_and_gantry_tilt(tmp_path):
    positions = [(0, 0, z) for z in (0.0, 2.5, 2.5, 5.0)]
    build_series(tmp_path / "dup", iop=[1, 0, 0, 0, 1, 0], origin=(0, 0, 0), step_dir=(0, 0, 1), positions=positions)
    with pytest.raises(InputFormatError, match="same position"):
        read_dicom_ct_series(tmp_path / "dup")
    positions = [(0, 0.5 * k, 2.5 * k) for k in range(5)]  # sheared: ~11 degrees of tilt
    build_series(tmp_path / "tilt", iop=[1, 0, 0, 0, 1, 0], origin=(0, 0, 0), step_dir=(0, 0, 1),
                 positions=positions)
    with pytest.raises(InputFormatError, match="gantry tilt"):
        read_dicom_ct_series(tmp_path / "tilt")


def test_not_a_ct_series(tmp_path):
    build_series(tmp_path / "mr", iop=[1, 0, 0, 0, 1, 0], origin=(0, 0, 0), step_dir=(0, 0, 1), n=2,
                 extra={"Modality": "MR", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.4"})
    with pytest.raises(InputFormatError, match="No CT series"):
        read_dicom_ct_series(tmp_path / "mr")
    with pytest.raises(InputFormatError, match="MR"):
        read_dicom(tmp_path / "mr")


# ---------------------------------------------------------------------------------------------------------
# date-time parsing
# ---------------------------------------------------------------------------------------------------------

def test_datetime_parsing():
    import datetime as dt
    assert parse_tm("1015") == dt.time(10, 15)
    assert parse_tm("101530.25") == dt.time(10, 15, 30, 250000)
    assert parse_tm("10:15:30") == dt.time(10, 15, 30)
    assert parse_tm("") is None and parse_tm("xx") is None
    assert parse_dt("20240105101530.5+0100") == (dt.datetime(2024, 1, 5, 10, 15, 30, 500000), "+0100")
    assert parse_dt("202401") == (dt.datetime(2024, 1, 1), None)
    assert combine_date_time("20240105", "") is None
    assert combine_date_time("2024.01.05", "0930") == dt.datetime(2024, 1, 5, 9, 30)


def test_grid_type_is_used(tmp_path):
    vol = _ct_volume()
    write_dicom_ct_series(vol, tmp_path)
    assert isinstance(read_dicom(tmp_path).grid, Grid)
