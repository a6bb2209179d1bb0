"""User HU -> density calibration curves (CSV) and ct_to_density."""
from __future__ import annotations

import numpy as np
import pytest

from VoxelDosimetryLib.errors import InputFormatError, UnitError
from VoxelDosimetryLib.physics import HUDensityCurve, ct_to_density, hu_to_density
from VoxelDosimetryLib.volume import Volume


def write(tmp_path, text: str, name: str = "curve.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_happy_path_with_header_and_comments(tmp_path):
    path = write(tmp_path, "# scanner X, 120 kVp\n\nHU,density_g_cm3\n-1000, 0.0012\n0,1.0\n# bone\n1000,1.6\n")
    c = HUDensityCurve.from_csv(path)
    assert len(c) == 3 and c.name == "curve" and c.source == str(path)
    np.testing.assert_array_equal(c.hu, [-1000, 0, 1000])
    np.testing.assert_array_equal(c.density_g_cm3, [0.0012, 1.0, 1.6])
    assert c(500.0) == pytest.approx(1.3)
    np.testing.assert_allclose(c(np.array([-500, 0, 250])), [0.5006, 1.0, 1.15])


@pytest.mark.parametrize("text", ["-1000;0.001\n0;1.0\n", "-1000\t0.001\n0\t1.0\n", "-1000 0.001\n0   1.0\n",
                                  "\ufeffhu density\n-1000,0.001\n0,1.0\n"])
def test_csv_separators_and_no_header(tmp_path, text):
    c = HUDensityCurve.from_csv(write(tmp_path, text))
    np.testing.assert_array_equal(c.hu, [-1000, 0])


def test_decreasing_density_allowed_unless_required_monotonic(tmp_path):
    path = write(tmp_path, "0,1.0\n100,1.12\n101,1.07\n1600,1.96\n")
    assert len(HUDensityCurve.from_csv(path)) == 4  # like Schneider's own 100/101 HU drop
    with pytest.raises(InputFormatError, match="line 3.*monotonic"):
        HUDensityCurve.from_csv(path, require_monotonic_density=True)


@pytest.mark.parametrize("text,pattern", [
    ("HU,rho\n0,1.0\n", "at least 2 points; found 1"),
    ("", "at least 2 points; found 0"),
    ("# only a comment\n", "at least 2 points"),
    ("0,1.0\n0,1.1\n", "line 2: HU values must be strictly increasing"),
    ("0,1.0\n100,1.1\n50,1.05\n", "line 3: HU values must be strictly increasing"),
    ("0,1.0\n100,nan\n", "line 2: HU and density must be finite"),
    ("0,1.0\ninf,1.1\n", "line 2: HU and density must be finite"),
    ("0,1.0\n100,0\n", "line 2: density must be > 0"),
    ("0,-1.0\n100,1.0\n", "line 1: density must be > 0"),
    ("0,1.0\n100,abc\n", "line 2: .* is not two numbers"),
    ("hu,rho\n0,1.0\nhu,rho\n1,1.0\n", "line 3: .* is not two numbers"),
    ("0,1.0,5\n100,1.1\n", "line 1: expected two columns"),
    ("# c\n0,1.0\n100\n", "line 3: expected two columns"),
])
def test_csv_errors_name_the_line(tmp_path, text, pattern):
    with pytest.raises(InputFormatError, match=pattern):
        HUDensityCurve.from_csv(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(InputFormatError, match="Cannot read"):
        HUDensityCurve.from_csv(tmp_path / "nope.csv")


def test_constructor_validation():
    with pytest.raises(InputFormatError, match="at least 2 points"):
        HUDensityCurve([0], [1.0])
    with pytest.raises(InputFormatError, match="one density per HU"):
        HUDensityCurve([0, 1], [1.0])
    with pytest.raises(InputFormatError, match="point 2: HU values must be strictly increasing"):
        HUDensityCurve([0, 0], [1.0, 1.0])


def test_schneider_curve_and_round_trip(tmp_path):
    s = HUDensityCurve.schneider2000()
    hu = np.linspace(-1100, 3100, 97)
    np.testing.assert_array_equal(s(hu), hu_to_density(hu))
    assert s.hu_range == (-1000.0, 3000.0) and "Schneider" in s.source
    path = s.to_csv(tmp_path / "s.csv")
    assert path.read_text(encoding="utf-8").startswith("#")
    back = HUDensityCurve.from_csv(path)
    assert back == s and hash(back) == hash(s)
    with pytest.raises(AttributeError):
        s.name = "x"  # type: ignore[misc]
    with pytest.raises(ValueError):
        s.hu[0] = 0.0


def test_evaluate_reports_out_of_range():
    c = HUDensityCurve([-1000, 1000], [0.001, 2.0])
    rho, report = c.evaluate(np.array([-2000.0, 0.0, 1500.0]))
    assert rho.tolist() == pytest.approx([0.001, 1.0005, 2.0])
    assert (report.n_below, report.n_above) == (1, 1)


def test_ct_to_density():
    hu = np.array([[[-1000, 14], [100, 101]], [[1600, 3000], [-1024, 5000]]], dtype=np.int16)
    before = hu.copy()
    ct = Volume(hu, spacing=(0.9, 0.9, 2.5), origin=(-10.0, 5.0, 1.0), quantity="ct", metadata={"Modality": "CT"})
    rho = ct_to_density(ct)
    np.testing.assert_array_equal(hu, before)
    assert rho.quantity == "density" and rho.unit == "g/cm3" and rho.array.dtype == np.float32
    assert rho.grid == ct.grid and rho.metadata["Modality"] == "CT"
    np.testing.assert_allclose(rho.array[0].ravel(), [0.00121, 1.03, 1.1199, 1.0762], rtol=1e-6)
    assert rho.metadata["density_curve"] == "schneider2000"
    assert rho.metadata["hu_below_range_voxels"] == 1 and rho.metadata["hu_above_range_voxels"] == 1
    custom = HUDensityCurve([-1000, 1000], [0.001, 2.0], name="mine")
    assert ct_to_density(ct, custom).metadata["density_curve"] == "mine"


def test_ct_to_density_requires_ct():
    rho = Volume(np.ones((1, 2, 2)), quantity="density", unit="g/cm3")
    with pytest.raises(UnitError, match="already holds densities"):
        ct_to_density(rho)
    unknown = Volume(np.zeros((1, 2, 2)), quantity="unknown")
    with pytest.raises(UnitError, match="quantity 'ct'"):
        ct_to_density(unknown)
