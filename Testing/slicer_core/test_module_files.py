"""Static checks of the Slicer module files (no Slicer needed): Python structure, .ui, resources."""
from __future__ import annotations

import ast
import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "VoxelDosimetry"
MODULE_PY = MODULE_DIR / "VoxelDosimetry.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "VoxelDosimetry.ui"
ICON = MODULE_DIR / "Resources" / "Icons" / "VoxelDosimetry.png"
REQUIREMENTS = MODULE_DIR / "Resources" / "requirements.txt"


@pytest.fixture(scope="module")
def tree() -> ast.Module:
    return ast.parse(MODULE_PY.read_text(encoding="utf-8"), filename=str(MODULE_PY), feature_version=(3, 9))


@pytest.fixture(scope="module")
def ui() -> ET.Element:
    return ET.parse(UI_FILE).getroot()


def _classes(tree: ast.Module) -> dict[str, ast.ClassDef]:
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def _base_names(cls: ast.ClassDef) -> list[str]:
    return [b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in cls.bases]


def _decorators(cls: ast.ClassDef) -> list[str]:
    return [d.id if isinstance(d, ast.Name) else ast.unparse(d) for d in cls.decorator_list]


def test_every_module_python_file_starts_with_future_annotations():
    for path in sorted(MODULE_DIR.rglob("*.py")):
        body = ast.parse(path.read_text(encoding="utf-8")).body
        statements = body[1:] if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            else body
        first = statements[0] if statements else None
        assert isinstance(first, ast.ImportFrom) and first.module == "__future__" and \
            any(a.name == "annotations" for a in first.names), f"{path.relative_to(ROOT)}: first import must be " \
                                                               "`from __future__ import annotations`"


def test_module_defines_the_four_scripted_module_classes(tree):
    classes = _classes(tree)
    expected = {
        "VoxelDosimetry": ["ScriptedLoadableModule"],
        "VoxelDosimetryWidget": ["ScriptedLoadableModuleWidget", "VTKObservationMixin"],
        "VoxelDosimetryLogic": ["ScriptedLoadableModuleLogic"],
        "VoxelDosimetryTest": ["ScriptedLoadableModuleTest"],
    }
    for name, bases in expected.items():
        assert name in classes, f"VoxelDosimetry.py must define class {name}"
        assert _base_names(classes[name]) == bases


def test_module_metadata(tree):
    init = next(f for f in _classes(tree)["VoxelDosimetry"].body if isinstance(f, ast.FunctionDef))
    assigned = {}
    for node in ast.walk(init):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute):
            assigned[node.targets[0].attr] = node.value
    for attribute in ("title", "categories", "contributors", "helpText", "acknowledgementText"):
        assert attribute in assigned, f"module must set parent.{attribute}"
    assert ast.literal_eval(assigned["categories"]) == ["Nuclear Medicine"]


def test_parameter_node_uses_the_wrapper_and_packs(tree):
    classes = _classes(tree)
    assert _decorators(classes["VoxelDosimetryParameterNode"]) == ["parameterNodeWrapper"]
    assert _decorators(classes["InputsParameters"]) == ["parameterPack"]
    assert _decorators(classes["SpectTimepoint"]) == ["parameterPack"]
    inputs = _annotations(classes["InputsParameters"])
    assert {"referenceCT", "timepoints", "radionuclide", "administeredActivityMBq", "injectionDateTime"} <= set(inputs)
    assert inputs["timepoints"] == "list[SpectTimepoint]"
    assert {"volume", "hoursAfterInjection", "acquisitionDateTime", "unit"} <= set(_annotations(classes["SpectTimepoint"]))


def _annotations(cls: ast.ClassDef) -> dict[str, str]:
    return {n.target.id: ast.unparse(n.annotation) for n in cls.body
            if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}


def test_no_dependency_installation_at_import(tree):
    """pip_install / pip_ensure may only run inside functions (first use), never at module level."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            continue
        source = ast.unparse(node)
        assert "pip_install" not in source and "pip_ensure" not in source


def test_dependencies_use_pip_ensure_with_pip_install_fallback():
    text = MODULE_PY.read_text(encoding="utf-8")
    assert 'import_module("slicer.packaging")' in text and "pip_ensure(" in text and "load_requirements(" in text
    assert "slicer.util.pip_install(" in text


def test_ui_is_a_qmrmlwidget_with_only_the_inputs_panel(ui):
    top = ui.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == "VoxelDosimetry"
    panels = [w for w in ui.iter("widget") if w.get("class") == "ctkCollapsibleButton"]
    assert len(panels) == 1, "only the 'Inputs & timepoints' panel belongs to this issue"
    text = panels[0].find("property[@name='text']/string").text
    assert text == "Inputs & timepoints"


def test_ui_has_every_widget_the_python_code_uses(ui):
    names = {w.get("name") for w in ui.iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_PY.read_text(encoding="utf-8")))
    assert used, "the widget should look up its widgets as self.ui.<name>"
    missing = sorted(used - names)
    assert not missing, f"VoxelDosimetry.ui lacks widgets used by VoxelDosimetry.py: {missing}"
    for name in ("referenceCTSelector", "timepointTable", "spectSelector", "addTimepointButton",
                 "removeTimepointButton", "radionuclideComboBox", "administeredActivitySpinBox",
                 "injectionDateTimeEdit", "inputsSummaryLabel"):
        assert name in names


def test_ui_parameter_bindings_name_real_parameters(ui, tree):
    inputs = set(_annotations(_classes(tree)["InputsParameters"]))
    bindings = {}
    for widget in ui.iter("widget"):
        prop = widget.find("property[@name='SlicerParameterName']")
        if prop is not None:
            assert prop.get("stdset") == "0", "SlicerParameterName must be a dynamic property (stdset=0)"
            bindings[widget.get("name")] = (widget.get("class"), prop.find("string").text)
    assert bindings["referenceCTSelector"] == ("qMRMLNodeComboBox", "inputs.referenceCT")
    # the generic float connector accepts QDoubleSpinBox (not ctkDoubleSpinBox)
    assert bindings["administeredActivitySpinBox"] == ("QDoubleSpinBox", "inputs.administeredActivityMBq")
    for _cls, name in bindings.values():
        pack, member = name.split(".")
        assert pack == "inputs" and member in inputs, f"{name} is not a parameter"


def test_ui_mrml_widgets_receive_the_scene_and_custom_widgets_are_declared(ui):
    receivers = {c.findtext("receiver") for c in ui.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    combos = {w.get("name") for w in ui.iter("widget") if w.get("class") == "qMRMLNodeComboBox"}
    assert combos and combos <= receivers
    declared = {c.findtext("class") for c in ui.iter("customwidget")}
    used = {w.get("class") for w in ui.iter("widget")}
    assert {c for c in used if c.startswith(("ctk", "qMRML"))} <= declared


def test_icon_is_a_128_pixel_png():
    data = ICON.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (128, 128)


def test_requirements_name_what_slicer_does_not_ship():
    lines = [line.split("#")[0].strip() for line in REQUIREMENTS.read_text().splitlines()]
    names = {re.split(r"[<>=!~ \[;]", line)[0].lower() for line in lines if line}
    assert names == {"torch", "pynrrd", "icrp107-database", "xraylib", "scipy", "matplotlib", "pyyaml"}
