"""Volume file I/O: every writer round-trips voxels, dtype, LPS geometry, quantity, unit and metadata."""
from __future__ import annotations

import gzip
import json
import struct
import sys
import types
from pathlib import Path

import nrrd
import numpy as np
import pytest
import SimpleITK as sitk

from VoxelDosimetryLib.errors import InputFormatError, UnitError
from VoxelDosimetryLib.io import SUPPORTED_EXTENSIONS, read_volume, write_volume
from VoxelDosimetryLib.io.interfile_io import axis_directions_matrix, read_interfile
from VoxelDosimetryLib.io.metaimage_io import gate_quantity_from_name
from VoxelDosimetryLib.io.sidecar import sidecar_path
from VoxelDosimetryLib.volume.volume import Volume

FILE_NAMES = ["v.nrrd", "v.nhdr", "v.nii", "v.nii.gz", "v.mhd", "v.mha", "v.h33", "v.hdr"]
ORIGIN = (-123.4567891, 45.678912345, -300.123456789)
SPACING = (0.7123456789, 1.3, 2.123456789)
SHAPE = (5, 7, 9)  # (z, y, x): odd, all different

# dtype -> (quantity, unit)
DTYPES = {
    "uint8": ("labels", "label"), "int8": ("ct", "HU"), "int16": ("ct", "HU"), "uint16": ("counts", "counts"),
    "int32": ("ct", "HU"), "int64": ("labels", "label"), "uint32": ("labels", "label"), "uint64": ("labels", "label"),
    "float32": ("dose", "mGy"), "float64": ("activity_concentration", "MBq/mL"), "bool": ("mask", "label"),
}


def _values(dtype: str) -> np.ndarray:
    rng = np.random.default_rng(7)
    n = int(np.prod(SHAPE))
    if dtype == "bool":
        return (rng.random(SHAPE) > 0.5)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is not None:
        vals = rng.integers(info.min, info.max, size=n, dtype=dtype, endpoint=True)
        vals[:2] = [info.min, info.max]
        return vals.reshape(SHAPE)
    vals = rng.normal(0.0, 1e3, n).astype(dtype)
    vals[:3] = [np.finfo(dtype).max, np.finfo(dtype).tiny, -0.0]
    return vals.reshape(SHAPE)


def _volume(dtype: str, direction: np.ndarray) -> Volume:
    quantity, unit = DTYPES[dtype]
    meta = {"patient": "Ünïcode test", "nested": {"times_h": [4.0, 24.0]}, "note": "a:=b\nline 2"}
    return Volume(_values(dtype), spacing=SPACING, origin=ORIGIN, direction=direction, quantity=quantity,
                  unit=unit, metadata=meta)


def _assert_same(back: Volume, vol: Volume) -> None:
    assert back.array.dtype == vol.array.dtype
    assert np.array_equal(back.array, vol.array)
    assert back.shape == vol.shape
    assert np.allclose(back.spacing, vol.spacing, atol=1e-6, rtol=0)
    assert np.allclose(back.origin, vol.origin, atol=1e-6, rtol=0)
    assert np.allclose(back.direction, vol.direction, atol=1e-9, rtol=0)
    corners = np.array([[i, j, k] for i in (0, SHAPE[2] - 1) for j in (0, SHAPE[1] - 1) for k in (0, SHAPE[0] - 1)])
    assert np.allclose(back.grid.index_to_world(corners), vol.grid.index_to_world(corners), atol=1e-6, rtol=0)
    assert (back.quantity, back.unit) == (vol.quantity, vol.unit)
    stored = {k: v for k, v in back.metadata.items() if k != "source"}
    assert stored == vol.metadata


@pytest.fixture(params=["rotation", "reflection"])
def direction(request, oblique_direction) -> np.ndarray:
    if request.param == "rotation":
        return oblique_direction
    return oblique_direction @ np.diag([1.0, -1.0, 1.0])  # left-handed grid


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("name", FILE_NAMES)
def test_round_trip_every_writer(tmp_path: Path, name: str, dtype: str, direction: np.ndarray) -> None:
    vol = _volume(dtype, direction)
    array_before = vol.array.copy()
    meta_before = json.dumps(vol.metadata, sort_keys=True)
    written = write_volume(vol, tmp_path / name)
    assert written == tmp_path / name and written.is_file()
    back = read_volume(written)
    _assert_same(back, vol)
    assert back.metadata["source"]["unit_stated"] is True
    # the writer did not touch the volume
    assert np.array_equal(vol.array, array_before) and vol.array.dtype == array_before.dtype
    assert json.dumps(vol.metadata, sort_keys=True) == meta_before


@pytest.mark.parametrize("name", ["u.nrrd", "u.nhdr", "u.mhd", "u.mha"])
def test_uncompressed_options(tmp_path: Path, name: str, oblique_direction: np.ndarray) -> None:
    vol = _volume("float32", oblique_direction)
    path = write_volume(vol, tmp_path / name, compress=False)
    _assert_same(read_volume(path), vol)


def test_big_endian_array_written_natively(tmp_path: Path) -> None:
    vol = Volume(np.arange(60, dtype=">i2").reshape(3, 4, 5), quantity="ct")
    for name in ("b1.nrrd", "b2.nii.gz", "b3.mha", "b4.h33"):
        back = read_volume(write_volume(vol, tmp_path / name))
        assert back.array.dtype == np.dtype("int16") and np.array_equal(back.array, vol.array)


# ------------------------------------------------------------------------------ format specifics

def _nifti_header(path: Path) -> dict:
    raw = gzip.open(path).read(348) if path.name.endswith(".gz") else path.read_bytes()[:348]
    qform, sform = struct.unpack("<2h", raw[252:256])
    srow = np.array(struct.unpack("<12f", raw[280:328]), dtype=float).reshape(3, 4)
    return {"qform_code": qform, "sform_code": sform, "srow": srow}


def test_nifti_sform_is_our_lps_geometry_in_ras(tmp_path: Path, oblique_direction: np.ndarray) -> None:
    """Independent check of the file itself: sform = diag(-1,-1,1) @ LPS affine (float32 precision)."""
    vol = _volume("int16", oblique_direction)
    path = write_volume(vol, tmp_path / "ct.nii.gz")
    header = _nifti_header(path)
    assert header["qform_code"] > 0 and header["sform_code"] > 0
    lps = np.column_stack([vol.direction * np.asarray(vol.spacing)[None, :], np.asarray(vol.origin)])
    ras = np.diag([-1.0, -1.0, 1.0]) @ lps
    assert np.allclose(header["srow"], ras, atol=1e-4, rtol=1e-6)
    # SimpleITK's own reading of the file (without our sidecar) agrees to float32 precision
    image = sitk.ReadImage(str(path))
    corner = image.TransformIndexToPhysicalPoint((SHAPE[2] - 1, SHAPE[1] - 1, SHAPE[0] - 1))
    assert np.allclose(corner, vol.grid.index_to_world([SHAPE[2] - 1, SHAPE[1] - 1, SHAPE[0] - 1]), atol=1e-3)


def test_nifti_without_sidecar_is_unknown_and_float32_geometry(tmp_path: Path, oblique_direction: np.ndarray) -> None:
    vol = _volume("float32", oblique_direction)
    path = write_volume(vol, tmp_path / "d.nii")
    sidecar_path(path).unlink()
    back = read_volume(path)
    assert back.quantity == "unknown" and back.unit == "unknown"
    assert back.metadata["source"]["unit_stated"] is False
    assert any("no quantity or unit" in n for n in back.metadata["source"]["notes"])
    assert np.allclose(back.origin, vol.origin, atol=1e-3) and np.array_equal(back.array, vol.array)


def test_nrrd_header_fields(tmp_path: Path, oblique_direction: np.ndarray) -> None:
    vol = _volume("float64", oblique_direction)
    path = write_volume(vol, tmp_path / "a.nrrd")
    header = nrrd.read_header(str(path))
    assert header["space"] == "left-posterior-superior"
    assert header["encoding"] == "gzip"
    assert list(header["sizes"]) == [SHAPE[2], SHAPE[1], SHAPE[0]]  # x fastest
    assert np.allclose(header["space directions"][0], vol.direction[:, 0] * SPACING[0], atol=1e-12)
    assert header["quantity"] == "activity_concentration" and header["unit"] == "MBq/mL"
    assert json.loads(header["voxeldosimetry_metadata"]) == vol.metadata
    assert not sidecar_path(path).exists()  # NRRD needs no sidecar


def test_nrrd_ras_space_converted_to_lps(tmp_path: Path) -> None:
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    ras_dirs = np.array([[-2.0, 0, 0], [0, 3.0, 0], [0, 0, 4.0]])  # x towards R, y towards A, z towards S
    header = {"space": "right-anterior-superior", "space directions": ras_dirs,
              "space origin": np.array([10.0, 20.0, 30.0]), "kinds": ["domain"] * 3, "quantity": "ct", "unit": "HU"}
    path = tmp_path / "ras.nrrd"
    nrrd.write(str(path), data, header, index_order="C")
    vol = read_volume(path)
    assert np.array_equal(vol.array, data)
    assert vol.spacing == (2.0, 3.0, 4.0)
    assert np.allclose(vol.origin, [-10.0, -20.0, 30.0])
    # voxel (x=3, y=2, z=1): RAS = origin + 3*(-2,0,0) + 2*(0,3,0) + 1*(0,0,4) = (4, 26, 34) -> LPS (-4, -26, 34)
    assert np.allclose(vol.grid.index_to_world([3, 2, 1]), [-4.0, -26.0, 34.0])
    assert any("converted to LPS" in n for n in vol.metadata["source"]["notes"])


def test_nrrd_foreign_fields_and_no_unit(tmp_path: Path) -> None:
    path = tmp_path / "f.nrrd"
    nrrd.write(str(path), np.zeros((2, 3, 4), np.float32),
               {"space": "left-posterior-superior", "space directions": np.eye(3), "space origin": np.zeros(3),
                "intensity_units": "counts per view"}, index_order="C")
    vol = read_volume(path)
    assert vol.quantity == "unknown" and vol.metadata["source"]["unit_stated"] is False
    assert vol.metadata["source"]["nrrd_fields"] == {"intensity_units": "counts per view"}


def test_arguments_override_file_labels(tmp_path: Path) -> None:
    vol = Volume(np.ones((3, 4, 5), np.float32), quantity="dose", unit="Gy")
    for name in ("o1.nrrd", "o2.nii.gz", "o3.mha", "o4.h33"):
        path = write_volume(vol, tmp_path / name)
        back = read_volume(path, quantity="dose_rate")
        assert (back.quantity, back.unit) == ("dose_rate", "Gy/s")
        assert back.metadata["source"]["quantity_from"] == "argument"
        assert any("the sidecar said dose" in n or "the file said dose" in n for n in back.metadata["source"]["notes"])
        assert read_volume(path, unit="mGy").unit == "mGy" and read_volume(path, unit="mGy").quantity == "dose"
        with pytest.raises(UnitError, match="does not fit"):
            read_volume(path, quantity="ct", unit="Gy")
        with pytest.raises(UnitError, match="Unknown quantity"):
            read_volume(path, quantity="dosis")


def test_unknown_volume_stays_unstated(tmp_path: Path) -> None:
    vol = Volume(np.zeros((2, 3, 4), np.float32))  # quantity 'unknown'
    for name in ("n1.nrrd", "n2.nii.gz", "n3.mhd", "n4.h33"):
        back = read_volume(write_volume(vol, tmp_path / name))
        assert (back.quantity, back.unit) == ("unknown", "unknown")
        assert back.metadata["source"]["unit_stated"] is False and back.metadata["source"]["quantity_from"] == "none"


def test_quantity_without_unit_gets_canonical_unit_noted(tmp_path: Path) -> None:
    image = sitk.GetImageFromArray(np.zeros((2, 3, 4), np.float32))
    sitk.WriteImage(image, str(tmp_path / "q.nii"))
    (tmp_path / "q.json").write_text('{"quantity": "dose_rate"}')
    back = read_volume(tmp_path / "q.nii")
    assert (back.quantity, back.unit) == ("dose_rate", "Gy/s")
    assert back.metadata["source"]["unit_stated"] is False
    assert any("canonical unit" in n for n in back.metadata["source"]["notes"])


# ----------------------------------------------------------------------------------------- sidecar

def test_sidecar_naming_and_content(tmp_path: Path) -> None:
    assert sidecar_path(tmp_path / "ct.nii.gz") == tmp_path / "ct.json"
    assert sidecar_path(tmp_path / "run_dose.mhd") == tmp_path / "run_dose.json"
    assert sidecar_path(tmp_path / "p.h33") == tmp_path / "p.json"
    vol = Volume(np.zeros((2, 2, 2), np.float32), quantity="dose", metadata={"k": 1})
    write_volume(vol, tmp_path / "ct.nii.gz")
    content = json.loads((tmp_path / "ct.json").read_text())
    assert content["image"] == "ct.nii.gz" and content["quantity"] == "dose" and content["unit"] == "Gy"
    assert content["metadata"] == {"k": 1} and content["grid"]["shape_zyx"] == [2, 2, 2]


def test_sidecar_collision_is_refused(tmp_path: Path) -> None:
    vol = Volume(np.zeros((2, 2, 2), np.float32), quantity="dose")
    write_volume(vol, tmp_path / "ct.nii.gz")
    with pytest.raises(InputFormatError, match="already describes ct.nii.gz"):
        write_volume(vol, tmp_path / "ct.mha")
    assert not (tmp_path / "ct.mha").exists()
    write_volume(vol, tmp_path / "ct.nii.gz")  # rewriting the same image is fine
    (tmp_path / "bids.json").write_text('{"RepetitionTime": 2.0}')
    with pytest.raises(InputFormatError, match="not a VoxelDosimetry sidecar"):
        write_volume(vol, tmp_path / "bids.nii")


def test_foreign_and_hand_written_sidecars(tmp_path: Path) -> None:
    image = sitk.GetImageFromArray(np.zeros((2, 3, 4), np.float32))
    sitk.WriteImage(image, str(tmp_path / "a.nii.gz"))
    (tmp_path / "a.json").write_text('{"RepetitionTime": 2.0}')
    vol = read_volume(tmp_path / "a.nii.gz")
    assert vol.quantity == "unknown"
    assert any("not a VoxelDosimetry sidecar" in n for n in vol.metadata["source"]["notes"])
    (tmp_path / "a.json").write_text('{"quantity": "activity_concentration", "unit": "kBq/mL"}')
    vol = read_volume(tmp_path / "a.nii.gz")
    assert (vol.quantity, vol.unit) == ("activity_concentration", "kBq/mL")
    assert vol.metadata["source"]["quantity_from"] == "sidecar"
    (tmp_path / "a.json").write_text('{"image": "a.mha", "quantity": "dose"}')
    vol = read_volume(tmp_path / "a.nii.gz")
    assert vol.quantity == "unknown" and any("describes a.mha" in n for n in vol.metadata["source"]["notes"])
    (tmp_path / "a.json").write_text("{broken")
    with pytest.raises(InputFormatError, match="a.json"):
        read_volume(tmp_path / "a.nii.gz")


def test_stale_sidecar_geometry_loses_to_header(tmp_path: Path) -> None:
    vol = Volume(np.zeros((2, 3, 4), np.float32), spacing=(1, 2, 3), quantity="dose")
    path = write_volume(vol, tmp_path / "s.mha")
    image = sitk.ReadImage(str(path))
    image.SetOrigin((5.0, 0.0, 0.0))  # another tool moved the image, the sidecar is stale
    sitk.WriteImage(image, str(path))
    back = read_volume(path)
    assert back.origin == (5.0, 0.0, 0.0)
    assert any("disagrees" in n for n in back.metadata["source"]["notes"])
    assert back.quantity == "dose"


# ------------------------------------------------------------------------------------------- GATE

@pytest.mark.parametrize("name, expected", [
    ("patient_dose.mhd", ("dose", "Gy")), ("output-Dose.mhd", ("dose", "Gy")),
    ("output-DoseToWater.mhd", ("dose", "Gy")), ("patient_edep.mha", ("energy_deposited", "MeV")),
    ("output-Edep.mhd", ("energy_deposited", "MeV")), ("patient_uncertainty.mhd", ("relative_uncertainty", "1")),
    ("patient_dose_uncertainty.mhd", ("relative_uncertainty", "1")),
    ("output-Dose-Uncertainty.mhd", ("relative_uncertainty", "1")),
    ("output-Dose-Squared.mhd", None), ("ct.mhd", None), ("overdose.mhd", None),
])
def test_gate_names(name: str, expected) -> None:
    assert gate_quantity_from_name(name) == expected


def test_gate_output_read_with_inferred_quantity(tmp_path: Path) -> None:
    image = sitk.GetImageFromArray(np.full((3, 4, 5), 0.5, np.float32))  # as GATE writes it: no sidecar
    image.SetSpacing((4.0, 4.0, 4.0))
    sitk.WriteImage(image, str(tmp_path / "sim_edep.mhd"))
    sitk.WriteImage(image, str(tmp_path / "sim_dose_uncertainty.mhd"))
    edep = read_volume(tmp_path / "sim_edep.mhd")
    assert (edep.quantity, edep.unit) == ("energy_deposited", "MeV")
    assert edep.metadata["source"]["quantity_from"] == "gate_file_name"
    assert edep.metadata["source"]["unit_stated"] is False
    assert any("GATE" in n for n in edep.metadata["source"]["notes"])
    assert read_volume(tmp_path / "sim_dose_uncertainty.mhd").quantity == "relative_uncertainty"
    # a sidecar or an argument wins over the name
    assert read_volume(tmp_path / "sim_edep.mhd", quantity="dose").quantity == "dose"
    (tmp_path / "sim_edep.json").write_text('{"quantity": "dose", "unit": "mGy"}')
    assert read_volume(tmp_path / "sim_edep.mhd").unit == "mGy"


# -------------------------------------------------------------------------------------- Interfile

def _write_gate_style(tmp_path: Path, data: np.ndarray, extra: str = "", byte_order: str = "LITTLEENDIAN",
                      thickness_line: str = "slice thickness (pixels) := 4.4196", name: str = "ph") -> Path:
    nz, ny, nx = data.shape
    raw = data.astype(data.dtype.newbyteorder("<" if byte_order == "LITTLEENDIAN" else ">"))
    raw.tofile(tmp_path / f"{name}.i33")
    text = (f"!INTERFILE :=\n!imaging modality := nucmed\n;\n!data offset in bytes := 0\n"
            f"!name of data file := {name}.i33\nimagedata byte order := {byte_order}\n"
            f"!total number of images := {nz}\n!MATRIX SIZE[1] := {nx}\n!matrix size [2] := {ny}\n"
            f"!number format := unsigned integer\n!number of bytes per pixel := 2\n"
            f"scaling factor (mm/pixel) [1] := 3.9063\nscaling factor (mm/pixel) [2] := 3.9063\n"
            f"!number of slices := {nz}\n{thickness_line}\nslice orientation := Transverse\n{extra}"
            f"!END OF INTERFILE :=\n")
    header = tmp_path / f"{name}.h33"
    header.write_text(text)
    return header


def test_interfile_gate_style_header_convention(tmp_path: Path) -> None:
    data = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    vol = read_volume(_write_gate_style(tmp_path, data))
    assert np.array_equal(vol.array, data) and vol.array.dtype == np.uint16
    assert vol.spacing == (3.9063, 3.9063, 4.4196)
    assert np.allclose(vol.direction, np.diag([1.0, -1.0, -1.0]))  # columns->L, rows->A, slices->I
    centre = vol.grid.index_to_world([(5 - 1) / 2, (4 - 1) / 2, (3 - 1) / 2])
    assert np.allclose(centre, 0.0, atol=1e-12)
    first = vol.grid.index_to_world([0, 0, 0])
    assert first[0] < 0 and first[1] > 0 and first[2] > 0  # patient right, posterior, superior
    info = vol.metadata["source"]["interfile"]
    assert info["axis_directions"] == "LAI" and "GATE" in info["slice_spacing_from"]
    pixels = read_interfile(tmp_path / "ph.h33", slice_thickness_unit="pixels")
    assert np.isclose(pixels.spacing[2], 4.4196 * 3.9063)
    ras = read_volume(tmp_path / "ph.h33", axis_directions="RAS")
    assert np.allclose(ras.direction, axis_directions_matrix("RAS"))


def test_interfile_big_endian_and_offsets(tmp_path: Path) -> None:
    data = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4) * 1000
    vol = read_volume(_write_gate_style(tmp_path, data, byte_order="BIGENDIAN"))
    assert np.array_equal(vol.array, data) and vol.array.dtype.isnative


@pytest.mark.parametrize("remove, message", [
    ("!matrix size [2] := 3\n", "matrix size [2]"),
    ("!number format := unsigned integer\n", "number format"),
    ("!number of bytes per pixel := 2\n", "number of bytes per pixel"),
    ("scaling factor (mm/pixel) [1] := 3.9063\n", "scaling factor (mm/pixel) [1]"),
    ("!name of data file := ph.i33\n", "name of data file"),
    ("slice thickness (pixels) := 4.4196\n", "slice spacing"),
])
def test_interfile_missing_keys_are_named(tmp_path: Path, remove: str, message: str) -> None:
    header = _write_gate_style(tmp_path, np.zeros((2, 3, 4), np.uint16))
    text = header.read_text()
    assert remove.lower() in text.lower()
    start = text.lower().index(remove.lower())
    header.write_text(text[:start] + text[start + len(remove):])
    with pytest.raises(InputFormatError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        read_volume(header)


def test_interfile_bad_headers(tmp_path: Path) -> None:
    data = np.zeros((2, 3, 4), np.uint16)
    header = _write_gate_style(tmp_path, data, extra="patient orientation := feet_in\n")
    with pytest.raises(InputFormatError, match="axis_directions"):
        read_volume(header)
    assert read_volume(header, axis_directions="LPS").shape == (2, 3, 4)
    header = _write_gate_style(tmp_path, data, extra="number of time frames := 3\n")
    with pytest.raises(InputFormatError, match="number of time frames"):
        read_volume(header)
    header = _write_gate_style(tmp_path, data)
    (tmp_path / "ph.i33").write_bytes(b"\x00" * 10)
    with pytest.raises(InputFormatError, match="holds 10 bytes"):
        read_volume(header)
    with pytest.raises(InputFormatError, match="three letters"):
        axis_directions_matrix("LAX")
    with pytest.raises(InputFormatError, match="twice"):
        axis_directions_matrix("LRS")
    analyze = tmp_path / "old.hdr"
    analyze.write_bytes(struct.pack("<i", 348) + b"\x00" * 344)
    with pytest.raises(InputFormatError, match="Analyze"):
        read_volume(analyze)


def test_interfile_writer_header_is_gate_readable(tmp_path: Path, oblique_direction: np.ndarray) -> None:
    vol = _volume("float32", oblique_direction)
    path = write_volume(vol, tmp_path / "w.h33")
    text = path.read_text()
    assert (tmp_path / "w.i33").stat().st_size == vol.array.size * 4
    for line in ("!name of data file := w.i33", "!number format := short float", "imagedata byte order := LITTLEENDIAN",
                 f"!number of slices := {SHAPE[0]}", f"slice thickness (pixels) := {SPACING[2]!r}"):
        assert line in text
    # GATE reads each key up to the next '=': a comment line must never come right before a key it uses
    lines = text.splitlines()
    for previous, line in zip(lines, lines[1:]):
        if previous.startswith(";") and not line.startswith(";"):
            assert line.startswith("voxeldosimetry")


# -------------------------------------------------------------------------------- errors, dispatch

def test_bad_inputs(tmp_path: Path) -> None:
    vol = Volume(np.zeros((2, 2, 2), np.float16))
    with pytest.raises(InputFormatError, match="float16"):
        write_volume(vol, tmp_path / "h.nrrd")
    with pytest.raises(InputFormatError, match="No such file"):
        read_volume(tmp_path / "missing.nrrd")
    (tmp_path / "x.png").write_bytes(b"123")
    with pytest.raises(InputFormatError, match=r"\.nrrd"):
        read_volume(tmp_path / "x.png")
    ok = Volume(np.zeros((2, 2, 2), np.float32))
    with pytest.raises(InputFormatError, match=r"\.nii\.gz"):
        write_volume(ok, tmp_path / "x.png")
    with pytest.raises(InputFormatError, match="does not match"):
        write_volume(ok, tmp_path / "x.nrrd", format="nifti")
    with pytest.raises(InputFormatError, match="Unknown format"):
        write_volume(ok, tmp_path / "x.nrrd", format="jpeg")
    with pytest.raises(InputFormatError, match="do not apply"):
        write_volume(ok, tmp_path / "x.nii", compress=True)
    with pytest.raises(InputFormatError, match="do not apply"):
        read_volume(write_volume(ok, tmp_path / "y.nrrd"), axis_directions="LAI")
    (tmp_path / "bad.nrrd").write_bytes(b"not a nrrd")
    with pytest.raises(InputFormatError, match="Cannot read NRRD"):
        read_volume(tmp_path / "bad.nrrd")
    (tmp_path / "bad.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(InputFormatError, match="Cannot read NIfTI"):
        read_volume(tmp_path / "bad.nii.gz")
    image2d = sitk.GetImageFromArray(np.zeros((3, 4), np.float32))
    sitk.WriteImage(image2d, str(tmp_path / "flat.mha"))
    with pytest.raises(InputFormatError, match="3-D"):
        read_volume(tmp_path / "flat.mha")
    assert ".nii.gz" in SUPPORTED_EXTENSIONS and ".h33" in SUPPORTED_EXTENSIONS


def test_dicom_dispatch_is_lazy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {}
    fake = types.ModuleType("VoxelDosimetryLib.io.dicom")

    def read_dicom(path):
        calls["read"] = Path(path)
        return Volume(np.zeros((2, 2, 2), np.int16), quantity="ct", metadata={"source": str(path)})

    def write_dicom_ct_series(volume, folder):
        calls["write"] = Path(folder)
        return [Path(folder) / "CT0001.dcm"]

    fake.read_dicom = read_dicom
    fake.write_dicom_ct_series = write_dicom_ct_series
    monkeypatch.setitem(sys.modules, "VoxelDosimetryLib.io.dicom", fake)
    folder = tmp_path / "series"
    folder.mkdir()
    assert read_volume(folder).quantity == "ct" and calls["read"] == folder
    (tmp_path / "ct.zip").write_bytes(b"PK")
    relabelled = read_volume(tmp_path / "ct.zip", quantity="density")
    assert (relabelled.quantity, relabelled.unit) == ("density", "g/cm3")
    assert relabelled.metadata["source"]["quantity_from"] == "argument"
    single = tmp_path / "IM0001"
    single.write_bytes(b"\x00" * 128 + b"DICM" + b"\x00" * 16)
    read_volume(single)
    assert calls["read"] == single
    vol = Volume(np.zeros((2, 2, 2), np.int16), quantity="ct")
    assert write_volume(vol, tmp_path / "out_series") == tmp_path / "out_series"
    # written into a staging folder beside the target, then renamed into place (io/safe_write.py)
    assert calls["write"].name == "out_series" and calls["write"].parent.parent == tmp_path
    write_volume(vol, tmp_path / "out.dir", format="dicom")
    assert calls["write"].name == "out.dir" and calls["write"].parent.parent == tmp_path
