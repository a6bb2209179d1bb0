"""DICOM file collection (folder, single file or .zip), header reading, series grouping and selection.

Damaged input fails with InputFormatError naming the file: a file meant to be DICOM (named *.dcm, or with
'DICM' after the 128-byte preamble) whose header cannot be parsed or ends before its SOPInstanceUID, a zip
member that cannot be decompressed, a .zip that is not a zip archive, or an input without any DICOM file (the
error lists examples of what was skipped). Other files that do not parse (text, images) and DICOMDIR are skipped.
"""
from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.io.dicom_values import get_float, get_str, get_value, import_pydicom
from VoxelDosimetryLib.io.read_guard import reading

DICOMDIR_STORAGE = "1.2.840.10008.1.3.10"
# CT, Enhanced CT, NM, PET and Enhanced PET Image Storage: the SOP classes whose images this library loads
VOLUME_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.20",
                      "1.2.840.10008.5.1.4.1.1.128", "1.2.840.10008.5.1.4.1.1.130")


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
        with reading(self.name, "DICOM"):
            if self.path is not None:
                return pydicom.dcmread(str(self.path), force=True)
            assert self.collection is not None and self.member is not None
            return pydicom.dcmread(io.BytesIO(self.collection.read_member(self.member)), force=True)


def is_single_file(path: Path) -> bool:
    """True for one DICOM file (not a folder, not a .zip archive)."""
    return path.is_file() and path.suffix.lower() != ".zip" and not zipfile.is_zipfile(path)


class DicomCollection:
    """All DICOM files found under a path (folder searched recursively, a single file, or a .zip).

    `skipped` lists files that are not DICOM; `damaged` lists (file, problem) for DICOM files that cannot be
    read; `check_usable` turns an empty or damaged collection into an InputFormatError.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        self.sources: list[DicomSource] = []
        self.skipped: list[str] = []
        self.damaged: list[tuple[str, str]] = []
        if not self.path.exists():
            raise InputFormatError(f"DICOM input {self.path} does not exist. Give a folder, a .zip or a DICOM file.")
        if self.path.is_file() and (self.path.suffix.lower() == ".zip" or zipfile.is_zipfile(self.path)):
            self._scan_zip()
        else:
            files = [self.path] if self.path.is_file() else sorted(p for p in self.path.rglob("*") if p.is_file())
            for p in files:
                header, problem = parse_header(str(p))
                damage = problem if problem is not None and _looks_like_dicom(p.name, p) else None
                self._add(str(p), header, damage, path=p)

    def _scan_zip(self) -> None:
        if not zipfile.is_zipfile(self.path):
            raise InputFormatError(f"{self.path} is not a readable zip archive ({self.path.stat().st_size} bytes; "
                                   "truncated, damaged or not a zip). Re-copy or re-create it, or unpack the DICOM "
                                   "files into a folder and give the folder.")
        with reading(self.path, "zip archive"):
            self._zip = zipfile.ZipFile(self.path)
            infos = self._zip.infolist()
        for info in infos:
            if info.is_dir() or "__MACOSX" in info.filename:
                continue
            name = f"{self.path.name}!{info.filename}"
            try:
                with self._zip.open(info) as fp:
                    header, problem = parse_header(fp)
                if problem is not None:
                    with self._zip.open(info) as fp:
                        problem = problem if _looks_like_dicom(info.filename, fp) else None
            except Exception as exc:  # the member itself cannot be decompressed
                header, problem = None, f"{type(exc).__name__}: {exc}"
            self._add(name, header, problem, member=info.filename)

    def _add(self, name: str, header: Any, damage: str | None, **where: Any) -> None:
        """File a scanned file: a source, a damaged DICOM file (`damage` says why), or a skipped non-DICOM file."""
        if header is not None:
            self.sources.append(DicomSource(name, header, collection=self, **where))
        elif damage:
            self.damaged.append((name, damage))
        else:
            self.skipped.append(name)

    def check_usable(self, what: str = "image") -> None:
        """InputFormatError when a DICOM file is damaged or when no DICOM file was found."""
        if self.damaged:
            examples = "; ".join(f"{name}: {problem}" for name, problem in self.damaged[:3])
            raise InputFormatError(f"{len(self.damaged)} DICOM file(s) in {self.path} cannot be read (damaged or "
                                   f"truncated), e.g. {examples}. Re-copy or re-export the series, or remove the "
                                   "damaged files.")
        if not self.sources:
            found = (f"{len(self.skipped)} file(s) that are not DICOM, e.g. {', '.join(self.skipped[:3])}"
                     if self.skipped else "no files")
            raise InputFormatError(f"No DICOM files found in {self.path} ({found}). Give a folder or .zip holding "
                                   f"one {what} series.")

    def read_member(self, member: str) -> bytes:
        if self._zip is None:  # pragma: no cover - internal misuse
            raise InputFormatError("Not a zip collection.")
        with reading(f"{self.path}!{member}", "zip member"):
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


def _has_dicom_marker(fp: Any) -> bool:
    """True when the file (a path or an open binary file) has 'DICM' after the 128-byte preamble."""
    try:
        if isinstance(fp, (str, Path)):
            with open(fp, "rb") as fh:
                head = fh.read(132)
        else:
            head = fp.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _looks_like_dicom(name: str, fp: Any) -> bool:
    """A file meant to be DICOM: named *.dcm, or with the 'DICM' marker (unreadable ones are damaged, not skipped)."""
    return name.lower().endswith(".dcm") or _has_dicom_marker(fp)


def parse_header(fp: Any) -> tuple[Any | None, str | None]:
    """(dataset without pixel data, None) for a usable DICOM object; (None, problem) when parsing failed;
    (None, None) for a DICOM object that is not an image (DICOMDIR)."""
    pydicom = import_pydicom()
    from pydicom.errors import InvalidDicomError
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True)
    except InvalidDicomError:
        try:  # files written without the 128-byte preamble
            if hasattr(fp, "seek"):
                fp.seek(0)
            ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
        except Exception as exc:
            return None, f"{type(exc).__name__}: {exc}"
        if "SOPInstanceUID" not in ds or "Modality" not in ds:
            return None, "no readable DICOM header (the file is truncated, or not DICOM)"
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"
    sop_class = str(get_value(ds, "SOPClassUID", "") or get_value(getattr(ds, "file_meta", None),
                                                                   "MediaStorageSOPClassUID", ""))
    if sop_class == DICOMDIR_STORAGE or "DirectoryRecordSequence" in ds:
        return None, None
    if "SOPInstanceUID" not in ds:  # every DICOM object has one: the file ends before it
        return None, "the data set ends before its SOPInstanceUID (0008,0018); the file is truncated"
    if sop_class in VOLUME_SOP_CLASSES and ("Modality" not in ds or "SeriesInstanceUID" not in ds):
        return None, ("it lacks Modality or SeriesInstanceUID, which every CT/NM/PET image has; the file is "
                      "truncated or damaged")
    return ds, None


def read_header(fp: Any) -> Any | None:
    """Dataset without pixel data, or None when the file is not a DICOM image/object we can use."""
    return parse_header(fp)[0]


def single_file_header(path: Path) -> Any:
    """The header of one DICOM file; InputFormatError saying whether it is damaged or not DICOM at all."""
    if path.stat().st_size == 0:
        raise InputFormatError(f"{path} is empty (0 bytes): the copy or export failed. Re-copy the file.")
    header, problem = parse_header(str(path))
    if header is not None:
        return header
    if problem is not None and _has_dicom_marker(path):
        raise InputFormatError(f"{path} is a damaged DICOM file (its header cannot be read: {problem}). Re-copy or "
                               "re-export it.")
    raise InputFormatError(f"{path} is not a DICOM file (no DICOM header could be read).")


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
