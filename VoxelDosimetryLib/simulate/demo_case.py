"""The embedded default case: a generated four-timepoint Lu-177 SPECT/CT of the virtual patient."""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Sequence

from VoxelDosimetryLib.io.case import Case, Timepoint, write_case
from VoxelDosimetryLib.simulate.spect import simulate_spect
from VoxelDosimetryLib.simulate.virtual_patient import build_virtual_patient
from VoxelDosimetryLib.volume import Grid

DEFAULT_TIMES_H = (4.0, 24.0, 96.0, 168.0)
INJECTION = datetime(2026, 1, 5, 9, 0, 0)


def spect_file_name(time_h: float) -> str:
    return f"spect_{time_h:g}h.nrrd"


def generate_demo_case(folder: str | Path, times_h: Sequence[float] = DEFAULT_TIMES_H, ct_voxel_mm: float = 3.0,
                       spect_voxel_mm: float = 4.8, administered_activity_bq: float = 7.4e9,
                       nuclide: str = "Lu-177", seed: int = 0) -> Case:
    """Write a case folder: CT (HU), labels, true activity and simulated SPECT (Bq/mL) per timepoint."""
    patient = build_virtual_patient(ct_voxel_mm, nuclide=nuclide, administered_activity_bq=administered_activity_bq,
                                    seed=seed)
    ct_grid = patient.ct.grid
    extent = [n * s for n, s in zip(ct_grid.size_xyz, ct_grid.spacing)]
    size = [int(round(e / spect_voxel_mm)) for e in extent]
    origin = [-(n - 1) * spect_voxel_mm / 2.0 for n in size]
    spect_grid = Grid((size[2], size[1], size[0]), (spect_voxel_mm,) * 3, origin)

    volumes = {"ct.nrrd": patient.ct, "labels.nrrd": patient.labels}
    timepoints = []
    for i, time_h in enumerate(times_h):
        truth = patient.true_activity(time_h * 3600.0)
        spect = simulate_spect(truth, spect_grid, seed=seed + 1 + i)
        acquired = (INJECTION + timedelta(hours=time_h)).isoformat()
        tp = Timepoint(time_h=float(time_h), spect=spect_file_name(time_h),
                       activity_true=f"activity_true_{time_h:g}h.nrrd", acquisition_datetime=acquired)
        volumes[tp.spect] = spect.replace(metadata={**spect.metadata, "acquisition_datetime": acquired})
        volumes[tp.activity_true] = truth
        timepoints.append(tp)
    case = Case(id="demo-virtual-patient", patient_id="VIRTUAL-0001", nuclide=patient.nuclide,
                timepoints=timepoints, injection_datetime=INJECTION.isoformat(),
                administered_activity_bq=administered_activity_bq, labels="labels.nrrd",
                label_names={str(k): v for k, v in patient.label_names.items()},
                notes={"generator": "VoxelDosimetryLib.simulate.generate_demo_case", "seed": seed,
                       "true_organ_tia_bq_s": patient.true_organ_tia_bq_s(),
                       "spect": "Gaussian PSF 10 mm FWHM, 6 cps/MBq, 1500 s, Poisson noise"})
    return write_case(case, folder, volumes)
