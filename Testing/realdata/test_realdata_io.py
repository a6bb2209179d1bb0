"""Real files through every reader and writer: TotalSegmentator NIfTI (RAS), patient15 Interfile, SPECT NRRD.

World coordinates of landmark voxels (corners, centre, organ centroids) are checked against SimpleITK's own
TransformContinuousIndexToPhysicalPoint on the original file, before and after each round trip.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import require_data
from VoxelDosimetryLib.io import read_volume, write_volume
from VoxelDosimetryLib.volume.volume import Volume

pytestmark = pytest.mark.realdata

WRITE_NAMES = ("rt.nrrd", "rt.nhdr", "rt.nii.gz", "rt.nii", "rt.mha", "rt.mhd", "rt.h33")
LIVER, SPLEEN = 5, 1


def _landmarks(shape_zyx: tuple, extra: list) -> np.ndarray:
    """Continuous (i, j, k) indices: the 8 corners, the centre and `extra` points."""
    nz, ny, nx = shape_zyx
    corners = [[i, j, k] for i in (0, nx - 1) for j in (0, ny - 1) for k in (0, nz - 1)]
    centre = [(nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2]
    return np.array(corners + [centre] + extra, dtype=float)


def _sitk_world(image: sitk.Image, ijk: np.ndarray) -> np.ndarray:
    return np.array([image.TransformContinuousIndexToPhysicalPoint([float(v) for v in p]) for p in ijk])


def _centroid_ijk(labels: np.ndarray, label: int) -> list:
    zyx = np.argwhere(labels == label).mean(axis=0)
    return [float(zyx[2]), float(zyx[1]), float(zyx[0])]


def _round_trips(volume: Volume, tmp_path: Path, names=WRITE_NAMES):
    for name in names:
        folder = tmp_path / name.replace(".", "_")
        path = write_volume(volume, folder / name)
        yield name, read_volume(path)


@pytest.fixture(scope="module")
def ts_files(test_data_dir: Path) -> tuple[Path, Path]:
    return (require_data(test_data_dir, "totalsegmentator_example", "example_ct.nii.gz"),
            require_data(test_data_dir, "totalsegmentator_example", "example_seg_fast_force_split.nii.gz"))


def test_totalsegmentator_ct_and_labels_world_coordinates(ts_files, tmp_path: Path) -> None:
    ct_path, seg_path = ts_files
    ct = read_volume(ct_path, quantity="ct")
    seg = read_volume(seg_path, quantity="labels")
    ct_image, seg_image = sitk.ReadImage(str(ct_path)), sitk.ReadImage(str(seg_path))
    assert ct.shape == (112, 101, 122) and ct.spacing == (3.0, 3.0, 3.0) and ct.array.dtype == np.int32
    assert seg.array.dtype == np.uint8 and seg.grid == ct.grid
    assert np.array_equal(ct.array, sitk.GetArrayFromImage(ct_image))
    assert int(ct.array.min()) == -1207 and int(ct.array.max()) == 3382
    # RAS file -> LPS in memory: the x and y axes point towards patient right and anterior
    assert np.allclose(ct.direction, np.diag([-1.0, -1.0, 1.0]))
    liver_ijk, spleen_ijk = _centroid_ijk(seg.array, LIVER), _centroid_ijk(seg.array, SPLEEN)
    points = _landmarks(ct.shape, [liver_ijk, spleen_ijk])
    expected = _sitk_world(ct_image, points)
    assert np.allclose(ct.grid.index_to_world(points), expected, atol=1e-6)
    assert np.allclose(seg.grid.index_to_world(points), _sitk_world(seg_image, points), atol=1e-6)
    liver_lps, spleen_lps = expected[-2], expected[-1]
    assert liver_lps[0] < spleen_lps[0]  # liver on the patient's right (smaller LPS x) of the spleen
    liver_ml = float((seg.array == LIVER).sum()) * seg.voxel_volume_ml
    assert liver_ml == pytest.approx(1126, rel=0.01)
    for name, back in _round_trips(ct, tmp_path):
        assert np.array_equal(back.array, ct.array) and back.array.dtype == ct.array.dtype, name
        assert (back.quantity, back.unit) == ("ct", "HU"), name
        assert np.allclose(back.grid.index_to_world(points), expected, atol=1e-6), name
    for name, back in _round_trips(seg, tmp_path / "seg"):
        assert np.array_equal(back.array, seg.array) and back.quantity == "labels", name
        assert np.allclose(back.grid.index_to_world(_centroid_ijk(back.array, LIVER)), liver_lps, atol=1e-6), name


def test_totalsegmentator_nifti_rewrite_keeps_sform(ts_files, tmp_path: Path) -> None:
    """Our NIfTI output read by SimpleITK alone (no sidecar) lands every voxel where the original did."""
    ct_path, _ = ts_files
    ct = read_volume(ct_path)
    out = write_volume(ct, tmp_path / "ct_copy.nii.gz")
    original, copy = sitk.ReadImage(str(ct_path)), sitk.ReadImage(str(out))
    points = _landmarks(ct.shape, [])
    assert np.allclose(_sitk_world(copy, points), _sitk_world(original, points), atol=1e-4)
    assert copy.GetDirection() == original.GetDirection()


@pytest.fixture(scope="module")
def p15_headers(test_data_dir: Path) -> tuple[Path, Path]:
    return (require_data(test_data_dir, "patient15_LuDOTATATE", "patient15_LuDOTATATE_attn.h33"),
            require_data(test_data_dir, "patient15_LuDOTATATE", "patient15_LuDOTATATE_src.h33"))


def test_patient15_interfile_geometry_and_orientation(p15_headers) -> None:
    attn = read_volume(p15_headers[0])
    src = read_volume(p15_headers[1])
    assert attn.shape == src.shape == (90, 70, 108)
    assert attn.array.dtype == np.uint16 and attn.array.max() == 3000
    assert attn.spacing == (3.9063, 3.9063, 4.4196)
    assert src.grid == attn.grid
    assert int(src.array.sum(dtype=np.int64)) == 753790813
    assert attn.quantity == "unknown" and attn.metadata["source"]["unit_stated"] is False
    # the stated convention: columns -> patient left, rows -> anterior, slices -> inferior, centred at 0
    assert np.allclose(attn.direction, np.diag([1.0, -1.0, -1.0]))
    assert np.allclose(attn.grid.index_to_world([107 / 2, 69 / 2, 89 / 2]), 0.0, atol=1e-9)
    # anatomy agrees with it: the carbon table (3000) lies posterior of the body, lungs superior of the body
    zyx = np.indices(attn.shape).reshape(3, -1).T[:, ::-1]  # (i, j, k) of every voxel
    world = attn.grid.index_to_world(zyx)
    values = attn.array.reshape(-1)
    body = (values > 500) & (values < 2200)
    lung = (values > 220) & (values < 500)
    table = values >= 3000
    assert world[table, 1].mean() > world[body, 1].mean() + 50  # posterior = larger LPS y
    assert world[lung, 2].mean() > world[body, 2].mean() + 50  # superior = larger LPS z


def test_patient15_round_trips(p15_headers, tmp_path: Path) -> None:
    attn = read_volume(p15_headers[0], quantity="ct", unit="HU")  # HU + 1000 really, labelled for the test only
    points = _landmarks(attn.shape, [])
    expected = attn.grid.index_to_world(points)
    for name, back in _round_trips(attn, tmp_path):
        assert np.array_equal(back.array, attn.array) and back.array.dtype == np.uint16, name
        assert back.grid == attn.grid and np.allclose(back.direction, attn.direction, atol=0), name
        assert np.allclose(back.grid.index_to_world(points), expected, atol=1e-6), name
        assert (back.quantity, back.unit) == ("ct", "HU"), name
        assert back.metadata["source"]["derived_from"] == str(p15_headers[0]), name
    # our Interfile header, read by a plain parser, keeps the GATE-readable keys of the original
    text = (tmp_path / "rt_h33" / "rt.h33").read_text()
    assert "slice thickness (pixels) := 4.4196" in text and "!matrix size [1] := 108" in text
    assert (tmp_path / "rt_h33" / "rt.i33").read_bytes() == Path(str(p15_headers[0])[:-4] + ".i33").read_bytes()


def test_real_spect_nrrd(test_data_dir: Path, tmp_path: Path) -> None:
    path = require_data(test_data_dir, "real_lu177_spect_ct", "spect_counts.nrrd")
    spect = read_volume(path, quantity="counts")
    assert spect.shape == (208, 128, 128) and spect.spacing == (4.4196, 4.4196, 4.4196)
    assert np.allclose(spect.origin, (-280.3446, -287.5446, -457.6446), atol=1e-9)
    assert "intensity_units" in spect.metadata["source"]["nrrd_fields"]
    image = sitk.ReadImage(str(path))
    points = _landmarks(spect.shape, [])
    assert np.allclose(spect.grid.index_to_world(points), _sitk_world(image, points), atol=1e-6)
    for name, back in _round_trips(spect, tmp_path, ("s.nii.gz", "s.mha", "s.h33")):
        assert np.array_equal(back.array, spect.array), name
        assert np.allclose(back.origin, spect.origin, atol=1e-9), name


def test_dicom_zip_dispatch(test_data_dir: Path) -> None:
    """read_volume hands a .zip of DICOM files to VoxelDosimetryLib.io.dicom and applies overrides."""
    path = require_data(test_data_dir, "real_lu177_spect_ct", "ct_dicom.zip")
    ct = read_volume(path, unit="HU")
    assert (ct.quantity, ct.unit) == ("ct", "HU") and ct.shape == (303, 512, 512)
    assert ct.metadata["source"]["quantity_from"] == "argument"
