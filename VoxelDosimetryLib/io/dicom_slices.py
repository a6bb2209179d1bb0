"""DICOM slice stacking: sort single-frame slices along their normal into a regular Grid; decode pixel data."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError, MissingMetadataError
from VoxelDosimetryLib.io.dicom_files import DicomSource
from VoxelDosimetryLib.io.dicom_values import get_float, get_floats, get_value
from VoxelDosimetryLib.io.read_guard import check_voxel_count
from VoxelDosimetryLib.volume.volume import Grid

DEFAULT_SPACING_TOLERANCE_MM = 0.01
_ORIENTATION_TOLERANCE = 1e-4


@dataclass
class SliceStack:
    """Sorted single-frame slices and the grid they span."""

    sources: list[DicomSource]
    grid: Grid
    slice_spacing_irregularity_mm: float
    notes: list[str]


def _orientation(header: Any, name: str) -> np.ndarray:
    iop = get_floats(header, "ImageOrientationPatient", 6)
    if iop is None:
        raise MissingMetadataError(f"{name} has no usable ImageOrientationPatient (0020,0037): the slice cannot be "
                                   "placed in patient space. Re-export the series from the scanner/PACS with "
                                   "geometry tags.")
    return iop


def _base(name: str) -> str:
    """The file name without its folders (or zip path)."""
    return name.replace("\\", "/").replace("!", "/").rsplit("/", 1)[-1]


def stack_geometry(sources: Sequence[DicomSource], spacing_tolerance_mm: float = DEFAULT_SPACING_TOLERANCE_MM,
                   what: str = "series") -> SliceStack:
    """Sort single-frame slices along their normal and check the grid is regular (uniform, unsheared)."""
    if not sources:
        raise InputFormatError(f"The {what} has no image files.")
    notes: list[str] = []
    missing_ipp = [s.name for s in sources if get_floats(s.header, "ImagePositionPatient", 3) is None]
    if missing_ipp:
        raise MissingMetadataError(
            f"{len(missing_ipp)} of {len(sources)} files of the {what} lack ImagePositionPatient (0020,0032), "
            f"e.g. {missing_ipp[0]}; without it the slices cannot be ordered or placed. Re-export the complete "
            "series with geometry tags (secondary captures and screenshots cannot be used).")
    iops = np.array([_orientation(s.header, s.name) for s in sources])
    if np.max(np.abs(iops - iops[0])) > _ORIENTATION_TOLERANCE:
        bad = int(np.argmax(np.max(np.abs(iops - iops[0]), axis=1)))
        raise InputFormatError(f"The {what} mixes slice orientations ({sources[0].name}: {iops[0].tolist()} vs "
                               f"{sources[bad].name}: {iops[bad].tolist()}); a localizer or reformat may be mixed in. "
                               "Remove those files or pick the axial series.")
    row, col = iops[0][:3], iops[0][3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise InputFormatError(f"ImageOrientationPatient {iops[0].tolist()} is not two orthogonal unit vectors.")
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    col = col - (col @ row) * row
    col /= np.linalg.norm(col)
    normal = np.cross(row, col)
    positions = np.array([get_floats(s.header, "ImagePositionPatient", 3) for s in sources])
    proj = positions @ normal
    order = np.argsort(proj, kind="stable")
    positions, proj = positions[order], proj[order]
    sorted_sources = [sources[i] for i in order]

    for key in ("Rows", "Columns"):
        values = {int(get_float(s.header, key) or 0) for s in sorted_sources}
        if len(values) != 1 or 0 in values:
            raise InputFormatError(f"The {what} has inconsistent or missing {key}: {sorted(values)}.")
    spacings = np.array([get_floats(s.header, "PixelSpacing", 2) if get_floats(s.header, "PixelSpacing", 2)
                         is not None else [np.nan, np.nan] for s in sorted_sources])
    if not np.all(np.isfinite(spacings)):
        raise MissingMetadataError(f"PixelSpacing (0028,0030) is missing in the {what}; the voxel size is unknown. "
                                   "Re-export the series with its pixel spacing.")
    if np.max(np.abs(spacings - spacings[0])) > 1e-4:
        raise InputFormatError(f"The {what} mixes pixel spacings ({np.unique(spacings, axis=0).tolist()} mm).")
    row_spacing, col_spacing = float(spacings[0][0]), float(spacings[0][1])

    n = len(sorted_sources)
    irregularity = 0.0
    if n == 1:
        dz = get_float(sorted_sources[0].header, "SpacingBetweenSlices")
        dz = abs(dz) if dz else get_float(sorted_sources[0].header, "SliceThickness")
        if not dz or dz <= 0:
            dz = 1.0
            notes.append("single slice without SliceThickness: slice spacing set to 1 mm")
    else:
        steps = np.diff(proj)
        if np.any(steps < 1e-3):
            k = int(np.argmin(steps))
            raise InputFormatError(
                f"The {what} has slices at the same position ({proj[k]:.3f} mm along the normal, e.g. "
                f"{sorted_sources[k].name} and {sorted_sources[k + 1].name}): it holds several acquisitions, phases "
                "or echoes. Split it (e.g. by AcquisitionNumber or TemporalPositionIdentifier) and load one.")
        median = float(np.median(steps))
        deviation = np.abs(steps - median)
        irregularity = float(deviation.max())
        if irregularity > spacing_tolerance_mm:
            bad = np.nonzero(deviation > spacing_tolerance_mm)[0]
            examples = "; ".join(
                f"{steps[k]:.3f} mm between {proj[k]:.3f} and {proj[k + 1]:.3f} mm ({_base(sorted_sources[k].name)} "
                f"and {_base(sorted_sources[k + 1].name)})"
                + (f" (~{round(steps[k] / median) - 1} missing slice(s))" if steps[k] > 1.5 * median else "")
                for k in bad[:5])
            raise InputFormatError(
                f"The {what} does not have uniform slice spacing: the usual step is {median:.4f} mm but {len(bad)} "
                f"step(s) differ by more than {spacing_tolerance_mm} mm: {examples}. Re-export the complete series, "
                "or resample the slices to a regular grid first. (For a small known irregularity, the Python readers "
                "io.dicom_ct.read_dicom_ct_series and io.dicom_nm.read_dicom_spect accept a larger "
                "spacing_tolerance_mm= and then use the mean spacing; there is no command-line option for it.)")
        dz = float((proj[-1] - proj[0]) / (n - 1))
        in_plane = (positions - positions[0]) - np.outer(proj - proj[0], normal)
        shear = float(np.max(np.linalg.norm(in_plane, axis=1)))
        if shear > max(spacing_tolerance_mm, 0.01):
            tilt = float(np.degrees(np.arctan2(shear, proj[-1] - proj[0])))
            raise InputFormatError(
                f"The slice positions of the {what} drift sideways by {shear:.2f} mm over the stack (gantry tilt "
                f"of about {tilt:.1f} degrees?), so the slices do not form a rectilinear volume. Resample it to an "
                "orthogonal grid first (e.g. Slicer's 'Acquisition Modeling'/ gantry tilt correction on load).")
        if irregularity > 0.001:
            notes.append(f"slice spacing varies by up to {irregularity:.4f} mm; mean spacing {dz:.4f} mm used")
        thickness = get_float(sorted_sources[0].header, "SliceThickness")
        if thickness and abs(thickness - dz) > max(0.01, 0.01 * dz):
            notes.append(f"SliceThickness {thickness} mm differs from the slice spacing {dz:.4f} mm "
                         "(overlapping or gapped slices); the spacing from positions is used")
    direction = np.column_stack([row, col, normal])
    shape = (n, int(get_float(sorted_sources[0].header, "Rows")), int(get_float(sorted_sources[0].header, "Columns")))
    check_voxel_count(f"{sorted_sources[0].name} ({what})", shape, "series (slices, rows, columns)")
    try:
        grid = Grid(shape, (col_spacing, row_spacing, dz), tuple(positions[0]), direction)
    except InputFormatError as exc:
        raise InputFormatError(f"The {what} ({sorted_sources[0].name}) has unusable geometry: {exc} Fix PixelSpacing "
                               "/ ImagePositionPatient or re-export the series.") from None
    return SliceStack(sorted_sources, grid, irregularity, notes)


# ----------------------------------------------------------------------------------------------------------
# pixel data
# ----------------------------------------------------------------------------------------------------------

_PIXEL_ELEMENTS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def _expected_pixel_bytes(ds: Any) -> int | None:
    """Bytes of uncompressed PixelData that Rows, Columns, frames, samples and BitsAllocated call for."""
    ts = get_value(getattr(ds, "file_meta", None), "TransferSyntaxUID")
    try:
        compressed = ts is None or bool(ts.is_compressed)
    except (AttributeError, ValueError):  # not a known transfer syntax
        compressed = True
    if compressed or "PixelData" not in ds:
        return None
    dims = [get_float(ds, k) for k in ("Rows", "Columns", "BitsAllocated")]
    if any(v is None or v <= 0 for v in dims):
        return None
    frames = int(get_float(ds, "NumberOfFrames") or 1)
    samples = int(get_float(ds, "SamplesPerPixel") or 1)
    return (int(dims[0]) * int(dims[1]) * frames * samples * int(dims[2]) + 7) // 8


def pixel_array(ds: Any, name: str) -> np.ndarray:
    """Stored pixel values (no rescale) as a numpy array; a clear error for missing, truncated or undecodable data."""
    if not any(k in ds for k in _PIXEL_ELEMENTS):
        raise InputFormatError(f"{name} has no pixel data (no PixelData element): it is not an image, or its pixels "
                               "were stripped. Remove it from the series or re-export the series.")
    expected = _expected_pixel_bytes(ds)
    if expected is not None and len(ds.PixelData) < expected:
        raise InputFormatError(
            f"{name}: its pixel data hold {len(ds.PixelData)} bytes but Rows x Columns x frames x BitsAllocated call "
            f"for {expected}: the file is truncated or damaged. Re-copy or re-export it.")
    try:
        return np.asarray(ds.pixel_array)
    except Exception as exc:
        ts = get_value(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        if expected is not None:  # uncompressed data that still fail: damaged, no codec can help
            raise InputFormatError(f"Cannot read the pixel data of {name} (transfer syntax {ts}): {exc}. The file "
                                   "is damaged; re-copy or re-export it.") from exc
        raise InputFormatError(
            f"Cannot decode the pixel data of {name} (transfer syntax {ts}): {exc}. Install a decoder for it "
            "(pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg, or python-gdcm), or decompress the files "
            "first (e.g. 'gdcmconv --raw' or 'dcmdjpeg').") from exc
