"""The Monte Carlo dose method ("mc") in the registry: VoxelDosimetryLib.montecarlo on the CT phantom."""
from __future__ import annotations

from VoxelDosimetryLib.dose.registry import DoseMethod, DoseOption, DoseRequest, DoseResult, register_dose_method

DEFAULT_HISTORIES = 1_000_000
ADAPTIVE_HISTORIES_CAP = 1_000_000_000  # with a goal or time limit and no --histories: the stop rule decides

TRACK_LENGTH_OPTION = DoseOption(
    "track_length_photons", "bool", False,
    help="score the photon dose as kerma along the photon tracks (E x mu_en at every tentative Woodcock "
         "collision, as GATE's track-length estimator) instead of at the real interactions: lower photon-dose "
         "noise far from the source for the same histories (docs/MONTE_CARLO.md)")


RANGE_REJECTION_OPTION = DoseOption(
    "electron_range_rejection", "bool", False,
    help="an electron whose residual CSDA range cannot take it out of its voxel deposits its energy there at once "
         "(same voxel doses, fewer electron steps; docs/MONTE_CARLO.md)")
UNCERTAINTY_GOAL_OPTION = DoseOption(
    "uncertainty_goal", "float", None, minimum=1e-4, maximum=0.99,
    help="stop when the median relative uncertainty of the body voxels at >= 10 % of the body's maximum dose "
         "reaches this (0.02 = 2 %); --histories is then the cap (default 1e9)")
TIME_LIMIT_OPTION = DoseOption(
    "time_limit_s", "float", None, unit="s", minimum=1e-3,
    help="stop after this many seconds of transport (at least 10 batches); --histories is then the cap")


def monte_carlo_dose(request: DoseRequest) -> DoseResult:
    """Simulate `request.histories` decays distributed like the source in the CT's Schneider media, or fewer when
    the uncertainty goal or time limit is reached first (montecarlo/stopping.py)."""
    from VoxelDosimetryLib.montecarlo.engine import run_monte_carlo
    from VoxelDosimetryLib.montecarlo.stopping import StopRule

    options = request.options
    track_length = TRACK_LENGTH_OPTION.convert(options.get("track_length_photons", False),
                                               "options.track_length_photons")
    stop = StopRule(options.get("uncertainty_goal"), options.get("time_limit_s"))
    histories = request.histories or (ADAPTIVE_HISTORIES_CAP if stop.adaptive else DEFAULT_HISTORIES)
    if stop.uncertainty_goal is not None:
        stop.goal_mask = _body_tissue(request)
    result = run_monte_carlo(request.source, request.ct, nuclide=request.nuclide, histories=histories,
                             device=request.device, seed=request.seed, progress=request.progress,
                             cancel=request.cancel, track_length_photons=track_length, stop=stop,
                             electron_range_rejection=bool(options.get("electron_range_rejection", False)))
    return DoseResult(result.dose, result.uncertainty, info={"method": "mc", **result.stats})


def _body_tissue(request: DoseRequest):
    """The body mask without its air (density < 0.1 g/cm3): where the uncertainty goal is judged, so activity in
    air or gas cannot set the maximum."""
    from VoxelDosimetryLib.dose.value_policy import AIR_DENSITY_G_CM3
    from VoxelDosimetryLib.physics.body_mask import body_mask

    return body_mask(request.ct) & (request.density_volume().array >= AIR_DENSITY_G_CM3)


register_dose_method(DoseMethod("mc", "Monte Carlo: photon and condensed-history electron transport in the CT's "
                                      "Schneider media (--histories decays, or an uncertainty goal or time limit; "
                                      "--device, --seed)",
                                monte_carlo_dose, stochastic=True, provides_uncertainty=True,
                                options=(TRACK_LENGTH_OPTION, RANGE_REJECTION_OPTION, UNCERTAINTY_GOAL_OPTION,
                                         TIME_LIMIT_OPTION)))
