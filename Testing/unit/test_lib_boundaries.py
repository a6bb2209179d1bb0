"""Import boundaries: the library never imports Slicer, Qt, CTK or VTK; Training is never imported by it."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "VoxelDosimetryLib"
MODULE_HELPERS = ROOT / "VoxelDosimetry" / "VoxelDosimetrySlicer"

# Top-level names whose import would tie the library to a Slicer/GUI environment.
FORBIDDEN_IN_LIB = {"slicer", "qt", "ctk", "vtk", "vtkmodules", "PythonQt", "mrml", "MRMLCorePython",
                    "Training"}
FORBIDDEN_IN_HELPERS = {"qt", "ctk", "PythonQt"}  # MRML/VTK allowed there, Qt not


def _python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _imported_top_levels(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module name) of every import statement, including ones inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name.split(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
        elif (isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
              and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__")
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value.split(".")[0]))
    return found


def _violations(folder: Path, forbidden: set[str]) -> list[str]:
    problems = []
    for path in _python_files(folder):
        for line, name in _imported_top_levels(path):
            if name in forbidden:
                problems.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return problems


def test_library_never_imports_slicer_qt_ctk_vtk_or_training():
    files = _python_files(LIB)
    assert files, "VoxelDosimetryLib has no Python files?"
    problems = _violations(LIB, FORBIDDEN_IN_LIB)
    assert not problems, ("VoxelDosimetryLib must stay importable without Slicer (DESIGN.md, Layout); move "
                          "Slicer/VTK code to VoxelDosimetry/VoxelDosimetrySlicer:\n  " + "\n  ".join(problems))


def test_module_helper_package_has_no_qt():
    problems = _violations(MODULE_HELPERS, FORBIDDEN_IN_HELPERS)
    assert not problems, "VoxelDosimetrySlicer is MRML-only (it runs with slicer-core):\n  " + "\n  ".join(problems)


def test_the_boundary_check_sees_nested_and_dynamic_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\n\ndef f():\n    from vtk.util import numpy_support\n"
                      "    import importlib\n    importlib.import_module('qt')\n")
    names = [name for _line, name in _imported_top_levels(sample)]
    assert "vtk" in names and "qt" in names


@pytest.mark.parametrize("folder", [LIB, ROOT / "VoxelDosimetry"], ids=["VoxelDosimetryLib", "VoxelDosimetry"])
def test_code_parses_with_the_python_39_grammar(folder):
    """Slicer 5.8 embeds Python 3.9: no match statements, parenthesised context managers, etc."""
    problems = []
    for path in _python_files(folder):
        try:
            ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 9))
        except SyntaxError as exc:
            problems.append(f"{path.relative_to(ROOT)}:{exc.lineno}: {exc.msg}")
    assert not problems, "Not valid Python 3.9 syntax:\n  " + "\n  ".join(problems)
