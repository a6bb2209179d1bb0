"""Monte Carlo dose engine for internal emitters. Interaction data: photon_data (cross sections, scattering
functions) and electron_data (stopping powers, CSDA ranges); see docs/MC_PHYSICS_DATA.md."""
from __future__ import annotations

from VoxelDosimetryLib.montecarlo.electron_data import (
    WATER_I_VALUE_EV,
    WATER_MASS_FRACTIONS,
    WATER_STERNHEIMER_1984,
    ElectronStoppingPowers,
    SternheimerParameters,
    bethe_collision_stopping_power,
    mean_excitation_energy_ev,
    sternheimer_peierls_parameters,
)
from VoxelDosimetryLib.montecarlo.photon_data import (
    QUANTITIES,
    EnergyRangeError,
    InteractionDataError,
    MediaSpec,
    PhotonCrossSections,
    klein_nishina_cross_section_cm2,
    resolve_media,
)

__all__ = [
    "QUANTITIES", "EnergyRangeError", "InteractionDataError", "MediaSpec", "PhotonCrossSections",
    "klein_nishina_cross_section_cm2", "resolve_media",
    "WATER_I_VALUE_EV", "WATER_MASS_FRACTIONS", "WATER_STERNHEIMER_1984", "ElectronStoppingPowers",
    "SternheimerParameters", "bethe_collision_stopping_power", "mean_excitation_energy_ev",
    "sternheimer_peierls_parameters",
]
