"""Generated test and training data: virtual patients and simulated multi-timepoint SPECT."""
from __future__ import annotations

from VoxelDosimetryLib.simulate.virtual_patient import (
    DEFAULT_ORGANS, OrganKinetics, VirtualPatient, build_virtual_patient,
)
from VoxelDosimetryLib.simulate.spect import simulate_spect

__all__ = ["DEFAULT_ORGANS", "OrganKinetics", "VirtualPatient", "build_virtual_patient", "simulate_spect"]
