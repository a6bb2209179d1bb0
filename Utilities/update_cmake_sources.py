#!/usr/bin/env python3
"""Regenerate the file lists in the extension's CMakeLists.txt files from the files on disk.

The Slicer extension ships VoxelDosimetryLib inside the extension (copied next to the module in Slicer's
qt-scripted-modules folder), so every library .py file and data file must be listed in CMake. The lists
live between marker comments:

    # BEGIN GENERATED <block> (python Utilities/update_cmake_sources.py)
    ...
    # END GENERATED <block>

Usage:
    python Utilities/update_cmake_sources.py          # rewrite the lists
    python Utilities/update_cmake_sources.py --check  # exit 1 and name the differences, change nothing

Testing/unit/test_cmake_sources.py runs the check.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "python Utilities/update_cmake_sources.py"

# Library data shipped with the code (kept in step with [tool.setuptools.package-data] in pyproject.toml).
LIB_DATA_SUFFIXES = (".json", ".csv", ".txt", ".npz", ".nrrd")
_IGNORED_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache"}


@dataclass(frozen=True)
class Block:
    name: str
    cmake_file: str  # relative to ROOT
    base_dir: str  # listed paths are relative to this folder (relative to ROOT); it is the CMakeLists folder
    search_dir: str  # folder scanned (relative to ROOT)
    suffixes: tuple[str, ...]
    exclude_dirs: tuple[str, ...] = ()  # relative to search_dir


BLOCKS = (
    Block("VoxelDosimetryLib scripts", "CMakeLists.txt", ".", "VoxelDosimetryLib", (".py",)),
    Block("VoxelDosimetryLib resources", "CMakeLists.txt", ".", "VoxelDosimetryLib", LIB_DATA_SUFFIXES),
    Block("module scripts", "VoxelDosimetry/CMakeLists.txt", "VoxelDosimetry", "VoxelDosimetry", (".py",),
          exclude_dirs=("Testing", "Resources")),
    Block("module resources", "VoxelDosimetry/CMakeLists.txt", "VoxelDosimetry", "VoxelDosimetry/Resources", ("",)),
)


def _is_ignored(path: Path, search_root: Path, exclude_dirs: tuple[str, ...]) -> bool:
    relative = path.relative_to(search_root)
    if any(part in _IGNORED_PARTS or part.startswith(".") for part in relative.parts):
        return True
    if path.suffix in (".pyc", ".pyo"):
        return True
    return bool(relative.parts) and relative.parts[0] in exclude_dirs and len(relative.parts) > 1


def expected_entries(block: Block, root: Path = ROOT) -> list[str]:
    """Sorted paths (POSIX, relative to the CMakeLists folder) of the files the block must list."""
    search_root = root / block.search_dir
    base = root / block.base_dir
    if not search_root.is_dir():
        return []
    entries = []
    for path in search_root.rglob("*"):
        if not path.is_file() or _is_ignored(path, search_root, block.exclude_dirs):
            continue
        if block.suffixes != ("",) and path.suffix.lower() not in block.suffixes:
            continue
        entries.append(path.relative_to(base).as_posix())
    return sorted(entries)


def _pattern(name: str) -> re.Pattern:
    return re.compile(
        r"(?P<begin>^[ \t]*# BEGIN GENERATED " + re.escape(name) + r"\b[^\n]*\n)"
        r"(?P<body>.*?)"
        r"(?P<end>^[ \t]*# END GENERATED " + re.escape(name) + r"\b[^\n]*$)",
        re.MULTILINE | re.DOTALL)


def listed_entries(block: Block, root: Path = ROOT) -> list[str]:
    """The paths currently between the block's markers; raises ValueError when the markers are missing."""
    text = (root / block.cmake_file).read_text(encoding="utf-8")
    match = _pattern(block.name).search(text)
    if match is None:
        raise ValueError(f"{block.cmake_file} has no '# BEGIN GENERATED {block.name}' ... "
                         f"'# END GENERATED {block.name}' markers.")
    entries = []
    for line in match.group("body").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            entries.append(line)
    return entries


def differences(block: Block, root: Path = ROOT) -> tuple[list[str], list[str]]:
    """(files on disk that are not listed, listed files that do not exist)."""
    expected = expected_entries(block, root)
    listed = listed_entries(block, root)
    return sorted(set(expected) - set(listed)), sorted(set(listed) - set(expected))


def render(cmake_text: str, block: Block, entries: list[str]) -> str:
    match = _pattern(block.name).search(cmake_text)
    if match is None:
        raise ValueError(f"{block.cmake_file} has no GENERATED markers for '{block.name}'.")
    indent = re.match(r"[ \t]*", match.group("begin")).group(0)
    body = "".join(f"{indent}{entry}\n" for entry in entries)
    return cmake_text[:match.start("body")] + body + cmake_text[match.end("body"):]


def update(root: Path = ROOT) -> list[str]:
    """Rewrite every block; returns the CMake files that changed."""
    changed = []
    for cmake_file in sorted({block.cmake_file for block in BLOCKS}):
        path = root / cmake_file
        original = path.read_text(encoding="utf-8")
        text = original
        for block in BLOCKS:
            if block.cmake_file == cmake_file:
                text = render(text, block, expected_entries(block, root))
        if text != original:
            path.write_text(text, encoding="utf-8")
            changed.append(cmake_file)
    return changed


def check(root: Path = ROOT) -> list[str]:
    """Sentences describing every difference (empty when the lists are current)."""
    problems = []
    for block in BLOCKS:
        try:
            missing, stale = differences(block, root)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        for entry in missing:
            problems.append(f"{block.cmake_file} ({block.name}) does not list {entry}")
        for entry in stale:
            problems.append(f"{block.cmake_file} ({block.name}) lists {entry}, which does not exist")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report differences and exit 1; change nothing")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print(f"Run `{COMMAND}` to update the lists.", file=sys.stderr)
            return 1
        print("CMake file lists are up to date.")
        return 0
    changed = update()
    print("Updated: " + ", ".join(changed) if changed else "CMake file lists were already up to date.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
