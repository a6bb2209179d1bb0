"""DICOM CT series: read (folder or .zip, any file order, any orientation) and write (CT Image Storage).

Geometry follows DICOM and SimpleITK: slices are sorted by the projection of ImagePositionPatient on the
slice normal n = row x column of ImageOrientationPatient; the Volume's direction columns are
(row, column, n), so it is always right-handed, and its origin is the position of the first sorted slice.
Feet-first or head-first, ascending or descending instance numbers: the file order never matters.

This module also holds the DICOM helpers shared with `dicom_nm` (file collection, series grouping,
date-time parsing, slice stacking). Date-times are returned timezone-naive, as written in the file
(local scanner time); a TimezoneOffsetFromUTC, when present, is kept as a string beside them.
"""
from __future__ import annotations

import datetime as _dt
import io
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError, MissingMetadataError, UnitError
from VoxelDosimetryLib.volume.volume import Grid, Volume

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
DICOMDIR_STORAGE = "1.2.840.10008.1.3.10"
DEFAULT_SPACING_TOLERANCE_MM = 0.01
_ORIENTATION_TOLERANCE = 1e-4


def _pydicom():
    try:
        import pydicom
    except ImportError as exc:  # pragma: no cover - pydicom is a declared dependency
        raise InputFormatError("Reading DICOM needs pydicom: pip install pydicom") from exc
    return pydicom


# ----------------------------------------------------------------------------------------------------------
# small value helpers
# ----------------------------------------------------------------------------------------------------------

def is_blank(value: Any) -> bool:
    """True for an absent or empty DICOM value ('' or None or an empty sequence)."""
    if value is None:
        return True
    if isinstance(value, (str, bytes)):
        return str(value).strip(" \x00") == ""
    try:
        return len(value) == 0
    except TypeError:
        return False


def get_value(ds: Any, keyword: str, default: Any = None) -> Any:
    """`ds.keyword` or `default` when the element is absent or blank."""
    if ds is None:
        return default
    value = ds.get(keyword, None)
    if hasattr(value, "value") and not isinstance(value, (str, bytes)):  # a DataElement (tag lookup)
        value = value.value
    return default if is_blank(value) else value


def get_float(ds: Any, keyword: str) -> float | None:
    value = get_value(ds, keyword)
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or (hasattr(value, "__len__") and not isinstance(value, (str, bytes))):
        if len(value) == 0:
            return None
        value = value[0]
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def get_floats(ds: Any, keyword: str, count: int) -> np.ndarray | None:
    value = get_value(ds, keyword)
    if value is None:
        return None
    try:
        arr = np.asarray([float(v) for v in (value if not isinstance(value, (str, bytes)) else [value])])
    except (TypeError, ValueError):
        return None
    if arr.shape != (count,) or not np.all(np.isfinite(arr)):
        return None
    return arr


def get_str(ds: Any, keyword: str) -> str | None:
    value = get_value(ds, keyword)
    if value is None:
        return None
    if not isinstance(value, str) and hasattr(value, "__iter__"):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


# ----------------------------------------------------------------------------------------------------------
# date and time
# ----------------------------------------------------------------------------------------------------------

_DA_RE = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})$")
_TM_RE = re.compile(r"^(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?$")
_DT_RE = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?$")


def parse_da(value: Any) -> _dt.date | None:
    """DICOM DA ('YYYYMMDD', legacy 'YYYY.MM.DD') -> date, None when blank or malformed."""
    if is_blank(value):
        return None
    if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        return value
    m = _DA_RE.match(str(value).strip())
    if not m:
        return None
    try:
        return _dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def parse_tm(value: Any) -> _dt.time | None:
    """DICOM TM ('HH', 'HHMM', 'HHMMSS.FFFFFF', legacy 'HH:MM:SS') -> time, None when blank or malformed."""
    if is_blank(value):
        return None
    if isinstance(value, _dt.time):
        return value
    m = _TM_RE.match(str(value).strip())
    if not m:
        return None
    hh, mm, ss, frac = m.groups()
    seconds = min(int(ss or 0), 59)  # DICOM allows 60 for a leap second
    micro = int((frac or "0").ljust(6, "0")) if frac else 0
    try:
        return _dt.time(int(hh), int(mm or 0), seconds, micro)
    except ValueError:
        return None


def parse_dt(value: Any) -> tuple[_dt.datetime | None, str | None]:
    """DICOM DT ('YYYYMMDDHHMMSS.FFFFFF&ZZXX', partial allowed) -> (naive datetime, UTC offset string or None)."""
    if is_blank(value):
        return None, None
    if isinstance(value, _dt.datetime):
        offset = None
        if value.tzinfo is not None and value.utcoffset() is not None:
            minutes = int(value.utcoffset().total_seconds() // 60)
            offset = f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
        return value.replace(tzinfo=None), offset
    m = _DT_RE.match(str(value).strip())
    if not m:
        return None, None
    y, mo, d, hh, mi, ss, frac, off = m.groups()
    try:
        out = _dt.datetime(int(y), int(mo or 1), int(d or 1), int(hh or 0), int(mi or 0), min(int(ss or 0), 59),
                           int(frac.ljust(6, "0")) if frac else 0)
    except ValueError:
        return None, None
    return out, off


def combine_date_time(date_value: Any, time_value: Any) -> _dt.datetime | None:
    """DA + TM -> naive datetime; None unless both parse."""
    d, t = parse_da(date_value), parse_tm(time_value)
    if d is None or t is None:
        return None
    return _dt.datetime.combine(d, t)


def iso(value: _dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


# ----------------------------------------------------------------------------------------------------------
# collecting files from a folder, a file or a zip
# ----------------------------------------------------------------------------------------------------------

@dataclass
class DicomSource:
    """One DICOM file (on disk or inside a zip) with its header read without pixel data."""

    name: str
    header: Any
    path: Path | None = None
    member: str | None = None
    collection: "DicomCollection | None" = field(default=None, repr=False)

    def read(self) -> Any:
        """The full dataset, pixel data included."""
        pydicom = _pydicom()
        if self.path is not None:
            return pydicom.dcmread(str(self.path), force=True)
        assert self.collection is not None and self.member is not None
        return pydicom.dcmread(io.BytesIO(self.collection.read_member(self.member)), force=True)


class DicomCollection:
    """All DICOM files found under a path (folder searched recursively, a single file, or a .zip)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        self.sources: list[DicomSource] = []
        self.skipped: list[str] = []
        if not self.path.exists():
            raise InputFormatError(f"DICOM input {self.path} does not exist. Give a folder, a .zip or a DICOM file.")
        if self.path.is_file() and zipfile.is_zipfile(self.path):
            self._zip = zipfile.ZipFile(self.path)
            for info in self._zip.infolist():
                if info.is_dir() or "__MACOSX" in info.filename:
                    continue
                with self._zip.open(info) as fp:
                    header = _read_header(fp)
                if header is None:
                    self.skipped.append(info.filename)
                else:
                    self.sources.append(DicomSource(f"{self.path.name}!{info.filename}", header,
                                                    member=info.filename, collection=self))
        else:
            files = [self.path] if self.path.is_file() else sorted(p for p in self.path.rglob("*") if p.is_file())
            for p in files:
                header = _read_header(str(p))
                if header is None:
                    self.skipped.append(str(p))
                else:
                    self.sources.append(DicomSource(str(p), header, path=p))

    def read_member(self, member: str) -> bytes:
        if self._zip is None:  # pragma: no cover - internal misuse
            raise InputFormatError("Not a zip collection.")
        return self._zip.read(member)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def __enter__(self) -> "DicomCollection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def series(self) -> dict[str, list[DicomSource]]:
        """Sources grouped by SeriesInstanceUID (files without one are grouped under '')."""
        groups: dict[str, list[DicomSource]] = {}
        for s in self.sources:
            groups.setdefault(str(get_value(s.header, "SeriesInstanceUID", "")), []).append(s)
        return groups


def _read_header(fp: Any) -> Any | None:
    """Dataset without pixel data, or None when the file is not a DICOM image/object we can use."""
    pydicom = _pydicom()
    from pydicom.errors import InvalidDicomError
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True)
    except InvalidDicomError:
        try:  # files written without the 128-byte preamble
            if hasattr(fp, "seek"):
                fp.seek(0)
            ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
        except Exception:
            return None
        if "SOPInstanceUID" not in ds or "Modality" not in ds:
            return None
    except Exception:
        return None
    sop_class = str(get_value(ds, "SOPClassUID", "") or get_value(getattr(ds, "file_meta", None),
                                                                   "MediaStorageSOPClassUID", ""))
    if sop_class == DICOMDIR_STORAGE or "DirectoryRecordSequence" in ds:
        return None
    return ds


@dataclass(frozen=True)
class SeriesInfo:
    """A one-line description of a DICOM series found in the input."""

    series_instance_uid: str
    modality: str
    description: str
    number_of_files: int
    image_type: str
    number_of_frames: int

    def line(self) -> str:
        frames = f", {self.number_of_frames} frames" if self.number_of_frames > 1 else ""
        return (f"{self.series_instance_uid or '(no SeriesInstanceUID)'}: {self.modality or '?'} "
                f"'{self.description}' ({self.number_of_files} files{frames}; ImageType {self.image_type or '?'})")


def describe_series(groups: dict[str, list[DicomSource]]) -> list[SeriesInfo]:
    out = []
    for uid, sources in groups.items():
        h = sources[0].header
        frames = int(get_float(h, "NumberOfFrames") or 1)
        out.append(SeriesInfo(uid, get_str(h, "Modality") or "", get_str(h, "SeriesDescription") or "",
                              len(sources), get_str(h, "ImageType") or "", frames))
    return out


def select_series(groups: dict[str, list[DicomSource]], series_uid: str | None, path: Any,
                  accept: Callable[[list[DicomSource]], bool], what: str) -> tuple[str, list[DicomSource]]:
    """Pick one series: by UID when given, else the only series `accept` allows; errors list all series."""
    listing = "\n  ".join(info.line() for info in describe_series(groups))
    if not groups:
        raise InputFormatError(f"No DICOM files found in {path}. Give a folder or .zip holding one {what} series.")
    if series_uid is not None:
        if series_uid not in groups:
            raise InputFormatError(f"Series {series_uid} is not in {path}. Series found:\n  {listing}")
        return series_uid, groups[series_uid]
    candidates = [uid for uid, sources in groups.items() if accept(sources)]
    if len(candidates) == 1:
        return candidates[0], groups[candidates[0]]
    if not candidates:
        raise InputFormatError(f"No {what} series in {path}. Series found:\n  {listing}")
    raise InputFormatError(f"{path} holds {len(candidates)} {what} series; pass series_uid= one of them. "
                           f"Series found:\n  {listing}")


# ----------------------------------------------------------------------------------------------------------
# slice stacking geometry
# ----------------------------------------------------------------------------------------------------------

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
                f"{steps[k]:.3f} mm between {proj[k]:.3f} and {proj[k + 1]:.3f} mm"
                + (f" (~{round(steps[k] / median) - 1} missing slice(s))" if steps[k] > 1.5 * median else "")
                for k in bad[:5])
            raise InputFormatError(
                f"The {what} does not have uniform slice spacing: the usual step is {median:.4f} mm but {len(bad)} "
                f"step(s) differ by more than {spacing_tolerance_mm} mm: {examples}. Re-export the complete series; "
                "or, for a small known irregularity, pass a larger spacing_tolerance_mm (the mean spacing is then "
                "used); or resample the slices to a regular grid first.")
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
    grid = Grid((n, int(get_float(sorted_sources[0].header, "Rows")), int(get_float(sorted_sources[0].header,
                                                                                     "Columns"))),
                (col_spacing, row_spacing, dz), tuple(positions[0]), direction)
    return SliceStack(sorted_sources, grid, irregularity, notes)


# ----------------------------------------------------------------------------------------------------------
# pixel data
# ----------------------------------------------------------------------------------------------------------

def pixel_array(ds: Any, name: str) -> np.ndarray:
    """Stored pixel values (no rescale) as a numpy array; a clear error when the codec is missing."""
    try:
        return np.asarray(ds.pixel_array)
    except Exception as exc:
        ts = get_value(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise InputFormatError(
            f"Cannot decode the pixel data of {name} (transfer syntax {ts}): {exc}. Install a decoder for it "
            "(pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg, or python-gdcm), or decompress the files "
            "first (e.g. 'gdcmconv --raw' or 'dcmdjpeg').") from exc


def _is_integral(x: float) -> bool:
    return abs(x - round(x)) < 1e-9


# ----------------------------------------------------------------------------------------------------------
# CT reader
# ----------------------------------------------------------------------------------------------------------

def _is_ct(sources: list[DicomSource]) -> bool:
    h = sources[0].header
    sop = str(get_value(h, "SOPClassUID", ""))
    return get_str(h, "Modality") == "CT" or sop == CT_IMAGE_STORAGE


def read_dicom_ct_series(path: str | os.PathLike, series_uid: str | None = None, *,
                         spacing_tolerance_mm: float = DEFAULT_SPACING_TOLERANCE_MM,
                         padding_value_hu: float | None = None) -> Volume:
    """Read one CT series from a folder (searched recursively), a .zip, or one of its files -> Volume in HU.

    Picks `series_uid` when given, else the only CT series present (other modalities are ignored; several CT
    series raise InputFormatError listing them). Slices are sorted by position along the slice normal; the
    spacing must be uniform within `spacing_tolerance_mm` (mm). Stored values are rescaled with each slice's
    RescaleSlope/RescaleIntercept to HU (int16 when exact, else float32). Voxels equal to PixelPaddingValue
    (outside the reconstruction circle) keep their rescaled value unless `padding_value_hu` is given.
    """
    path = Path(path)
    single_file = path.is_file() and not zipfile.is_zipfile(path)
    if single_file:
        header = _read_header(str(path))
        if header is None:
            raise InputFormatError(f"{path} is not a DICOM file.")
        series_uid = series_uid or str(get_value(header, "SeriesInstanceUID", ""))
    with DicomCollection(path.parent if single_file else path) as collection:
        return read_ct_from_collection(collection, path, series_uid, spacing_tolerance_mm=spacing_tolerance_mm,
                                       padding_value_hu=padding_value_hu)


def read_ct_from_collection(collection: DicomCollection, path: Any, series_uid: str | None = None, *,
                            spacing_tolerance_mm: float = DEFAULT_SPACING_TOLERANCE_MM,
                            padding_value_hu: float | None = None) -> Volume:
    """read_dicom_ct_series on an already scanned DicomCollection (`path` names the input in messages)."""
    groups = collection.series()
    uid, sources = select_series(groups, series_uid, path, _is_ct, "CT")
    if not _is_ct(sources):
        raise InputFormatError(f"Series {uid} in {path} is {get_str(sources[0].header, 'Modality')}, not CT. "
                               "Use read_dicom() to load any modality.")
    frames = int(get_float(sources[0].header, "NumberOfFrames") or 1)
    if frames > 1:
        raise InputFormatError(f"Series {uid} is an Enhanced (multi-frame) CT with {frames} frames, which this "
                               "reader does not handle. Export it as classic single-frame CT Image Storage or "
                               "convert it to NRRD/NIfTI (e.g. with Slicer or dcm2niix) first.")
    stack = stack_geometry(sources, spacing_tolerance_mm, what=f"CT series {uid}")
    slopes = np.array([get_float(s.header, "RescaleSlope") or 1.0 for s in stack.sources])
    intercepts = np.array([get_float(s.header, "RescaleIntercept") or 0.0 for s in stack.sources])
    notes = list(stack.notes)
    if "RescaleSlope" not in stack.sources[0].header:
        notes.append("RescaleSlope/RescaleIntercept absent: stored values taken as HU")
    # int16 when every rescaled value is an integer in range (checked slice by slice), else int32/float32
    integral = all(_is_integral(v) for v in np.concatenate([slopes, intercepts]))
    dtype = np.int16 if integral else np.float32
    array = np.empty(stack.grid.shape, dtype=dtype)
    padding = get_float(stack.sources[0].header, "PixelPaddingValue")
    padding_limit = get_float(stack.sources[0].header, "PixelPaddingRangeLimit")
    padded = 0
    rows, cols = stack.grid.shape[1:]
    for k, src in enumerate(stack.sources):
        ds = src.read()
        stored = pixel_array(ds, src.name)
        if stored.shape != (rows, cols):
            raise InputFormatError(f"{src.name} holds pixels of shape {stored.shape}, expected ({rows}, {cols}).")
        if integral:
            values = stored.astype(np.int64) * int(round(slopes[k])) + int(round(intercepts[k]))
        else:
            values = stored.astype(np.float64) * slopes[k] + intercepts[k]
        if padding is not None:
            lo_pad, hi_pad = sorted((padding, padding if padding_limit is None else padding_limit))
            mask = (stored >= lo_pad) & (stored <= hi_pad)
            padded += int(mask.sum())
            if padding_value_hu is not None:
                values = np.where(mask, padding_value_hu, values)
        if array.dtype == np.int16 and (values.min() < -32768 or values.max() > 32767):
            array = array.astype(np.int32)
        array[k] = values
    if padding_value_hu is not None and padded:
        notes.append(f"{padded} padding voxels set to {padding_value_hu} HU")
    header = stack.sources[0].header
    metadata = ct_metadata(header, stack, str(path), uid)
    metadata.update({"rescale_slope": float(slopes[0]) if np.all(slopes == slopes[0]) else slopes.tolist(),
                     "rescale_intercept": float(intercepts[0]) if np.all(intercepts == intercepts[0])
                     else intercepts.tolist(),
                     "PixelPaddingValue": padding, "padding_voxels": padded, "notes": notes,
                     "ignored_files": len(collection.skipped),
                     "other_series": [i.line() for i in describe_series(groups) if i.series_instance_uid != uid]})
    return Volume(array, grid=stack.grid, quantity="ct", unit="HU", metadata=metadata)


def ct_metadata(header: Any, stack: SliceStack, source: str, uid: str) -> dict:
    """JSON-friendly provenance of a CT (or other stacked) series."""
    series_dt = combine_date_time(get_value(header, "SeriesDate"), get_value(header, "SeriesTime"))
    acq_dt, _ = parse_dt(get_value(header, "AcquisitionDateTime"))
    if acq_dt is None:
        acq_dt = combine_date_time(get_value(header, "AcquisitionDate"), get_value(header, "AcquisitionTime"))
    kvp = get_float(header, "KVP")
    return {
        "reader": "VoxelDosimetryLib.io.dicom_ct",
        "source": {"path": source, "format": "dicom"},
        "Modality": get_str(header, "Modality"),
        "PatientPosition": get_str(header, "PatientPosition"),
        "StudyInstanceUID": get_str(header, "StudyInstanceUID"),
        "SeriesInstanceUID": uid,
        "FrameOfReferenceUID": get_str(header, "FrameOfReferenceUID"),
        "Manufacturer": get_str(header, "Manufacturer"),
        "ManufacturerModelName": get_str(header, "ManufacturerModelName"),
        "KVP": kvp,
        "SeriesDescription": get_str(header, "SeriesDescription"),
        "SeriesDateTime": iso(series_dt),
        "AcquisitionDateTime": iso(acq_dt),
        "SliceThickness": get_float(header, "SliceThickness"),
        "ConvolutionKernel": get_str(header, "ConvolutionKernel"),
        "number_of_slices": len(stack.sources),
        "slice_spacing_irregularity_mm": stack.slice_spacing_irregularity_mm,
        "first_file": stack.sources[0].name,
    }


# ----------------------------------------------------------------------------------------------------------
# CT writer
# ----------------------------------------------------------------------------------------------------------

def _encode_hu(array: np.ndarray, slope: float | None, intercept: float | None) -> tuple[np.ndarray, float, float]:
    """int16 stored values with slope/intercept that represent `array` (HU) exactly when it is integral."""
    a = np.asarray(array, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise InputFormatError("The CT volume holds NaN or infinite values; DICOM CT cannot store them. "
                               "Replace them (e.g. with -1000 HU) first.")
    lo, hi = float(a.min()), float(a.max())
    if slope is None or intercept is None:
        integral = np.all(a == np.round(a))
        if integral and lo - (-1024.0) >= -32768 and hi - (-1024.0) <= 32767:
            slope, intercept = 1.0, -1024.0
        elif integral and lo >= -32768 and hi <= 32767:
            slope, intercept = 1.0, 0.0
        else:
            intercept = (hi + lo) / 2.0
            slope = (hi - lo) / 65000.0 if hi > lo else 1.0
    if slope == 0:
        raise InputFormatError("rescale slope must not be zero.")
    stored = np.round((a - intercept) / slope)
    if stored.min() < -32768 or stored.max() > 32767:
        raise InputFormatError(f"HU range {lo}..{hi} does not fit int16 with slope {slope} and intercept "
                               f"{intercept}; choose another slope/intercept or leave them to the writer.")
    return stored.astype(np.int16), float(slope), float(intercept)


def _ds_number(value: float) -> str:
    """A DICOM DS string (at most 16 characters)."""
    text = f"{value:.10g}"
    if len(text) > 16:
        text = f"{value:.8e}" if abs(value) >= 1e10 or (value != 0 and abs(value) < 1e-4) else f"{value:.6f}"
    return text[:16]


def write_dicom_ct_series(volume: Volume, folder: str | os.PathLike, *, series_description: str = "VoxelDosimetry CT",
                          study_instance_uid: str | None = None, series_instance_uid: str | None = None,
                          frame_of_reference_uid: str | None = None, patient_name: str = "Anonymous",
                          patient_id: str = "VOXELDOSIMETRY", patient_position: str | None = None,
                          series_number: int = 1, rescale_slope: float | None = None,
                          rescale_intercept: float | None = None, file_prefix: str = "CT",
                          overwrite: bool = False) -> list[Path]:
    """Write a CT volume (HU) as a CT Image Storage series, one file per slice -> the file paths in slice order.

    Pixels are int16 with RescaleSlope/Intercept (slope 1 / intercept -1024 for integral HU). Geometry
    (ImageOrientationPatient, ImagePositionPatient, SliceLocation = position along the slice normal,
    SpacingBetweenSlices) comes from the Volume's grid. UIDs are new (pydicom.uid.generate_uid) except
    Study/FrameOfReference UIDs, taken from the arguments, then from `volume.metadata`, else new. No patient
    data is written beyond the placeholders. A volume whose direction is left-handed is still exact; a
    reader sorting along row x column returns it with the slice axis reversed.
    """
    pydicom = _pydicom()
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

    if not isinstance(volume, Volume):
        raise InputFormatError(f"write_dicom_ct_series needs a Volume, got {type(volume).__name__}.")
    if volume.quantity not in ("ct", "unknown"):
        raise UnitError(f"write_dicom_ct_series writes CT numbers (HU); this volume holds {volume.quantity!r} "
                        f"({volume.unit}). Write dose/activity as NRRD or DICOM RT Dose instead.")
    hu = volume.to_unit("HU").array if volume.quantity == "ct" else volume.array
    stored, slope, intercept = _encode_hu(hu, rescale_slope, rescale_intercept)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    nz, ny, nx = volume.shape
    paths = [folder / f"{file_prefix}{k + 1:04d}.dcm" for k in range(nz)]
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        raise InputFormatError(f"{existing[0]} already exists ({len(existing)} of the {nz} file names are taken). "
                               "Write into an empty folder, pick another file_prefix, or pass overwrite=True.")

    meta = volume.metadata or {}
    study_uid = study_instance_uid or meta.get("StudyInstanceUID") or generate_uid()
    frame_uid = frame_of_reference_uid or meta.get("FrameOfReferenceUID") or generate_uid()
    series_uid = series_instance_uid or generate_uid()
    position = patient_position or meta.get("PatientPosition") or "HFS"
    direction = volume.direction
    row, col, slice_dir = direction[:, 0], direction[:, 1], direction[:, 2]
    normal = np.cross(row, col)
    sx, sy, sz = volume.spacing
    origin = np.asarray(volume.origin)
    now = _dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    window_center, window_width = 40, 400

    for k, out_path in enumerate(paths):
        ipp = origin + k * sz * slice_dir
        meta_ds = FileMetaDataset()
        meta_ds.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        sop_uid = generate_uid()
        meta_ds.MediaStorageSOPInstanceUID = sop_uid
        meta_ds.TransferSyntaxUID = ExplicitVRLittleEndian
        meta_ds.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta_ds
        ds.preamble = b"\x00" * 128
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = time
        ds.AccessionNumber = ""
        ds.Modality = "CT"
        ds.Manufacturer = "VoxelDosimetry"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "VoxelDosimetry"
        ds.SeriesDescription = series_description
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.KVP = ""
        ds.PatientPosition = position
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = int(series_number)
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_ds_number(v) for v in ipp]
        ds.ImageOrientationPatient = [_ds_number(v) for v in np.concatenate([row, col])]
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = _ds_number(float(ipp @ normal))
        ds.SliceThickness = _ds_number(sz)
        ds.SpacingBetweenSlices = _ds_number(sz)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ny
        ds.Columns = nx
        ds.PixelSpacing = [_ds_number(sy), _ds_number(sx)]
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.WindowCenter = window_center
        ds.WindowWidth = window_width
        ds.RescaleIntercept = _ds_number(intercept)
        ds.RescaleSlope = _ds_number(slope)
        ds.RescaleType = "HU"
        ds.PixelData = np.ascontiguousarray(stored[k]).astype("<i2").tobytes()
        if int(pydicom.__version__.split(".")[0]) < 3:  # pragma: no cover - pydicom 2.x encoding flags
            ds.is_little_endian, ds.is_implicit_VR = True, False
            ds.save_as(str(out_path), write_like_original=False)
        else:
            ds.save_as(str(out_path), enforce_file_format=True)
    return paths
