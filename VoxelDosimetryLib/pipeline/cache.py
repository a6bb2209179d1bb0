"""Step cache of a pipeline output folder: a step is reused when its key and its outputs are unchanged.

key = sha256 of (step name, sha256 of every input file (NRRD header comments left out), the step's parameters,
library version). The record `steps/<name>.json` keeps the key, the outputs with their sha256, timing and the
step's info; a step is fresh when the record's key equals the new key and every output file exists with the
recorded sha256.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Iterable

from VoxelDosimetryLib import __version__
from VoxelDosimetryLib.io.safe_write import input_files, write_text_atomic

STEPS_FOLDER = "steps"
_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, or of a folder's files (relative names and contents, sorted by name)."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(item.relative_to(path)).encode("utf-8"))
            digest.update(bytes.fromhex(file_sha256(item)))
        return digest.hexdigest()
    with open(path, "rb") as fh:
        if path.suffix.lower() in (".nrrd", ".nhdr"):
            digest.update(_nrrd_header_without_comments(fh))
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _nrrd_header_without_comments(fh) -> bytes:
    """The NRRD header up to its blank line minus '#' comment lines (pynrrd writes the time of writing in one),
    so rewriting the same volume gives the same hash; `fh` is left at the start of the data."""
    lines = []
    for line in iter(fh.readline, b""):
        if not line.startswith(b"#"):
            lines.append(line)
        if line in (b"\n", b"\r\n"):
            break
    return b"".join(lines)


def _canonical(value: Any) -> Any:
    """JSON-stable form of parameters: floats by repr, mappings with sorted string keys."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda item: str(item[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return _canonical(value.item())
    return value


class StepCache:
    """Step records of one output folder, with file hashes memoised by (path, size, mtime) within a run."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.folder = self.out_dir / STEPS_FOLDER
        self._hashes: dict[tuple, str] = {}

    def sha256(self, path: str | Path) -> str:
        """sha256 of an input or output: a file with every file it consists of (the data file its header names,
        its JSON sidecar: io.safe_write.input_files), or a folder's files."""
        path = Path(path)
        parts = [path] if path.is_dir() else [p for p in input_files(path) if p.is_file()] or [path]
        hashes = []
        for part in parts:
            stat = part.stat()
            memo_key = (str(part.resolve()), stat.st_size, stat.st_mtime_ns, part.is_dir())
            if memo_key not in self._hashes:
                self._hashes[memo_key] = file_sha256(part)
            hashes.append(self._hashes[memo_key])
        if len(hashes) == 1:
            return hashes[0]
        return hashlib.sha256("".join(hashes).encode("ascii")).hexdigest()

    def input_hashes(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """{name: sha256} for input paths (a name may hold a list of paths or None)."""
        out: dict[str, Any] = {}
        for name, value in inputs.items():
            if value is None:
                out[name] = None
            elif isinstance(value, (list, tuple)):
                out[name] = [self.sha256(p) for p in value]
            else:
                out[name] = self.sha256(value)
        return out

    def key(self, name: str, input_hashes: dict, params: dict) -> str:
        text = json.dumps({"step": name, "inputs": _canonical(input_hashes), "params": _canonical(params),
                           "library_version": __version__}, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def record_path(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    def load(self, name: str) -> dict | None:
        path = self.record_path(name)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def fresh_record(self, name: str, key: str, outputs: Iterable[str | Path]) -> dict | None:
        """The stored record when it has `key` and every output is present and unchanged, else None."""
        record = self.load(name)
        if record is None or record.get("key") != key:
            return None
        stored = record.get("outputs", {})
        for path in outputs:
            relative = self.relative(path)
            if relative not in stored or not Path(path).is_file() or self.sha256(path) != stored[relative]:
                return None
        return record

    def save(self, name: str, record: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.record_path(name), json.dumps(record, indent=2, default=str) + "\n")

    def output_hashes(self, outputs: Iterable[str | Path]) -> dict[str, str]:
        return {self.relative(p): self.sha256(p) for p in outputs}

    def relative(self, path: str | Path) -> str:
        """`path` relative to the output folder (POSIX separators) when inside it."""
        path = Path(path)
        try:
            return path.resolve().relative_to(self.out_dir.resolve()).as_posix()
        except ValueError:
            return str(path)
