"""DICOM file collection (folder, single file or .zip), header reading, series grouping and selection."""
from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.io.dicom_values import get_float, get_str, get_value, import_pydicom

DICOMDIR_STORAGE = "1.2.840.10008.1.3.10"


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
        pydicom = import_pydicom()
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
                    header = read_header(fp)
                if header is None:
                    self.skipped.append(info.filename)
                else:
                    self.sources.append(DicomSource(f"{self.path.name}!{info.filename}", header,
                                                    member=info.filename, collection=self))
        else:
            files = [self.path] if self.path.is_file() else sorted(p for p in self.path.rglob("*") if p.is_file())
            for p in files:
                header = read_header(str(p))
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


def read_header(fp: Any) -> Any | None:
    """Dataset without pixel data, or None when the file is not a DICOM image/object we can use."""
    pydicom = import_pydicom()
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
