"""Dose-method registry and local energy deposition (LED: electron energy by default, total on request)."""
from __future__ import annotations

import numpy as np
import pytest

from VoxelDosimetryLib import Volume
from VoxelDosimetryLib.dose import (DoseMethod, DoseRequest, DoseResult, UnknownDoseMethodError,
                                    available_dose_methods, compute_dose, register_dose_method)
from VoxelDosimetryLib.dose.led import local_energy_deposition
from VoxelDosimetryLib.dose.value_policy import AIR_DENSITY_G_CM3
from VoxelDosimetryLib.errors import GridMismatchError, InputFormatError, UnitError, VoxelDosimetryError
from VoxelDosimetryLib.physics import ct_to_density, get_nuclide, hu_to_density

MEV_TO_J = 1.602176634e-13


def water_case(quantity="tia_concentration", unit="Bq*s/mL"):
    ct = Volume(np.zeros((3, 4, 5), np.int16), spacing=(4, 4, 4), quantity="ct")  # 0 HU: Schneider 1.018 g/cm3
    source = Volume(np.full((3, 4, 5), 1e9, np.float32), spacing=(4, 4, 4), quantity=quantity, unit=unit)
    return source, ct


def test_led_default_is_the_electron_energy_over_mass():
    """Exact closed form: D = A E_np 1.602176634e-13 / (rho 1e-3), Gy/s per Bq/mL (E_np in MeV, rho in g/cm3)."""
    source, ct = water_case("activity_concentration", "Bq/mL")
    result = compute_dose("led", DoseRequest(source, ct))
    e_np = get_nuclide("Lu-177").energy_budget()["non_penetrating"]
    rho = float(hu_to_density(np.array([0.0]))[0])
    expected = 1e9 * e_np * 1.602176634e-13 / (rho * 1e-3)
    assert result.dose.quantity == "dose_rate" and result.dose.unit == "Gy/s"
    assert np.allclose(result.dose.array, expected, rtol=1e-6)
    assert result.info["component"] == "electron" and result.info["energy_per_decay_mev"] == e_np
    same = compute_dose("led", DoseRequest(source, ct, options={"component": "electron"}))
    assert np.array_equal(same.dose.array, result.dose.array)


def test_led_total_on_request():
    source, ct = water_case()
    budget = get_nuclide("Lu-177").energy_budget()
    rho = float(hu_to_density(np.array([0.0]))[0])
    total = compute_dose("led", DoseRequest(source, ct, options={"component": "total"}))
    assert total.dose.quantity == "dose" and total.dose.unit == "Gy"
    assert np.allclose(total.dose.array, 1e9 * budget["total"] * MEV_TO_J / (rho * 1e-3), rtol=1e-6)
    electron = compute_dose("led", DoseRequest(source, ct))
    assert electron.dose.array.mean() / total.dose.array.mean() == pytest.approx(
        budget["non_penetrating"] / budget["total"], rel=1e-6)


@pytest.mark.parametrize("old", ["all", "electrons"])
def test_led_refuses_the_old_component_names(old):
    source, ct = water_case()
    with pytest.raises(InputFormatError, match=r"component must be one of 'electron', 'total'; got '" + old):
        compute_dose("led", DoseRequest(source, ct, options={"component": old}))
    with pytest.raises(InputFormatError, match="'electron', 'total'"):  # also when the registry is bypassed
        local_energy_deposition(DoseRequest(source, ct, options={"component": old}))


def test_led_gives_no_dose_below_0_1_g_cm3():
    """A lung-like voxel inside the body (so the value policy's air-outside-body rule does not apply) and the
    direct call: LED itself sets voxels below AIR_DENSITY_G_CM3 to 0, in both components."""
    hu = np.zeros((7, 7, 7), np.int16)
    hu[3, 3, 3] = -960  # ~0.04 g/cm3, enclosed by tissue
    hu[3, 3, 4] = -850  # ~0.15 g/cm3, lung: keeps its dose
    ct = Volume(hu, spacing=(4, 4, 4), quantity="ct")
    source = Volume(np.full(hu.shape, 1e6, np.float32), spacing=(4, 4, 4), quantity="activity_concentration",
                    unit="Bq/mL")
    density = ct_to_density(ct).array
    assert density[3, 3, 3] < AIR_DENSITY_G_CM3 <= density[3, 3, 4]
    for component in ("electron", "total"):
        direct = local_energy_deposition(DoseRequest(source, ct, options={"component": component}))
        assert direct.dose.array[3, 3, 3] == 0.0 and direct.info["air_voxels_without_dose"] == 1
        assert direct.dose.array[3, 3, 4] > direct.dose.array[0, 0, 0] > 0  # lower mass, more dose
        result = compute_dose("led", DoseRequest(source, ct, options={"component": component}))
        assert result.dose.array[3, 3, 3] == 0.0 and np.isfinite(result.dose.array).all()
        assert result.dose.array[3, 3, 4] == pytest.approx(float(direct.dose.array[3, 3, 4]))


def test_led_dose_rate_from_activity():
    source, ct = water_case("activity_concentration", "MBq/mL")
    result = compute_dose("led", DoseRequest(source, ct))
    assert result.dose.quantity == "dose_rate" and result.dose.unit == "Gy/s"
    assert np.all(result.dose.array > 0)


def test_bad_requests_are_refused():
    source, ct = water_case()
    with pytest.raises(UnknownDoseMethodError, match="available"):
        compute_dose("magic", DoseRequest(source, ct))
    with pytest.raises(UnitError):
        compute_dose("led", DoseRequest(ct, ct))
    shifted = Volume(source.array, spacing=(4, 4, 4), origin=(1, 0, 0), quantity="tia_concentration")
    with pytest.raises(GridMismatchError):
        compute_dose("led", DoseRequest(shifted, ct))


def test_registry_lists_methods_and_refuses_duplicates():
    names = [m.name for m in available_dose_methods()]
    assert "led" in names
    dummy = DoseMethod("led", "duplicate", lambda request: DoseResult(request.ct))
    with pytest.raises(VoxelDosimetryError, match="already registered"):
        register_dose_method(dummy)
