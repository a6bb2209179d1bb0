"""Reader guards: refuse absurd or inconsistent headers before allocating, and name the file in every error.

Size rule (checked from the header, before any voxel memory is allocated):

* every axis needs at least one voxel, and an image may declare at most ``MAX_VOXELS`` voxels
  (2**31 = 2 147 483 648, i.e. 8 GiB as float32; a whole-body CT of 512 x 512 x 2000 has 5.2e8). Raise it with
  the environment variable ``VOXELDOSIMETRY_MAX_VOXELS`` or by setting ``read_guard.MAX_VOXELS``;
* uncompressed data must hold at least the bytes the header declares (fewer means a truncated or wrong file);
* deflate data (gzip, zlib) cannot expand more than ``DEFLATE_MAX_RATIO`` (1032) times, so a header declaring
  more than that is refused before decompressing; decompression itself stops at the declared size.

`reading(path, fmt)` wraps third-party calls (pynrrd, SimpleITK, pydicom, zipfile, gzip, numpy): whatever they
raise becomes an InputFormatError naming the file, the format and the problem (the original is chained).
"""
from __future__ import annotations

import bz2
import os
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Sequence

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError, VoxelDosimetryError

MAX_VOXELS = 2 ** 31
MAX_VOXELS_ENV = "VOXELDOSIMETRY_MAX_VOXELS"
DEFLATE_MAX_RATIO = 1032
CHUNK_BYTES = 1 << 22


def max_voxels() -> int:
    """The voxel cap in force: the environment variable when set, else MAX_VOXELS."""
    value = os.environ.get(MAX_VOXELS_ENV, "").strip()
    if not value:
        return int(MAX_VOXELS)
    try:
        return int(float(value))
    except ValueError:
        raise InputFormatError(f"{MAX_VOXELS_ENV}={value!r} is not a number; set it to a voxel count such as "
                               "4294967296 or unset it.") from None


def _reason(exc: BaseException) -> str:
    """A one-line description of a third-party exception (SimpleITK messages span many lines)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[-1].rstrip(".!?:; ") if lines else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextmanager
def reading(path: str | Path, fmt: str) -> Iterator[None]:
    """Turn any exception of the wrapped third-party calls into an InputFormatError naming `path`."""
    try:
        yield
    except VoxelDosimetryError:
        raise
    except MemoryError:
        raise InputFormatError(f"Not enough memory to read {fmt} {path}: its header declares more data "
                               "than this machine can hold. Check that the file is the intended image, or crop or "
                               "downsample it first.") from None
    except Exception as exc:
        raise InputFormatError(f"Cannot read {fmt} {path}: {_reason(exc)}. The file is damaged, truncated or not "
                               f"valid {fmt}; re-export or re-copy it.") from exc


def check_voxel_count(path: str | Path, sizes: Sequence[Any], what: str = "image") -> int:
    """The number of voxels `sizes` declares; InputFormatError for an empty axis or more than max_voxels()."""
    try:
        dims = [int(s) for s in sizes]
        exact = all(float(s) == int(s) for s in sizes)
    except (TypeError, ValueError, OverflowError):
        dims, exact = [], False
    if not dims or not exact:
        raise InputFormatError(f"{path}: the {what} sizes {list(sizes)} are not whole numbers; fix the header.")
    if min(dims) < 1:
        raise InputFormatError(f"{path}: the {what} declares sizes {dims}; every axis needs at least one voxel. "
                               "The header is damaged; re-export the image.")
    count = int(np.prod(dims, dtype=object))
    cap = max_voxels()
    if count > cap:
        raise InputFormatError(f"{path}: the {what} declares {' x '.join(map(str, dims))} = {count} voxels, more "
                               f"than the reader limit of {cap}. The header is damaged or the image is far larger "
                               f"than a patient volume; if it is genuine, raise the limit with the environment "
                               f"variable {MAX_VOXELS_ENV}.")
    return count


def check_data_size(path: str | Path, data_path: str | Path, offset: int, needed: int,
                    compression: str | None = None) -> None:
    """Refuse data that cannot hold `needed` bytes: missing, shorter (raw) or too small to inflate to it (deflate).

    offset: where the data starts in `data_path` (the header length for single-file formats).
    compression: None (raw), 'deflate' (gzip/zlib) or another name (only existence is checked).
    """
    data_path = Path(data_path)
    if not data_path.is_file():
        raise InputFormatError(f"{path}: the data file {data_path} named by the header is missing. Put it next to "
                               "the header (copy both files together).")
    available = data_path.stat().st_size - int(offset)
    where = "after the header" if Path(path) == data_path else f"in {data_path.name}"
    if compression is None and available < needed:
        raise InputFormatError(f"{path}: the header declares {needed} bytes of voxel data but only "
                               f"{max(available, 0)} bytes follow {where}: the file is truncated or does not "
                               "belong to this header. Re-copy or re-export it.")
    if compression == "deflate" and needed > DEFLATE_MAX_RATIO * max(available, 0):
        raise InputFormatError(f"{path}: the header declares {needed} bytes of voxel data, which {max(available, 0)} "
                               f"compressed bytes {where} cannot hold (deflate expands at most {DEFLATE_MAX_RATIO}-"
                               "fold): the header is damaged or the data truncated. Re-copy or re-export it.")


def check_geometry(path: str | Path, spacing: Sequence[float] | None, origin: Sequence[float] | None = None,
                   direction: Any = None) -> None:
    """Positive finite spacing, finite origin, finite non-singular direction (each when given); errors name `path`."""
    sp = np.asarray([] if spacing is None else spacing, dtype=float).reshape(-1)
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise InputFormatError(f"{path}: voxel spacing {sp.tolist()} mm must be finite and positive; the header is "
                               "damaged. Fix the spacing in the header or re-export the image.")
    if origin is not None:
        org = np.asarray(origin, dtype=float).reshape(-1)
        if not np.all(np.isfinite(org)):
            raise InputFormatError(f"{path}: the origin {org.tolist()} mm is not finite; the header is damaged. "
                                   "Fix the origin in the header or re-export the image.")
    if direction is not None:
        mat = np.asarray(direction, dtype=float)
        n = int(round(np.sqrt(mat.size)))
        if n * n != mat.size or not np.all(np.isfinite(mat)):
            raise InputFormatError(f"{path}: the direction matrix {mat.reshape(-1).tolist()} is not a finite square "
                                   "matrix; the header is damaged.")
        if abs(np.linalg.det(mat.reshape(n, n))) < 1e-6:
            raise InputFormatError(f"{path}: the direction matrix {mat.reshape(n, n).tolist()} is singular (two axes "
                                   "are parallel or one is zero); the header is damaged. Fix it or re-export the "
                                   "image.")


def _decompressor(codec: str) -> Any:
    if codec in ("gzip", "gz"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if codec == "zlib":
        return zlib.decompressobj(zlib.MAX_WBITS | 32)  # zlib or gzip header, detected
    if codec in ("bzip2", "bz2"):
        return bz2.BZ2Decompressor()
    raise InputFormatError(f"Unknown compression {codec!r}.")


def _inflated_pieces(fh: BinaryIO, codec: str, limit: int, path: str | Path) -> Iterator[bytes]:
    """Decompressed pieces of the rest of `fh`; InputFormatError when the stream is corrupt, ends early or
    expands beyond `limit` bytes (memory stays bounded by `limit` whatever the stream holds)."""
    decomp = _decompressor(codec)
    produced = 0
    with reading(path, f"{codec} data"):
        while not decomp.eof:
            data = fh.read(CHUNK_BYTES)
            if not data:
                raise InputFormatError(f"{path}: the compressed voxel data end early (truncated after {produced} "
                                       "decompressed bytes); re-copy or re-export the file.")
            while True:
                piece = decomp.decompress(data, limit + 1 - produced)
                produced += len(piece)
                if produced > limit:
                    raise InputFormatError(f"{path}: the compressed voxel data expand to more than the {limit} "
                                           "bytes the header declares: the data are corrupt, or the header is "
                                           "damaged or belongs to another file. Re-copy or re-export it.")
                yield piece
                if isinstance(decomp, bz2.BZ2Decompressor):
                    data = b""
                    if decomp.needs_input or decomp.eof:
                        break
                else:
                    data = decomp.unconsumed_tail
                    if not data:
                        break


def inflate(fh: BinaryIO, codec: str, limit: int, path: str | Path) -> bytearray:
    """The decompressed rest of `fh` ('gzip', 'zlib' or 'bzip2'), at most `limit` bytes (see _inflated_pieces)."""
    out = bytearray()
    for piece in _inflated_pieces(fh, codec, limit, path):
        out += piece
    return out


def count_inflated(fh: BinaryIO, codec: str, limit: int, path: str | Path) -> int:
    """How many bytes the rest of `fh` decompresses to (at most `limit`), in constant memory; verifies the stream."""
    return sum(len(piece) for piece in _inflated_pieces(fh, codec, limit, path))
