"""Bland-Altman statistics: bias, sample SD and 95 % limits of agreement."""
from __future__ import annotations

import numpy as np
import pytest

from VoxelDosimetryLib.errors import GridMismatchError, InputFormatError
from VoxelDosimetryLib.metrics import bland_altman


def test_constant_offset_gives_exact_bias_and_zero_width_limits():
    reference = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    stats = bland_altman(reference + 0.5, reference)
    assert stats["n"] == 5
    assert stats["bias"] == pytest.approx(0.5, abs=1e-14)
    assert stats["sd"] == pytest.approx(0.0, abs=1e-14)
    assert stats["loa_upper"] - stats["loa_lower"] == pytest.approx(0.0, abs=1e-13)
    assert np.allclose(stats["mean"], reference + 0.25)


def test_known_differences_give_textbook_limits():
    reference = np.zeros(4)
    stats = bland_altman([1.0, 2.0, 3.0, 4.0], reference)
    sd = np.sqrt(((1.5 ** 2 + 0.5 ** 2) * 2) / 3)  # sample SD (n - 1)
    assert stats["bias"] == 2.5
    assert stats["sd"] == pytest.approx(sd, rel=1e-12)
    assert stats["loa_lower"] == pytest.approx(2.5 - 1.96 * sd, rel=1e-12)
    assert stats["loa_upper"] == pytest.approx(2.5 + 1.96 * sd, rel=1e-12)


def test_percent_differences_are_relative_to_the_pair_mean():
    stats = bland_altman([11.0, 22.0], [9.0, 18.0], percent=True)
    assert stats["bias"] == pytest.approx(20.0)  # 2 / 10 and 4 / 20
    assert stats["sd"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(InputFormatError, match="pair means"):
        bland_altman([0.0, 1.0], [0.0, 1.0], percent=True)


def test_bad_inputs_are_refused():
    with pytest.raises(InputFormatError, match="at least 2"):
        bland_altman([1.0], [1.0])
    with pytest.raises(GridMismatchError):
        bland_altman([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(InputFormatError, match="NaN"):
        bland_altman([1.0, np.inf], [1.0, 2.0])
