"""Local energy deposition (LED): the electrons' energy (or, on request, all emitted energy) absorbed in the
source voxel's own mass. docs/DOSE_METHODS.md states the choice and compares it with Monte Carlo."""
from __future__ import annotations

import numpy as np

from VoxelDosimetryLib.dose.registry import (DoseMethod, DoseOption, DoseRequest, DoseResult,
                                             register_dose_method)
from VoxelDosimetryLib.dose.value_policy import AIR_DENSITY_G_CM3
from VoxelDosimetryLib.physics import get_nuclide

MEV_TO_J = 1.602176634e-13  # CODATA 2018 exact
COMPONENTS = ("electron", "total")
DEFAULT_COMPONENT = "electron"

COMPONENT_OPTION = DoseOption(
    "component", "str", DEFAULT_COMPONENT, choices=COMPONENTS,
    help="energy deposited in the source voxel: electron = the non-penetrating emissions (electrons, plus alphas "
         "where emitted; photons assumed to escape the voxel), total = every emitted energy including photons "
         "(an upper bound)")


def local_energy_deposition(request: DoseRequest) -> DoseResult:
    """D = Ã·E/m per voxel: Ã decays (Bq·s) or A (Bq) in the voxel, E energy per decay (J), m voxel mass (kg).

    options["component"]: "electron" (default: non-penetrating emissions, ICRP-107 energy budget; photons are
    assumed to escape) or "total" (electrons + photons). Voxels below 0.1 g/cm³ (air) get no dose.
    """
    component = request.options.get("component", DEFAULT_COMPONENT)
    component = COMPONENT_OPTION.convert(component, "options.component")  # direct callers bypass the registry
    nuclide = get_nuclide(request.nuclide)
    budget = nuclide.energy_budget()
    energy_mev = budget["total"] if component == "total" else budget["non_penetrating"]
    density = request.density_volume().array.astype(np.float64)  # g/cm3 == g/mL
    source = request.source.to_canonical_unit()
    per_ml = source.array.astype(np.float64)  # Bq/mL or Bq·s/mL
    tissue = density >= AIR_DENSITY_G_CM3
    # dose (Gy = J/kg) = (per-mL source x energy in J) / (density in kg/mL); none in air (m ~ 0 gives absurd values)
    dose = np.zeros_like(per_ml)
    np.divide(per_ml * (energy_mev * MEV_TO_J), density * 1e-3, out=dose, where=tissue)
    quantity = "dose_rate" if source.quantity == "activity_concentration" else "dose"
    volume = request.ct.with_array(dose.astype(np.float32), quantity=quantity)
    return DoseResult(volume, info={"method": "led", "component": component, "energy_per_decay_mev": energy_mev,
                                    "nuclide": nuclide.name, "air_voxels_without_dose": int((~tissue).sum())})


register_dose_method(DoseMethod(
    "led", "local energy deposition: the electrons' energy absorbed in the source voxel (component=total adds the "
           "photons' energy, an upper bound); no dose below 0.1 g/cm3",
    local_energy_deposition, options=(COMPONENT_OPTION,)))
