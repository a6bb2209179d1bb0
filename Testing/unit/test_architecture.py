"""Architecture guard: every import in the code obeys docs/architecture.json (explained in docs/ARCHITECTURE.md).

The checker parses every .py file of VoxelDosimetryLib, Training and the Slicer module with `ast` (nothing is
imported or executed), collects every import -- top level, inside functions, classes and `if TYPE_CHECKING:`
blocks, `import x`, `from x import y`, relative imports resolved against the file's package, and constant-string
`importlib.import_module(...)` / `__import__(...)` calls -- and reports each one that breaks a rule as
`file:line: importing layer -> imported layer (imports dotted.name)`.

Run it directly for the same list without pytest:  python Testing/unit/test_architecture.py
"""
from __future__ import annotations

import ast
import json
import sys
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Iterable, Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTION = ROOT / "docs" / "architecture.json"
GUIDE = ROOT / "docs" / "ARCHITECTURE.md"

FIX_HINT = ("Fix by moving the shared code down to the lower layer, passing a callable/value in from the "
            "higher layer, or moving the check up to the caller; see docs/ARCHITECTURE.md. Do not add an "
            "exception to docs/architecture.json without a reason and a plan to remove it.")


# ----------------------------------------------------------------------------------------------------------------
# Reading the code
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImportRef:
    """One imported module: `target` is the absolute dotted name (relative imports resolved)."""

    path: Path
    line: int
    target: str


def python_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path] if path.suffix == ".py" else []
    return sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts and not any(
        part.startswith(".") for part in p.relative_to(path).parts))


def module_and_package(path: Path, source_root: Path) -> tuple[list[str], list[str]]:
    """Dotted parts of the module a file defines and of the package its relative imports start from."""
    parts = list(path.relative_to(source_root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
        return parts, parts
    return parts, parts[:-1]


def _exists_as_module(source_root: Path, dotted: list[str]) -> bool:
    base = source_root.joinpath(*dotted)
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _resolve_from(source_root: Path, base: list[str], alias: str, known_children: Iterable[str]) -> str:
    """`from base import alias`: base.alias when alias is a sub-module (on disk or declared), else base."""
    if alias != "*" and (_exists_as_module(source_root, base + [alias]) or alias in known_children):
        return ".".join(base + [alias])
    return ".".join(base)


def _relative_base(package: list[str], level: int, module: Optional[str]) -> Optional[list[str]]:
    if level - 1 > len(package) or (level - 1 == len(package) and not module):
        return None  # beyond the top-level package
    base = package[:len(package) - (level - 1)]
    return base + (module.split(".") if module else [])


def _dynamic_import_name(node: ast.Call) -> Optional[str]:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if name not in ("import_module", "__import__"):
        return None
    if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        return node.args[0].value
    return None


def collect_imports(path: Path, source_root: Path, known_children: dict[str, set[str]] = None
                    ) -> tuple[list[ImportRef], list[str]]:
    """Every import in `path` (anywhere in the file), and problems (unresolvable relative imports)."""
    known_children = known_children or {}
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    _module, package = module_and_package(path, source_root)
    found: list[ImportRef] = []
    problems: list[str] = []

    def children(base: list[str]) -> set[str]:
        return known_children.get(".".join(base), set())

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(ImportRef(path, node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _relative_base(package, node.level, node.module)
                if base is None:
                    problems.append(f"{path}:{node.lineno}: relative import goes above the top-level package")
                    continue
            else:
                base = node.module.split(".")
            for alias in node.names:
                found.append(ImportRef(path, node.lineno, _resolve_from(source_root, base, alias.name,
                                                                        children(base))))
        elif isinstance(node, ast.Call):
            name = _dynamic_import_name(node)
            if name is None:
                continue
            if name.startswith("."):
                level = len(name) - len(name.lstrip("."))
                base = _relative_base(package, level, name.lstrip(".") or None)
                if base is None:
                    problems.append(f"{path}:{node.lineno}: relative import_module goes above the top package")
                    continue
                name = ".".join(base)
            found.append(ImportRef(path, node.lineno, name))
    return found, problems


# ----------------------------------------------------------------------------------------------------------------
# Checking the rules
# ----------------------------------------------------------------------------------------------------------------

def load_description(path: Path = DESCRIPTION) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _forbidden(top: str, patterns: Iterable[str]) -> Optional[str]:
    return next((p for p in patterns if fnmatchcase(top, p)), None)


class Checker:
    def __init__(self, root: Path, description: dict):
        self.root = root
        self.description = description
        lib = description["library"]
        self.package = lib["package"]
        self.lib_root = root / lib.get("source_root", ".")
        self.layers = [layer["name"] for layer in lib["layers"]]
        self.rank = {name: i for i, name in enumerate(self.layers)}
        self.base = {name: set(spec.get("may_import", [])) for name, spec in lib["base_modules"].items()}
        self.root_may_import = set(lib["root_package"]["may_import"])
        root_layers = [self.rank[n] for n in self.root_may_import if n in self.rank]
        self.root_height = max(root_layers) if root_layers else -1
        self.lib_forbidden = lib["forbidden_imports"]
        self.exceptions = description.get("exceptions", [])
        self.scanned: list[Path] = []
        self.internal_imports = 0

    # -- classification ------------------------------------------------------------------------------------------
    def unit_of(self, dotted: str) -> str:
        """'layer:<name>', 'base:<name>', 'root' or 'unknown:<name>' for a module of the library."""
        parts = dotted.split(".")
        if len(parts) == 1:
            return "root"
        if parts[1] in self.rank:
            return f"layer:{parts[1]}"
        if parts[1] in self.base:
            return f"base:{parts[1]}"
        if parts[1] == "__init__":
            return "root"
        return f"unknown:{parts[1]}"

    @staticmethod
    def label(unit: str) -> str:
        return "VoxelDosimetryLib (root __init__)" if unit == "root" else unit.split(":", 1)[1]

    def _allowed(self, source: str, target: str) -> bool:
        if target.startswith("unknown:"):
            return False
        if source == target:
            return True
        kind, name = (source.split(":", 1) + [""])[:2]
        t_kind, t_name = (target.split(":", 1) + [""])[:2]
        if kind == "layer":
            if t_kind == "base":
                return True
            if t_kind == "layer":
                return self.rank[t_name] <= self.rank[name]
            return self.rank[name] > self.root_height  # the root package pulls in the layers it imports
        if kind == "base":
            return t_kind == "base" and t_name in self.base[name]
        if kind == "root":
            return t_name in self.root_may_import
        return False

    def _why(self, source: str, target: str) -> str:
        kind, name = (source.split(":", 1) + [""])[:2]
        if target.startswith("unknown:"):
            return f"{self.label(target)} is not declared in docs/architecture.json"
        if kind == "layer" and target == "root":
            return (f"the root __init__ imports {sorted(self.root_may_import)}, so only layers above "
                    f"{self.layers[self.root_height]} may import the root package")
        if kind == "layer":
            allowed = self.layers[:self.rank[name] + 1]
            return f"{name} may import only {', '.join(allowed)} and the base modules"
        if kind == "base":
            return f"base module {name} may import only {sorted(self.base[name]) or 'nothing in the library'}"
        return f"the root __init__ may import only {sorted(self.root_may_import)}"

    # -- file walks ----------------------------------------------------------------------------------------------
    def _rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def undeclared_library_parts(self) -> list[str]:
        """Sub-packages and root modules on disk that the description does not place."""
        lib_dir = self.lib_root / self.package
        problems = []
        for child in sorted(lib_dir.iterdir()):
            if child.name.startswith((".", "__pycache__")):
                continue
            if child.is_dir() and (child / "__init__.py").is_file():
                name = child.name
            elif child.suffix == ".py" and child.stem != "__init__":
                name = child.stem
            else:
                continue
            if name not in self.rank and name not in self.base:
                problems.append(f"{self._rel(child)}: not in docs/architecture.json; add it as a layer (at its "
                                f"height) or as a base module (docs/ARCHITECTURE.md, 'Adding a layer')")
        return problems

    def library_violations(self) -> list[ImportRef | tuple]:
        lib_dir = self.lib_root / self.package
        known = {self.package: set(self.layers) | set(self.base)}
        out = []
        for path in python_files(lib_dir):
            self.scanned.append(path)
            module, _package = module_and_package(path, self.lib_root)
            source = self.unit_of(".".join(module))
            refs, problems = collect_imports(path, self.lib_root, known)
            out.extend(("problem", p) for p in problems)
            for ref in refs:
                parts = ref.target.split(".")
                if parts[0] == self.package:
                    self.internal_imports += 1
                    target = self.unit_of(ref.target)
                    if source.startswith("unknown:"):
                        continue  # reported once per package by undeclared_library_parts
                    if not self._allowed(source, target):
                        out.append((ref, f"{self.label(source)} → {self.label(target)}", self._why(source, target)))
                    continue
                pattern = _forbidden(parts[0], self.lib_forbidden)
                if pattern:
                    out.append((ref, f"{self.label(source)} → forbidden {parts[0]}",
                                f"VoxelDosimetryLib never imports {pattern}"))
        return out

    def component_violations(self) -> list[tuple]:
        out = []
        for component in self.description.get("components", []):
            source_root = self.root / component.get("source_root", ".")
            for entry in component["paths"]:
                for path in python_files(self.root / entry):
                    self.scanned.append(path)
                    refs, problems = collect_imports(path, source_root)
                    out.extend(("problem", p) for p in problems)
                    for ref in refs:
                        top = ref.target.split(".")[0]
                        pattern = _forbidden(top, component["forbidden_imports"])
                        if pattern:
                            out.append((ref, f"{component['name']} → forbidden {top}", component["rule"]))
        return out

    # -- the report ----------------------------------------------------------------------------------------------
    def _excepted(self, ref: ImportRef) -> Optional[dict]:
        for exc in self.exceptions:
            if exc["file"] == self._rel(ref.path) and (ref.target == exc["imports"]
                                                        or ref.target.startswith(exc["imports"] + ".")):
                return exc
        return None

    def violations(self) -> list[str]:
        """Every broken rule as one line; empty when the code obeys the description."""
        self.scanned, self.internal_imports = [], 0
        lines = list(self.undeclared_library_parts())
        used = set()
        for item in self.library_violations() + self.component_violations():
            if item[0] == "problem":
                lines.append(item[1])
                continue
            ref, arrow, why = item
            exc = self._excepted(ref)
            if exc is not None:
                used.add(id(exc))
                continue
            lines.append(f"{self._rel(ref.path)}:{ref.line}: {arrow} (imports {ref.target}); {why}")
        for exc in self.exceptions:
            if not exc.get("why") or not exc.get("remove_when"):
                lines.append(f"docs/architecture.json: exception {exc} needs 'why' and 'remove_when'")
            if id(exc) not in used:
                lines.append(f"docs/architecture.json: stale exception {exc['file']} -> {exc['imports']} matches "
                             "no import any more; delete it")
        return sorted(set(lines), key=_sort_key)


def _sort_key(line: str):
    head, _, rest = line.partition(": ")
    file, _, number = head.rpartition(":")
    return (file or head, int(number) if number.isdigit() else 0, rest)


def check(root: Path = ROOT, description: Optional[dict] = None) -> tuple[list[str], Checker]:
    checker = Checker(root, description if description is not None else load_description())
    return checker.violations(), checker


# ----------------------------------------------------------------------------------------------------------------
# Tests on the real tree
# ----------------------------------------------------------------------------------------------------------------

def test_the_code_obeys_the_architecture():
    problems, checker = check()
    all_lib_files = set(python_files(ROOT / "VoxelDosimetryLib"))
    assert all_lib_files and all_lib_files <= set(checker.scanned), "the guard did not read every library file"
    assert checker.internal_imports > 50, "the guard saw almost no library imports: is it reading the code?"
    assert not problems, (f"{len(problems)} import(s) break docs/architecture.json:\n  " + "\n  ".join(problems)
                          + "\n" + FIX_HINT)


def test_the_description_is_consistent():
    description = load_description()
    lib = description["library"]
    layers = [layer["name"] for layer in lib["layers"]]
    assert len(layers) == len(set(layers)), f"a layer is listed twice: {layers}"
    assert all(layer.get("purpose") for layer in lib["layers"]), "every layer needs a one-line purpose"
    assert not set(layers) & set(lib["base_modules"]), "a name cannot be both a layer and a base module"
    for name, spec in lib["base_modules"].items():
        assert set(spec["may_import"]) <= set(lib["base_modules"]) - {name}, (
            f"base module {name} may import only other base modules (it sits below every layer)")
    assert set(lib["root_package"]["may_import"]) <= set(lib["base_modules"]) | set(layers)
    assert {"Training", "slicer", "qt", "ctk"} <= set(lib["forbidden_imports"])
    assert any(fnmatchcase("vtk", p) for p in lib["forbidden_imports"])
    # The DESIGN.md chain, with kernels between montecarlo and dose and nets between dose and kinetics.
    expected = ["volume", "io", "geometry", "physics", "montecarlo", "kernels", "dose", "nets", "kinetics",
                "voi", "metrics", "simulate", "pipeline", "cli"]
    assert layers == expected, ("docs/architecture.json reorders the layers of DESIGN.md; if that is intended, "
                                "update this test, DESIGN.md and docs/ARCHITECTURE.md together")


def test_the_guide_shows_the_same_layers():
    layers = [layer["name"] for layer in load_description()["library"]["layers"]]
    text = GUIDE.read_text(encoding="utf-8")
    chain = " → ".join(f"`{name}`" for name in layers)
    assert chain in text, f"docs/ARCHITECTURE.md must show the layer chain exactly as:\n{chain}"
    for name in layers:
        assert f"| `{name}` |" in text, f"docs/ARCHITECTURE.md has no table row for layer {name}"


# ----------------------------------------------------------------------------------------------------------------
# Self-tests on a synthetic tree: the guard cannot silently pass
# ----------------------------------------------------------------------------------------------------------------

def _write(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


CLEAN_TREE = {
    "VoxelDosimetryLib/__init__.py": "__version__ = '0'\nfrom VoxelDosimetryLib.errors import E\n"
                                     "from VoxelDosimetryLib.volume import V\n",
    "VoxelDosimetryLib/errors.py": "class E(Exception):\n    pass\n",
    "VoxelDosimetryLib/qc.py": "from VoxelDosimetryLib.errors import E\n",
    "VoxelDosimetryLib/device.py": "from .errors import E\n",
    "VoxelDosimetryLib/volume/__init__.py": "from .vol import V\n",
    "VoxelDosimetryLib/volume/vol.py": "from ..errors import E\nclass V:\n    pass\n",
    "VoxelDosimetryLib/io/__init__.py": "",
    "VoxelDosimetryLib/io/reader.py": "from ..volume import V\nfrom . import writer\nfrom VoxelDosimetryLib import qc\n",
    "VoxelDosimetryLib/io/writer.py": "import numpy\n",
    "VoxelDosimetryLib/dose/__init__.py": "from VoxelDosimetryLib.io.reader import writer\n",
    "VoxelDosimetryLib/pipeline/__init__.py": "",
    "VoxelDosimetryLib/pipeline/run.py": "from VoxelDosimetryLib import __version__\n"
                                         "from VoxelDosimetryLib.dose import x\n",
    "VoxelDosimetryLib/cli/__init__.py": "",
    "VoxelDosimetryLib/cli/main.py": "def main():\n    from VoxelDosimetryLib.pipeline.run import run\n",
    "Training/__init__.py": "",
    "Training/cli.py": "from VoxelDosimetryLib.pipeline.run import run\nfrom . import data\n",
    "Training/data.py": "from VoxelDosimetryLib.io.reader import writer\n",
    "VoxelDosimetry/VoxelDosimetry.py": "import slicer\nimport qt\nimport vtk\nfrom VoxelDosimetryLib import x\n",
    "VoxelDosimetry/VoxelDosimetrySlicer/__init__.py": "",
    "VoxelDosimetry/VoxelDosimetrySlicer/adapter.py": "import vtk\nfrom .timepoints import t\n",
    "VoxelDosimetry/VoxelDosimetrySlicer/timepoints.py": "",
}


@pytest.fixture
def tree(tmp_path):
    _write(tmp_path, CLEAN_TREE)
    return tmp_path


def _problems(root: Path, description: Optional[dict] = None) -> list[str]:
    return check(root, description if description is not None else load_description())[0]


def test_selftest_a_clean_tree_passes(tree):
    assert _problems(tree) == []


def test_selftest_an_upward_import_is_detected(tree):
    _write(tree, {"VoxelDosimetryLib/io/writer.py": "import numpy\nfrom VoxelDosimetryLib.pipeline.run import run\n"})
    problems = _problems(tree)
    assert problems == [f"VoxelDosimetryLib/io/writer.py:2: io → pipeline (imports VoxelDosimetryLib.pipeline.run); "
                        "io may import only volume, io and the base modules"], problems


def test_selftest_a_lazy_import_inside_a_function_is_detected(tree):
    _write(tree, {"VoxelDosimetryLib/volume/lazy.py": (
        "import os\n\nclass A:\n    def f(self):\n        if os:\n            from VoxelDosimetryLib.dose import y\n"
        "\ndef g():\n    import importlib\n    return importlib.import_module('VoxelDosimetryLib.cli.main')\n")})
    problems = _problems(tree)
    assert any(p.startswith("VoxelDosimetryLib/volume/lazy.py:6: volume → dose") for p in problems), problems
    assert any(p.startswith("VoxelDosimetryLib/volume/lazy.py:10: volume → cli") for p in problems), problems
    assert len(problems) == 2, problems


def test_selftest_relative_imports_are_resolved(tree):
    _write(tree, {
        "VoxelDosimetryLib/io/rel.py": "from ..pipeline import run\nfrom .. import dose\nfrom . import writer\n"
                                       "from ..volume.vol import V\n",
        "VoxelDosimetryLib/volume/sub/__init__.py": "from ... import io\n",
    })
    problems = _problems(tree)
    assert [p.split(";")[0] for p in problems] == [
        "VoxelDosimetryLib/io/rel.py:1: io → pipeline (imports VoxelDosimetryLib.pipeline.run)",
        "VoxelDosimetryLib/io/rel.py:2: io → dose (imports VoxelDosimetryLib.dose)",
        "VoxelDosimetryLib/volume/sub/__init__.py:1: volume → io (imports VoxelDosimetryLib.io)",
    ], problems
    refs, _ = collect_imports(tree / "VoxelDosimetryLib/io/rel.py", tree)
    assert [r.target for r in refs] == ["VoxelDosimetryLib.pipeline.run", "VoxelDosimetryLib.dose",
                                        "VoxelDosimetryLib.io.writer", "VoxelDosimetryLib.volume.vol"]


def test_selftest_a_relative_import_above_the_package_is_reported(tree):
    _write(tree, {"VoxelDosimetryLib/io/bad.py": "from .... import nothing\n"})
    assert any("relative import goes above" in p for p in _problems(tree))


def test_selftest_base_modules_and_the_root_package_stay_at_the_bottom(tree):
    _write(tree, {
        "VoxelDosimetryLib/errors.py": "def f():\n    from VoxelDosimetryLib.qc import w\n",
        "VoxelDosimetryLib/qc.py": "from VoxelDosimetryLib.volume import V\n",
        "VoxelDosimetryLib/device.py": "from VoxelDosimetryLib import __version__\n",
        "VoxelDosimetryLib/__init__.py": "from VoxelDosimetryLib.pipeline import run_pipeline\n",
        "VoxelDosimetryLib/volume/vol.py": "from VoxelDosimetryLib import __version__\n",
    })
    heads = [p.split(" (imports")[0] for p in _problems(tree)]
    assert heads == [
        "VoxelDosimetryLib/__init__.py:1: VoxelDosimetryLib (root __init__) → pipeline",
        "VoxelDosimetryLib/device.py:1: device → VoxelDosimetryLib (root __init__)",
        "VoxelDosimetryLib/errors.py:2: errors → qc",
        "VoxelDosimetryLib/qc.py:1: qc → volume",
        "VoxelDosimetryLib/volume/vol.py:1: volume → VoxelDosimetryLib (root __init__)",
    ], heads


def test_selftest_forbidden_imports_in_library_training_and_module(tree):
    _write(tree, {
        "VoxelDosimetryLib/geometry/__init__.py": "def show():\n    import slicer.util\n",
        "VoxelDosimetryLib/geometry/vtkuse.py": "from vtkmodules.util import numpy_support\n",
        "VoxelDosimetryLib/dose/train.py": "import importlib\nm = importlib.import_module('Training.cli')\n",
        "Training/gui.py": "def f():\n    import qt\n    from VoxelDosimetrySlicer import adapter\n",
        "VoxelDosimetry/VoxelDosimetrySlicer/widget.py": "import ctk\n",
        "VoxelDosimetry/VoxelDosimetry.py": "import slicer\nfrom Training import cli\n",
    })
    heads = [p.split(" (imports")[0] for p in _problems(tree)]
    assert heads == [
        "Training/gui.py:2: Training → forbidden qt",
        "Training/gui.py:3: Training → forbidden VoxelDosimetrySlicer",
        "VoxelDosimetry/VoxelDosimetry.py:2: Slicer module → forbidden Training",
        "VoxelDosimetry/VoxelDosimetrySlicer/widget.py:1: Slicer module helpers → forbidden ctk",
        "VoxelDosimetryLib/dose/train.py:2: dose → forbidden Training",
        "VoxelDosimetryLib/geometry/__init__.py:2: geometry → forbidden slicer",
        "VoxelDosimetryLib/geometry/vtkuse.py:1: geometry → forbidden vtkmodules",
    ], heads


def test_selftest_an_undeclared_package_is_reported(tree):
    _write(tree, {"VoxelDosimetryLib/extras/__init__.py": "from VoxelDosimetryLib.cli.main import main\n",
                  "VoxelDosimetryLib/io/uses_extras.py": "from VoxelDosimetryLib.extras import x\n"})
    problems = _problems(tree)
    assert any(p.startswith("VoxelDosimetryLib/extras: not in docs/architecture.json") for p in problems), problems
    assert any(p.startswith("VoxelDosimetryLib/io/uses_extras.py:1: io → extras") for p in problems), problems


def test_selftest_an_exception_must_match_and_be_justified(tree):
    _write(tree, {"VoxelDosimetryLib/io/writer.py": "from VoxelDosimetryLib.pipeline.run import run\n"})
    description = load_description()
    description["exceptions"] = [{"file": "VoxelDosimetryLib/io/writer.py", "imports": "VoxelDosimetryLib.pipeline",
                                  "why": "test", "remove_when": "never"}]
    assert _problems(tree, description) == []
    description["exceptions"].append({"file": "VoxelDosimetryLib/io/reader.py", "imports": "VoxelDosimetryLib.cli"})
    problems = _problems(tree, description)
    assert any("needs 'why' and 'remove_when'" in p for p in problems), problems
    assert any("stale exception VoxelDosimetryLib/io/reader.py" in p for p in problems), problems


def test_selftest_a_new_layer_in_the_description_is_honoured(tree):
    """Adding a layer is one edit of the JSON: code at the new height is checked at once."""
    _write(tree, {"VoxelDosimetryLib/kernels/__init__.py": "from VoxelDosimetryLib.dose import method\n"})
    assert any(p.startswith("VoxelDosimetryLib/kernels/__init__.py:1: kernels → dose") for p in _problems(tree))


if __name__ == "__main__":
    found, _checker = check()
    print("\n".join(found) if found else f"OK: {len(_checker.scanned)} files obey docs/architecture.json")
    sys.exit(1 if found else 0)
