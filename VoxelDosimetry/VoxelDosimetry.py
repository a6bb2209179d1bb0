"""VoxelDosimetry: patient-specific voxel dosimetry for radiopharmaceutical therapy (3D Slicer module).

The module is a thin layer over VoxelDosimetryLib. State lives in the module's parameter node
(`VoxelDosimetryParameterNode`) and in subject-hierarchy attributes of the SPECT volumes (time after
injection, acquisition and injection date-times, radionuclide) - never in node names. RAS <-> LPS and
MRML <-> Volume conversions are done by VoxelDosimetrySlicer.mrml_adapter.

Python packages the library needs beyond Slicer's own (Resources/requirements.txt) are installed on first
use - when the module is first opened or a computation first runs - never when this file is imported.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from typing import Annotated, Any, Callable, Optional

import qt
import vtk

import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper, parameterPack
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin


def _ensureLibraryImportable() -> None:
    """Make VoxelDosimetryLib importable when the module runs from a source checkout.

    An installed extension has VoxelDosimetryLib next to this file (CMake copies it into the
    qt-scripted-modules folder); a developer who adds <checkout>/VoxelDosimetry as an additional module
    path has it one folder up.
    """
    if importlib.util.find_spec("VoxelDosimetryLib") is not None:
        return
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.isfile(os.path.join(checkout, "VoxelDosimetryLib", "__init__.py")) and checkout not in sys.path:
        sys.path.append(checkout)


_ensureLibraryImportable()

from VoxelDosimetrySlicer import timepoints as tpmod  # noqa: E402  (pure Python, safe at import)

REQUESTER = "VoxelDosimetry"
DEFAULT_NUCLIDE = "Lu-177"


#
# VoxelDosimetry
#


class VoxelDosimetry(ScriptedLoadableModule):
    """Module description shown in Slicer's module selector and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Voxel Dosimetry")
        self.parent.categories = ["Nuclear Medicine"]
        self.parent.dependencies = []
        self.parent.contributors = ["VoxelDosimetry developers"]
        self.parent.helpText = _("""
Patient-specific voxel dosimetry for radiopharmaceutical therapy (Lu-177 first).
Load a CT and quantitative SPECT acquired at 2-5 times after injection, enter the injection date-time,
administered activity and radionuclide, and the module computes absorbed dose maps and segment statistics
with local deposition, voxel S-value, dose-kernel, Monte Carlo or trained-network methods.
Timing is read from the DICOM headers when the SPECT was loaded from DICOM; it can be typed in otherwise.
""")
        self.parent.acknowledgementText = _("""
Built on 3D Slicer, SimpleITK, PyTorch and the ICRP Publication 107 decay data. Method references:
Kim et al. (voxel time integration and mass-weighted mean dose), Schneider et al. 2000 (HU to density),
and the MIRD voxel S-value formalism.
""")


#
# Parameter node
#


@parameterPack
class SpectTimepoint:
    """One SPECT acquisition. hoursAfterInjection < 0 means "not entered: use the date-times"."""

    volume: vtkMRMLScalarVolumeNode
    hoursAfterInjection: float = tpmod.HOURS_NOT_SET
    acquisitionDateTime: str = ""  # ISO 8601, "" when unknown
    unit: str = tpmod.DEFAULT_SPECT_UNIT


@parameterPack
class InputsParameters:
    """The "Inputs & timepoints" panel."""

    referenceCT: vtkMRMLScalarVolumeNode
    timepoints: list[SpectTimepoint]
    radionuclide: str = DEFAULT_NUCLIDE
    administeredActivityMBq: Annotated[float, WithinRange(0.0, 1.0e5)] = 0.0
    injectionDateTime: str = ""  # ISO 8601, "" when not set


@parameterNodeWrapper
class VoxelDosimetryParameterNode:
    """Everything the module remembers, saved with the scene. One parameterPack per panel."""

    inputs: InputsParameters


#
# VoxelDosimetryWidget
#


class VoxelDosimetryWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Thin GUI: reads and writes the parameter node through the Logic; no computation here."""

    TABLE_COLUMNS = (_("SPECT volume"), _("Acquisition date-time"), _("Hours after injection"), _("Units"))
    COLUMN_VOLUME, COLUMN_ACQUISITION, COLUMN_HOURS, COLUMN_UNIT = range(4)
    NOT_SET_DATETIME = qt.QDateTime(qt.QDate(2000, 1, 1), qt.QTime(0, 0, 0))

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic: Optional[VoxelDosimetryLogic] = None
        self._parameterNode: Optional[VoxelDosimetryParameterNode] = None
        self._parameterNodeGuiTag = None
        self._updatingGui = False
        self._guiUpdatePending = False
        self._dependenciesChecked = False

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/VoxelDosimetry.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = VoxelDosimetryLogic()

        table = self.ui.timepointTable
        table.setColumnCount(len(self.TABLE_COLUMNS))
        table.setHorizontalHeaderLabels(list(self.TABLE_COLUMNS))
        header = table.horizontalHeader()
        header.setSectionResizeMode(self.COLUMN_VOLUME, qt.QHeaderView.Stretch)
        for column in (self.COLUMN_ACQUISITION, self.COLUMN_HOURS, self.COLUMN_UNIT):
            header.setSectionResizeMode(column, qt.QHeaderView.ResizeToContents)
        table.verticalHeader().setVisible(False)

        edit = self.ui.injectionDateTimeEdit
        edit.setMinimumDateTime(self.NOT_SET_DATETIME)
        edit.setSpecialValueText(_("Not set"))
        edit.setDateTime(self.NOT_SET_DATETIME)

        self._fillRadionuclides()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        # Widgets with a SlicerParameterName in the .ui (CT selector, activity) are bound by connectGui;
        # the ones below need conversions the generic connectors do not do.
        self.ui.addTimepointButton.connect("clicked(bool)", self.onAddTimepoint)
        self.ui.removeTimepointButton.connect("clicked(bool)", self.onRemoveTimepoints)
        table.connect("cellChanged(int,int)", self.onTimepointCellChanged)
        self.ui.radionuclideComboBox.connect("currentIndexChanged(int)", self.onRadionuclideChanged)
        edit.connect("dateTimeChanged(QDateTime)", self.onInjectionDateTimeChanged)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        # First use of the module in this session: make sure the library's Python packages are present.
        if not self._dependenciesChecked:
            self._dependenciesChecked = True
            with slicer.util.tryWithErrorDisplay(_("Installing VoxelDosimetry's Python packages failed."),
                                                 waitCursor=False):
                if self.logic.ensureDependencies(confirm=self._confirmInstall):
                    self._fillRadionuclides()
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode.parameterNode, vtk.vtkCommand.ModifiedEvent,
                                self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        inputs = self._parameterNode.inputs
        if not inputs.referenceCT:
            ct = self.logic.guessReferenceCT(slicer.mrmlScene)
            if ct:
                inputs.referenceCT = ct

    def setParameterNode(self, parameterNode: Optional[VoxelDosimetryParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            if self.hasObserver(self._parameterNode.parameterNode, vtk.vtkCommand.ModifiedEvent,
                                self._onParameterNodeModified):
                self.removeObserver(self._parameterNode.parameterNode, vtk.vtkCommand.ModifiedEvent,
                                    self._onParameterNodeModified)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode.parameterNode, vtk.vtkCommand.ModifiedEvent,
                             self._onParameterNodeModified)
        self._updateGui()

    # ---------------------------------------------------------------- GUI <- parameter node

    def _fillRadionuclides(self) -> None:
        combo = self.ui.radionuclideComboBox
        names, problem = self.logic.supportedNuclides()
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        for name in names:
            combo.addItem(name)
        combo.toolTip = problem or _("Radionuclide administered to the patient (ICRP Publication 107 decay data).")
        combo.blockSignals(wasBlocked)
        self._updateGui()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        # Refresh once the current Qt event is done: several parameters often change together, and the
        # table must not be rebuilt while one of its own cells is still emitting cellChanged.
        if not self._guiUpdatePending:
            self._guiUpdatePending = True
            qt.QTimer.singleShot(0, self._updateGui)

    def _updateGui(self, caller=None, event=None) -> None:
        self._guiUpdatePending = False
        if self._parameterNode is None or self._updatingGui or not hasattr(self, "ui"):
            return
        self._updatingGui = True
        try:
            inputs = self._parameterNode.inputs
            self._updateTimepointTable(inputs)
            self._setComboText(self.ui.radionuclideComboBox, inputs.radionuclide)
            self._setInjectionEdit(inputs.injectionDateTime)
            self.ui.removeTimepointButton.enabled = len(inputs.timepoints) > 0
            self.ui.inputsSummaryLabel.text = self.logic.inputsSummaryHtml(inputs)
        finally:
            self._updatingGui = False

    def _updateTimepointTable(self, inputs) -> None:
        table = self.ui.timepointTable
        wasBlocked = table.blockSignals(True)
        try:
            resolved = self.logic.buildTimepoints(inputs, sort=False)
            table.setRowCount(len(resolved))
            for row, (tp, stored) in enumerate(zip(resolved, inputs.timepoints)):
                nameItem = qt.QTableWidgetItem(tp.name or _("(volume removed)"))
                nameItem.setFlags(qt.Qt.ItemIsSelectable | qt.Qt.ItemIsEnabled)
                if tp.node is not None:
                    nameItem.setToolTip(tp.node.GetID())
                table.setItem(row, self.COLUMN_VOLUME, nameItem)

                acquisition = tpmod.format_datetime(tp.acquisition_datetime) or stored.acquisitionDateTime
                table.setItem(row, self.COLUMN_ACQUISITION, qt.QTableWidgetItem(acquisition))

                hoursItem = qt.QTableWidgetItem("" if tp.hours_after_injection is None
                                                else f"{tp.hours_after_injection:.2f}")
                if tp.time_source == tpmod.TIME_SOURCE_ACQUISITION:
                    hoursItem.setToolTip(_("Computed from the acquisition and injection date-times; type a "
                                           "value to override it."))
                    font = hoursItem.font()
                    font.setItalic(True)
                    hoursItem.setFont(font)
                elif tp.time_source == tpmod.TIME_SOURCE_MISSING:
                    hoursItem.setToolTip(tp.note)
                table.setItem(row, self.COLUMN_HOURS, hoursItem)

                unitCombo = table.cellWidget(row, self.COLUMN_UNIT)
                if unitCombo is None:
                    unitCombo = qt.QComboBox()
                    for unit in tpmod.SPECT_UNITS:
                        unitCombo.addItem(unit)
                    unitCombo.connect("currentIndexChanged(int)",
                                      lambda index, combo=unitCombo: self.onTimepointUnitChanged(combo))
                    table.setCellWidget(row, self.COLUMN_UNIT, unitCombo)
                self._setComboText(unitCombo, stored.unit)
        finally:
            table.blockSignals(wasBlocked)

    @staticmethod
    def _setComboText(combo, text: str) -> None:
        wasBlocked = combo.blockSignals(True)
        index = combo.findText(text)
        if index < 0 and text:
            combo.addItem(text)
            index = combo.findText(text)
        combo.setCurrentIndex(index)
        combo.blockSignals(wasBlocked)

    def _setInjectionEdit(self, text: str) -> None:
        edit = self.ui.injectionDateTimeEdit
        wasBlocked = edit.blockSignals(True)
        try:
            value = tpmod.parse_datetime(text)
        except ValueError:
            value = None
        if value is None:
            edit.setDateTime(self.NOT_SET_DATETIME)
        else:
            edit.setDateTime(qt.QDateTime(qt.QDate(value.year, value.month, value.day),
                                          qt.QTime(value.hour, value.minute, value.second)))
        edit.blockSignals(wasBlocked)

    # ---------------------------------------------------------------- GUI -> parameter node

    def onAddTimepoint(self, checked: bool = False) -> None:
        node = self.ui.spectSelector.currentNode()
        if node is None:
            slicer.util.warningDisplay(_("Select a SPECT volume to add first."))
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to add the timepoint."), waitCursor=True):
            self.logic.addTimepoint(self._parameterNode.inputs, node)

    def onRemoveTimepoints(self, checked: bool = False) -> None:
        rows = sorted({index.row() for index in self.ui.timepointTable.selectionModel().selectedRows()})
        if not rows:
            slicer.util.warningDisplay(_("Select the timepoints to remove in the table first."))
            return
        self.logic.removeTimepoints(self._parameterNode.inputs, rows)

    def onTimepointCellChanged(self, row: int, column: int) -> None:
        if self._updatingGui or self._parameterNode is None:
            return
        text = self.ui.timepointTable.item(row, column).text().strip()
        inputs = self._parameterNode.inputs
        with slicer.util.tryWithErrorDisplay(_("Invalid value."), waitCursor=False):
            try:
                if column == self.COLUMN_HOURS:
                    self.logic.setTimepointHours(inputs, row, float(text) if text else None)
                elif column == self.COLUMN_ACQUISITION:
                    self.logic.setTimepointAcquisitionDateTime(inputs, row, text)
            except ValueError as exc:
                raise ValueError(_("Timepoint {row}: {problem}").format(row=row + 1, problem=exc)) from None
            finally:
                self._onParameterNodeModified()  # show the stored value again (also after a rejected edit)

    def onTimepointUnitChanged(self, combo) -> None:
        if self._updatingGui or self._parameterNode is None:
            return
        table = self.ui.timepointTable
        for row in range(table.rowCount):
            if table.cellWidget(row, self.COLUMN_UNIT) is combo:
                self.logic.setTimepointUnit(self._parameterNode.inputs, row, combo.currentText)
                return

    def onRadionuclideChanged(self, index: int) -> None:
        if self._updatingGui or self._parameterNode is None or index < 0:
            return
        self.logic.setRadionuclide(self._parameterNode.inputs, self.ui.radionuclideComboBox.currentText)

    def onInjectionDateTimeChanged(self, value) -> None:
        if self._updatingGui or self._parameterNode is None:
            return
        text = "" if value == self.NOT_SET_DATETIME else value.toString("yyyy-MM-dd'T'HH:mm:ss")
        self.logic.setInjectionDateTime(self._parameterNode.inputs, text)

    def _confirmInstall(self, requirements: list[str]) -> bool:
        return slicer.util.confirmOkCancelDisplay(
            _("VoxelDosimetry needs these Python packages, which are not installed yet:\n\n{packages}\n\n"
              "Install them now? (This can take several minutes; Slicer may ask for a restart.)").format(
                packages="\n".join(requirements)),
            windowTitle=_("Install Python packages"))


#
# VoxelDosimetryLogic
#


class VoxelDosimetryLogic(ScriptedLoadableModuleLogic):
    """All module logic, usable without the GUI (Python console, `Slicer --python-script`).

    Methods taking `inputs` accept the parameter node's `inputs` pack (or any object with the same
    attributes). Changes go to the parameter node and are mirrored into the SPECT volumes'
    subject-hierarchy attributes.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        # (SOP instance UID, "gggg,eeee") -> value; replaced in tests, Slicer's DICOM database by default.
        self.dicomTagReader: Callable[[str, str], str] = _readTagFromDicomDatabase

    def getParameterNode(self) -> VoxelDosimetryParameterNode:
        return VoxelDosimetryParameterNode(super().getParameterNode())

    # ---------------------------------------------------------------- dependencies

    @staticmethod
    def requirementsPath() -> str:
        return os.path.join(os.path.dirname(os.path.abspath(__file__)), "Resources", "requirements.txt")

    def requirements(self) -> list[str]:
        """Requirement lines of Resources/requirements.txt (comments and options dropped)."""
        with open(self.requirementsPath(), encoding="utf-8") as handle:
            lines = [line.split("#", 1)[0].strip() for line in handle]
        return [line for line in lines if line and not line.startswith("-")]

    def missingRequirements(self) -> list[str]:
        """Requirements not satisfied by the packages installed in Slicer's Python."""
        return [line for line in self.requirements() if not _requirementSatisfied(line)]

    def ensureDependencies(self, confirm: Optional[Callable[[list[str]], bool]] = None) -> bool:
        """Install missing Python packages; True when everything is available afterwards.

        Uses slicer.packaging.pip_ensure (Slicer 5.11+: its own confirmation and progress dialogs, skipped
        in testing mode); on older Slicer, slicer.util.pip_install after `confirm(missing)` returns True.
        """
        missing = self.missingRequirements()
        if not missing:
            return True
        try:
            packaging = importlib.import_module("slicer.packaging")
        except ImportError:
            packaging = None
        if packaging is not None and hasattr(packaging, "pip_ensure"):
            try:
                packaging.pip_ensure(packaging.load_requirements(self.requirementsPath()), requester=REQUESTER,
                                     prompt_install=confirm is not None)
            except RuntimeError as exc:  # the user declined
                logging.warning(f"VoxelDosimetry: Python packages not installed: {exc}")
                return False
            return not self.missingRequirements()
        if _testingEnabled():
            logging.info(f"VoxelDosimetry: testing mode, not installing {missing}")
            return False
        if confirm is not None and not confirm(missing):
            return False
        slicer.util.pip_install(missing)
        importlib.invalidate_caches()
        return not self.missingRequirements()

    # ---------------------------------------------------------------- radionuclides

    def supportedNuclides(self) -> tuple[list[str], Optional[str]]:
        """(names, problem): the Lib's supported radionuclides, or a fallback list and why it is one."""
        try:
            module = _importNuclides()
        except ImportError as exc:
            problem = _("Radionuclide data is unavailable ({error}). Install the module's Python packages "
                        "(they are offered when the module is first opened).").format(error=exc)
            return [DEFAULT_NUCLIDE], problem
        names = module.SUPPORTED_NUCLIDES
        names = list(names.keys()) if isinstance(names, dict) else [str(name) for name in names]
        return names, None

    def nuclideDescription(self, name: str) -> str:
        """'Lu-177 (half-life 6.65 d)' when the Lib knows it, else the name."""
        try:
            nuclide = _importNuclides().get_nuclide(name)
            return f"{name} (half-life {float(nuclide.half_life_s) / 86400.0:.3g} d)"
        except Exception:  # unknown name or library missing: the validation reports it
            return name

    # ---------------------------------------------------------------- editing the inputs

    def guessReferenceCT(self, scene) -> Optional[Any]:
        """A volume whose quantity attribute says CT, else None (no guessing from names)."""
        from VoxelDosimetrySlicer import mrml_adapter

        for index in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
            node = scene.GetNthNodeByClass(index, "vtkMRMLScalarVolumeNode")
            if node.GetAttribute(mrml_adapter.QUANTITY_ATTRIBUTE) == "ct":
                return node
        return None

    def addTimepoint(self, inputs, volumeNode, hoursAfterInjection: Optional[float] = None,
                     acquisitionDateTime: Optional[str] = None, unit: Optional[str] = None) -> int:
        """Append a SPECT timepoint and return its index.

        Missing values are read from the volume: acquisition date-time and units from its
        subject-hierarchy/node attributes or its DICOM header, hours from a stored HoursAfterInjection.
        """
        if volumeNode is None:
            raise ValueError(_("No SPECT volume was given."))
        if inputs.referenceCT is not None and inputs.referenceCT.GetID() == volumeNode.GetID():
            raise ValueError(_("'{name}' is the reference CT; choose a SPECT volume.").format(
                name=volumeNode.GetName()))
        for index, existing in enumerate(inputs.timepoints):
            if existing.volume is not None and existing.volume.GetID() == volumeNode.GetID():
                raise ValueError(_("'{name}' is already timepoint {index}.").format(
                    name=volumeNode.GetName(), index=index + 1))
        from VoxelDosimetrySlicer import mrml_adapter

        stored = mrml_adapter.get_timepoint_attributes(volumeNode)
        if acquisitionDateTime is None:
            acquisition, _source = self.acquisitionDateTimeOf(volumeNode)
            acquisitionDateTime = tpmod.format_datetime(acquisition)
        else:
            acquisitionDateTime = tpmod.format_datetime(tpmod.parse_datetime(acquisitionDateTime))
        if hoursAfterInjection is None and not acquisitionDateTime and stored.hours_after_injection is not None:
            hoursAfterInjection = stored.hours_after_injection
        hours = tpmod.HOURS_NOT_SET if hoursAfterInjection is None else float(hoursAfterInjection)
        if tpmod.hours_entered(hours) is None and hoursAfterInjection is not None:
            raise ValueError(_("Hours after injection must be zero or positive; got {value}.").format(
                value=hoursAfterInjection))
        timepoint = SpectTimepoint()
        timepoint.volume = volumeNode
        timepoint.hoursAfterInjection = hours
        timepoint.acquisitionDateTime = acquisitionDateTime
        timepoint.unit = unit or self.spectUnitOf(volumeNode)
        if not inputs.injectionDateTime and stored.injection_datetime is not None:
            inputs.injectionDateTime = tpmod.format_datetime(stored.injection_datetime)
        inputs.timepoints.append(timepoint)
        self.syncSubjectHierarchy(inputs)
        return len(inputs.timepoints) - 1

    def removeTimepoints(self, inputs, indices) -> None:
        remove = set(indices)
        inputs.timepoints = [tp for index, tp in enumerate(inputs.timepoints) if index not in remove]

    def setTimepointHours(self, inputs, index: int, hours: Optional[float]) -> None:
        """Entered hours after injection (None: compute them from the date-times)."""
        if hours is not None and (hours != hours or hours < 0):
            raise ValueError(_("Hours after injection must be zero or positive; got {value}.").format(value=hours))
        inputs.timepoints[index].hoursAfterInjection = tpmod.HOURS_NOT_SET if hours is None else float(hours)
        self.syncSubjectHierarchy(inputs)

    def setTimepointAcquisitionDateTime(self, inputs, index: int, text: str) -> None:
        """Acquisition date-time of a timepoint; empty text goes back to what the volume's DICOM header says."""
        value = tpmod.parse_datetime(text)  # raises ValueError with the accepted forms
        timepoint = inputs.timepoints[index]
        if value is None and timepoint.volume is not None:
            from VoxelDosimetrySlicer import mrml_adapter

            mrml_adapter.set_timepoint_attributes(timepoint.volume, acquisition_datetime=None)
            value, _source = self.acquisitionDateTimeOf(timepoint.volume)
        timepoint.acquisitionDateTime = tpmod.format_datetime(value)
        self.syncSubjectHierarchy(inputs)

    def setTimepointUnit(self, inputs, index: int, unit: str) -> None:
        _checkSpectUnit(unit)
        inputs.timepoints[index].unit = unit

    def setInjectionDateTime(self, inputs, text: str) -> None:
        value = tpmod.parse_datetime(text)
        inputs.injectionDateTime = tpmod.format_datetime(value)
        self.syncSubjectHierarchy(inputs)

    def setRadionuclide(self, inputs, name: str) -> None:
        inputs.radionuclide = name
        self.syncSubjectHierarchy(inputs)

    def syncSubjectHierarchy(self, inputs) -> None:
        """Mirror the timing and radionuclide of every timepoint into its volume's subject-hierarchy item."""
        from VoxelDosimetrySlicer import mrml_adapter

        for tp in self.buildTimepoints(inputs, sort=False):
            if tp.node is None:
                continue
            mrml_adapter.set_timepoint_attributes(
                tp.node, hours_after_injection=tp.hours_after_injection,
                acquisition_datetime=tp.acquisition_datetime,
                injection_datetime=inputs.injectionDateTime or None, nuclide=inputs.radionuclide or None)

    # ---------------------------------------------------------------- reading metadata from volumes

    def acquisitionDateTimeOf(self, volumeNode) -> tuple[Any, str]:
        """(datetime or None, where it came from) for a SPECT volume.

        Looks at, in order: the VoxelDosimetry acquisition attribute; DICOM acquisition/series date-time
        attributes of the subject-hierarchy item or node; the DICOM header in Slicer's DICOM database.
        """
        from VoxelDosimetrySlicer import mrml_adapter

        stored = mrml_adapter.get_timepoint_attributes(volumeNode)
        if stored.acquisition_datetime is not None:
            return stored.acquisition_datetime, "VoxelDosimetry attribute"
        get = lambda name: mrml_adapter.get_item_attribute(volumeNode, name)  # noqa: E731
        for dateTimeName, dateName, timeName in _DICOM_TIMING_ATTRIBUTES:
            try:
                value = tpmod.parse_datetime(get(dateTimeName)) or tpmod.dicom_date_time(get(dateName), get(timeName))
            except ValueError:
                value = None
            if value is not None:
                return value, "attribute " + (dateTimeName if get(dateTimeName) else dateName)
        metadata = mrml_adapter._read_metadata(volumeNode)
        for key in ("acquisition_datetime", "AcquisitionDateTime"):
            try:
                value = tpmod.parse_datetime(metadata.get(key))
            except ValueError:
                value = None
            if value is not None:
                return value, "volume metadata"
        for uid in mrml_adapter.dicom_instance_uids(volumeNode)[:1]:
            for dateTimeTag, dateTag, timeTag in _DICOM_TIMING_TAGS:
                try:
                    value = (tpmod.parse_datetime(self.dicomTagReader(uid, dateTimeTag)) if dateTimeTag else None) \
                        or tpmod.dicom_date_time(self.dicomTagReader(uid, dateTag), self.dicomTagReader(uid, timeTag))
                except ValueError:
                    value = None
                if value is not None:
                    return value, "DICOM header"
        return None, ""

    def spectUnitOf(self, volumeNode) -> str:
        """Units of a SPECT volume: its VoxelDosimetry.Unit attribute, else DICOM Units (0054,1001), else Bq/mL."""
        from VoxelDosimetrySlicer import mrml_adapter

        unit = volumeNode.GetAttribute(mrml_adapter.UNIT_ATTRIBUTE)
        if unit in tpmod.SPECT_UNITS:
            return unit
        for uid in mrml_adapter.dicom_instance_uids(volumeNode)[:1]:
            unit = tpmod.unit_from_dicom_units(self.dicomTagReader(uid, "0054,1001"))
            if unit:
                return unit
        return tpmod.DEFAULT_SPECT_UNIT

    # ---------------------------------------------------------------- timepoints, validation, summary

    def buildTimepoints(self, inputs, sort: bool = True) -> list[tpmod.Timepoint]:
        """Timepoints with their effective hours after injection (entered, else from the date-times)."""
        result = []
        for stored in inputs.timepoints:
            node = stored.volume
            acquisition = stored.acquisitionDateTime
            if node is not None and not acquisition:
                value, _source = self.acquisitionDateTimeOf(node)
                acquisition = tpmod.format_datetime(value)
            result.append(tpmod.resolve_timepoint(
                node.GetName() if node is not None else "", stored.hoursAfterInjection, acquisition,
                inputs.injectionDateTime, unit=stored.unit,
                node_id=node.GetID() if node is not None else None,
                has_image=node is not None and node.GetImageData() is not None, node=node))
        return tpmod.sort_timepoints(result) if sort else result

    def validateInputs(self, inputs) -> list[str]:
        """Sentences describing what blocks dosimetry; empty when the inputs are complete."""
        names, problem = self.supportedNuclides()
        ct = inputs.referenceCT
        problems = tpmod.validate_inputs(
            ct.GetName() if ct is not None else None, self.buildTimepoints(inputs, sort=False),
            inputs.radionuclide, None if problem else names, inputs.administeredActivityMBq, problem)
        if ct is not None and ct.GetImageData() is None:
            problems.insert(0, _("The reference CT '{name}' has no image data; load it again.").format(
                name=ct.GetName()))
        return problems

    def inputWarnings(self, inputs) -> list[str]:
        """QC warnings about the inputs that do not block dosimetry (times that look like days, a first scan at
        injection, a scan after 10 half-lives), found by the same library checks as the CLI and the pipeline."""
        from VoxelDosimetryLib.kinetics.qc_checks import check_scan_times
        from VoxelDosimetryLib.qc import collect_qc

        times_s = sorted(tp.seconds_after_injection for tp in self.buildTimepoints(inputs, sort=False)
                         if tp.seconds_after_injection is not None and tp.seconds_after_injection > 0)
        if not times_s:
            return []
        with collect_qc() as log:
            try:
                check_scan_times(times_s, inputs.radionuclide)
            except ValueError:  # unknown radionuclide: validateInputs already says so
                return []
        return [item.message for item in log]

    def inputsSummaryHtml(self, inputs) -> str:
        """What is loaded and what is missing, as short HTML for the panel."""
        import html

        lines = []
        ct = inputs.referenceCT
        lines.append(_("Reference CT: {value}").format(
            value=html.escape(ct.GetName()) + _describeGrid(ct) if ct is not None else "<i>" + _("none") + "</i>"))
        timepoints = self.buildTimepoints(inputs, sort=False)  # table order, as the problems number them
        lines.append(_("SPECT timepoints: {count}").format(count=len(timepoints)))
        for tp in timepoints:
            when = (f"{tp.hours_after_injection:.2f} h" if tp.hours_after_injection is not None
                    else "<b>" + _("time missing") + "</b>")
            source = " (" + _("from date-times") + ")" if tp.time_source == tpmod.TIME_SOURCE_ACQUISITION else ""
            counts = ", " + _("needs calibration") if tp.quantity == "counts" else ""
            lines.append(f"&nbsp;&nbsp;{html.escape(tp.name or '?')}: {when}{source}, {html.escape(tp.unit)}{counts}")
        lines.append(_("Radionuclide: {value}").format(value=html.escape(self.nuclideDescription(inputs.radionuclide))))
        activity = inputs.administeredActivityMBq
        lines.append(_("Administered activity: {value}").format(
            value=f"{activity:g} MBq" if activity > 0 else "<i>" + _("not set") + "</i>"))
        lines.append(_("Injection: {value}").format(
            value=html.escape(inputs.injectionDateTime) if inputs.injectionDateTime else "<i>" + _("not set") + "</i>"))
        problems = self.validateInputs(inputs)
        if problems:
            lines.append("<b>" + _("Missing before dose can be computed:") + "</b>")
            lines.extend("&bull; " + html.escape(problem) for problem in problems)
        else:
            lines.append("<b>" + _("Inputs complete.") + "</b>")
        warnings = self.inputWarnings(inputs) if not any("radionuclide" in p for p in problems) else []
        if warnings:
            lines.append("<b>" + _("Check:") + "</b>")
            lines.extend("&bull; " + html.escape(warning) for warning in warnings)
        return "<br>".join(lines)

    # ---------------------------------------------------------------- nodes -> Lib volumes

    def referenceCTVolume(self, inputs):
        """The reference CT as a VoxelDosimetryLib Volume (quantity 'ct', HU)."""
        from VoxelDosimetrySlicer import mrml_adapter

        if inputs.referenceCT is None:
            raise ValueError(_("No reference CT is selected."))
        return mrml_adapter.node_to_volume(inputs.referenceCT, quantity="ct", unit="HU")

    def spectVolumes(self, inputs) -> list:
        """The SPECT timepoints as Volumes in increasing time; metadata carries the timing and radionuclide."""
        from VoxelDosimetrySlicer import mrml_adapter

        volumes = []
        for tp in self.buildTimepoints(inputs, sort=True):
            if tp.node is None or tp.hours_after_injection is None:
                raise ValueError(_("Timepoint '{name}' is incomplete; see the inputs summary.").format(name=tp.name))
            volume = mrml_adapter.node_to_volume(tp.node, quantity=tp.quantity, unit=tp.unit)
            metadata = dict(volume.metadata)
            metadata.update({
                "hours_after_injection": tp.hours_after_injection,
                "time_s": tp.seconds_after_injection,
                "acquisition_datetime": tpmod.format_datetime(tp.acquisition_datetime),
                "injection_datetime": inputs.injectionDateTime,
                "nuclide": inputs.radionuclide,
            })
            volumes.append(volume.replace(metadata=metadata))
        return volumes

    def loadInputVolumes(self, inputs) -> tuple[Any, list]:
        """(CT Volume, SPECT Volumes) after checking the inputs; raises ValueError listing every problem."""
        problems = self.validateInputs(inputs)
        if problems:
            raise ValueError(_("The inputs are incomplete:") + "\n- " + "\n- ".join(problems))
        self.syncSubjectHierarchy(inputs)
        return self.referenceCTVolume(inputs), self.spectVolumes(inputs)


# DICOM timing: subject-hierarchy/node attributes (date-time, date, time) and header tags (same order).
_DICOM_TIMING_ATTRIBUTES = (
    ("DICOM.AcquisitionDateTime", "DICOM.AcquisitionDate", "DICOM.AcquisitionTime"),
    ("DICOM.SeriesDateTime", "DICOM.SeriesDate", "DICOM.SeriesTime"),
)
_DICOM_TIMING_TAGS = (
    ("0008,002A", "0008,0022", "0008,0032"),  # AcquisitionDateTime; AcquisitionDate + AcquisitionTime
    (None, "0008,0021", "0008,0031"),  # SeriesDate + SeriesTime
)


def _readTagFromDicomDatabase(instanceUID: str, tag: str) -> str:
    database = getattr(slicer, "dicomDatabase", None)
    if database is None or not getattr(database, "isOpen", False):
        return ""
    path = database.fileForInstance(instanceUID)
    return database.fileValue(path, tag) if path else ""


def _importNuclides():
    """VoxelDosimetryLib's radionuclide module (SUPPORTED_NUCLIDES, get_nuclide), imported on demand."""
    try:
        module = importlib.import_module("VoxelDosimetryLib.physics")
        if hasattr(module, "SUPPORTED_NUCLIDES") and hasattr(module, "get_nuclide"):
            return module
    except ImportError:
        pass
    return importlib.import_module("VoxelDosimetryLib.physics.nuclides")


def _checkSpectUnit(unit: str) -> None:
    from VoxelDosimetryLib.volume.units import canonical_unit

    base, _factor = canonical_unit(unit)  # raises UnitError (a ValueError) for unknown units
    if base not in ("Bq/mL", "counts"):
        raise ValueError(_("A SPECT must be in counts or an activity concentration (Bq/mL, kBq/mL, MBq/mL); "
                           "got {unit}.").format(unit=unit))


def _describeGrid(node) -> str:
    image = node.GetImageData()
    if image is None:
        return " (" + _("no image data") + ")"
    dims = image.GetDimensions()
    spacing = node.GetSpacing()
    return " ({0}x{1}x{2}, {3:.3g}x{4:.3g}x{5:.3g} mm)".format(*dims, *spacing)


def _requirementSatisfied(line: str) -> bool:
    """Whether an installed distribution satisfies the requirement line (version checked when possible)."""
    import importlib.metadata
    import re

    try:
        from packaging.requirements import Requirement

        requirement = Requirement(line)
        name, specifier = requirement.name, requirement.specifier
    except ImportError:
        name, specifier = re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0], None
    try:
        version = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return specifier is None or specifier.contains(version, prereleases=True)


def _testingEnabled() -> bool:
    app = getattr(slicer, "app", None)
    return bool(app is not None and hasattr(app, "testingEnabled") and app.testingEnabled())


#
# VoxelDosimetryTest
#


class VoxelDosimetryTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Reload & Test, or ctest via slicer_add_python_unittest)."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_VolumeNodeRoundTrip()
        self.setUp()
        self.test_TimepointsFromAcquisitionTimes()
        self.setUp()
        self.test_ValidationNamesMissingMetadata()

    def _obliqueVolume(self, quantity: str, unit: str, value: float = 1.0):
        import numpy as np
        from VoxelDosimetryLib import Volume

        angle = np.deg2rad(20.0)
        direction = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0],
                              [0.0, 0.0, 1.0]])
        array = (np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6) + 1.0) * value
        return Volume(array, spacing=(2.0, 2.5, 3.0), origin=(10.0, -20.0, 30.0), direction=direction,
                      quantity=quantity, unit=unit)

    def test_VolumeNodeRoundTrip(self) -> None:
        import numpy as np
        from VoxelDosimetrySlicer import mrml_adapter

        self.delayDisplay("Volume -> node -> Volume")
        volume = self._obliqueVolume("dose", "Gy")
        node = mrml_adapter.volume_to_node(volume, slicer.mrmlScene, name="Test dose")
        self.assertEqual(node.GetOrigin(), (-10.0, 20.0, 30.0))  # RAS
        self.assertTrue(mrml_adapter.is_dose_volume(node))
        back = mrml_adapter.node_to_volume(node)
        self.assertTrue(np.array_equal(back.array, volume.array))
        self.assertIsNone(back.grid.mismatch(volume.grid))
        self.assertEqual((back.quantity, back.unit), ("dose", "Gy"))
        self.delayDisplay("Round trip OK")

    def test_TimepointsFromAcquisitionTimes(self) -> None:
        from VoxelDosimetrySlicer import mrml_adapter

        self.delayDisplay("Timepoints from acquisition date-times")
        logic = VoxelDosimetryLogic()
        ct = mrml_adapter.volume_to_node(self._obliqueVolume("ct", "HU"), slicer.mrmlScene, name="CT")
        early = mrml_adapter.volume_to_node(self._obliqueVolume("activity_concentration", "Bq/mL", 1000.0),
                                            slicer.mrmlScene, name="SPECT A")
        late = mrml_adapter.volume_to_node(self._obliqueVolume("activity_concentration", "Bq/mL", 100.0),
                                           slicer.mrmlScene, name="SPECT B")
        mrml_adapter.set_timepoint_attributes(late, acquisition_datetime="2024-03-02T10:00:00")
        mrml_adapter.set_timepoint_attributes(early, acquisition_datetime="2024-03-01T14:00:00")

        inputs = logic.getParameterNode().inputs
        inputs.referenceCT = ct
        logic.addTimepoint(inputs, late)
        logic.addTimepoint(inputs, early)
        logic.setInjectionDateTime(inputs, "2024-03-01T10:00")
        inputs.administeredActivityMBq = 7400.0

        timepoints = logic.buildTimepoints(inputs)
        self.assertEqual([tp.name for tp in timepoints], ["SPECT A", "SPECT B"])
        self.assertAlmostEqual(timepoints[0].hours_after_injection, 4.0)
        self.assertAlmostEqual(timepoints[1].hours_after_injection, 24.0)
        self.assertAlmostEqual(mrml_adapter.get_timepoint_attributes(late).hours_after_injection, 24.0)

        names, problem = logic.supportedNuclides()
        if problem is None:
            self.assertEqual(logic.validateInputs(inputs), [])
            ctVolume, spects = logic.loadInputVolumes(inputs)
            self.assertEqual(ctVolume.quantity, "ct")
            self.assertEqual([s.metadata["time_s"] for s in spects], [4.0 * 3600.0, 24.0 * 3600.0])
        self.delayDisplay("Timepoints OK")

    def test_ValidationNamesMissingMetadata(self) -> None:
        from VoxelDosimetrySlicer import mrml_adapter

        self.delayDisplay("Validation of incomplete inputs")
        logic = VoxelDosimetryLogic()
        spect = mrml_adapter.volume_to_node(self._obliqueVolume("counts", "counts"), slicer.mrmlScene, name="NM")
        inputs = logic.getParameterNode().inputs
        logic.addTimepoint(inputs, spect)
        problems = logic.validateInputs(inputs)
        self.assertTrue(any("reference CT" in p for p in problems), problems)
        self.assertTrue(any("time after injection is unknown" in p for p in problems), problems)
        self.assertTrue(any("Administered activity" in p for p in problems), problems)
        self.assertEqual(inputs.timepoints[0].unit, "counts")
        self.delayDisplay("Validation OK")
