"""Pipeline dose: time integration (activity -> TIA, dose rate -> dose) and a registered dose method."""
from __future__ import annotations

from typing import Callable, Sequence

from VoxelDosimetryLib.dose import DoseRequest, DoseResult, compute_dose, get_dose_method
from VoxelDosimetryLib.kinetics.tia import TIAResult, integrate_activity, integrate_dose_rate
from VoxelDosimetryLib.pipeline.config import DoseSettings
from VoxelDosimetryLib.volume import Volume

Progress = Callable[[float, str], None]


def integrate(images: Sequence[Volume], times_h: Sequence[float], nuclide: str, model: str, options: dict,
              progress: Progress | None = None, max_negative_fraction: float | None = None) -> TIAResult:
    """TIA (Bq*s/mL) from activity maps, or dose (Gy) from dose-rate maps, with the chosen model."""
    times_s = [float(t) * 3600.0 for t in times_h]
    function = integrate_dose_rate if images[0].quantity == "dose_rate" else integrate_activity
    settings = {"max_negative_fraction": max_negative_fraction, **options, "keep_parameters": False,
                "progress": progress}
    return function(list(images), times_s, nuclide, model, **settings)


def dose_from(source: Volume, ct: Volume, settings: DoseSettings, nuclide: str, progress: Progress | None = None,
              cancel: Callable[[], bool] | None = None, max_negative_fraction: float | None = None) -> DoseResult:
    """Dose (Gy) from a TIA map or dose rate (Gy/s) from an activity map with the settings' method."""
    request = DoseRequest(source, ct, nuclide=nuclide, device=settings.device, seed=int(settings.seed),
                          histories=settings.histories, options=dict(settings.options), progress=progress,
                          cancel=cancel, max_negative_fraction=max_negative_fraction)
    return compute_dose(settings.method, request)


def gives_uncertainty(settings: DoseSettings) -> bool:
    return get_dose_method(settings.method).provides_uncertainty
