"""Single-timepoint (Hänscheid) TIA: the 2t/ln2 formula, the effective half-life variant and their guards."""
from __future__ import annotations

import math

import numpy as np
import pytest

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.kinetics.single_timepoint import hanscheid_tia, hanscheid_tia_value
from VoxelDosimetryLib.kinetics.tia import integrate_activity
from VoxelDosimetryLib.physics import get_nuclide
from VoxelDosimetryLib.volume.volume import Volume

T96 = 96 * 3600.0


def activity(values=(1e3, 5e4, 0.0)) -> Volume:
    return Volume(np.array(values, dtype=np.float64).reshape(1, 1, -1), spacing=(4, 4, 4),
                  quantity="activity_concentration")


def test_hanscheid_formula():
    result = hanscheid_tia(activity(), T96, "Lu-177")
    np.testing.assert_allclose(result.tia.array.reshape(-1), np.array([1e3, 5e4, 0.0]) * 2 * T96 / math.log(2),
                               rtol=1e-6)
    assert result.info["model"] == "hanscheid"
    assert result.info["tail_fraction"] == pytest.approx(0.5, rel=1e-6)  # exp(-ln2) of the implied curve
    same = integrate_activity([activity()], [T96], "Lu-177", "hanscheid")
    np.testing.assert_array_equal(same.tia.array, result.tia.array)


def test_effective_half_life_variant_is_exact_for_a_mono_exponential():
    teff = 60 * 3600.0
    lam = math.log(2) / teff
    a0 = 2e4
    image = activity((a0 * math.exp(-lam * T96),))
    result = hanscheid_tia(image, T96, "Lu-177", effective_half_life_s=teff)
    assert result.tia.array[0, 0, 0] == pytest.approx(a0 / lam, rel=1e-6)
    assert hanscheid_tia_value(a0 * math.exp(-lam * T96), T96, teff, "Lu-177") == pytest.approx(a0 / lam, rel=1e-12)
    assert hanscheid_tia_value(10.0, T96) == pytest.approx(10.0 * 2 * T96 / math.log(2), rel=1e-12)


def test_effective_half_life_longer_than_physical_is_refused():
    too_long = get_nuclide("Lu-177").half_life_s * 1.5
    with pytest.raises(InputFormatError, match="slower than physical decay"):
        hanscheid_tia(activity(), T96, "Lu-177", effective_half_life_s=too_long)
    with pytest.raises(InputFormatError, match="slower than physical decay"):
        hanscheid_tia_value(1.0, T96, too_long, "Lu-177")
    with pytest.raises(InputFormatError, match="> 0"):
        hanscheid_tia(activity(), 0.0, "Lu-177")


def test_dose_rate_single_timepoint():
    rate = Volume(np.full((1, 1, 2), 1e-6), quantity="dose_rate")
    result = hanscheid_tia(rate, T96, "Lu-177")
    assert result.tia.quantity == "dose"
    np.testing.assert_allclose(result.tia.array, 1e-6 * 2 * T96 / math.log(2), rtol=1e-6)
