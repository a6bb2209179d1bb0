"""VoxelDosimetryLogic on a real MRML scene (slicer-core), with Slicer's Qt-only modules stubbed.

VoxelDosimetry.py imports qt and Slicer's GUI helpers at module level; slicer-core has MRML but no Qt.
The stubs below stand in for exactly those imports (qt, slicer.i18n, slicer.ScriptedLoadableModule,
slicer.parameterNodeWrapper) so the Logic - which must work without the GUI - runs against real MRML
nodes. The parameterNodeWrapper stub keeps the packs as plain objects with the declared defaults.
"""
from __future__ import annotations

import datetime as dt
import importlib.util
import sys
import types
import unittest
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core (MRML without Qt) is not installed: pip install slicer-core")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package has no MRML; install slicer-core", allow_module_level=True)
pytest.importorskip("vtk", reason="vtk is not importable (it comes with slicer-core)")

MODULE_DIR = Path(__file__).resolve().parents[2] / "VoxelDosimetry"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

from VoxelDosimetryLib import Volume  # noqa: E402
from VoxelDosimetrySlicer import mrml_adapter as adapter  # noqa: E402
from VoxelDosimetrySlicer import timepoints as tpmod  # noqa: E402


class _Anything:
    """Stands in for any Qt class or value used at import time."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Anything()

    def __getattr__(self, name):
        return _Anything()


def _stub_module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


def _pack_defaults(cls) -> dict:
    defaults = {}
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if name in cls.__dict__:
            defaults[name] = cls.__dict__[name]
        elif str(annotation).startswith("list["):
            defaults[name] = list
        else:
            defaults[name] = None
    return defaults


def _parameter_pack(cls):
    defaults = _pack_defaults(cls)

    def __init__(self, **values):
        for name, default in defaults.items():
            setattr(self, name, values.get(name, default() if default is list else default))

    cls.__init__ = __init__
    for name in defaults:  # drop the class-level defaults so instances hold the values
        if name in cls.__dict__:
            delattr(cls, name)
    return cls


def _parameter_node_wrapper(cls):
    annotations = dict(cls.__dict__.get("__annotations__", {}))

    def __init__(self, parameterNode):
        self.parameterNode = parameterNode
        namespace = sys.modules[cls.__module__].__dict__
        for name, annotation in annotations.items():
            setattr(self, name, namespace[annotation]())

    cls.__init__ = __init__
    return cls


class _ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        self.moduleName = type(self).__name__[:-len("Logic")]

    def getParameterNode(self):
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
        node.SetAttribute("ModuleName", self.moduleName)
        return node


@pytest.fixture
def scene(monkeypatch):
    scene = slicer.vtkMRMLScene()
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    return scene


@pytest.fixture
def module(monkeypatch, scene):
    """VoxelDosimetry.py imported with the Qt-only dependencies stubbed (restored afterwards)."""
    qt = _stub_module("qt")
    qt.__getattr__ = lambda name: _Anything  # PEP 562: any qt.X is a dummy class
    stubs = {
        "qt": qt,
        "ctk": _stub_module("ctk"),
        "slicer.i18n": _stub_module("slicer.i18n", tr=lambda text: text, translate=lambda context, text: text),
        "slicer.parameterNodeWrapper": _stub_module(
            "slicer.parameterNodeWrapper", parameterNodeWrapper=_parameter_node_wrapper,
            parameterPack=_parameter_pack, WithinRange=lambda low, high: None),
        "slicer.ScriptedLoadableModule": _stub_module(
            "slicer.ScriptedLoadableModule", ScriptedLoadableModule=type("ScriptedLoadableModule", (), {}),
            ScriptedLoadableModuleWidget=type("ScriptedLoadableModuleWidget", (), {}),
            ScriptedLoadableModuleLogic=_ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest=unittest.TestCase),
        "slicer.util": _stub_module("slicer.util", VTKObservationMixin=type("VTKObservationMixin", (), {})),
    }
    for name, stub in stubs.items():
        monkeypatch.setitem(sys.modules, name, stub)
    name = "VoxelDosimetry"
    spec = importlib.util.spec_from_file_location(name, MODULE_DIR / "VoxelDosimetry.py")
    loaded = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, loaded)
    spec.loader.exec_module(loaded)
    return loaded


@pytest.fixture
def logic(module):
    return module.VoxelDosimetryLogic()


def _node(scene, quantity, unit, name, value=1.0):
    array = (np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5) + 1.0) * value
    volume = Volume(array, spacing=(2.0, 2.0, 3.0), origin=(1.0, 2.0, 3.0), quantity=quantity, unit=unit)
    return adapter.volume_to_node(volume, scene, name=name, create_display_nodes=False)


def _complete_inputs(module, logic, scene):
    ct = _node(scene, "ct", "HU", "CT")
    late = _node(scene, "activity_concentration", "kBq/mL", "SPECT day 1", 10.0)
    early = _node(scene, "activity_concentration", "Bq/mL", "SPECT 4 h", 1000.0)
    adapter.set_timepoint_attributes(late, acquisition_datetime="2024-03-02T10:00:00")
    adapter.set_timepoint_attributes(early, acquisition_datetime="2024-03-01T14:00:00")
    inputs = module.InputsParameters()
    inputs.referenceCT = ct
    logic.addTimepoint(inputs, late)
    logic.addTimepoint(inputs, early)
    logic.setInjectionDateTime(inputs, "2024-03-01 10:00")
    inputs.administeredActivityMBq = 7400.0
    return inputs, ct, early, late


def test_parameter_node_wrapper_holds_the_inputs_pack(module, logic):
    parameters = logic.getParameterNode()
    assert isinstance(parameters.inputs, module.InputsParameters)
    assert parameters.inputs.radionuclide == "Lu-177"
    assert parameters.inputs.timepoints == [] and parameters.inputs.injectionDateTime == ""
    assert parameters.parameterNode.GetAttribute("ModuleName") == "VoxelDosimetry"


def test_hours_after_injection_come_from_acquisition_date_times(module, logic, scene):
    inputs, _ct, early, late = _complete_inputs(module, logic, scene)
    assert inputs.injectionDateTime == "2024-03-01T10:00:00"
    timepoints = logic.buildTimepoints(inputs)
    assert [t.name for t in timepoints] == ["SPECT 4 h", "SPECT day 1"]  # sorted by time
    assert [t.hours_after_injection for t in timepoints] == [4.0, 24.0]
    assert {t.time_source for t in timepoints} == {tpmod.TIME_SOURCE_ACQUISITION}
    assert [t.unit for t in timepoints] == ["Bq/mL", "kBq/mL"]  # from the volumes' unit attributes
    # parameter node order is the order of addition
    assert [t.name for t in logic.buildTimepoints(inputs, sort=False)] == ["SPECT day 1", "SPECT 4 h"]
    # mirrored into the subject hierarchy
    stored = adapter.get_timepoint_attributes(late)
    assert stored.hours_after_injection == 24.0
    assert stored.injection_datetime == dt.datetime(2024, 3, 1, 10, 0)
    assert stored.nuclide == "Lu-177"


def test_entered_hours_override_and_clear(module, logic, scene):
    inputs, _ct, early, _late = _complete_inputs(module, logic, scene)
    logic.setTimepointHours(inputs, 1, 4.5)
    assert logic.buildTimepoints(inputs, sort=False)[1].time_source == tpmod.TIME_SOURCE_ENTERED
    assert adapter.get_timepoint_attributes(early).hours_after_injection == 4.5
    logic.setTimepointHours(inputs, 1, None)
    assert logic.buildTimepoints(inputs, sort=False)[1].hours_after_injection == 4.0
    with pytest.raises(ValueError, match="zero or positive"):
        logic.setTimepointHours(inputs, 1, -3.0)


def test_changing_the_injection_time_moves_every_timepoint(module, logic, scene):
    inputs, _ct, _early, late = _complete_inputs(module, logic, scene)
    logic.setInjectionDateTime(inputs, "20240301080000")
    assert [t.hours_after_injection for t in logic.buildTimepoints(inputs)] == [6.0, 26.0]
    assert adapter.get_timepoint_attributes(late).hours_after_injection == 26.0
    with pytest.raises(ValueError, match="ISO 8601"):
        logic.setInjectionDateTime(inputs, "morning")


def test_timing_and_units_are_read_from_the_dicom_header(module, logic, scene):
    header = {("1.2.3", "0008,0022"): "20240302", ("1.2.3", "0008,0032"): "093000.00",
              ("1.2.3", "0054,1001"): "CNTS"}
    logic.dicomTagReader = lambda uid, tag: header.get((uid, tag), "")
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "NM from DICOM")
    node.SetAttribute("DICOM.instanceUIDs", "1.2.3 1.2.4")
    value, source = logic.acquisitionDateTimeOf(node)
    assert (value, source) == (dt.datetime(2024, 3, 2, 9, 30), "DICOM header")
    assert logic.spectUnitOf(node) == "counts"
    inputs = module.InputsParameters()
    logic.addTimepoint(inputs, node)
    assert inputs.timepoints[0].acquisitionDateTime == "2024-03-02T09:30:00"
    assert inputs.timepoints[0].unit == "counts"


def test_timing_from_dicom_attributes_on_the_hierarchy_item(logic, scene):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "NM")
    adapter.set_item_attribute(node, "DICOM.AcquisitionDateTime", "20240301143000")
    assert logic.acquisitionDateTimeOf(node)[0] == dt.datetime(2024, 3, 1, 14, 30)
    other = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "NM2")
    other.SetAttribute("DICOM.SeriesDate", "20240303")
    other.SetAttribute("DICOM.SeriesTime", "1015")
    assert logic.acquisitionDateTimeOf(other)[0] == dt.datetime(2024, 3, 3, 10, 15)
    assert logic.acquisitionDateTimeOf(scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "none")) == (None, "")


def test_clearing_the_acquisition_time_goes_back_to_the_header(module, logic, scene):
    header = {("9.9", "0008,002A"): "20240301150000"}
    logic.dicomTagReader = lambda uid, tag: header.get((uid, tag), "")
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "NM")
    node.SetAttribute("DICOM.instanceUIDs", "9.9")
    inputs = module.InputsParameters()
    logic.addTimepoint(inputs, node)
    logic.setTimepointAcquisitionDateTime(inputs, 0, "2024-03-01T16:00")
    assert inputs.timepoints[0].acquisitionDateTime == "2024-03-01T16:00:00"
    logic.setTimepointAcquisitionDateTime(inputs, 0, "")
    assert inputs.timepoints[0].acquisitionDateTime == "2024-03-01T15:00:00"
    with pytest.raises(ValueError, match="Cannot read"):
        logic.setTimepointAcquisitionDateTime(inputs, 0, "noon")


def test_adding_the_same_volume_twice_or_the_ct_is_refused(module, logic, scene):
    inputs, ct, early, _late = _complete_inputs(module, logic, scene)
    with pytest.raises(ValueError, match="already timepoint 2"):
        logic.addTimepoint(inputs, early)
    with pytest.raises(ValueError, match="reference CT"):
        logic.addTimepoint(inputs, ct)
    logic.removeTimepoints(inputs, [0])
    assert [tp.volume.GetName() for tp in inputs.timepoints] == ["SPECT 4 h"]


def test_stored_hours_are_reused_when_a_volume_is_added_again(module, logic, scene):
    node = _node(scene, "activity_concentration", "Bq/mL", "S")
    adapter.set_timepoint_attributes(node, hours_after_injection=96.0, injection_datetime="2024-03-01T10:00")
    inputs = module.InputsParameters()
    logic.addTimepoint(inputs, node)
    assert inputs.timepoints[0].hoursAfterInjection == 96.0
    assert inputs.injectionDateTime == "2024-03-01T10:00:00"


def test_validation_and_summary_name_what_is_missing(module, logic, scene):
    inputs = module.InputsParameters()
    problems = logic.validateInputs(inputs)
    assert any("No reference CT" in p for p in problems)
    assert any("No SPECT timepoint" in p for p in problems)
    assert any("Administered activity" in p for p in problems)

    node = _node(scene, "counts", "counts", "NM")
    logic.addTimepoint(inputs, node)
    problems = logic.validateInputs(inputs)
    assert any("Timepoint 1 (NM): time after injection is unknown" in p for p in problems)
    summary = logic.inputsSummaryHtml(inputs)
    assert "time missing" in summary and "needs calibration" in summary and "Missing before dose" in summary


def test_complete_inputs_validate_and_convert_to_lib_volumes(module, logic, scene):
    inputs, _ct, _early, _late = _complete_inputs(module, logic, scene)
    names, problem = logic.supportedNuclides()
    if problem is not None:  # the physics package is optional in this environment
        assert any("radionuclide list is unavailable" in p for p in logic.validateInputs(inputs))
        return
    assert "Lu-177" in names
    assert "half-life" in logic.nuclideDescription("Lu-177")
    assert logic.validateInputs(inputs) == []
    assert "Inputs complete" in logic.inputsSummaryHtml(inputs)
    ct, spects = logic.loadInputVolumes(inputs)
    assert (ct.quantity, ct.unit) == ("ct", "HU")
    assert [s.metadata["time_s"] for s in spects] == [4.0 * 3600.0, 24.0 * 3600.0]
    assert [s.unit for s in spects] == ["Bq/mL", "kBq/mL"]
    assert {s.quantity for s in spects} == {"activity_concentration"}
    assert spects[1].metadata["nuclide"] == "Lu-177"
    assert spects[1].to_canonical_unit().array.max() == pytest.approx(60 * 10.0 * 1000.0)


def test_incomplete_inputs_refuse_to_load(module, logic):
    with pytest.raises(ValueError, match="The inputs are incomplete"):
        logic.loadInputVolumes(module.InputsParameters())


def test_units_are_checked(module, logic, scene):
    inputs, *_ = _complete_inputs(module, logic, scene)
    logic.setTimepointUnit(inputs, 0, "MBq/mL")
    assert inputs.timepoints[0].unit == "MBq/mL"
    with pytest.raises(ValueError, match="counts or an activity concentration"):
        logic.setTimepointUnit(inputs, 0, "Gy")


def test_guess_reference_ct_uses_the_quantity_attribute_not_names(logic, scene):
    scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")  # a name alone means nothing
    assert logic.guessReferenceCT(scene) is None
    ct = _node(scene, "ct", "HU", "anything")
    assert logic.guessReferenceCT(scene) is ct


def test_requirements_file_is_read(logic):
    requirements = logic.requirements()
    assert [r.split(">")[0] for r in requirements] == ["torch", "pynrrd", "icrp107-database", "xraylib", "scipy", "matplotlib",
                                                       "PyYAML"]
    assert set(logic.missingRequirements()) <= set(requirements)


def test_times_that_look_like_days_are_flagged_in_the_summary(module, logic, scene):
    inputs, _ct, early, late = _complete_inputs(module, logic, scene)
    names, problem = logic.supportedNuclides()
    if problem is not None:
        pytest.skip(f"the physics package is unavailable here: {problem}")
    assert logic.inputWarnings(inputs) == []  # 4 h and 24 h after injection: plausible
    for index, hours in enumerate((1.0, 2.0)):  # days typed as hours
        logic.setTimepointHours(inputs, index, hours)
    warnings = logic.inputWarnings(inputs)
    assert len(warnings) == 1 and "days" in warnings[0]
    assert "Check:" in logic.inputsSummaryHtml(inputs) and "days" in logic.inputsSummaryHtml(inputs)
