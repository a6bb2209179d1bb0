"""`voxeldosimetry voi` on a run's own dose gives the run's masses and mean doses exactly (one CT-on-grid path).

The case CT (4 mm) is finer than the dose grid (the 12 mm SPECT grid), so the CT must be put on the dose grid:
`run` and `voi` both do it with physics.voxel_mass.density_on_grid (mean density over each dose voxel). Before,
`voi` sampled the CT at the dose-voxel centres and `run` averaged HU; on this grid those give other masses.
"""
from __future__ import annotations

import csv
import math

import pytest

from VoxelDosimetryLib.cli.main import main
from VoxelDosimetryLib.geometry.resample import resample_to
from VoxelDosimetryLib.io import read_volume
from VoxelDosimetryLib.physics import hu_to_density
from VoxelDosimetryLib.physics.voxel_mass import density_on_grid
from VoxelDosimetryLib.pipeline import PipelineConfig, run_pipeline
from VoxelDosimetryLib.simulate import build_virtual_patient
from VoxelDosimetryLib.simulate.ct_based_case import build_case_from_ct

COMPARED = ("voxels", "volume_ml", "mass_g", "mean_gy", "min_gy", "max_gy", "median_gy", "d50_gy", "d90_gy")


def _rows(path) -> dict[int, dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return {int(row["label"]): row for row in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def case_and_run(tmp_path_factory):
    patient = build_virtual_patient(4.0)
    folder = tmp_path_factory.mktemp("case")
    build_case_from_ct(patient.ct, patient.labels, patient.label_names, folder, times_h=(4, 24, 96),
                       spect_voxel_mm=12.0, misregistration_mm=None)
    out = tmp_path_factory.mktemp("run")
    run_pipeline(PipelineConfig.from_case(folder), out)
    return folder, out


def test_voi_on_the_run_dose_reproduces_the_run_table(case_and_run, tmp_path):
    folder, out = case_and_run
    dose_path, ct_path = out / "dose" / "dose.nrrd", folder / "ct.nrrd"
    assert read_volume(ct_path).grid != read_volume(dose_path).grid  # the CT has to be put on the dose grid
    table = tmp_path / "voi.csv"
    assert main(["voi", "--dose", str(dose_path), "--ct", str(ct_path), "--labels", str(folder / "labels.nrrd"),
                 "--out", str(table)]) == 0
    run_rows, voi_rows = _rows(out / "tables" / "segments.csv"), _rows(table)
    assert set(run_rows) == set(voi_rows) and len(run_rows) >= 5
    for label, row in run_rows.items():
        for column in COMPARED:
            assert voi_rows[label][column] == row[column], (row["name"], column)  # identical, not just close
        assert float(row["mass_g"]) > 0 and math.isfinite(float(row["mean_gy"]))


def test_point_sampling_the_ct_would_give_other_masses(case_and_run):
    """The grid is one where the choice matters: the old `voi` way (CT sampled at the voxel centres) differs."""
    folder, out = case_and_run
    ct = read_volume(folder / "ct.nrrd", quantity="ct")
    dose = read_volume(out / "dose" / "dose.nrrd")
    labels = resample_to(read_volume(folder / "labels.nrrd", quantity="labels"), dose.grid, mode="nearest").array
    sampled = hu_to_density(resample_to(ct, dose.grid, mode="linear").array)
    averaged = density_on_grid(ct, dose.grid).array
    run_rows = _rows(out / "tables" / "segments.csv")
    differences = []
    for label, row in run_rows.items():
        mask = labels == label
        assert float(row["mass_g"]) == pytest.approx(averaged[mask].sum() * dose.voxel_volume_ml, rel=1e-3)
        differences.append(abs(sampled[mask].sum() / averaged[mask].sum() - 1.0))
    assert max(differences) > 1e-3


def test_the_masses_are_mean_densities_over_each_dose_voxel(case_and_run):
    folder, out = case_and_run
    ct = read_volume(folder / "ct.nrrd", quantity="ct")
    dose = read_volume(out / "dose" / "dose.nrrd")
    rho = density_on_grid(ct, dose.grid).array
    inside = (slice(2, -2),) * 3  # away from the image border
    total_native = float(hu_to_density(ct.array).sum()) * ct.voxel_volume_ml
    total_on_grid = float(rho.sum()) * dose.voxel_volume_ml
    assert rho[inside].min() > 0
    assert total_on_grid == pytest.approx(total_native, rel=0.01)  # mass conserved (same field of view)
