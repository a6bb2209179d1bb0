"""The Monte Carlo dose method ("mc") in the registry: VoxelDosimetryLib.montecarlo on the CT phantom."""
from __future__ import annotations

from VoxelDosimetryLib.dose.registry import DoseMethod, DoseOption, DoseRequest, DoseResult, register_dose_method

DEFAULT_HISTORIES = 1_000_000

TRACK_LENGTH_OPTION = DoseOption(
    "track_length_photons", "bool", False,
    help="score the photon dose as kerma along the photon tracks (E x mu_en at every tentative Woodcock "
         "collision, as GATE's track-length estimator) instead of at the real interactions: lower photon-dose "
         "noise far from the source for the same histories (docs/MONTE_CARLO.md)")


def monte_carlo_dose(request: DoseRequest) -> DoseResult:
    """Simulate `request.histories` decays distributed like the source in the CT's Schneider media."""
    from VoxelDosimetryLib.montecarlo.engine import run_monte_carlo

    track_length = TRACK_LENGTH_OPTION.convert(request.options.get("track_length_photons", False),
                                               "options.track_length_photons")
    result = run_monte_carlo(request.source, request.ct, nuclide=request.nuclide,
                             histories=request.histories or DEFAULT_HISTORIES, device=request.device,
                             seed=request.seed, progress=request.progress, cancel=request.cancel,
                             track_length_photons=track_length)
    return DoseResult(result.dose, result.uncertainty, info={"method": "mc", **result.stats})


register_dose_method(DoseMethod("mc", "Monte Carlo: photon and condensed-history electron transport in the CT's "
                                      "Schneider media (--histories decays, --device, --seed)",
                                monte_carlo_dose, stochastic=True, provides_uncertainty=True,
                                options=(TRACK_LENGTH_OPTION,)))
