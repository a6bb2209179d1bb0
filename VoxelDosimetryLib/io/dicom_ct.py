"""DICOM CT series: read (folder or .zip, any file order, any orientation) and write (CT Image Storage).

Geometry follows DICOM and SimpleITK: slices are sorted by the projection of ImagePositionPatient on the
slice normal n = row x column of ImageOrientationPatient; the Volume's direction columns are
(row, column, n), so it is always right-handed, and its origin is the position of the first sorted slice.
Feet-first or head-first, ascending or descending instance numbers: the file order never matters.

File collection lives in `dicom_files`, slice stacking in `dicom_slices`, value and date-time helpers in
`dicom_values`.
"""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError, UnitError
from VoxelDosimetryLib.io.dicom_files import (DicomCollection, DicomSource, describe_series, is_single_file,
                                             select_series, single_file_header)
from VoxelDosimetryLib.io.dicom_slices import DEFAULT_SPACING_TOLERANCE_MM, SliceStack, pixel_array, stack_geometry
from VoxelDosimetryLib.io.datetime_parse import combine_date_time, parse_dt
from VoxelDosimetryLib.io.dicom_values import get_float, get_str, get_value, import_pydicom, iso
from VoxelDosimetryLib.volume.volume import Volume

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


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
    single_file = is_single_file(path)
    if single_file:
        header = single_file_header(path)
        series_uid = series_uid or str(get_value(header, "SeriesInstanceUID", ""))
    with DicomCollection(path.parent if single_file else path) as collection:
        return read_ct_from_collection(collection, path, series_uid, spacing_tolerance_mm=spacing_tolerance_mm,
                                       padding_value_hu=padding_value_hu)


def read_ct_from_collection(collection: DicomCollection, path: Any, series_uid: str | None = None, *,
                            spacing_tolerance_mm: float = DEFAULT_SPACING_TOLERANCE_MM,
                            padding_value_hu: float | None = None) -> Volume:
    """read_dicom_ct_series on an already scanned DicomCollection (`path` names the input in messages)."""
    collection.check_usable("CT")
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
    stack = stack_geometry(sources, spacing_tolerance_mm, what=f"CT series {uid} in {path}")
    slopes = np.array([get_float(s.header, "RescaleSlope") or 1.0 for s in stack.sources])
    intercepts = np.array([get_float(s.header, "RescaleIntercept") or 0.0 for s in stack.sources])
    notes = list(stack.notes)
    if "RescaleSlope" not in stack.sources[0].header:
        notes.append("RescaleSlope/RescaleIntercept absent: stored values taken as HU")
    # int16 when every rescaled value is an integer in range (checked slice by slice), else int32/float32
    integral = all(_is_integral(v) for v in np.concatenate([slopes, intercepts]))
    dtype = np.int16 if integral else np.float32
    array = None  # allocated once the first slice has shown that Rows x Columns are real
    padding = get_float(stack.sources[0].header, "PixelPaddingValue")
    padding_limit = get_float(stack.sources[0].header, "PixelPaddingRangeLimit")
    padded = 0
    rows, cols = stack.grid.shape[1:]
    for k, src in enumerate(stack.sources):
        ds = src.read()
        stored = pixel_array(ds, src.name)
        if stored.shape != (rows, cols):
            raise InputFormatError(f"{src.name} holds pixels of shape {stored.shape}, expected ({rows}, {cols}).")
        if array is None:
            array = np.empty(stack.grid.shape, dtype=dtype)
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
    pydicom = import_pydicom()
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

    if not isinstance(volume, Volume):
        raise InputFormatError(f"write_dicom_ct_series needs a Volume, got {type(volume).__name__}.")
    if volume.quantity not in ("ct", "unknown"):
        raise UnitError(f"write_dicom_ct_series writes CT numbers (HU); this volume holds {volume.quantity!r} "
                        f"({volume.unit}). DICOM output is a CT image series only for now (no RT Dose or NM writer); "
                        "write it as NRRD (.nrrd) or NIfTI (.nii.gz) instead.")
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
