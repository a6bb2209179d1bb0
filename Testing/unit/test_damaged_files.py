"""Damaged files fail cleanly: every reader raises InputFormatError naming the file and the problem.

Each test writes a good file with the project's writers, then truncates, corrupts or edits it. Headers that
declare absurd sizes must be refused before any voxel memory is allocated (io/read_guard.py).
"""
from __future__ import annotations

import gzip
import re
import struct
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.io import read_guard, read_volume, write_volume
from VoxelDosimetryLib.io.dicom_ct import write_dicom_ct_series
from VoxelDosimetryLib.volume.volume import Volume

ALL_EXTENSIONS = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mhd", ".mha", ".h33", ".hdr", ".zip", ".dcm")


def _volume() -> Volume:
    return Volume(np.arange(60, dtype=np.float32).reshape(3, 4, 5), spacing=(1.0, 2.0, 3.0), quantity="dose",
                  unit="Gy")


def _write(path: Path, **options) -> Path:
    return write_volume(_volume(), path, **options)


def _fails(path: Path, *problems: str) -> str:
    """Read `path`; assert an InputFormatError whose message names the file and matches every pattern."""
    with pytest.raises(InputFormatError) as info:
        read_volume(path)
    message = str(info.value)
    assert path.name in message, message
    for pattern in problems:
        assert re.search(pattern, message), f"{pattern!r} not in: {message}"
    return message


def _truncate(path: Path, keep: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:keep])


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="latin-1")
    assert re.search(old, text), f"{old!r} not in {path.name}"
    path.write_text(re.sub(old, new, text, count=1), encoding="latin-1")


def _nrrd_header(sizes: str = "2 2 2", directions: str = "(1,0,0) (0,1,0) (0,0,1)", origin: str = "(0,0,0)",
                 encoding: str = "raw") -> bytes:
    return (f"NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\nsizes: {sizes}\n"
            f"space directions: {directions}\nspace origin: {origin}\nendian: little\nencoding: {encoding}\n\n"
            ).encode()


# ------------------------------------------------------------------------------------------ any format

@pytest.mark.parametrize("ext", ALL_EXTENSIONS)
def test_empty_file(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"empty{ext}"
    path.write_bytes(b"")
    _fails(path, r"empty \(0 bytes\)")


@pytest.mark.parametrize("ext", ALL_EXTENSIONS)
def test_random_bytes_with_a_supported_extension(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"noise{ext}"
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    _fails(path, r"not|damaged|cannot|Cannot")


def test_unexpected_third_party_error_is_wrapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "v.mha")

    def broken(*args, **kwargs):
        raise OverflowError("value too large")

    monkeypatch.setattr(sitk, "ReadImage", broken)
    message = _fails(path, "OverflowError: value too large", "damaged")
    assert message.startswith("Cannot read MetaImage")


def test_voxel_cap_is_documented_and_overridable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "v.nrrd")
    assert read_guard.MAX_VOXELS == 2 ** 31
    monkeypatch.setenv(read_guard.MAX_VOXELS_ENV, "59")
    _fails(path, "5 x 4 x 3 = 60 voxels", "limit of 59", read_guard.MAX_VOXELS_ENV)
    monkeypatch.setenv(read_guard.MAX_VOXELS_ENV, "60")
    assert read_volume(path).shape == (3, 4, 5)
    monkeypatch.delenv(read_guard.MAX_VOXELS_ENV)
    monkeypatch.setattr(read_guard, "MAX_VOXELS", 10)
    _fails(path, "limit of 10")


# ------------------------------------------------------------------------------------------------ NRRD

def test_nrrd_truncated_gzip_data(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.nrrd")
    _truncate(path, -30)
    _fails(path, "end early|truncated")


def test_nrrd_corrupt_gzip_data(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.nrrd")
    data = bytearray(path.read_bytes())
    start = data.index(b"\n\n") + 2
    data[start + 12:start + 40] = bytes(range(100, 128))
    path.write_bytes(bytes(data))
    _fails(path, "damaged|corrupt")


def test_nrrd_truncated_raw_data(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.nrrd", compress=False)
    _truncate(path, -10)
    _fails(path, "declares 240 bytes", "only 230 bytes follow", "truncated")


def test_nrrd_raw_data_longer_than_declared(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.nrrd", compress=False)
    path.write_bytes(path.read_bytes() + b"\0" * 16)
    _fails(path, "256 bytes of raw voxel data", "need 240")


def test_nhdr_missing_data_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.nhdr")
    for data in tmp_path.glob("v.raw*"):
        data.unlink()
    _fails(path, r"data file .*v\.raw\.gz.* is missing")


def test_nhdr_short_data_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.nhdr", compress=False)
    (tmp_path / "v.raw").write_bytes(b"\0" * 10)
    _fails(path, "only 10 bytes follow in v.raw", "truncated")


def test_nrrd_absurd_size_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.nrrd"
    path.write_bytes(_nrrd_header(sizes="100000 100000 100000") + b"\0" * 64)
    _fails(path, "100000 x 100000 x 100000", "reader limit")


def test_nrrd_size_larger_than_gzip_data_can_hold(tmp_path: Path) -> None:
    path = tmp_path / "bomb_header.nrrd"
    path.write_bytes(_nrrd_header(sizes="1000 1000 1000", encoding="gzip") + gzip.compress(b"\0" * 100))
    _fails(path, "cannot hold", "1032")


def test_nrrd_gzip_data_expanding_beyond_the_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.nrrd"
    path.write_bytes(_nrrd_header(encoding="gzip") + gzip.compress(b"\0" * 5_000_000))
    _fails(path, "expand to more than the 32 bytes")


@pytest.mark.parametrize("field, problem", [
    ({"sizes": "-2 2 2"}, "at least one voxel"),
    ({"sizes": "0 2 2"}, "at least one voxel"),
    ({"directions": "(0,0,0) (0,1,0) (0,0,1)"}, "zero length"),
    ({"directions": "(nan,0,0) (0,1,0) (0,0,1)"}, "non-finite"),
    ({"directions": "(1,0,0) (1,0,0) (0,0,1)"}, "singular"),
    ({"origin": "(inf,0,0)"}, "space origin"),
])
def test_nrrd_bad_geometry(tmp_path: Path, field: dict, problem: str) -> None:
    path = tmp_path / "bad.nrrd"
    path.write_bytes(_nrrd_header(**field) + b"\0" * 32)
    _fails(path, problem)


# ----------------------------------------------------------------------------------------------- NIfTI

def _nifti_fields(path: Path, **fields) -> None:
    """Overwrite NIfTI-1 header fields (little endian, as SimpleITK writes it)."""
    offsets = {"dim": (40, "<8h"), "pixdim": (76, "<8f"), "forms": (252, "<2h"), "qoffset": (268, "<3f"),
               "srow": (280, "<12f")}
    data = bytearray(path.read_bytes())
    for name, values in fields.items():
        offset, fmt = offsets[name]
        struct.pack_into(fmt, data, offset, *values)
    path.write_bytes(bytes(data))


def test_nifti_truncated(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.nii")
    _truncate(path, -40)
    _fails(path, "declares 240 bytes", "only 200 bytes follow", "truncated")


def test_nifti_gz_truncated(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.nii.gz")
    _truncate(path, len(path.read_bytes()) * 2 // 3)
    _fails(path, "truncated|ended|end early")


def test_nifti_gz_corrupt(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.nii.gz")
    data = bytearray(path.read_bytes())
    data[30:70] = bytes(range(40))
    path.write_bytes(bytes(data))
    _fails(path, "damaged|corrupt")


def test_nifti_gz_that_is_not_gzip(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.nii")
    target = tmp_path / "w.nii.gz"
    target.write_bytes(path.read_bytes())
    _fails(path.with_name("w.nii.gz"), "gzip|damaged")


@pytest.mark.parametrize("fields, problem", [
    ({"dim": (3, 30000, 30000, 30000, 1, 1, 1, 1)}, "30000 x 30000 x 30000 = .* reader limit"),
    ({"dim": (3, -5, 4, 3, 1, 1, 1, 1)}, "at least one voxel"),
    ({"dim": (9, 5, 4, 3, 1, 1, 1, 1)}, r"dim\[0\] must be 1..7"),
    ({"pixdim": (1, float("nan"), 2, 3, 1, 1, 1, 1), "forms": (0, 0)}, r"pixdim.*finite and non-zero"),
    ({"pixdim": (1, 0, 2, 3, 1, 1, 1, 1)}, r"pixdim.*finite and non-zero"),
    ({"qoffset": (float("nan"), 0, 0)}, "qform"),
    ({"srow": (1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0)}, "singular"),
    ({"srow": (1, 0, 0, float("inf"), 0, 2, 0, 0, 0, 0, 3, 0)}, "origin .* not finite"),
])
def test_nifti_bad_header(tmp_path: Path, fields: dict, problem: str) -> None:
    path = _write(tmp_path / "v.nii")
    _nifti_fields(path, **fields)
    _fails(path, problem)


# ------------------------------------------------------------------------------------------- MetaImage

def test_mhd_missing_raw(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.mhd")
    (tmp_path / "v.raw").unlink()
    _fails(path, r"data file .*v\.raw named by the header is missing")


def test_mhd_short_raw(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.mhd")
    _truncate(tmp_path / "v.raw", 10)
    _fails(path, "declares 240 bytes", "only 10 bytes follow in v.raw")


def test_mha_truncated(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.mha")
    _truncate(path, -100)
    _fails(path, "only 140 bytes follow after the header")


def test_mha_compressed_data_corrupt(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.mha", compress=True)
    data = bytearray(path.read_bytes())
    start = data.index(b"ElementDataFile = LOCAL\n") + len(b"ElementDataFile = LOCAL\n")
    data[start + 4:start + 30] = bytes(range(200, 226))
    path.write_bytes(bytes(data))
    _fails(path, "damaged|corrupt|truncated")


def test_mha_compressed_data_truncated(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.mha", compress=True)
    _truncate(path, -20)
    _fails(path, "end early|truncated")


def test_mhd_header_garbage(tmp_path: Path) -> None:
    path = tmp_path / "v.mhd"
    path.write_bytes(b"ObjectType = Image\n\x00\xff\x13garbage without fields\n" * 5)
    _fails(path, "not a MetaImage header", "ElementDataFile")


@pytest.mark.parametrize("old, new, problem", [
    (r"DimSize = 5 4 3", "DimSize = 100000 100000 100000", "100000 x 100000 x 100000 = .* reader limit"),
    (r"DimSize = 5 4 3", "DimSize = -5 4 3", "at least one voxel"),
    (r"DimSize = 5 4 3", "DimSize = 5 4", "does not give NDims = 3 sizes"),
    (r"ElementSpacing = .*", "ElementSpacing = 0 2 3", "spacing .* finite and positive"),
    (r"ElementSpacing = .*", "ElementSpacing = 1 nan 3", "spacing .* finite and positive"),
    (r"Offset = .*", "Offset = nan 0 0", "origin .* not finite"),
    (r"TransformMatrix = .*", "TransformMatrix = 1 0 0 1 0 0 0 0 1", "singular"),
    (r"ElementSpacing = .*", "ElementSpacing = one two three", "should hold 3 numbers"),
])
def test_mhd_bad_header(tmp_path: Path, old: str, new: str, problem: str) -> None:
    path = _write(tmp_path / "v.mhd")
    _edit(path, old, new)
    _fails(path, problem)


# ------------------------------------------------------------------------------------------- Interfile

def test_interfile_missing_data_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.h33")
    (tmp_path / "v.i33").unlink()
    _fails(path, r"'name of data file := v\.i33' was not found")


def test_interfile_short_data_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.h33")
    _truncate(tmp_path / "v.i33", 10)
    _fails(path, "holds 10 bytes", "describes 240")


@pytest.mark.parametrize("old, new, problem", [
    (r"matrix size \[1\] := 5", "matrix size [1] := five", "'matrix size \\[1\\]' should be a number"),
    (r"matrix size \[1\] := 5", "matrix size [1] := -5", "empty axis"),
    (r"scaling factor \(mm/pixel\) \[1\] := .*", "scaling factor (mm/pixel) [1] := nan", "should be a finite number"),
    (r"scaling factor \(mm/pixel\) \[1\] := .*", "scaling factor (mm/pixel) [1] := 0", "finite and positive"),
    (r"data offset in bytes := 0", "data offset in bytes := -5", "offset -5 bytes is negative"),
    (r"number of bytes per pixel := 4", "number of bytes per pixel := 3", "needs 4 bytes per pixel"),
])
def test_interfile_bad_keys(tmp_path: Path, old: str, new: str, problem: str) -> None:
    path = _write(tmp_path / "v.h33")
    _edit(path, old, new)
    _fails(path, problem)


def test_interfile_absurd_matrix_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.h33")
    for key in (r"matrix size \[1\] := 5", r"matrix size \[2\] := 4", r"matrix size \[3\] := 3",
                r"number of slices := 3", r"total number of images := 3"):
        _edit(path, key, key.split(":=")[0].replace("\\", "") + ":= 100000")
    _fails(path, "100000 x 100000 x 100000 = .* reader limit")


# ----------------------------------------------------------------------------------------------- DICOM

def _ct_series(folder: Path, n: int = 6) -> list[Path]:
    volume = Volume(np.zeros((n, 8, 9), np.int16), spacing=(1.0, 1.0, 2.0), quantity="ct")
    write_dicom_ct_series(volume, folder)
    return sorted(folder.glob("*.dcm"))


def _zip(files: list[Path], path: Path) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for f in files:
            archive.write(f, f.name)
    return path


def _edit_dicom(path: Path, **tags) -> None:
    ds = pydicom.dcmread(path)
    for keyword, value in tags.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(path)


def test_dicom_missing_slice(tmp_path: Path) -> None:
    files = _ct_series(tmp_path / "ct")
    files[2].unlink()
    _fails(tmp_path / "ct", "uniform slice spacing", "missing slice", files[1].name)


def test_dicom_zip_with_missing_slice(tmp_path: Path) -> None:
    files = _ct_series(tmp_path / "ct")
    archive = _zip(files[:2] + files[3:], tmp_path / "ct.zip")
    _fails(archive, "missing slice")


def test_dicom_inconsistent_slice_spacing(tmp_path: Path) -> None:
    files = _ct_series(tmp_path / "ct")
    position = list(pydicom.dcmread(files[2]).ImagePositionPatient)
    _edit_dicom(files[2], ImagePositionPatient=[position[0], position[1], float(position[2]) + 0.7])
    _fails(tmp_path / "ct", "does not have uniform slice spacing", files[2].name)


def test_dicom_mixed_series(tmp_path: Path) -> None:
    _ct_series(tmp_path / "ct")
    write_dicom_ct_series(Volume(np.zeros((3, 8, 9), np.int16), quantity="ct"), tmp_path / "ct" / "other",
                          file_prefix="OT")
    _fails(tmp_path / "ct", "holds 2 image volume .* series", "series_uid")


def test_dicom_slice_without_pixel_data(tmp_path: Path) -> None:
    files = _ct_series(tmp_path / "ct")
    _edit_dicom(files[1], PixelData=None)
    message = _fails(tmp_path / "ct", "no pixel data")
    assert files[1].name in message and "decoder" not in message


def test_dicom_truncated_pixel_data(tmp_path: Path) -> None:
    files = _ct_series(tmp_path / "ct")
    _truncate(files[3], -40)
    _fails(tmp_path / "ct", files[3].name, "pixel data hold 104 bytes", "truncated")


@pytest.mark.parametrize("keep", [0, 100, 300, 500, 700])
def test_dicom_truncated_header_of_last_slice(tmp_path: Path, keep: int) -> None:
    """A cut-off last slice must not silently shorten the volume."""
    files = _ct_series(tmp_path / "ct")
    _truncate(files[-1], keep)
    _fails(tmp_path / "ct", "1 DICOM file.* cannot be read", files[-1].name, "truncated")


def test_dicom_truncated_file_given_alone(tmp_path: Path) -> None:
    files = _ct_series(tmp_path / "ct")
    _truncate(files[0], 300)
    _fails(files[0], "damaged DICOM file|cannot be read")


def test_dicom_non_dicom_files_only(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "readme.txt").write_text("not an image")
    (folder / "scan.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    _fails(folder, "No DICOM files found", "2 file.* not DICOM", "readme.txt")


def test_dicom_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "nothing").mkdir()
    _fails(tmp_path / "nothing", "No DICOM files found", "no files")


def test_dicom_empty_zip(tmp_path: Path) -> None:
    path = tmp_path / "empty_archive.zip"
    zipfile.ZipFile(path, "w").close()
    _fails(path, "No DICOM files found")


def test_zip_that_is_not_a_zip(tmp_path: Path) -> None:
    files = _ct_series(tmp_path / "ct")
    archive = _zip(files, tmp_path / "ct.zip")
    _truncate(archive, len(archive.read_bytes()) // 2)
    _fails(archive, "not a readable zip archive")


def test_dicom_zip_with_corrupt_member(tmp_path: Path) -> None:
    files = _ct_series(tmp_path / "ct")
    archive = _zip(files, tmp_path / "ct.zip")
    data = bytearray(archive.read_bytes())
    data[400:420] = bytes(range(20))
    archive.write_bytes(bytes(data))
    _fails(archive, "damaged", "CT0001.dcm")


def test_dicom_absurd_rows_and_columns(tmp_path: Path) -> None:
    files = _ct_series(tmp_path / "ct")
    for f in files:
        _edit_dicom(f, Rows=65535, Columns=65535)
    _fails(tmp_path / "ct", "6 x 65535 x 65535", "reader limit")


def test_dicom_lying_rows_within_the_cap(tmp_path: Path) -> None:
    """Rows x Columns larger than the stored pixels are caught on the first slice, before the volume is allocated."""
    files = _ct_series(tmp_path / "ct")
    for f in files:
        _edit_dicom(f, Rows=4000, Columns=4000)
    _fails(tmp_path / "ct", "pixel data hold 144 bytes", "32000000", "truncated or damaged")


def test_dicom_zero_pixel_spacing(tmp_path: Path) -> None:
    files = _ct_series(tmp_path / "ct")
    for f in files:
        _edit_dicom(f, PixelSpacing=[0, 1])
    _fails(tmp_path / "ct", "unusable geometry", "spacing must be positive")
