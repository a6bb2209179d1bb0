"""DVH curve and D/V metrics: exact values on constructed dose lists (docs/SEGMENT_DOSE.md conventions)."""
from __future__ import annotations

import numpy as np
import pytest

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.voi import (cumulative_dvh, dose_at_volume_ml, dose_at_volume_percent, volume_at_dose,
                                   volume_percent_at_dose)


@pytest.fixture
def ramp_dvh():
    """100 voxels of 1 mL holding 1, 2, ..., 100 Gy once each, in shuffled order."""
    doses = np.random.default_rng(3).permutation(np.arange(1, 101, dtype=float))
    return cumulative_dvh(doses, voxel_volume_ml=1.0)


@pytest.mark.parametrize("percent, expected_gy", [(2, 99), (10, 91), (30, 71), (50, 51), (70, 31), (90, 11),
                                                  (98, 3), (100, 1), (0, 100), (0.5, 100), (50.5, 50.5)])
def test_dx_percent_is_the_least_dose_of_the_hottest_fraction(ramp_dvh, percent, expected_gy):
    # V(d_k) = 101 - k voxels; D_x interpolates linearly between knots; below the last knot: the maximum
    assert dose_at_volume_percent(ramp_dvh, percent) == pytest.approx(expected_gy, abs=1e-12)


@pytest.mark.parametrize("dose_gy, expected_ml", [(50, 51), (1, 100), (0, 100), (-5, 100), (100, 1), (100.5, 0),
                                                  (50.5, 50.5), (99.25, 1.75)])
def test_vx_interpolates_the_cumulative_curve(ramp_dvh, dose_gy, expected_ml):
    assert volume_at_dose(ramp_dvh, dose_gy) == pytest.approx(expected_ml, abs=1e-12)
    assert volume_percent_at_dose(ramp_dvh, dose_gy) == pytest.approx(expected_ml, abs=1e-12)  # 100 mL in total


def test_dx_cc_uses_the_voxel_volume():
    dvh = cumulative_dvh(np.arange(1, 101, dtype=float), voxel_volume_ml=0.5)  # 50 mL in total
    assert dvh.total_volume_ml == pytest.approx(50.0)
    assert dose_at_volume_ml(dvh, 2.0) == pytest.approx(97.0)  # hottest 4 voxels: 97..100
    assert dose_at_volume_ml(dvh, 50.0) == pytest.approx(1.0)
    assert dose_at_volume_ml(dvh, 50.5) is None  # more than the segment holds: undefined
    assert volume_at_dose(dvh, 50) == pytest.approx(25.5)


def test_uniform_dose_gives_equal_dx_and_a_step_vx():
    dvh = cumulative_dvh(np.full(37, 4.2), voxel_volume_ml=0.2)
    assert {dose_at_volume_percent(dvh, x) for x in (0, 2, 10, 50, 90, 98, 100)} == {4.2}
    assert volume_percent_at_dose(dvh, 4.2) == 100.0 and volume_percent_at_dose(dvh, 4.3) == 0.0
    assert volume_at_dose(dvh, 1.0) == pytest.approx(37 * 0.2)


def test_repeated_values_make_one_knot_each():
    dvh = cumulative_dvh([1.0, 1.0, 1.0, 3.0], voxel_volume_ml=1.0)
    assert dvh.knot_doses.tolist() == [1.0, 3.0] and dvh.knot_voxels.tolist() == [4.0, 1.0]
    assert dose_at_volume_percent(dvh, 50) == pytest.approx(1.0 + 2.0 * (2 - 4) / (1 - 4))  # between (1,4) and (3,1)


def test_binned_knots_follow_slicerrt_and_agree_on_aligned_edges(ramp_dvh):
    doses = np.arange(1, 101, dtype=float)
    binned = cumulative_dvh(doses, 1.0, bins=100)  # edges 0, 1, ..., 100 Gy
    assert binned.knot_doses[0] == 0.0 and binned.knot_doses[-1] == 100.0
    for x in (2, 10, 30, 50, 70, 90, 98):
        assert dose_at_volume_percent(binned, x) == pytest.approx(dose_at_volume_percent(ramp_dvh, x))
    assert dose_at_volume_percent(binned, 100) == 0.0  # SlicerRT: the whole volume -> the first knot (0)
    edges = cumulative_dvh(doses, 1.0, bins=[0.0, 50.0, 100.0])
    assert edges.knot_voxels.tolist() == [100.0, 51.0, 1.0]


def test_tabulated_dvh_is_exact_and_the_differential_sums_to_the_volume(ramp_dvh):
    table = ramp_dvh.tabulate(np.linspace(0, 100, 11))
    assert table["cumulative_ml"].tolist() == [100, 91, 81, 71, 61, 51, 41, 31, 21, 11, 1]
    assert table["differential_ml"].sum() == pytest.approx(100.0)
    assert table["differential_ml"][0] == 9  # 1..9 Gy in [0, 10)
    assert table["cumulative_pct"][0] == 100.0


def test_negative_values_are_kept_not_clipped():
    dvh = cumulative_dvh([-1.0, 1.0, 3.0], voxel_volume_ml=1.0)
    assert dose_at_volume_percent(dvh, 100) == -1.0
    assert volume_at_dose(dvh, 0.0) == pytest.approx(2.5)


def test_bad_input_raises_clear_errors():
    with pytest.raises(InputFormatError, match="empty"):
        cumulative_dvh([], 1.0)
    with pytest.raises(InputFormatError, match="NaN"):
        cumulative_dvh([1.0, np.nan], 1.0)
    with pytest.raises(InputFormatError, match="voxel volume"):
        cumulative_dvh([1.0], 0.0)
    with pytest.raises(InputFormatError, match="above the minimum"):
        cumulative_dvh([1.0, 2.0], 1.0, bins=[1.5, 3.0])
    dvh = cumulative_dvh([1.0, 2.0], 1.0)
    with pytest.raises(InputFormatError, match="between 0 and 100"):
        dose_at_volume_percent(dvh, 101)
    with pytest.raises(InputFormatError, match="positive"):
        dose_at_volume_ml(dvh, 0)


def test_inputs_are_not_modified():
    doses = np.array([3.0, 1.0, 2.0])
    cumulative_dvh(doses, 1.0)
    assert doses.tolist() == [3.0, 1.0, 2.0]
