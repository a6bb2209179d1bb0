"""Volume <-> MRML node conversion (LPS <-> RAS) and timepoint attributes, with the slicer-core wheel."""
from __future__ import annotations

import datetime
import sys
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core (MRML without Qt) is not installed: pip install slicer-core")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package has no MRML (vtkMRMLScene); install slicer-core",
                allow_module_level=True)
vtk = pytest.importorskip("vtk", reason="vtk is not importable (it comes with slicer-core)")

MODULE_DIR = Path(__file__).resolve().parents[2] / "VoxelDosimetry"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

from VoxelDosimetryLib import Volume  # noqa: E402
from VoxelDosimetryLib.errors import InputFormatError  # noqa: E402
from VoxelDosimetrySlicer import mrml_adapter as adapter  # noqa: E402


@pytest.fixture
def scene():
    return slicer.vtkMRMLScene()


def _matrix(m) -> np.ndarray:
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def _volume(direction, quantity="activity_concentration", unit="Bq/mL", dtype=np.float32, metadata=None):
    rng = np.random.default_rng(3)
    array = (rng.random((5, 6, 7)) * 1000).astype(dtype)
    return Volume(array, spacing=(1.5, 2.25, 4.0), origin=(12.5, -30.0, 101.0), direction=direction,
                  quantity=quantity, unit=unit, metadata=metadata)


def test_round_trip_is_exact_with_oblique_direction_and_anisotropic_spacing(scene, oblique_direction):
    volume = _volume(oblique_direction, metadata={"patient": "P1", "time_s": 14400.0})
    node = adapter.volume_to_node(volume, scene, name="SPECT 4h", create_display_nodes=False)
    assert node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode")
    assert node.GetName() == "SPECT 4h"
    back = adapter.node_to_volume(node)
    assert back.array.dtype == volume.array.dtype
    assert np.array_equal(back.array, volume.array)
    assert back.spacing == volume.spacing and back.origin == volume.origin
    assert np.allclose(back.direction, volume.direction, atol=1e-12, rtol=0)
    assert (back.quantity, back.unit) == ("activity_concentration", "Bq/mL")
    assert back.metadata == {"patient": "P1", "time_s": 14400.0}
    assert back.array is not node.GetImageData()  # copied, not a view into VTK memory


def test_node_holds_ras_geometry(scene, oblique_direction):
    volume = _volume(oblique_direction)
    node = adapter.volume_to_node(volume, scene, create_display_nodes=False)
    x, y, z = volume.origin
    assert node.GetOrigin() == pytest.approx((-x, -y, z))
    assert node.GetSpacing() == pytest.approx(volume.spacing)
    ijk_to_ras = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijk_to_ras)
    matrix = _matrix(ijk_to_ras)
    flip = np.diag([-1.0, -1.0, 1.0])
    assert np.allclose(matrix[:3, :3], flip @ volume.direction @ np.diag(volume.spacing))
    assert np.allclose(matrix, adapter.ijk_to_ras_matrix(volume.grid))
    # any voxel index maps to the same physical point: RAS on the node, LPS in the Volume
    for ijk in ([0, 0, 0], [6, 5, 4], [3, 1, 2]):
        ras = matrix @ np.array([*ijk, 1.0])
        assert np.allclose(flip @ ras[:3], volume.grid.index_to_world(ijk))
    # the image data itself carries no geometry (MRML convention)
    image = node.GetImageData()
    assert image.GetOrigin() == (0.0, 0.0, 0.0) and image.GetSpacing() == (1.0, 1.0, 1.0)
    assert image.GetDimensions() == (7, 6, 5)


def test_voxel_order_matches_index_convention(scene):
    array = np.zeros((3, 4, 5), dtype=np.int16)
    array[2, 1, 4] = 7  # z=2, y=1, x=4
    node = adapter.volume_to_node(Volume(array, quantity="ct", unit="HU"), scene, create_display_nodes=False)
    assert node.GetImageData().GetScalarComponentAsDouble(4, 1, 2, 0) == 7.0


def test_quantity_and_unit_attributes_are_stored_and_restored(scene, oblique_direction):
    node = adapter.volume_to_node(_volume(oblique_direction, "dose_rate", "mGy/h"), scene, create_display_nodes=False)
    assert node.GetAttribute(adapter.QUANTITY_ATTRIBUTE) == "dose_rate"
    assert node.GetAttribute(adapter.UNIT_ATTRIBUTE) == "mGy/h"
    assert not adapter.is_dose_volume(node)  # dose rate is not a SlicerRT dose
    back = adapter.node_to_volume(node)
    assert (back.quantity, back.unit) == ("dose_rate", "mGy/h")
    # explicit arguments win over the attributes; a different quantity gets its canonical unit
    assert adapter.node_to_volume(node, quantity="unknown").unit == "unknown"
    assert adapter.node_to_volume(node, unit="Gy/s").quantity == "dose_rate"


def test_node_without_attributes_is_unknown_quantity(scene):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "plain")
    image = vtk.vtkImageData()
    image.SetDimensions(2, 2, 2)
    image.AllocateScalars(vtk.VTK_FLOAT, 1)
    node.SetAndObserveImageData(image)
    volume = adapter.node_to_volume(node)
    assert (volume.quantity, volume.unit) == ("unknown", "unknown")
    assert volume.origin == (0.0, 0.0, 0.0)
    assert np.allclose(volume.direction, np.diag([-1.0, -1.0, 1.0]))  # Slicer's default IJK->RAS is LPS-aligned


def test_dose_volumes_get_the_slicerrt_tag(scene, oblique_direction):
    dose = adapter.volume_to_node(_volume(oblique_direction, "dose", "Gy"), scene, create_display_nodes=False)
    assert dose.GetAttribute("DicomRtImport.DoseVolume") == "1"
    assert adapter.is_dose_volume(dose)
    # re-using the node for something that is not a dose removes the tag
    adapter.volume_to_node(_volume(oblique_direction, "tia_concentration", "Bq*s/mL"), scene, node=dose,
                           create_display_nodes=False)
    assert dose.GetAttribute("DicomRtImport.DoseVolume") is None
    assert dose.GetAttribute(adapter.QUANTITY_ATTRIBUTE) == "tia_concentration"


def test_dose_unit_goes_to_the_study_item(scene, oblique_direction):
    sh = adapter.subject_hierarchy_node(scene)
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "Patient")
    study = sh.CreateStudyItem(patient, "Study")
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "dose")
    sh.CreateItem(study, node)
    adapter.volume_to_node(_volume(oblique_direction, "dose", "Gy"), scene, node=node, create_display_nodes=False)
    assert sh.GetItemAttribute(study, "DicomRtImport.DoseUnitName") == "Gy"


@pytest.mark.parametrize("quantity", ["labels", "mask", "media"])
def test_label_quantities_become_labelmap_nodes(scene, quantity):
    labels = np.zeros((4, 5, 6), dtype=np.uint8 if quantity != "labels" else np.int32)
    labels[1:3, 2:4, 1:5] = 1
    labels[0, 0, 0] = 3 if quantity != "mask" else 1
    volume = Volume(labels, spacing=(2, 2, 3), origin=(1, 2, 3), quantity=quantity, unit="label")
    node = adapter.volume_to_node(volume, scene, name=quantity)
    assert node.IsA("vtkMRMLLabelMapVolumeNode")
    assert node.GetDisplayNode() is not None and node.GetDisplayNode().IsA("vtkMRMLLabelMapVolumeDisplayNode")
    back = adapter.node_to_volume(node)
    assert back.quantity == quantity and np.array_equal(back.array, labels)


def test_boolean_mask_is_stored_as_uint8(scene):
    mask = np.zeros((2, 3, 4), dtype=bool)
    mask[1, 2, 3] = True
    node = adapter.volume_to_node(Volume(mask, quantity="mask", unit="label"), scene, create_display_nodes=False)
    back = adapter.node_to_volume(node)
    assert back.array.dtype == np.uint8 and back.array[1, 2, 3] == 1 and back.array.sum() == 1


def test_labelmap_node_without_attributes_reads_as_labels(scene):
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "seg")
    image = vtk.vtkImageData()
    image.SetDimensions(3, 3, 3)
    image.AllocateScalars(vtk.VTK_SHORT, 1)
    node.SetAndObserveImageData(image)
    assert adapter.node_to_volume(node).quantity == "labels"


def test_wrong_node_kind_is_refused_with_a_clear_message(scene, oblique_direction):
    label_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "seg")
    with pytest.raises(InputFormatError, match="labelmap node"):
        adapter.volume_to_node(_volume(oblique_direction, "dose", "Gy"), scene, node=label_node)
    scalar_node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "dose")
    labels = Volume(np.zeros((2, 2, 2), np.uint8), quantity="labels", unit="label")
    with pytest.raises(InputFormatError, match="labelmap volume node"):
        adapter.volume_to_node(labels, scene, node=scalar_node)
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputFormatError, match="no voxels"):
        adapter.node_to_volume(empty)


def test_linear_parent_transform_is_applied_and_warping_refused(scene):
    volume = Volume(np.ones((2, 2, 2), np.float32), spacing=(1, 1, 1), origin=(10, 20, 30), quantity="ct", unit="HU")
    node = adapter.volume_to_node(volume, scene, create_display_nodes=False)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 5.0)  # +5 mm towards Right = -5 mm in LPS x
    transform.SetMatrixTransformToParent(matrix)
    node.SetAndObserveTransformNodeID(transform.GetID())
    assert adapter.node_to_volume(node).origin == pytest.approx((5.0, 20.0, 30.0))
    node.SetAndObserveTransformNodeID(None)
    grid_transform = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "warp")
    assert not grid_transform.IsTransformToWorldLinear()
    node.SetAndObserveTransformNodeID(grid_transform.GetID())
    with pytest.raises(InputFormatError, match="Harden the transform"):
        adapter.node_to_volume(node)


def test_timepoint_attributes_live_in_the_subject_hierarchy(scene, oblique_direction):
    node = adapter.volume_to_node(_volume(oblique_direction), scene, create_display_nodes=False)
    adapter.set_timepoint_attributes(node, hours_after_injection=24.5, acquisition_datetime="20240302103000",
                                     injection_datetime=datetime.datetime(2024, 3, 1, 10, 0), nuclide="Lu-177")
    sh = adapter.subject_hierarchy_node(scene)
    item = sh.GetItemByDataNode(node)
    assert item != sh.GetInvalidItemID()
    assert sh.GetItemAttribute(item, adapter.HOURS_ATTRIBUTE) == "24.5"
    assert sh.GetItemAttribute(item, adapter.ACQUISITION_ATTRIBUTE) == "2024-03-02T10:30:00"
    assert sh.GetItemAttribute(item, adapter.INJECTION_ATTRIBUTE) == "2024-03-01T10:00:00"
    assert sh.GetItemAttribute(item, adapter.NUCLIDE_ATTRIBUTE) == "Lu-177"
    assert node.GetAttribute(adapter.HOURS_ATTRIBUTE) is None  # not duplicated on the node
    assert node.GetName() == "activity concentration"  # no state in the name

    attrs = adapter.get_timepoint_attributes(node)
    assert attrs.hours_after_injection == 24.5
    assert attrs.acquisition_datetime == datetime.datetime(2024, 3, 2, 10, 30)
    assert attrs.injection_datetime == datetime.datetime(2024, 3, 1, 10, 0)
    assert attrs.nuclide == "Lu-177"

    adapter.set_timepoint_attributes(node, hours_after_injection=None)  # None clears, others kept
    attrs = adapter.get_timepoint_attributes(node)
    assert attrs.hours_after_injection is None and attrs.nuclide == "Lu-177"
    adapter.clear_timepoint_attributes(node)
    assert adapter.get_timepoint_attributes(node) == adapter.TimepointAttributes()


def test_timepoint_attributes_fall_back_to_node_attributes_without_a_scene():
    node = slicer.vtkMRMLScalarVolumeNode()  # not in any scene: no subject hierarchy
    adapter.set_timepoint_attributes(node, hours_after_injection=4, nuclide="Lu-177")
    assert node.GetAttribute(adapter.HOURS_ATTRIBUTE) == "4.0"
    assert adapter.get_timepoint_attributes(node).hours_after_injection == 4.0
    with pytest.raises(ValueError, match="finite"):
        adapter.set_timepoint_attributes(node, hours_after_injection=float("nan"))
    with pytest.raises(ValueError, match="ISO 8601"):
        adapter.set_timepoint_attributes(node, acquisition_datetime="yesterday")


def test_node_attribute_copy_is_read_when_the_item_has_none(scene):
    """A cloned node keeps node attributes but not subject-hierarchy ones; both are read."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "clone")
    node.SetAttribute(adapter.ACQUISITION_ATTRIBUTE, "2024-03-01T12:00:00")
    assert adapter.get_timepoint_attributes(node).acquisition_datetime == datetime.datetime(2024, 3, 1, 12, 0)
    # writing moves the value into the item and removes the stale node copy
    adapter.set_timepoint_attributes(node, acquisition_datetime="2024-03-01T13:00:00")
    assert node.GetAttribute(adapter.ACQUISITION_ATTRIBUTE) is None
    assert adapter.get_timepoint_attributes(node).acquisition_datetime == datetime.datetime(2024, 3, 1, 13, 0)


def test_dicom_instance_uids(scene):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "nm")
    assert adapter.dicom_instance_uids(node) == []
    node.SetAttribute("DICOM.instanceUIDs", "1.2.3 1.2.4")
    assert adapter.dicom_instance_uids(node) == ["1.2.3", "1.2.4"]
