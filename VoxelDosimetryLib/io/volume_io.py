"""read_volume / write_volume: one entry point for every volume format, chosen by file extension.

=============================  ======================================================
``.nrrd`` ``.nhdr``            NRRD (quantity/unit/metadata in the header)
``.nii`` ``.nii.gz``           NIfTI-1 (+ JSON sidecar)
``.mhd`` ``.mha``              MetaImage, GATE DoseActor outputs (+ JSON sidecar)
``.h33`` ``.hdr``              Interfile (+ JSON sidecar); a binary .hdr (Analyze) is refused
folder, ``.zip``, ``.dcm``     DICOM (VoxelDosimetryLib.io.dicom); writing: a folder path without
                               extension or ``format="dicom"`` writes a CT series
=============================  ======================================================

Explicit quantity/unit arguments override what the file says; a file that states no unit gives quantity
'unknown' and metadata["source"]["unit_stated"] = False (never guessed silently).

Damaged input (empty, truncated, corrupt, absurd or inconsistent headers) raises InputFormatError naming the
file and the problem; headers are checked before voxel memory is allocated (io/read_guard.py states the size
rule). Anything unexpected that a third-party reader raises is turned into an InputFormatError here too.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.io.interfile_io import is_interfile_header, read_interfile, write_interfile
from VoxelDosimetryLib.io.metaimage_io import read_metaimage, write_metaimage
from VoxelDosimetryLib.io.nifti_io import read_nifti, write_nifti
from VoxelDosimetryLib.io.nrrd_io import read_nrrd, write_nrrd
from VoxelDosimetryLib.io.read_guard import reading
from VoxelDosimetryLib.io.safe_write import atomic_output
from VoxelDosimetryLib.io.sidecar import check_sidecar_writable, relabel
from VoxelDosimetryLib.volume.volume import Volume

# extension -> format name (compound extensions first)
_FORMAT_BY_EXTENSION = (
    (".nii.gz", "nifti"), (".nii", "nifti"), (".nrrd", "nrrd"), (".nhdr", "nrrd"), (".mhd", "metaimage"),
    (".mha", "metaimage"), (".h33", "interfile"), (".hdr", "interfile"), (".zip", "dicom"), (".dcm", "dicom"),
)
SUPPORTED_EXTENSIONS = tuple(ext for ext, _ in _FORMAT_BY_EXTENSION)
FORMATS = ("nrrd", "nifti", "metaimage", "interfile", "dicom")
_FORMAT_NAMES = {"nrrd": "NRRD", "nifti": "NIfTI", "metaimage": "MetaImage", "interfile": "Interfile",
                 "dicom": "DICOM"}

_READERS = {"nrrd": read_nrrd, "nifti": read_nifti, "metaimage": read_metaimage, "interfile": read_interfile}
_WRITERS = {"nrrd": write_nrrd, "nifti": write_nifti, "metaimage": write_metaimage, "interfile": write_interfile}


def _supported_text() -> str:
    return ", ".join(SUPPORTED_EXTENSIONS) + ", or a DICOM folder"


def format_for_path(path: str | Path) -> str | None:
    """The format name implied by a file name's extension (case-insensitive), or None."""
    name = Path(path).name.lower()
    for ext, fmt in _FORMAT_BY_EXTENSION:
        if name.endswith(ext) and len(name) > len(ext):
            return fmt
    return None


def _is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _check_options(func: Any, options: dict, fmt: str) -> None:
    fixed = ("path", "volume", "folder", "quantity", "unit")
    allowed = [name for name, p in inspect.signature(func).parameters.items()
               if name not in fixed and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InputFormatError(f"Option(s) {unknown} do not apply to {fmt} files; "
                               f"{func.__name__} accepts {allowed or 'no options'}.")


def read_volume(path: str | Path, quantity: str | None = None, unit: str | None = None, **options: Any) -> Volume:
    """Read any supported volume file (or DICOM folder/zip) as an LPS Volume.

    quantity/unit: override the file's labels (e.g. quantity='activity_concentration', unit='MBq/mL').
    options: passed to the format reader (e.g. axis_directions=, slice_thickness_unit= for Interfile).
    """
    path = Path(path)
    if not path.exists():
        raise InputFormatError(f"No such file or folder: {path}. Check the path.")
    if path.is_file() and path.stat().st_size == 0:
        raise InputFormatError(f"{path} is empty (0 bytes): the copy, download or export that made it failed. "
                               "Re-copy or re-export it.")
    if path.is_dir():
        fmt = "dicom"
    else:
        fmt = format_for_path(path)
        if fmt is None and _is_dicom_file(path):
            fmt = "dicom"
    if fmt is None:
        raise InputFormatError(f"Cannot tell the format of {path.name} from its extension. Supported: "
                               f"{_supported_text()}.")
    if fmt == "interfile" and path.name.lower().endswith(".hdr") and not is_interfile_header(path):
        raise InputFormatError(f"{path} is not an Interfile header (no '!INTERFILE' at the start); Analyze "
                               ".hdr/.img files are not supported: convert them to NIfTI first.")
    if fmt == "dicom":
        from VoxelDosimetryLib.io.dicom import read_dicom  # lazy: optional heavy dependency (pydicom)

        _check_options(read_dicom, options, fmt)
        with reading(path, _FORMAT_NAMES[fmt]):  # last line of defence: every failure names the file
            volume = read_dicom(path, **options)
        return relabel(volume, quantity=quantity, unit=unit)
    reader = _READERS[fmt]
    _check_options(reader, options, fmt)
    with reading(path, _FORMAT_NAMES[fmt]):
        return reader(path, quantity=quantity, unit=unit, **options)


def write_volume(volume: Volume, path: str | Path, format: str | None = None, **options: Any) -> Path:
    """Write `volume` in the format named by `format` or by the path's extension; returns the written path.

    A path without extension (or format='dicom') writes a DICOM CT series into that folder. The volume is
    never modified; dtypes are kept where the format allows (all but float16). options go to the writer
    (e.g. compress= for NRRD/MetaImage).
    """
    if not isinstance(volume, Volume):
        raise InputFormatError(f"write_volume needs a Volume, got {type(volume).__name__}.")
    path = Path(path)
    if format is not None:
        fmt = str(format).strip().lower()
        if fmt not in FORMATS:
            raise InputFormatError(f"Unknown format {format!r}; use one of {', '.join(FORMATS)}.")
        implied = format_for_path(path)
        if fmt != "dicom" and implied != fmt:
            raise InputFormatError(f"format={format!r} does not match the file name {path.name}; use one of "
                                   f"{', '.join(e for e, f in _FORMAT_BY_EXTENSION if f == fmt)}.")
    elif path.suffix == "" or path.is_dir():
        fmt = "dicom"
    else:
        fmt = format_for_path(path)
        if fmt is None:
            raise InputFormatError(f"Cannot tell the output format from {path.name}. Supported: "
                                   f"{', '.join(e for e, f in _FORMAT_BY_EXTENSION if f != 'dicom')}, or a folder "
                                   "path without extension for a DICOM series.")
        if fmt == "dicom":
            raise InputFormatError(f"Writing DICOM into {path.name} is not supported; give a folder path "
                                   "without extension for a DICOM series.")
    if fmt == "dicom":
        from VoxelDosimetryLib.io.dicom import write_dicom_ct_series  # lazy: optional heavy dependency

        _check_options(write_dicom_ct_series, options, fmt)
        with atomic_output(path) as staged:  # the whole series appears at once
            write_dicom_ct_series(volume, staged, **options)
        return path
    writer = _WRITERS[fmt]
    _check_options(writer, options, fmt)
    if fmt in ("nifti", "metaimage", "interfile"):
        check_sidecar_writable(path)  # the staged write cannot see a sidecar of another image at the target
    with atomic_output(path) as staged:  # data file, sidecar and header renamed into place when complete
        writer(volume, staged, **options)
    return path
