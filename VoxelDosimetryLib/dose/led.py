"""Local energy deposition (LED): all emitted energy (or the electrons' only) absorbed in the voxel's own mass."""
from __future__ import annotations

import numpy as np

from VoxelDosimetryLib.dose.registry import DoseMethod, DoseRequest, DoseResult, register_dose_method
from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.physics import ct_to_density, get_nuclide

MEV_TO_J = 1.602176634e-13  # CODATA 2018 exact
COMPONENTS = ("all", "electrons")


def local_energy_deposition(request: DoseRequest) -> DoseResult:
    """D = Ã·E/m per voxel: Ã decays (Bq·s) or A (Bq) in the voxel, E energy per decay (J), m voxel mass (kg).

    options["component"]: "all" (electrons + photons, ICRP-107 energy budget) or "electrons" (non-penetrating
    emissions only, photons assumed to escape).
    """
    component = request.options.get("component", "all")
    if component not in COMPONENTS:
        raise InputFormatError(f"LED component must be one of {COMPONENTS}; got {component!r}.")
    budget = get_nuclide(request.nuclide).energy_budget()
    energy_mev = budget["total"] if component == "all" else budget["non_penetrating"]
    density = ct_to_density(request.ct).array.astype(np.float64)  # g/cm3 == g/mL
    source = request.source.to_canonical_unit()
    per_ml = source.array.astype(np.float64)  # Bq/mL or Bq·s/mL
    # dose (Gy = J/kg) = (per-mL source x energy in J) / (density in kg/mL)
    dose = per_ml * energy_mev * MEV_TO_J / (density * 1e-3)
    quantity = "dose_rate" if source.quantity == "activity_concentration" else "dose"
    volume = request.ct.with_array(dose.astype(np.float32), quantity=quantity)
    return DoseResult(volume, info={"method": "led", "component": component, "energy_per_decay_mev": energy_mev,
                                    "nuclide": get_nuclide(request.nuclide).name})


register_dose_method(DoseMethod("led", "local energy deposition: all emitted energy absorbed in the source voxel "
                                       "(option component=electrons for non-penetrating emissions only)",
                                local_energy_deposition, options=("component",)))
