"""One write policy for every file the project writes (docs/RELIABILITY.md).

1. Before any computation, `check_outputs` checks every output path at once: a supported extension, a folder that
   exists or can be created and is writable, not equal to (same file by inode or symlink) or inside any input,
   no two outputs the same, and no existing file replaced unless `force` or the file was made by the same command
   (recorded in the folder's ledger, `.voxeldosimetry-outputs.json`) and has not changed since.
2. Every write goes through `atomic_output`: the writer writes into a hidden staging folder beside the target, and
   the finished files are renamed into place (`os.replace`, atomic on one file system), so an interrupted run never
   leaves a half-written file; a left-over staging folder is removed by the next write in that folder.
3. While a command runs inside `output_session(command, inputs, force)`, a write that would land on one of the
   session's inputs is refused even if it was not declared up front.
"""
from __future__ import annotations

import contextvars
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

from VoxelDosimetryLib.errors import VoxelDosimetryError

LEDGER_NAME = ".voxeldosimetry-outputs.json"
STAGING_PREFIX = ".voxeldosimetry-partial-"

# Companion files a writer puts beside the named file (MetaImage data, sidecars, Interfile data, NRRD data file).
_COMPANIONS = {".mhd": (".raw", ".zraw", ".json"), ".mha": (".json",), ".nii": (".json",), ".nii.gz": (".json",),
               ".h33": (".i33", ".json"), ".hdr": (".img", ".json"), ".nhdr": (".raw", ".raw.gz")}


class OutputPathError(VoxelDosimetryError, ValueError):
    """An output path is unusable: unsupported, unwritable, an input, or an existing file not ours to replace."""


@dataclass
class OutputSession:
    """The command writing now, its inputs (never written) and whether existing outputs may be replaced."""

    command: str
    inputs: list[Path] = field(default_factory=list)
    force: bool = False
    updates: list[Path] = field(default_factory=list)  # existing files this command updates by design (case.json)

    def allow_update(self, path: str | Path) -> None:
        """`path` may be replaced even though another command made it (e.g. `gate import` adds mc/ to case.json)."""
        self.updates.append(Path(path))


_SESSION: contextvars.ContextVar[OutputSession | None] = contextvars.ContextVar("voxeldosimetry_output_session",
                                                                               default=None)


@contextmanager
def output_session(command: str, inputs: Iterable[str | Path | None] = (), force: bool = False
                   ) -> Iterator[OutputSession]:
    """Writes inside the block are recorded as made by `command` and may never touch `inputs` (nor the inputs of
    an enclosing session: `demo` running the pipeline, `run` reading its config file)."""
    outer = _SESSION.get()
    inherited = list(outer.inputs) if outer is not None else []
    session = OutputSession(command, inherited + [Path(p) for p in inputs if p not in (None, "")], force)
    token = _SESSION.set(session)
    try:
        yield session
    finally:
        _SESSION.reset(token)


def current_session() -> OutputSession | None:
    return _SESSION.get()


# ----------------------------------------------------------------------------------------------- path checks
def extension_of(path: str | Path) -> str:
    """Lower-case extension, compound for .nii.gz/.raw.gz ('' for a folder name without one)."""
    name = Path(path).name.lower()
    for compound in (".nii.gz", ".raw.gz", ".tar.gz"):
        if name.endswith(compound) and len(name) > len(compound):
            return compound
    return Path(name).suffix


def companion_files(path: str | Path) -> list[Path]:
    """Files a writer may create next to `path` (data files, JSON sidecars)."""
    path = Path(path)
    ext = extension_of(path)
    stem = path.name[: len(path.name) - len(ext)] if ext else path.name
    return [path.with_name(stem + other) for other in _COMPANIONS.get(ext, ())]


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.abspath(os.path.realpath(a)) == os.path.abspath(os.path.realpath(b))


def _inside(path: Path, folder: Path) -> bool:
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(folder))
        return True
    except ValueError:
        return False


def _writable_folder_problem(folder: Path) -> str | None:
    """None when files can be created in `folder` (created on demand), else why not."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return f"none of the folders above {folder} exists"
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"the folder {probe} is not writable"
    return None


def _ledger(folder: Path) -> dict:
    try:
        data = json.loads((folder / LEDGER_NAME).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _stamp(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _changed_since(path: Path, entry: dict) -> bool:
    """True when the file `path` differs (size or modification time) from its ledger `entry`."""
    return path.is_file() and {k: entry.get(k) for k in ("size", "mtime_ns")} != _stamp(path)


def made_by(path: str | Path) -> str | None:
    """The command that wrote `path` (from its folder's ledger) when the file is unchanged since, else None.

    A folder was made by a command when the ledgers inside it list only that command (an output folder such as
    `run`'s, even when a killed run wrote only part of it).
    """
    path = Path(path)
    if not path.exists():
        return None
    if path.is_dir():
        entry = _ledger(path.parent).get(path.name)
        if isinstance(entry, dict):  # a folder written as a whole (a DICOM series)
            return entry.get("command")
        owners = set()
        for ledger in path.rglob(LEDGER_NAME):
            for name, entry in _ledger(ledger.parent).items():
                target = ledger.parent / name
                if not isinstance(entry, dict):
                    continue
                if "size" in entry and _changed_since(target, entry):
                    return None  # a file in the folder changed since its command wrote it
                owners.add(entry.get("command"))
        return owners.pop() if len(owners) == 1 else None
    entry = _ledger(path.parent).get(path.name)
    if not isinstance(entry, dict):
        return None
    return None if _changed_since(path, entry) else entry.get("command")


def check_outputs(outputs: Mapping[str, str | Path | None], inputs: Iterable[str | Path | None] = (), *,
                  command: str | None = None, force: bool | None = None,
                  extensions: Mapping[str, Sequence[str]] | None = None) -> dict[str, Path]:
    """Check every output path before any work starts; raise one OutputPathError listing all problems.

    outputs: {option name (as the user knows it, e.g. '--out'): path}; None entries are skipped.
    extensions: {option name: allowed extensions ('' = a folder)}; omitted names accept any extension.
    command/force default to the current output_session's.
    """
    session = current_session()
    command = command if command is not None else (session.command if session else None)
    force = force if force is not None else (session.force if session else False)
    input_paths = [Path(p) for p in inputs if p not in (None, "")]
    if session is not None:
        input_paths += [p for p in session.inputs if p not in input_paths]
    problems: list[str] = []
    chosen: dict[str, Path] = {}
    for name, value in outputs.items():
        if value in (None, ""):
            continue
        path = Path(value)
        allowed = (extensions or {}).get(name)
        if allowed is not None and extension_of(path) not in allowed:
            shown = ", ".join(e or "a folder path without extension" for e in allowed)
            problems.append(f"{name} {path}: unsupported extension {extension_of(path) or '(none)'!r}; use {shown}")
            continue
        folder_problem = _writable_folder_problem(path.parent)
        if folder_problem:
            problems.append(f"{name} {path}: cannot write there ({folder_problem})")
            continue
        targets = [path] + companion_files(path)
        clash = next(((t, i) for t in targets for i in input_paths if _same_file(t, i) or _inside(t, i)
                      or (path.is_dir() and _inside(i, path))), None)
        if clash is not None:
            problems.append(f"{name} {path}: would overwrite the input {clash[1]}; choose another output path")
            continue
        earlier = next((n for n, p in chosen.items() if _same_file(p, path)), None)
        if earlier is not None:
            problems.append(f"{name} {path}: the same file as {earlier}; give each output its own path")
            continue
        if path.exists() and not force and not _empty_folder(path):
            owner = made_by(path)
            if owner is None or owner != command:
                by = f"made by '{owner}'" if owner else "not made by this command (or changed since)"
                problems.append(f"{name} {path}: the file exists and was {by}; pass --force to replace it, or "
                                "choose another path")
                continue
        chosen[name] = path
    if problems:
        raise OutputPathError("Output path problem(s), found before any work started: " + "; ".join(problems) + ".")
    return chosen


def _empty_folder(path: Path) -> bool:
    return path.is_dir() and not any(p for p in path.iterdir() if not p.name.startswith(STAGING_PREFIX))


# ----------------------------------------------------------------------------------------------- atomic writes
def _remove_stale_staging(folder: Path) -> None:
    """Staging folders of processes that no longer run (killed mid-write) are removed."""
    for item in folder.glob(STAGING_PREFIX + "*"):
        pid_text = item.name[len(STAGING_PREFIX):].split("-", 1)[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
            shutil.rmtree(item, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _refuse_inputs(path: Path) -> None:
    """Inside an output session: never write over an input, nor over a file another command made (unless force)."""
    session = current_session()
    if session is None:
        return
    for target in [path] + companion_files(path):
        for item in session.inputs:
            if _same_file(target, item) or _inside(target, item):
                raise OutputPathError(f"Refusing to write {target}: it is the input {item} of "
                                      f"'{session.command}'. Choose another output path.")
        if (not session.force and target.exists() and not _empty_folder(target)
                and made_by(target) != session.command and not any(_same_file(target, u) for u in session.updates)):
            raise OutputPathError(f"Refusing to replace {target}: it exists and was not made by "
                                  f"'{session.command}' (or changed since). Pass --force to replace it, or choose "
                                  "another output path.")


def _record(folder: Path, names: Iterable[str]) -> None:
    session = current_session()
    if session is None:
        return
    ledger = _ledger(folder)
    for name in names:
        target = folder / name
        if target.is_file():
            ledger[name] = {"command": session.command, **_stamp(target)}
        elif target.is_dir():
            ledger[name] = {"command": session.command}
    staged = folder / f"{LEDGER_NAME}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    staged.write_text(json.dumps(ledger, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(staged, folder / LEDGER_NAME)


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a staging path with `path`'s name; on success its files (and companions) replace the targets.

    The primary file moves last, so a reader that finds it finds its companions complete too. On an exception
    nothing is moved and the staging folder is removed.
    """
    path = Path(path)
    _refuse_inputs(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(folder)
    staging = folder / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging / path.name
        staged = sorted(staging.iterdir(), key=lambda p: p.name == path.name)  # primary last
        for item in staged:  # every target checked before the first rename
            _refuse_inputs(folder / item.name)
        for item in staged:
            target = folder / item.name
            if item.is_dir():
                _replace_folder(item, target)
            else:
                if target.is_dir():
                    shutil.rmtree(target)
                os.replace(item, target)
        _record(folder, [item.name for item in staged])
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replace_folder(new: Path, target: Path) -> None:
    """Put the folder `new` at `target`; an old folder there is moved aside first, then removed."""
    if target.exists():
        aside = target.with_name(f"{STAGING_PREFIX}{os.getpid()}-old-{uuid.uuid4().hex[:8]}")
        os.replace(target, aside)
        os.replace(new, target)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(new, target)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a text file (UTF-8) atomically."""
    path = Path(path)
    with atomic_output(path) as staged:
        staged.write_text(text, encoding="utf-8")
    return path


def write_json_atomic(path: str | Path, document, **dump_options) -> Path:
    """Write a JSON document atomically (indent 2 and a final newline unless told otherwise)."""
    dump_options.setdefault("indent", 2)
    return write_text_atomic(path, json.dumps(document, **dump_options) + "\n")
