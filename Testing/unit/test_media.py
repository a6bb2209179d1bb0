"""GATE-style media splitting, media lookup and MVSV density bins."""
from __future__ import annotations

import math

import numpy as np
import pytest

from VoxelDosimetryLib.errors import InputFormatError, UnitError
from VoxelDosimetryLib.physics import (
    DEFAULT_DENSITY_BIN_EDGES_G_CM3,
    DensityBins,
    HUDensityCurve,
    MediaTable,
    Medium,
    ct_to_density,
    density_bin_map,
    hu_to_density,
    schneider_media,
)
from VoxelDosimetryLib.volume import Volume


@pytest.fixture(scope="module")
def table() -> MediaTable:
    return MediaTable.from_schneider(0.05)


def test_74_media_at_tolerance_005(table):
    assert len(table) == 74  # the number GATE produces (PHYSICS.md §3)
    assert table.tolerance_g_cm3 == 0.05


def test_fewer_media_at_coarser_tolerance():
    counts = [len(MediaTable.from_schneider(t)) for t in (0.2, 0.1, 0.05, 0.02)]
    assert counts == sorted(counts) and counts[0] < counts[-1]
    assert len(MediaTable.from_schneider(10.0)) == 27  # one medium per composition row
    with pytest.raises(InputFormatError, match="tolerance"):
        MediaTable.from_schneider(0.0)


def test_media_structure(table):
    edges = table.hu_edges
    assert edges[0] == -1050 and edges[-1] == 3001 and np.all(np.diff(edges) > 0)
    assert [m.index for m in table] == list(range(74))
    assert len(set(table.names)) == 74
    air = table[0]
    assert air.name == "Air" and air.hu_low == -1050 and air.hu_high == -950  # Air never split
    assert air.density_g_cm3 == pytest.approx(0.00121)
    assert sum(m.composition == "Lung" for m in table) == 18
    last = table[-1]
    assert (last.hu_low, last.hu_high) == (3000, 3001) and last.density_g_cm3 == pytest.approx(2.8)
    for m in table:
        assert sum(m.mass_fractions.values()) == pytest.approx(1.0, abs=1e-12)
        assert m.density_g_cm3 == pytest.approx(float(hu_to_density(0.5 * (m.hu_low + m.hu_high))), rel=1e-12)


def test_sub_bin_density_spread_within_tolerance(table):
    # each sub-bin spans less than the tolerance along the curve (except where a bin contains the 100/101 drop)
    for m in table[1:]:
        if m.composition in ("ConnectiveTissue",) or m.hu_high - m.hu_low < 1.5:
            continue
        rho = hu_to_density(np.linspace(m.hu_low, m.hu_high, 21))
        assert rho.max() - rho.min() <= 0.05 + 1e-9, m.name


def test_media_index_boundaries(table):
    edges = table.hu_edges
    hu = np.concatenate([edges[:-1], edges[1:-1] - 1e-6])
    idx = table.media_index(hu)
    assert idx.dtype == np.int16
    np.testing.assert_array_equal(idx[:74], np.arange(74))  # an edge belongs to the medium starting there
    np.testing.assert_array_equal(idx[74:], np.arange(73))
    idx, report = table.media_index(np.array([-3024.0, -1050.0, 0.0, 3000.999, 3001.0, 4000.0]), return_report=True)
    assert idx.tolist()[:2] == [0, 0] and idx.tolist()[3:] == [73, 73, 73]
    assert table[int(idx[2])].composition == "AT_AG_SI4"
    assert (report.n_below, report.n_above) == (1, 2)


def test_media_volume_and_input_untouched(table):
    ct = np.array([[[-1024, -500, 0], [50, 500, 2500]]], dtype=np.int16)
    before = ct.copy()
    vol = Volume(ct, spacing=(2.0, 2.0, 3.0), origin=(1.0, 2.0, 3.0), quantity="ct")
    out = table.media_volume(vol)
    np.testing.assert_array_equal(ct, before)
    assert out.quantity == "media" and out.unit == "label" and out.array.dtype == np.int16
    assert out.grid == vol.grid
    names = [table[int(i)].composition for i in out.array.ravel()]
    assert names == ["Air", "Lung", "AT_AG_SI4", "SoftTissus", "Marrow_Bone05", "MetallImplants"]
    assert out.metadata["media_count"] == 74
    with pytest.raises(UnitError, match="quantity 'ct'"):
        table.media_volume(vol.replace(quantity="density", unit="g/cm3"))


def test_json_round_trip(table, tmp_path):
    again = MediaTable.from_json(table.to_json())
    assert again == table and again.tolerance_g_cm3 == 0.05 and again.names == table.names
    path = table.write_json(tmp_path / "media.json")
    assert MediaTable.read_json(path) == table
    with pytest.raises(InputFormatError, match="malformed"):
        MediaTable.from_json("{not json")
    with pytest.raises(InputFormatError, match="format"):
        MediaTable.from_json('{"media": []}')
    with pytest.raises(InputFormatError, match="incomplete"):
        MediaTable.from_json('{"format": "voxeldosimetry-media-table", "media": [{"index": 0}]}')


def test_medium_validation_and_immutability(table):
    with pytest.raises(InputFormatError, match="sum to"):
        Medium(0, "bad", 0.0, 1.0, 1.0, {"H": 0.5, "O": 0.4})
    with pytest.raises(InputFormatError, match="density"):
        Medium(0, "bad", 0.0, 1.0, 0.0, {"H": 1.0})
    with pytest.raises(TypeError):
        table[5].mass_fractions["H"] = 1.0  # type: ignore[index]
    with pytest.raises(InputFormatError, match="contiguous"):
        MediaTable([Medium(0, "a", 0, 1, 1.0, {"H": 1.0}), Medium(1, "b", 2, 3, 1.0, {"H": 1.0})])
    hash(table[3])


def test_mass_fraction_matrix(table):
    elements, w = table.mass_fraction_matrix()
    assert w.shape == (74, len(elements)) and "Ca" in elements
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)


def test_media_with_user_curve():
    curve = HUDensityCurve([-1000, 0, 3000], [0.001, 1.0, 2.5], name="linear")
    t = MediaTable.from_schneider(0.05, curve=curve)
    water_like = t[int(t.media_index(0.0))]
    assert water_like.density_g_cm3 == pytest.approx(float(curve(0.5 * (water_like.hu_low + water_like.hu_high))))


# ------------------------------------------------------------------------------------------- density bins
def test_default_density_bins():
    bins = DensityBins.default()
    assert len(bins) == 20 == len(DEFAULT_DENSITY_BIN_EDGES_G_CM3) - 1
    assert bins[0].representative_g_cm3 == pytest.approx(0.00121) and bins[0].medium == "Air"
    assert bins[12].medium.startswith("SoftTissus")  # 1.02-1.06 g/cm3
    assert bins[-1].medium.startswith("Marrow_Bone15")
    for b in bins:
        assert b.low_g_cm3 <= b.representative_g_cm3 < b.high_g_cm3
        assert not b.medium.startswith(("AmalgamTooth", "MetallImplants"))
    custom = DensityBins([0.5, 1.0, 1.5])
    assert custom.representative_g_cm3.tolist() == [0.75, 1.25]
    with pytest.raises(InputFormatError, match="strictly increasing"):
        DensityBins([0.0, 1.0, 1.0])
    with pytest.raises(InputFormatError, match="inside its bin"):
        DensityBins([0.0, 1.0, 2.0], representative_g_cm3=[0.5, 2.5])


def test_density_bin_map_on_synthetic_ct():
    hu = np.array([[[-1024, -800, -500, -100], [0, 40, 100, 300], [1000, 1600, 2500, 30]]], dtype=np.int16)
    before = hu.copy()
    ct = Volume(hu, spacing=(1.5, 1.5, 2.0), quantity="ct", metadata={"patient": "x"})
    labels, rows = density_bin_map(ct)
    np.testing.assert_array_equal(hu, before)
    assert labels.quantity == "media" and labels.unit == "label" and labels.array.dtype == np.int16
    assert labels.grid == ct.grid and labels.metadata["patient"] == "x"
    assert labels.metadata["label_meaning"] == "density_bin_index"
    # expected bins from the Schneider densities of each voxel
    expected = np.searchsorted(DEFAULT_DENSITY_BIN_EDGES_G_CM3[:-1], hu_to_density(hu), side="right") - 1
    np.testing.assert_array_equal(labels.array, np.clip(expected, 0, 19))
    assert labels.array[0, 0, 0] == 0 and labels.array[0, 1, 1] == 12 and labels.array[0, 2, 2] == 19
    assert labels.metadata["density_above_range_voxels"] == 1  # 2500 HU -> 2.50 g/cm3 > 2.10
    assert labels.metadata["hu_below_range_voxels"] == 1  # -1024 HU
    assert len(rows) == 20 and sum(r["voxel_count"] for r in rows) == hu.size
    soft = rows[12]
    assert soft["voxel_count"] == 2 and soft["dominant_medium"].startswith("SoftTissus")
    assert soft["mean_density_g_cm3"] == pytest.approx(float(hu_to_density(np.array([40, 30])).mean()), rel=1e-6)
    assert rows[1]["voxel_count"] == 0 and rows[1]["mean_density_g_cm3"] is None

    # the same map from a density volume (no per-voxel media then)
    labels2, rows2 = density_bin_map(ct_to_density(ct))
    np.testing.assert_array_equal(labels2.array, labels.array)
    assert all(r["dominant_medium"] is None for r in rows2)


def test_density_bin_map_custom_edges_and_errors():
    rho = Volume(np.array([[[0.1, 0.9, 1.0, 1.6]]]), quantity="density", unit="g/cm3")
    labels, rows = density_bin_map(rho, bins=[0.0, 0.5, 1.0, 2.0])
    assert labels.array.ravel().tolist() == [0, 1, 2, 2]
    assert [r["voxel_count"] for r in rows] == [1, 1, 2]
    kg = Volume(np.array([[[1000.0]]]), quantity="density", unit="kg/m3")
    assert density_bin_map(kg, bins=[0.0, 0.5, 1.5])[0].array.item() == 1  # unit converted to g/cm3
    with pytest.raises(UnitError, match="density"):
        density_bin_map(Volume(np.zeros((1, 1, 2)), quantity="dose"))
    with pytest.raises(InputFormatError, match="NaN"):
        density_bin_map(Volume(np.array([[[np.nan]]]), quantity="density"))


def test_schneider_media_cached():
    assert schneider_media(0.05) is schneider_media(0.05)
    assert math.isclose(schneider_media().tolerance_g_cm3, 0.05)
