"""One write policy for every file the project writes (docs/RELIABILITY.md §2).

1. Before any computation, `check_outputs` checks every output path at once: a supported extension (exact,
   lower-case spelling), not empty, a folder that exists or can be created and where a staging folder can be made,
   not equal to (same file by inode or symlink) or inside any file an input consists of (`input_files`: the file,
   its JSON sidecar, the data file its header names), no two outputs sharing a file (companions included), and no
   existing file or companion replaced unless `force` or the file was made by the same command (recorded in the
   folder's ledger, `.voxeldosimetry-outputs.json`) and has not changed since. A non-empty folder is replaced
   (a DICOM series) only when a command of this project made it and nothing in it changed, even with `force`.
2. Every write goes through `atomic_output`: the writer writes into a hidden staging folder beside the target, and
   the finished files are renamed into place (`os.replace`, atomic on one file system), so an interrupted run never
   leaves a half-written file; a left-over staging folder is removed by the next write in that folder. Errors name
   the target, never the staging folder.
3. While a command runs inside `output_session(command, inputs, force)`, a write that would land on a file of one of
   the session's inputs is refused even if it was not declared up front.
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
HEADER_BYTES = 64 * 1024  # text headers are parsed this far for the data files they name

# Companion files a writer puts beside the named file (MetaImage data, sidecars, Interfile data, NRRD data file).
_COMPANIONS = {".mhd": (".raw", ".zraw", ".json"), ".mha": (".json",), ".nii": (".json",), ".nii.gz": (".json",),
               ".h33": (".i33", ".json"), ".hdr": (".img", ".json"), ".nhdr": (".raw", ".raw.gz")}
# Formats whose reader takes quantity, unit and grid from a JSON sidecar (io/sidecar.py).
_SIDECAR_FORMATS = (".nii.gz", ".nii", ".mhd", ".mha", ".h33", ".hdr")
# Volume extensions: an option that accepts one of these or a folder ('') writes a DICOM series into a folder.
_VOLUME_EXTENSIONS = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mhd", ".mha", ".h33", ".hdr")
_MAX_LISTED = 10000  # data files expanded from one header (LIST or numbered-pattern forms)
_SHOWN = 3  # changed files named in a message


class OutputPathError(VoxelDosimetryError, ValueError):
    """An output path is unusable: unsupported, unwritable, an input, or an existing file not ours to replace."""


@dataclass
class OutputSession:
    """The command writing now, its inputs (never written) and whether existing outputs may be replaced."""

    command: str
    inputs: list[Path] = field(default_factory=list)
    force: bool = False
    updates: list[Path] = field(default_factory=list)  # existing files this command updates by design (case.json)
    _files: dict = field(default_factory=dict, repr=False)  # input -> input_files(input), worked out once

    def allow_update(self, path: str | Path) -> None:
        """`path` may be replaced even though another command made it (e.g. `gate import` adds mc/ to case.json)."""
        self.updates.append(Path(path))

    def input_files(self) -> list[tuple[Path, Path]]:
        """(input as given, a file it consists of) for every input of the session."""
        pairs = []
        for item in self.inputs:
            if item not in self._files:
                self._files[item] = input_files(item)
            pairs += [(item, f) for f in self._files[item]]
        return pairs


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


# ----------------------------------------------------------------------------------------------- inputs
def input_files(path: str | Path) -> list[Path]:
    """The files an input consists of: itself, its JSON sidecar (when there is one) and the data file(s) its
    header names (NRRD `data file:`, MetaImage `ElementDataFile =`, Interfile `name of data file :=`).

    Only the first HEADER_BYTES of a header are read; keys are case-insensitive and names relative to the
    header's folder. Never raises: a damaged or unreadable header yields what could be read.
    """
    path = Path(path)
    files = [path]
    try:
        if not path.is_file():
            return files
        lower = path.name.lower()
        if any(lower.endswith(ext) and len(lower) > len(ext) for ext in _SIDECAR_FORMATS):
            from VoxelDosimetryLib.io.sidecar import sidecar_path  # lazy: io/sidecar imports the volume package

            sidecar = sidecar_path(path)
            if sidecar.exists():
                files.append(sidecar)
        for data in _header_data_files(path):
            if data not in files:
                files.append(data)
    except Exception:  # noqa: BLE001 - a damaged header only yields fewer files; the reader reports the damage
        pass
    return files


def _header_data_files(path: Path) -> list[Path]:
    """The data files a text header names (empty for headers that keep their data inside)."""
    with open(path, "rb") as fh:
        text = fh.read(HEADER_BYTES).decode("latin-1")
    lines = text.splitlines()
    folder = path.parent
    if text.startswith("NRRD"):
        for index, line in enumerate(lines[1:], start=1):
            if not line.strip():
                break  # the header ends at its first blank line
            if line.startswith("#") or ":=" in line:
                continue
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() in ("data file", "datafile"):
                return _named_files(value.strip(), lines[index + 1:], folder)
        return []
    names: list[Path] = []
    for index, line in enumerate(lines):
        if ":=" in line:  # Interfile: '!name of data file := x.i33'
            key, _, value = line.partition(":=")
            if key.strip().lstrip("!").strip().lower() == "name of data file":
                name = value.strip().strip('"').strip("'")
                if name:
                    names.append(folder / name)
                    base = os.path.basename(name.replace("\\", "/"))
                    if base and folder / base not in names:
                        names.append(folder / base)  # the reader also looks beside the header
            continue
        key, sep, value = line.partition("=")
        if sep and key.strip().lower() == "elementdatafile":  # MetaImage: the header ends here
            value = value.strip()
            return [] if value.upper() == "LOCAL" else _named_files(value, lines[index + 1:], folder)
    return names


def _named_files(value: str, rest: list[str], folder: Path) -> list[Path]:
    """Files of a data-file field: one name, 'LIST' (the names follow, one a line) or 'pattern min max step'."""
    value = value.strip().strip('"').strip("'")
    if not value:
        return []
    words = value.split()
    if words[0].upper() == "LIST":
        return [folder / line.strip() for line in rest[:_MAX_LISTED] if line.strip()]
    if "%" in words[0] and len(words) >= 4:
        try:
            first, last, step = int(words[1]), int(words[2]), int(words[3])
            numbers = range(first, last + (1 if step > 0 else -1), step) if step else range(0)
            return [folder / (words[0] % n) for n in list(numbers)[:_MAX_LISTED]]
        except (TypeError, ValueError):
            return []
    return [folder / value]


def _input_pairs(inputs: Iterable[Path]) -> list[tuple[Path, Path]]:
    return [(item, f) for item in inputs for f in input_files(item)]


def _as_input(item: Path, file: Path) -> str:
    """'the input X' or 'the input X (its file Y)' for a file an input consists of."""
    return f"the input {item}" if file == item else f"the input {item} (its file {file})"


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


def _targets(path: Path) -> list[Path]:
    return [path] + companion_files(path)


def _normal(path: Path) -> Path:
    """`path`, made absolute when its name is empty or '.'/'..' (so it has a parent and a name)."""
    return Path(os.path.abspath(path)) if path.name in ("", ".", "..") else path


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
    """None when files can be created in `folder` (created on demand), else why not.

    The nearest existing folder is tried by making (and removing) a staging folder in it: permission bits alone
    miss read-only mounts and pseudo file systems such as /proc.
    """
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return f"none of the folders above {folder} exists"
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"the folder {probe} is not writable"
    trial = probe / f"{STAGING_PREFIX}{os.getpid()}-probe-{uuid.uuid4().hex[:8]}"
    try:
        trial.mkdir()
    except OSError as exc:
        return f"files cannot be created in {probe} ({exc.strerror or exc})"
    try:
        trial.rmdir()
    except OSError:
        pass  # removed by the next write there (a staging folder of a process that has ended)
    return None


def _ledger(folder: Path) -> dict:
    try:
        data = json.loads((folder / LEDGER_NAME).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _stamp(path: Path) -> dict:
    stat = path.lstat() if path.is_symlink() else path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _changed_since(path: Path, entry: dict) -> bool:
    """True when the file `path` differs (size or modification time) from its ledger `entry`, and from the file
    the entry's write replaced (`previous`: a process killed between recording and renaming left that one)."""
    if not path.is_file():
        return False
    now = _stamp(path)
    return all({k: stamp.get(k) for k in ("size", "mtime_ns")} != now
               for stamp in (entry, entry.get("previous") or {}) if stamp)


def _bookkeeping(name: str) -> bool:
    """Ledgers (and their staged copies) and staging folders: ours, never content."""
    return name.startswith(LEDGER_NAME) or name.startswith(STAGING_PREFIX)


def _walk(folder: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    """os.walk of `folder` without staging folders and without following links."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(STAGING_PREFIX))
        yield Path(root), dirs, sorted(f for f in files if not f.startswith(STAGING_PREFIX))


def folder_content(folder: str | Path) -> dict[str, dict]:
    """{relative name: size and mtime_ns (files) or {"folder": True}} of everything in `folder`."""
    folder = Path(folder)
    content: dict[str, dict] = {}
    for root, dirs, files in _walk(folder):
        for name in dirs:
            content[(root / name).relative_to(folder).as_posix()] = {"folder": True}
        for name in files:
            content[(root / name).relative_to(folder).as_posix()] = _stamp(root / name)
    return content


@dataclass
class _FolderState:
    """What the ledgers say about an existing folder."""

    whole: bool = False  # recorded as a whole in its parent's ledger (a DICOM series)
    owners: set = field(default_factory=set)  # commands that made what is recorded
    changed: list = field(default_factory=list)  # 'x changed since ...', 'x was removed', 'x was added'
    unrecorded: list = field(default_factory=list)  # files no ledger covers

    def clean(self) -> bool:
        """Made by one or more commands of this project and nothing in it changed or added since."""
        return bool(self.owners) and not self.changed and not self.unrecorded


def _compare_content(recorded: object, folder: Path, prefix: str, command: str) -> list[str]:
    if not isinstance(recorded, dict):
        return [f"{prefix or folder.name}: its content was not recorded when '{command}' wrote it"]
    now = folder_content(folder)
    changes = []
    for name in sorted(set(recorded) | set(now)):
        shown = prefix + name
        if name not in recorded:
            changes.append(f"{shown} was added")
        elif name not in now:
            changes.append(f"{shown} was removed")
        elif "size" in recorded[name] and {k: recorded[name].get(k) for k in ("size", "mtime_ns")} != now[name]:
            changes.append(f"{shown} changed since '{command}' wrote it")
    return changes


def _folder_state(folder: Path) -> _FolderState:
    state = _FolderState()
    entry = _ledger(folder.parent).get(folder.name)
    if isinstance(entry, dict) and "size" not in entry:  # a folder written as a whole (a DICOM series)
        state.whole = True
        state.owners.add(entry.get("command"))
        state.changed = _compare_content(entry.get("content"), folder, "", str(entry.get("command")))
        return state
    covered: set[str] = set()  # recorded files, and recorded folders (ending in '/')
    for root, _, files in _walk(folder):
        if LEDGER_NAME not in files:
            continue
        base = "" if root == folder else root.relative_to(folder).as_posix() + "/"
        for name, item in _ledger(root).items():
            if not isinstance(item, dict):
                continue
            command = str(item.get("command"))
            state.owners.add(item.get("command"))
            target = root / name
            if "size" in item:
                covered.add(base + name)
                if _changed_since(target, item):
                    state.changed.append(f"{base + name} changed since '{command}' wrote it")
            elif target.is_dir():
                covered.add(base + name + "/")
                state.changed += _compare_content(item.get("content"), target, base + name + "/", command)
    for root, _, files in _walk(folder):
        base = "" if root == folder else root.relative_to(folder).as_posix() + "/"
        if any(base.startswith(c) for c in covered if c.endswith("/")):
            continue
        state.unrecorded += [base + f for f in files if not _bookkeeping(f) and base + f not in covered]
    return state


def _listing(items: Sequence[str]) -> str:
    more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more


def made_by(path: str | Path) -> str | None:
    """The command that wrote `path` (from its folder's ledger) when the file is unchanged since, else None.

    A folder written as a whole (a DICOM series) was made by its command when its content (names, sizes,
    modification times) is as recorded. Any other folder was made by a command when the ledgers inside it list
    only that command and none of their files changed (an output folder such as `run`'s, even when a killed run
    wrote only part of it; a file the user added does not count, since nothing replaces the folder as a whole).
    """
    path = _normal(Path(path))
    if not path.exists():
        return None
    if path.is_dir():
        state = _folder_state(path)
        if len(state.owners) != 1 or state.changed or (state.whole and state.unrecorded):
            return None
        return state.owners.pop()
    entry = _ledger(path.parent).get(path.name)
    if not isinstance(entry, dict):
        return None
    return None if _changed_since(path, entry) else entry.get("command")


def _not_ours(path: Path, command: str | None) -> str | None:
    """None when `command` made `path` (unchanged since), else how to say who did ('made by ...')."""
    owner = made_by(path)
    if owner is not None and owner == command:
        return None
    return f"made by '{owner}'" if owner else "not made by this command (or changed since)"


def _empty_folder(path: Path) -> bool:
    return path.is_dir() and not any(p for p in path.iterdir() if not p.name.startswith(STAGING_PREFIX))


def _holds_cwd(path: Path) -> bool:
    try:
        return _inside(Path.cwd(), path)
    except OSError:
        return False


def _writes_series(path: Path, allowed: Sequence[str] | None) -> bool:
    """An output that may be a volume or a folder writes a DICOM series when its name has no extension."""
    return (allowed is not None and "" in allowed and any(e in allowed for e in _VOLUME_EXTENSIONS)
            and extension_of(path) == "")


def _folder_problem(path: Path, series: bool, command: str | None, force: bool) -> str | None:
    """Why the existing non-empty folder `path` may not be an output (None when it may)."""
    fix = "choose a new folder or empty it"
    if series and _holds_cwd(path):
        return (f"the folder holds the current folder and is not empty; a DICOM series needs a folder of its own: "
                f"{fix}")
    state = _folder_state(path)
    if not state.owners:
        names = sorted(p.name for p in path.iterdir() if not p.name.startswith(STAGING_PREFIX))
        return (f"the folder is not empty (it holds {_listing(names)}) and was not made by voxeldosimetry; it is "
                f"never replaced or written into, even with --force: {fix}")
    if series or state.whole:
        if not state.clean():
            why = state.changed + [f"{name} was not made by voxeldosimetry" for name in state.unrecorded]
            return f"{_listing(why)}; a folder is never replaced, even with --force: {fix}"
    elif state.changed and not force:
        owner = next(iter(state.owners)) if len(state.owners) == 1 else None
        if owner == "run":
            hint = ("pass --force to recompute everything, or delete the changed file(s) to have just that step's "
                    "output rewritten")
        else:
            hint = "pass --force to replace them, delete the changed file(s), or choose another folder"
        return f"{_listing(state.changed)}; {hint}"
    by = None if force else _not_ours(path, command)
    if by:
        return f"the folder exists and was {by}; pass --force to replace it, or choose another path"
    return None


def _companion_problem(path: Path, companion: Path, command: str | None, force: bool) -> str | None:
    """Why the existing companion file of output `path` may not be written (None when it may)."""
    if companion.suffix == ".json":  # the JSON sidecar (io/sidecar.py)
        from VoxelDosimetryLib.errors import InputFormatError
        from VoxelDosimetryLib.io.sidecar import check_sidecar_writable

        try:
            check_sidecar_writable(path)  # a sidecar of another image or a user's JSON file: never, even forced
        except InputFormatError as exc:
            return str(exc).rstrip(".")
    by = None if force or companion.is_dir() else _not_ours(companion, command)
    if by:
        return (f"it also writes {companion.name}, which exists and was {by}; pass --force to replace it, or "
                "choose another path")
    return None


def check_outputs(outputs: Mapping[str, str | Path | None], inputs: Iterable[str | Path | None] = (), *,
                  command: str | None = None, force: bool | None = None,
                  extensions: Mapping[str, Sequence[str]] | None = None) -> dict[str, Path]:
    """Check every output path before any work starts; raise one OutputPathError listing all problems.

    outputs: {option name (as the user knows it, e.g. '--out'): path}; None means "not requested" and is
    skipped, an empty path is a problem.
    extensions: {option name: allowed extensions ('' = a folder)}, exact lower-case spellings; omitted names
    accept any extension. An option allowing both a volume extension and a folder writes a DICOM series into
    a folder without extension (replaced as a whole).
    command/force default to the current output_session's.
    """
    session = current_session()
    command = command if command is not None else (session.command if session else None)
    force = force if force is not None else (session.force if session else False)
    input_paths = [Path(p) for p in inputs if p not in (None, "")]
    if session is not None:
        input_paths += [p for p in session.inputs if p not in input_paths]
    pairs = _input_pairs(input_paths)
    problems: list[str] = []
    chosen: dict[str, Path] = {}
    for name, value in outputs.items():
        if value is None:
            continue
        if str(value) == "":
            problems.append(f"{name}: an empty path; give a file name (or leave the option out)")
            continue
        problem = _output_problem(name, Path(value), pairs, chosen, command, force, (extensions or {}).get(name))
        if problem:
            problems.append(problem)
        else:
            chosen[name] = _normal(Path(value))
    if problems:
        raise OutputPathError("Output path problem(s), found before any work started: " + "; ".join(problems) + ".")
    return chosen


def _output_problem(name: str, path: Path, pairs: list[tuple[Path, Path]], chosen: Mapping[str, Path],
                    command: str | None, force: bool, allowed: Sequence[str] | None) -> str | None:
    """The first problem of one output path (None when there is none)."""
    shown = path
    ext = extension_of(path)
    written = path.name[len(path.name) - len(ext):] if ext else ""
    if allowed is not None:
        listed = ", ".join(e or "a folder path without extension" for e in allowed)
        if ext not in allowed:
            return f"{name} {shown}: unsupported extension {written or '(none)'!r}; use {listed}"
        if written != ext:
            return f"{name} {shown}: the extension {written!r} must be written in lower case; use {ext}"
    series = _writes_series(path, allowed)
    path = _normal(path)
    folder_problem = _writable_folder_problem(path.parent)
    if folder_problem:
        return f"{name} {shown}: cannot write there ({folder_problem})"
    targets = _targets(path)
    clash = next(((item, f) for t in targets for item, f in pairs if _same_file(t, f) or _inside(t, f)
                  or (path.is_dir() and _inside(f, path))), None)
    if clash is not None:
        return f"{name} {shown}: would overwrite {_as_input(*clash)}; choose another output path"
    for earlier, earlier_path in chosen.items():
        if _same_file(earlier_path, path):
            return f"{name} {shown}: the same file as {earlier}; give each output its own path"
        shared = next((t for t in targets for u in _targets(earlier_path) if _same_file(t, u)), None)
        if shared is not None:
            return (f"{name} {shown}: {shared.name} would be written by both this and {earlier} {earlier_path}; "
                    "give each output its own file name stem")
    if path.is_dir() and not _empty_folder(path):
        problem = _folder_problem(path, series, command, force)
        if problem:
            return f"{name} {shown}: {problem}"
    elif path.exists() and not path.is_dir() and not force:
        by = _not_ours(path, command)
        if by:
            return f"{name} {shown}: the file exists and was {by}; pass --force to replace it, or choose another path"
    for companion in companion_files(path):
        if companion.exists():
            problem = _companion_problem(path, companion, command, force)
            if problem:
                return f"{name} {shown}: {problem}"
    image = _image_described_by(path)
    if image is not None:
        return (f"{name} {shown}: this name is the JSON sidecar of the image {image.name} beside it, which would then "
                "be read with this file's quantity and unit; choose another file name")
    return None


def _image_described_by(path: Path) -> Path | None:
    """The existing image whose sidecar a .json output `path` would be (never for the image's own sidecar, which
    its writer stages as a companion)."""
    if extension_of(path) != ".json":
        return None
    stem = path.name[: -len(".json")]
    for ext in _SIDECAR_FORMATS:
        for spelled in (ext, ext.upper()):
            image = path.with_name(stem + spelled)
            if image.is_file():
                return image
    return None


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
    """Never write over a file of an input (inside an output session), nor replace a folder that is not ours and
    unchanged, nor (inside a session, unless force) a file another command made."""
    session = current_session()
    pairs = session.input_files() if session is not None else []
    for target in _targets(path):
        for item, file in pairs:
            if _same_file(target, file) or _inside(target, file):
                raise OutputPathError(f"Refusing to write {target}: it is {_as_input(item, file)} of "
                                      f"'{session.command}'. Choose another output path.")
        _refuse_folder(target)
        if (session is not None and not session.force and target.exists() and not _empty_folder(target)
                and made_by(target) != session.command and not any(_same_file(target, u) for u in session.updates)):
            raise OutputPathError(f"Refusing to replace {target}: it exists and was not made by "
                                  f"'{session.command}' (or changed since). Pass --force to replace it, or choose "
                                  "another output path.")


def _refuse_folder(target: Path) -> None:
    """A non-empty folder is replaced only when this project made it and nothing in it changed (even forced)."""
    if not target.is_dir() or target.is_symlink() or _empty_folder(target):
        return
    fix = "It is never replaced, even with --force: choose a new folder or empty it."
    if _holds_cwd(target):
        raise OutputPathError(f"Refusing to replace the folder {target}: it holds the current folder. {fix}")
    state = _folder_state(target)
    if not state.clean():
        why = state.changed + [f"{name} was not made by voxeldosimetry" for name in state.unrecorded]
        raise OutputPathError(f"Refusing to replace the folder {target}: "
                              f"{_listing(why) or 'it was not made by voxeldosimetry'}. {fix}")


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
            ledger[name] = {"command": session.command, "content": folder_content(target)}
    _write_ledger(folder, ledger)


def _record_before_renaming(folder: Path, staged: list[Path]) -> None:
    """Ledger entries for staged files, written before they are renamed into place (a rename keeps size and
    modification time), each with the stamp of the file it replaces: a kill at any moment leaves either file
    recognised as this command's."""
    session = current_session()
    if session is None or not staged:
        return
    ledger = _ledger(folder)
    for item in staged:
        target = folder / item.name
        previous = _stamp(target) if target.is_file() and made_by(target) == session.command else None
        ledger[item.name] = {"command": session.command, **_stamp(item), "previous": previous}
    _write_ledger(folder, ledger)


def _write_ledger(folder: Path, ledger: dict) -> None:
    staged = folder / f"{LEDGER_NAME}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    staged.write_text(json.dumps(ledger, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(staged, folder / LEDGER_NAME)


def _without_staging(text: str, staging: Path, path: Path) -> str:
    """`text` with the staging path replaced by the target's."""
    return text.replace(str(staging / path.name), str(path)).replace(str(staging), str(path.parent))


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a staging path with `path`'s name; on success its files (and companions) replace the targets.

    The primary file moves last, so a reader that finds it finds its companions complete too. On an exception
    nothing is moved and the staging folder is removed; an error that names the staging folder (a file system
    error, a writer's message) is raised as OutputPathError naming the target instead.
    """
    path = _normal(Path(path))
    _refuse_inputs(path)
    folder = path.parent
    staging = folder / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale_staging(folder)
        staging.mkdir()
    except OSError as exc:
        raise OutputPathError(f"Cannot write {path}: {exc.strerror or exc} (in {folder}). Choose another output "
                              "path.") from None
    try:
        yield staging / path.name
        staged = sorted(staging.iterdir(), key=lambda p: p.name == path.name)  # primary last
        for item in staged:  # every target checked before the first rename
            _refuse_inputs(folder / item.name)
        _record_before_renaming(folder, [item for item in staged if item.is_file()])
        for item in staged:
            target = folder / item.name
            if item.is_dir():
                _replace_folder(item, target)
            else:
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)  # empty, or made by us and unchanged (_refuse_folder)
                os.replace(item, target)
        _record(folder, [item.name for item in staged])
    except OSError as exc:
        text = _without_staging(exc.strerror or str(exc), staging, path)
        raise OutputPathError(f"Cannot write {path}: {text}. Check the disk space and the permissions, or choose "
                              "another output path.") from exc
    except Exception as exc:
        if str(staging) not in str(exc):
            raise
        text = _without_staging(str(exc), staging, path)
        if isinstance(exc, VoxelDosimetryError):
            try:
                renamed = type(exc)(text)
            except Exception:  # noqa: BLE001 - an error type with another signature: say it plainly instead
                renamed = OutputPathError(f"Cannot write {path}: {text}")
            raise renamed from exc
        raise OutputPathError(f"Cannot write {path}: {text}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replace_folder(new: Path, target: Path) -> None:
    """Put the folder `new` at `target`; an old folder there is moved aside first, then removed."""
    if target.is_dir() and _holds_cwd(target):  # empty (_refuse_folder): fill it instead of renaming it away
        for item in sorted(new.iterdir()):
            os.replace(item, target / item.name)
        new.rmdir()
    elif target.exists() or target.is_symlink():
        aside = target.with_name(f"{STAGING_PREFIX}{os.getpid()}-old-{uuid.uuid4().hex[:8]}")
        os.replace(target, aside)
        os.replace(new, target)
        if aside.is_dir() and not aside.is_symlink():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            aside.unlink()
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
