"""DICOM entry point: `read_dicom` loads a CT, a reconstructed SPECT or a PET series by its modality.

NM projection files are refused with an explanation (they must be reconstructed first); use
`read_nm_projections` to read them. `write_dicom_ct_series` is re-exported for the generic writer.
"""
from __future__ import annotations

import os
from pathlib import Path

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.io.dicom_ct import read_ct_from_collection, read_dicom_ct_series, write_dicom_ct_series
from VoxelDosimetryLib.io.dicom_files import (DicomCollection, SeriesInfo, describe_series, is_single_file,
                                             select_series, single_file_header)
from VoxelDosimetryLib.io.dicom_nm import (NMMetadata, image_kind, projection_error, read_dicom_spect,
                                          read_nm_metadata, read_nm_projections, read_spect_from_collection)
from VoxelDosimetryLib.io.dicom_values import get_float, get_str
from VoxelDosimetryLib.volume.volume import Volume

__all__ = ["read_dicom", "write_dicom_ct_series", "list_dicom_series", "read_dicom_ct_series", "read_dicom_spect",
           "read_nm_metadata", "read_nm_projections", "NMMetadata", "SeriesInfo"]

_VOLUME_MODALITIES = ("CT", "NM", "PT")


def list_dicom_series(path: str | os.PathLike) -> list[SeriesInfo]:
    """The DICOM series found in a folder (recursively), a .zip, or a single file."""
    with DicomCollection(path) as collection:
        return describe_series(collection.series())


def _classify(header) -> str:
    modality = get_str(header, "Modality") or ""
    if modality == "CT":
        return "ct"
    if modality in ("NM", "PT"):
        kind = image_kind(header)
        return "nm_volume" if kind == "reconstruction" else f"nm_{kind}"
    return modality.lower() or "unknown"


def read_dicom(path: str | os.PathLike, series_uid: str | None = None) -> Volume:
    """Read a DICOM CT, reconstructed SPECT (NM) or PET (PT) from a file, a folder or a .zip -> Volume.

    With several image series present, pass `series_uid` (the error lists them). CT comes back in HU,
    NM/PT in the units the file states (see dicom_nm.read_dicom_spect). NM projections raise
    InputFormatError: reconstruct them first (SlicerSPECTRecon, PyTomography).
    """
    path = Path(path)
    if is_single_file(path):
        header = single_file_header(path)
        kind = _classify(header)
        if kind == "ct":
            return read_dicom_ct_series(path, series_uid)
        if kind == "nm_volume":
            return read_dicom_spect(path, series_uid)
        if kind in ("nm_projections", "nm_planar"):
            raise projection_error(str(path), kind[3:])
        raise _unsupported(path, get_str(header, "Modality"))
    with DicomCollection(path) as collection:
        collection.check_usable("image volume (CT, NM or PT)")
        groups = collection.series()

        def is_volume(sources) -> bool:
            return _classify(sources[0].header) in ("ct", "nm_volume")

        if series_uid is None and groups and not any(is_volume(s) for s in groups.values()):
            first = next(iter(groups.values()))[0].header
            kind = _classify(first)
            if kind in ("nm_projections", "nm_planar"):
                raise projection_error(str(path), kind[3:])
            raise _unsupported(path, get_str(first, "Modality"))
        uid, sources = select_series(groups, series_uid, path, is_volume, "image volume (CT, NM or PT)")
        kind = _classify(sources[0].header)
        if kind == "ct":
            return read_ct_from_collection(collection, path, uid)
        if kind == "nm_volume":
            return read_spect_from_collection(collection, path, uid)
        if kind in ("nm_projections", "nm_planar"):
            frames = int(get_float(sources[0].header, "NumberOfFrames") or 1)
            raise projection_error(f"{path} (series {uid}, {frames} frames)", kind[3:])
        raise _unsupported(path, get_str(sources[0].header, "Modality"))


def _unsupported(path: Path, modality: str | None) -> InputFormatError:
    return InputFormatError(
        f"{path}: DICOM modality {modality or '(none)'} is not an input of this reader, which loads CT, "
        f"reconstructed NM (SPECT) and PT volumes. Convert the image to NRRD/NIfTI first, or pick another series.")
