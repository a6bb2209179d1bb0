"""The Slicer extension's CMake lists name every file that must ship (VoxelDosimetryLib included)."""
from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "Utilities" / "update_cmake_sources.py"


def _load_updater():
    name = "voxeldosimetry_update_cmake_sources"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def updater():
    return _load_updater()


def test_every_library_and_module_file_is_listed(updater):
    problems = updater.check(ROOT)
    assert not problems, ("The extension's CMake file lists are out of date:\n  " + "\n  ".join(problems)
                          + f"\nRun `{updater.COMMAND}` to regenerate them.")


def test_every_library_python_file_is_in_the_top_level_list(updater):
    block = next(b for b in updater.BLOCKS if b.name == "VoxelDosimetryLib scripts")
    listed = set(updater.listed_entries(block, ROOT))
    on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "VoxelDosimetryLib").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert on_disk, "VoxelDosimetryLib has no .py files?"
    missing = sorted(on_disk - listed)
    assert not missing, (f"CMakeLists.txt does not list {missing}; the Slicer extension would ship without them. "
                         f"Run `{updater.COMMAND}`.")


def test_check_reports_an_unlisted_and_a_stale_file(updater, tmp_path):
    for relative in ("CMakeLists.txt", "VoxelDosimetry/CMakeLists.txt"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / relative, tmp_path / relative)
    shutil.copytree(ROOT / "VoxelDosimetry", tmp_path / "VoxelDosimetry", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    lib = tmp_path / "VoxelDosimetryLib"
    lib.mkdir()
    (lib / "__init__.py").write_text("")
    (lib / "brand_new.py").write_text("")
    problems = updater.check(tmp_path)
    assert any("does not list VoxelDosimetryLib/brand_new.py" in p for p in problems)
    assert any("which does not exist" in p for p in problems)  # the real Lib files are listed but absent here

    assert updater.update(tmp_path) == ["CMakeLists.txt"]
    assert updater.check(tmp_path) == []
    text = (tmp_path / "CMakeLists.txt").read_text()
    assert "  VoxelDosimetryLib/brand_new.py\n" in text
    assert updater.update(tmp_path) == []  # idempotent


def test_listed_paths_are_relative_and_inside_their_folder(updater):
    for block in updater.BLOCKS:
        for entry in updater.listed_entries(block, ROOT):
            assert not entry.startswith(("/", "..")) and "\\" not in entry, (
                f"{block.cmake_file}: {entry!r} must be relative to the CMakeLists folder without '..': "
                "ctkMacroCompilePythonScript copies each file to DESTINATION_DIR/<path as listed>.")


def test_top_level_cmake_follows_the_extension_template_and_copies_the_library():
    text = (ROOT / "CMakeLists.txt").read_text()
    for needle in ("cmake_minimum_required(", "project(VoxelDosimetry)", "EXTENSION_HOMEPAGE",
                   'set(EXTENSION_CATEGORY "Nuclear Medicine")', "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                   "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", 'set(EXTENSION_DEPENDS "NA")',
                   "find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(VoxelDosimetry)",
                   "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert needle in text, f"CMakeLists.txt lacks {needle}"
    call = re.search(r"ctkMacroCompilePythonScript\((.*?)\n  \)", text, re.DOTALL)
    assert call, "CMakeLists.txt must copy VoxelDosimetryLib with ctkMacroCompilePythonScript"
    body = call.group(1)
    assert "DESTINATION_DIR ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}" in body
    assert "INSTALL_DIR ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}" in body
    assert "NO_INSTALL_SUBDIR" in body
    # the copy must come after Slicer's CMake is loaded and before the CPack include
    assert text.index("include(${Slicer_USE_FILE})") < call.start() < text.index("include(${Slicer_EXTENSION_CPACK})")


def test_module_cmake_builds_the_scripted_module_and_registers_its_self_test():
    text = (ROOT / "VoxelDosimetry" / "CMakeLists.txt").read_text()
    assert "set(MODULE_NAME VoxelDosimetry)" in text
    assert "slicerMacroBuildScriptedModule(" in text
    testing = text[text.index("if(BUILD_TESTING)"):]
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in testing
    assert (ROOT / "VoxelDosimetry" / "Testing" / "CMakeLists.txt").is_file()
