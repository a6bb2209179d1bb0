"""Dose-method registry and local energy deposition (LED)."""
from __future__ import annotations

import numpy as np
import pytest

from VoxelDosimetryLib import Volume
from VoxelDosimetryLib.dose import (DoseMethod, DoseRequest, DoseResult, UnknownDoseMethodError,
                                    available_dose_methods, compute_dose, register_dose_method)
from VoxelDosimetryLib.errors import GridMismatchError, UnitError, VoxelDosimetryError
from VoxelDosimetryLib.physics import get_nuclide

MEV_TO_J = 1.602176634e-13


def water_case(quantity="tia_concentration", unit="Bq*s/mL"):
    ct = Volume(np.zeros((3, 4, 5), np.int16), spacing=(4, 4, 4), quantity="ct")  # 0 HU: Schneider 1.018 g/cm3
    source = Volume(np.full((3, 4, 5), 1e9, np.float32), spacing=(4, 4, 4), quantity=quantity, unit=unit)
    return source, ct


def test_led_dose_from_tia_is_energy_over_mass():
    source, ct = water_case()
    result = compute_dose("led", DoseRequest(source, ct))
    budget = get_nuclide("Lu-177").energy_budget()
    from VoxelDosimetryLib.physics import hu_to_density
    rho = float(hu_to_density(np.array([0.0]))[0])
    expected = 1e9 * budget["total"] * MEV_TO_J / (rho * 1e-3)
    assert result.dose.quantity == "dose" and result.dose.unit == "Gy"
    assert np.allclose(result.dose.array, expected, rtol=1e-6)
    electrons = compute_dose("led", DoseRequest(source, ct, options={"component": "electrons"}))
    assert electrons.dose.array.mean() / result.dose.array.mean() == pytest.approx(
        budget["non_penetrating"] / budget["total"], rel=1e-6)


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
