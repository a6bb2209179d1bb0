"""Generated phantom and SPECT simulation: anatomy, kinetics and activity bookkeeping."""
from __future__ import annotations

import numpy as np
import pytest

from VoxelDosimetryLib.physics import get_nuclide
from VoxelDosimetryLib.simulate import build_virtual_patient, simulate_spect
from VoxelDosimetryLib.simulate.virtual_patient import OrganKinetics
from VoxelDosimetryLib.volume import Grid


@pytest.fixture(scope="module")
def patient():
    return build_virtual_patient(voxel_mm=8.0, seed=3)


def test_anatomy_is_labelled_and_placed_in_lps(patient):
    names = patient.label_names
    assert set(names.values()) >= {"liver", "spleen", "kidney_left", "kidney_right", "tumour_liver", "body"}
    labels, grid = patient.labels.array, patient.labels.grid
    def centroid_x(name):
        label = [k for k, v in names.items() if v == name][0]
        k, j, i = np.nonzero(labels == label)
        return grid.index_to_world(np.stack([i, j, k], -1).mean(0))[0]
    # LPS: patient left is +x, so the liver (patient right) has negative x and the spleen positive x
    assert centroid_x("liver") < -30 and centroid_x("spleen") > 30
    assert patient.ct.quantity == "ct" and patient.ct.array.dtype == np.int16
    lung = labels == [k for k, v in names.items() if v == "lung_left"][0]
    assert patient.ct.array[lung].mean() < -700
    assert patient.ct.array[labels == 0].max() == -1000


def test_true_activity_follows_organ_kinetics(patient):
    t = 24 * 3600.0
    activity = patient.true_activity(t)
    assert activity.quantity == "activity_concentration" and activity.unit == "Bq/mL"
    decay = get_nuclide("Lu-177").decay_constant_per_s
    liver = [o for o in patient.organs if o.name == "liver"][0]
    mask = patient.labels.array == liver.label
    in_liver = activity.array[mask].sum() * activity.voxel_volume_ml
    assert in_liver == pytest.approx(liver.kinetics.activity_bq(t, patient.administered_activity_bq, decay), rel=1e-12)


def test_kinetics_tia_is_the_integral_of_the_curve():
    kin = OrganKinetics(0.05, 60.0, 2.0)
    decay = get_nuclide("Lu-177").decay_constant_per_s
    t = np.linspace(0, 400 * 24 * 3600.0, 400001)
    numeric = np.trapz(kin.activity_bq(t, 1e9, decay), t) if hasattr(np, "trapz") else np.trapezoid(
        kin.activity_bq(t, 1e9, decay), t)
    assert kin.tia_bq_s(1e9, decay) == pytest.approx(numeric, rel=1e-5)


def test_spect_simulation_conserves_activity(patient):
    truth = patient.true_activity(4 * 3600.0)
    total = truth.array.sum() * truth.voxel_volume_ml
    grid = Grid((25, 18, 25), (16.0, 16.0, 16.0), (-192.0, -136.0, -192.0))  # the phantom grid, coarser
    noiseless = simulate_spect(truth, grid, fwhm_mm=12.0, seed=None)
    assert noiseless.array.sum(dtype=float) * noiseless.voxel_volume_ml == pytest.approx(total, rel=1e-4)
    noisy = simulate_spect(truth, grid, fwhm_mm=12.0, seed=7)
    assert noisy.array.min() >= 0
    assert noisy.array.sum() * noisy.voxel_volume_ml == pytest.approx(total, rel=0.01)
    # blurring spreads activity: the noiseless peak is lower than the truth's
    assert noiseless.array.max() < truth.array.max()
    assert np.array_equal(simulate_spect(truth, grid, seed=7).array, simulate_spect(truth, grid, seed=7).array)
