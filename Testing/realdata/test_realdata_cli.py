"""`voxeldosimetry convert` on the shared real NIfTI CT keeps world geometry exactly (issue #2 'done when')."""
from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk

from conftest import require_data
from VoxelDosimetryLib.cli.main import main
from VoxelDosimetryLib.io import read_volume


def test_convert_real_nifti_ct_to_nrrd(test_data_dir, tmp_path, capsys):
    src = require_data(test_data_dir, "totalsegmentator_example", "example_ct.nii.gz")
    out = tmp_path / "ct.nrrd"
    assert main(["convert", str(src), str(out), "--quantity", "ct"]) == 0
    assert json.loads(capsys.readouterr().out)["unit"] == "HU"
    original, converted = sitk.ReadImage(str(src)), sitk.ReadImage(str(out))
    assert converted.GetSize() == original.GetSize()
    assert np.allclose(converted.GetSpacing(), original.GetSpacing(), atol=1e-6)
    assert np.allclose(converted.GetOrigin(), original.GetOrigin(), atol=1e-4)
    assert np.allclose(converted.GetDirection(), original.GetDirection(), atol=1e-6)
    size = original.GetSize()
    for ijk in [(0, 0, 0), (size[0] - 1, size[1] - 1, size[2] - 1), (size[0] // 2, 10, size[2] // 3)]:
        assert np.allclose(converted.TransformIndexToPhysicalPoint(ijk),
                           original.TransformIndexToPhysicalPoint(ijk), atol=1e-4)
    assert np.array_equal(sitk.GetArrayFromImage(converted), sitk.GetArrayFromImage(original))
    volume = read_volume(out)
    assert (volume.quantity, volume.unit) == ("ct", "HU")
