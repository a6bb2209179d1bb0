"""The Monte Carlo dose method ("mc") in the registry: VoxelDosimetryLib.montecarlo on the CT phantom."""
from __future__ import annotations

from VoxelDosimetryLib.dose.registry import DoseMethod, DoseRequest, DoseResult, register_dose_method

DEFAULT_HISTORIES = 1_000_000


def monte_carlo_dose(request: DoseRequest) -> DoseResult:
    """Simulate `request.histories` decays distributed like the source in the CT's Schneider media."""
    from VoxelDosimetryLib.montecarlo.engine import run_monte_carlo

    result = run_monte_carlo(request.source, request.ct, nuclide=request.nuclide,
                             histories=request.histories or DEFAULT_HISTORIES, device=request.device,
                             seed=request.seed, progress=request.progress, cancel=request.cancel,
                             track_length_photons=bool(request.options.get("track_length_photons", False)))
    return DoseResult(result.dose, result.uncertainty, info={"method": "mc", **result.stats})


register_dose_method(DoseMethod("mc", "Monte Carlo: photon and condensed-history electron transport in the CT's "
                                      "Schneider media (--histories decays, --device, --seed)",
                                monte_carlo_dose, stochastic=True, provides_uncertainty=True,
                                options=("track_length_photons",)))
