"""physics.body_mask: the one body mask (> -500 HU, largest component, holes filled) and its one constant."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from VoxelDosimetryLib import Volume
from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.physics.body_mask import BODY_THRESHOLD_HU, body_mask, body_mask_volume

LIB = Path(__file__).resolve().parents[2] / "VoxelDosimetryLib"


def _ct(hu: np.ndarray) -> Volume:
    return Volume(hu, spacing=(2.0, 2.0, 2.0), quantity="ct", unit="HU")


def test_threshold_largest_component_and_filled_holes():
    hu = np.full((12, 20, 20), -1000.0)
    hu[1:11, 3:15, 3:15] = 40.0                 # body
    hu[4:8, 6:10, 6:10] = -850.0                # aerated lung inside the body
    hu[1:11, 17:19, 2:18] = 300.0               # couch, separated from the body by air
    hu[5, 1, 1] = BODY_THRESHOLD_HU + 1.0       # a speck above the threshold, not connected
    mask = body_mask(_ct(hu))
    assert mask.dtype == bool and mask.shape == hu.shape
    assert mask[6, 8, 8]                        # lung is body
    assert not mask[5, 18, 10] and not mask[5, 1, 1]
    assert mask.sum() == 10 * 12 * 12
    assert BODY_THRESHOLD_HU == -500.0


def test_the_threshold_is_strict_and_an_all_air_ct_has_no_body():
    hu = np.full((3, 3, 3), BODY_THRESHOLD_HU)
    assert not body_mask(_ct(hu)).any()
    hu[1, 1, 1] = BODY_THRESHOLD_HU + 0.5
    assert body_mask(_ct(hu)).sum() == 1


def test_the_volume_form_and_refusals():
    hu = np.zeros((2, 3, 4))
    volume = body_mask_volume(_ct(hu))
    assert volume.quantity == "mask" and volume.array.dtype == np.uint8 and volume.array.sum() == 24
    assert volume.grid == _ct(hu).grid
    with pytest.raises(InputFormatError, match="NaN"):
        body_mask(_ct(np.array([[[0.0, np.nan]]])))
    with pytest.raises(Exception, match="ct"):
        body_mask(Volume(hu, quantity="dose", unit="Gy"))


def test_one_constant_and_one_definition_in_the_library():
    constants, definitions = [], []
    for path in sorted(LIB.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(LIB).as_posix()
        if re.search(r"^BODY_THRESHOLD_HU\s*=", text, re.M):
            constants.append(rel)
        if re.search(r"^def body_mask\(", text, re.M):
            definitions.append(rel)
    assert constants == ["physics/body_mask.py"] and definitions == ["physics/body_mask.py"]
