"""Volume <-> MRML volume node, and timepoint metadata in subject-hierarchy attributes.

The only place where Slicer's RAS meets the library's LPS: a Volume holds origin and direction in patient
LPS (like SimpleITK and DICOM); an MRML volume node holds IJKToRAS. RAS = diag(-1, -1, 1) * LPS, so the
x and y components of the origin and of every direction column change sign. Spacing and the voxel array
(z, y, x) are shared unchanged: MRML's image data is indexed (i, j, k) = (x, y, z) with x fastest, which is
numpy's C order of a (z, y, x) array.

Pure MRML/VTK (works in 3D Slicer and with the `slicer-core` wheel); no Qt. Quantity and unit travel as
node attributes; dose volumes get SlicerRT's `DicomRtImport.DoseVolume` tag so its DVH, isodose and gamma
modules accept them.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.volume.units import QUANTITIES, get_quantity, guess_quantity_for_unit
from VoxelDosimetryLib.volume.volume import Grid, Volume

from .timepoints import format_datetime, parse_datetime

# Node attributes written by this module (all prefixed, so they never clash with Slicer's or SlicerRT's).
ATTRIBUTE_PREFIX = "VoxelDosimetry."
QUANTITY_ATTRIBUTE = ATTRIBUTE_PREFIX + "Quantity"
UNIT_ATTRIBUTE = ATTRIBUTE_PREFIX + "Unit"
METADATA_ATTRIBUTE = ATTRIBUTE_PREFIX + "Metadata"  # JSON of Volume.metadata

# Timepoint attributes (subject-hierarchy item attributes; node attributes when there is no hierarchy item).
HOURS_ATTRIBUTE = ATTRIBUTE_PREFIX + "HoursAfterInjection"
ACQUISITION_ATTRIBUTE = ATTRIBUTE_PREFIX + "AcquisitionDateTime"
INJECTION_ATTRIBUTE = ATTRIBUTE_PREFIX + "InjectionDateTime"
NUCLIDE_ATTRIBUTE = ATTRIBUTE_PREFIX + "Nuclide"
TIMEPOINT_ATTRIBUTES = (HOURS_ATTRIBUTE, ACQUISITION_ATTRIBUTE, INJECTION_ATTRIBUTE, NUCLIDE_ATTRIBUTE)

# SlicerRT (vtkSlicerRtCommon::DICOMRTIMPORT_DOSE_VOLUME_IDENTIFIER_ATTRIBUTE_NAME and the dose-unit
# attribute its DICOM-RT importer puts on the study item).
DOSE_VOLUME_ATTRIBUTE = "DicomRtImport.DoseVolume"
DOSE_UNIT_NAME_ATTRIBUTE = "DicomRtImport.DoseUnitName"

# Set by Slicer's DICOM plugins on loaded volumes: space-separated SOP instance UIDs.
DICOM_INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"

SCALAR_VOLUME_CLASS = "vtkMRMLScalarVolumeNode"
LABELMAP_VOLUME_CLASS = "vtkMRMLLabelMapVolumeNode"

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])  # its own inverse

# numpy dtypes VTK arrays cannot hold, and what to store instead
_DTYPE_FALLBACK = {np.dtype(np.bool_): np.uint8, np.dtype(np.float16): np.float32}


# --------------------------------------------------------------------------------------------------
# Geometry


def lps_to_ras(origin: Any, direction: Any) -> tuple[np.ndarray, np.ndarray]:
    """(origin, direction) in LPS -> the same in RAS (x and y sign flipped)."""
    return _LPS_TO_RAS @ np.asarray(origin, dtype=float), _LPS_TO_RAS @ np.asarray(direction, dtype=float)


def ras_to_lps(origin: Any, direction: Any) -> tuple[np.ndarray, np.ndarray]:
    """(origin, direction) in RAS -> the same in LPS (x and y sign flipped)."""
    return _LPS_TO_RAS @ np.asarray(origin, dtype=float), _LPS_TO_RAS @ np.asarray(direction, dtype=float)


def _matrix_to_array(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _array_to_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def ijk_to_ras_matrix(grid: Grid) -> np.ndarray:
    """The 4x4 IJKToRAS matrix MRML would hold for `grid` (columns: direction * spacing, then origin)."""
    origin_ras, direction_ras = lps_to_ras(grid.origin, grid.direction)
    matrix = np.eye(4)
    matrix[:3, :3] = direction_ras * np.asarray(grid.spacing)[np.newaxis, :]
    matrix[:3, 3] = origin_ras
    return matrix


def _world_transform_of(node: Any) -> np.ndarray | None:
    """4x4 to-world matrix of the node's parent transform; None when untransformed. Raises for warping ones."""
    transform_node = node.GetParentTransformNode() if hasattr(node, "GetParentTransformNode") else None
    if transform_node is None:
        return None
    if not transform_node.IsTransformToWorldLinear():
        raise InputFormatError(
            f"Volume '{node.GetName()}' is under a non-linear transform ('{transform_node.GetName()}'). "
            "Harden the transform first (Data module: right-click the volume, 'Harden transform').")
    matrix = vtk.vtkMatrix4x4()
    transform_node.GetMatrixTransformToWorld(matrix)
    return _matrix_to_array(matrix)


# --------------------------------------------------------------------------------------------------
# Volume -> node


def node_class_for_quantity(quantity: str) -> str:
    """vtkMRMLLabelMapVolumeNode for label quantities (labels, media, mask), else vtkMRMLScalarVolumeNode."""
    return LABELMAP_VOLUME_CLASS if get_quantity(quantity).is_label else SCALAR_VOLUME_CLASS


def _image_data_from_array(array: np.ndarray) -> vtk.vtkImageData:
    array = np.asarray(array)
    fallback = _DTYPE_FALLBACK.get(array.dtype)
    if fallback is not None:
        array = array.astype(fallback)
    if array.dtype.byteorder not in ("=", "|"):
        array = array.astype(array.dtype.newbyteorder("="))
    nz, ny, nx = array.shape
    image = vtk.vtkImageData()
    image.SetDimensions(nx, ny, nz)
    # MRML keeps the geometry in the node; the image data stays at origin 0, spacing 1.
    image.SetOrigin(0.0, 0.0, 0.0)
    image.SetSpacing(1.0, 1.0, 1.0)
    flat = np.ascontiguousarray(array).reshape(-1)
    scalars = numpy_support.numpy_to_vtk(flat, deep=True)
    scalars.SetName("ImageScalars")
    image.GetPointData().SetScalars(scalars)
    return image


def set_node_geometry(node: Any, grid: Grid) -> None:
    """Spacing, RAS origin and IJKToRAS directions of `node` from an LPS `grid`."""
    origin_ras, direction_ras = lps_to_ras(grid.origin, grid.direction)
    directions = np.eye(4)
    directions[:3, :3] = direction_ras
    node.SetIJKToRASDirectionMatrix(_array_to_matrix(directions))
    node.SetSpacing(*grid.spacing)
    node.SetOrigin(*origin_ras)


def volume_to_node(volume: Volume, scene: Any, name: str | None = None, node: Any = None,
                   create_display_nodes: bool = True) -> Any:
    """Put `volume` into `node` (or a new node added to `scene`) and return the node.

    A label quantity (labels, media, mask) gives a vtkMRMLLabelMapVolumeNode, anything else a
    vtkMRMLScalarVolumeNode. Voxels are copied. Quantity, unit and metadata are stored as node attributes;
    a dose volume (quantity 'dose') is tagged for SlicerRT. `name` is only a display name: no state is
    read from it.
    """
    if not isinstance(volume, Volume):
        raise TypeError(f"volume_to_node expects a VoxelDosimetryLib Volume, got {type(volume).__name__}.")
    wanted_class = node_class_for_quantity(volume.quantity)
    if node is None:
        if scene is None:
            raise ValueError("volume_to_node needs a scene to add a new node to (or an existing node).")
        node = scene.AddNewNodeByClass(wanted_class, name or _default_name(volume))
    else:
        if wanted_class == LABELMAP_VOLUME_CLASS and not node.IsA(LABELMAP_VOLUME_CLASS):
            raise InputFormatError(
                f"Cannot store the {volume.quantity} volume in '{node.GetName()}': label volumes need a "
                "labelmap volume node (vtkMRMLLabelMapVolumeNode).")
        if wanted_class == SCALAR_VOLUME_CLASS and node.IsA(LABELMAP_VOLUME_CLASS):
            raise InputFormatError(
                f"Cannot store the {volume.quantity} volume in the labelmap node '{node.GetName()}': "
                "choose or create a scalar volume node.")
        if name:
            node.SetName(name)
        if scene is not None and node.GetScene() is None:
            scene.AddNode(node)
    was_modifying = node.StartModify()
    try:
        set_node_geometry(node, volume.grid)
        node.SetAndObserveImageData(_image_data_from_array(volume.array))
        write_quantity_attributes(node, volume.quantity, volume.unit, volume.metadata)
    finally:
        node.EndModify(was_modifying)
    if create_display_nodes and node.GetScene() is not None and node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


def _default_name(volume: Volume) -> str:
    name = volume.metadata.get("name") if isinstance(volume.metadata, dict) else None
    return str(name) if name else volume.quantity.replace("_", " ")


def write_quantity_attributes(node: Any, quantity: str, unit: str, metadata: dict | None = None) -> None:
    """Quantity, unit (and metadata as JSON) as node attributes; the SlicerRT dose tag for doses."""
    node.SetAttribute(QUANTITY_ATTRIBUTE, quantity)
    node.SetAttribute(UNIT_ATTRIBUTE, unit)
    if metadata:
        node.SetAttribute(METADATA_ATTRIBUTE, json.dumps(metadata, default=str, sort_keys=True))
    elif node.GetAttribute(METADATA_ATTRIBUTE) is not None:
        node.RemoveAttribute(METADATA_ATTRIBUTE)
    if quantity == "dose":
        tag_dose_volume(node, unit)
    elif node.GetAttribute(DOSE_VOLUME_ATTRIBUTE) is not None:
        node.RemoveAttribute(DOSE_VOLUME_ATTRIBUTE)


def tag_dose_volume(node: Any, unit: str = "Gy") -> None:
    """Mark `node` as a dose volume for SlicerRT; give its study the dose unit when the study has none."""
    node.SetAttribute(DOSE_VOLUME_ATTRIBUTE, "1")
    sh, item = _subject_hierarchy_item(node, create=False)
    if sh is None or item is None:
        return
    parent = sh.GetItemParent(item)
    if parent and parent != sh.GetSceneItemID() and not sh.GetItemAttribute(parent, DOSE_UNIT_NAME_ATTRIBUTE):
        sh.SetItemAttribute(parent, DOSE_UNIT_NAME_ATTRIBUTE, unit)


def is_dose_volume(node: Any) -> bool:
    return node.GetAttribute(DOSE_VOLUME_ATTRIBUTE) == "1"


# --------------------------------------------------------------------------------------------------
# Node -> Volume


def node_to_volume(node: Any, quantity: str | None = None, unit: str | None = None) -> Volume:
    """A Volume (LPS geometry, voxels copied) from a scalar or labelmap volume node.

    Quantity and unit come from the arguments, else the node attributes written by `volume_to_node`,
    else a labelmap node is 'labels' and anything else 'unknown'. A linear parent transform is applied
    to the geometry (a warping one must be hardened first).
    """
    if node is None:
        raise InputFormatError("No volume node was given.")
    if not node.IsA("vtkMRMLScalarVolumeNode"):
        raise InputFormatError(f"'{node.GetName()}' is a {node.GetClassName()}; a scalar or labelmap volume "
                               "is needed (vector, tensor and diffusion volumes are not dose inputs).")
    image = node.GetImageData()
    if image is None or image.GetPointData() is None or image.GetPointData().GetScalars() is None:
        raise InputFormatError(f"Volume '{node.GetName()}' has no voxels; load its image data again.")
    scalars = image.GetPointData().GetScalars()
    if scalars.GetNumberOfComponents() != 1:
        raise InputFormatError(f"Volume '{node.GetName()}' has {scalars.GetNumberOfComponents()} components "
                               "per voxel; a scalar volume is needed.")
    nx, ny, nz = image.GetDimensions()
    array = numpy_support.vtk_to_numpy(scalars).reshape(nz, ny, nx).copy()

    world = _world_transform_of(node)
    if world is None:
        # read the node's own values so that spacing and origin come back bit-exact
        directions = vtk.vtkMatrix4x4()
        node.GetIJKToRASDirectionMatrix(directions)
        direction_ras = _matrix_to_array(directions)[:3, :3]
        spacing = np.array(node.GetSpacing(), dtype=float)
        origin_ras = np.array(node.GetOrigin(), dtype=float)
    else:
        ijk_to_ras = vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(ijk_to_ras)
        matrix = world @ _matrix_to_array(ijk_to_ras)
        spacing = np.linalg.norm(matrix[:3, :3], axis=0)
        if np.any(spacing <= 0):
            raise InputFormatError(f"Volume '{node.GetName()}' has a degenerate geometry (zero spacing).")
        direction_ras = matrix[:3, :3] / spacing[np.newaxis, :]
        origin_ras = matrix[:3, 3]
    if not np.allclose(direction_ras.T @ direction_ras, np.eye(3), atol=1e-4):
        raise InputFormatError(f"Volume '{node.GetName()}' is sheared or scaled by its parent transform; "
                               "harden the transform into a resampled volume first.")
    origin_lps, direction_lps = ras_to_lps(origin_ras, direction_ras)

    stored_quantity = node.GetAttribute(QUANTITY_ATTRIBUTE)
    stored_unit = node.GetAttribute(UNIT_ATTRIBUTE)
    if quantity is None:
        if stored_quantity in QUANTITIES and (unit is None or stored_unit == unit):
            quantity = stored_quantity
        elif unit is not None:
            quantity = guess_quantity_for_unit(unit)
        elif node.IsA(LABELMAP_VOLUME_CLASS):
            quantity = "labels"
        else:
            quantity = "unknown"
    if unit is None and quantity == stored_quantity and stored_unit:
        unit = stored_unit
    metadata = _read_metadata(node)
    grid = Grid((nz, ny, nx), tuple(spacing), tuple(origin_lps), direction_lps)
    return Volume(array, grid=grid, quantity=quantity, unit=unit, metadata=metadata)


def _read_metadata(node: Any) -> dict:
    text = node.GetAttribute(METADATA_ATTRIBUTE)
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------------------------------
# Subject hierarchy and timepoint attributes


def subject_hierarchy_node(scene: Any) -> Any:
    """The scene's subject hierarchy node, or None when this build of MRML has none."""
    if scene is None:
        return None
    sh_class = getattr(slicer, "vtkMRMLSubjectHierarchyNode", None)
    if sh_class is None:
        return None
    return sh_class.GetSubjectHierarchyNode(scene)


def _subject_hierarchy_item(node: Any, create: bool) -> tuple[Any, int | None]:
    """(subject hierarchy node, item of `node`) or (None, None) without a hierarchy.

    In Slicer every data node gets an item when added to the scene; in a bare MRML scene (slicer-core)
    nothing creates it, so `create=True` adds one under the scene item.
    """
    sh = subject_hierarchy_node(node.GetScene())
    if sh is None:
        return None, None
    item = sh.GetItemByDataNode(node)
    if item == sh.GetInvalidItemID():
        if not create:
            return sh, None
        item = sh.CreateItem(sh.GetSceneItemID(), node)
        if item == sh.GetInvalidItemID():
            return None, None
    return sh, item


def set_item_attribute(node: Any, name: str, value: str | None) -> None:
    """Subject-hierarchy item attribute of `node` (node attribute without a hierarchy); None removes it.

    The node attribute of the same name is removed when the item holds the value, so a stale copy can
    never win on reading.
    """
    sh, item = _subject_hierarchy_item(node, create=value is not None)
    if sh is not None and item is not None:
        if value is None:
            if sh.HasItemAttribute(item, name):
                sh.RemoveItemAttribute(item, name)
        else:
            sh.SetItemAttribute(item, name, value)
        if node.GetAttribute(name) is not None:
            node.RemoveAttribute(name)
        return
    if value is None:
        if node.GetAttribute(name) is not None:
            node.RemoveAttribute(name)
    else:
        node.SetAttribute(name, value)


def get_item_attribute(node: Any, name: str) -> str | None:
    """Subject-hierarchy item attribute of `node`, else the node attribute; None when neither is set."""
    sh, item = _subject_hierarchy_item(node, create=False)
    if sh is not None and item is not None and sh.HasItemAttribute(item, name):
        return sh.GetItemAttribute(item, name)
    value = node.GetAttribute(name)
    return value if value else None


@dataclass(frozen=True)
class TimepointAttributes:
    """What a SPECT node says about its own timing (every field may be unknown)."""

    hours_after_injection: float | None = None
    acquisition_datetime: Any = None  # datetime.datetime | None
    injection_datetime: Any = None  # datetime.datetime | None
    nuclide: str | None = None


_KEEP = object()


def set_timepoint_attributes(node: Any, hours_after_injection: Any = _KEEP, acquisition_datetime: Any = _KEEP,
                             injection_datetime: Any = _KEEP, nuclide: Any = _KEEP) -> None:
    """Store timepoint metadata on `node`'s subject-hierarchy item. Arguments left out are kept; None clears.

    Date-times accept datetime objects, ISO 8601 or DICOM DT text and are stored as ISO 8601 text;
    hours are stored as decimal text.
    """
    if hours_after_injection is not _KEEP:
        value = None
        if hours_after_injection is not None:
            hours = float(hours_after_injection)
            if not math.isfinite(hours):
                raise ValueError(f"Hours after injection must be a finite number; got {hours_after_injection!r}.")
            value = repr(hours)
        set_item_attribute(node, HOURS_ATTRIBUTE, value)
    for attribute, given in ((ACQUISITION_ATTRIBUTE, acquisition_datetime), (INJECTION_ATTRIBUTE, injection_datetime)):
        if given is not _KEEP:
            parsed = parse_datetime(given)
            set_item_attribute(node, attribute, format_datetime(parsed) if parsed is not None else None)
    if nuclide is not _KEEP:
        set_item_attribute(node, NUCLIDE_ATTRIBUTE, str(nuclide) if nuclide else None)


def get_timepoint_attributes(node: Any) -> TimepointAttributes:
    """The timepoint metadata stored on `node` (subject hierarchy first, then node attributes)."""
    hours_text = get_item_attribute(node, HOURS_ATTRIBUTE)
    try:
        hours = float(hours_text) if hours_text else None
    except ValueError:
        hours = None

    def _datetime(attribute: str) -> Any:
        try:
            return parse_datetime(get_item_attribute(node, attribute))
        except ValueError:
            return None

    return TimepointAttributes(hours, _datetime(ACQUISITION_ATTRIBUTE), _datetime(INJECTION_ATTRIBUTE),
                               get_item_attribute(node, NUCLIDE_ATTRIBUTE))


def clear_timepoint_attributes(node: Any) -> None:
    for attribute in TIMEPOINT_ATTRIBUTES:
        set_item_attribute(node, attribute, None)


def dicom_instance_uids(node: Any) -> list[str]:
    """SOP instance UIDs Slicer's DICOM plugins recorded on a loaded volume (empty when not from DICOM)."""
    return (node.GetAttribute(DICOM_INSTANCE_UIDS_ATTRIBUTE) or "").split()
