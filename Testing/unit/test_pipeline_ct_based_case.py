"""build_case_from_ct: a multi-timepoint case on a CT with organ labels, truth saved, known patient shifts."""
from __future__ import annotations

import numpy as np
import pytest

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.io import read_volume
from VoxelDosimetryLib.physics import get_nuclide
from VoxelDosimetryLib.pipeline import read_case
from VoxelDosimetryLib.simulate import build_virtual_patient
from VoxelDosimetryLib.simulate.ct_based_case import (ACQUISITION_S, DOTATATE_KINETICS, SENSITIVITY_CPS_PER_MBQ,
                                                      build_case_from_ct, spect_grid_covering)

SHIFTS = ((4.0, -3.0, 5.0), (-5.0, 4.0, 3.0))


@pytest.fixture(scope="module")
def patient():
    return build_virtual_patient(8.0)


@pytest.fixture(scope="module")
def case(patient, tmp_path_factory):
    return build_case_from_ct(patient.ct, patient.labels, patient.label_names, tmp_path_factory.mktemp("case"),
                              times_h=(4, 24, 96), spect_voxel_mm=8.0, misregistration_mm=SHIFTS)


def test_truth_tia_map_and_organ_tia_agree_with_the_kinetics(case, patient):
    decay = get_nuclide("Lu-177").decay_constant_per_s
    truth = case.notes["true_organ_tia_bq_s"]
    assert set(truth) == set(DOTATATE_KINETICS)
    assert truth["liver"] == pytest.approx(DOTATATE_KINETICS["liver"].tia_bq_s(7.4e9, decay), rel=1e-12)
    tia = read_volume(case.path(case.tia))
    assert tia.quantity == "tia_concentration" and tia.grid == patient.ct.grid
    assert tia.array.sum(dtype=np.float64) * tia.voxel_volume_ml == pytest.approx(sum(truth.values()), rel=1e-5)
    labels = read_volume(case.path(case.labels), quantity="labels")
    names = {int(k): v for k, v in case.label_names.items()}
    liver = [k for k, v in names.items() if v == "liver"][0]
    liver_tia = tia.array[labels.array == liver].sum(dtype=np.float64) * tia.voxel_volume_ml
    assert liver_tia == pytest.approx(truth["liver"], rel=1e-5)


def test_tumour_is_a_new_label_inside_the_liver(case, patient):
    labels = read_volume(case.path(case.labels), quantity="labels").array
    tumour = case.notes["tumour_label"]
    assert case.label_names[str(tumour)] == "tumour" and tumour > max(patient.label_names)
    inside = labels == tumour
    assert inside.sum() * 0.512 > 0.5 * (4 / 3) * np.pi * 1.5 ** 3  # mL: at least half the nominal 15 mm sphere
    original_liver = patient.labels.array == [k for k, v in patient.label_names.items() if v == "liver"][0]
    assert np.all(original_liver[inside])


def test_later_timepoints_have_a_shifted_ct_and_a_spect_seeing_the_moved_activity(case, patient):
    assert case.notes["timepoint_cts"] == ["ct.nrrd", "ct_24h.nrrd", "ct_96h.nrrd"]
    assert case.notes["misregistration_mm"] == [[0.0, 0.0, 0.0], [4.0, -3.0, 5.0], [-5.0, 4.0, 3.0]]
    moved = read_volume(case.path("ct_96h.nrrd"))
    reference = read_volume(case.path("ct.nrrd"))
    assert np.array_equal(moved.array, reference.array)
    assert np.allclose(np.subtract(moved.origin, reference.origin), SHIFTS[1])
    for tp in case.timepoints:
        spect, truth = read_volume(case.path(tp.spect)), read_volume(case.path(tp.activity_true))
        assert spect.quantity == "activity_concentration" and spect.grid == spect_grid_covering(patient.ct.grid, 8.0)
        true_total = truth.array.sum(dtype=np.float64) * truth.voxel_volume_ml
        assert spect.array.sum(dtype=np.float64) * spect.voxel_volume_ml == pytest.approx(true_total, rel=0.03)
    # the 96 h SPECT's activity centroid is the true (reference-frame) centroid moved by the shift
    def centroid(volume):
        k, j, i = np.nonzero(volume.array > 0)
        weights = volume.array[k, j, i].astype(np.float64)
        world = volume.grid.index_to_world(np.stack([i, j, k], axis=1))
        return (world * weights[:, None]).sum(axis=0) / weights.sum()

    tp = case.timepoints[2]
    moved_by = centroid(read_volume(case.path(tp.spect))) - centroid(read_volume(case.path(tp.activity_true)))
    assert np.allclose(moved_by, SHIFTS[1], atol=1.0)


def test_counts_variant_holds_counts_that_calibrate_back_to_the_same_activity(patient, case, tmp_path):
    counts_case = build_case_from_ct(patient.ct, patient.labels, patient.label_names, tmp_path, times_h=(4, 24, 96),
                                     spect_voxel_mm=8.0, misregistration_mm=SHIFTS, spect_unit="counts")
    assert counts_case.notes["calibration"] == {"sensitivity_cps_per_mbq": SENSITIVITY_CPS_PER_MBQ,
                                                "counts_duration_s": ACQUISITION_S}
    counts = read_volume(counts_case.path(counts_case.timepoints[1].spect))
    bq_ml = read_volume(case.path(case.timepoints[1].spect))
    assert counts.quantity == "counts"
    assert np.array_equal(counts.array, np.round(counts.array))
    factor = SENSITIVITY_CPS_PER_MBQ * 1e-6 * ACQUISITION_S * counts.voxel_volume_ml
    assert np.allclose(counts.array / factor, bq_ml.array, rtol=1e-5, atol=1e-3)


def test_case_reads_back_and_names_are_kept(case):
    again = read_case(case.folder)
    assert [tp.time_h for tp in again.timepoints] == [4.0, 24.0, 96.0]
    assert {"liver", "spleen", "kidney_left", "kidney_right", "tumour"} <= set(again.label_names.values())


def test_bad_inputs_are_refused_with_the_fix(patient, tmp_path):
    with pytest.raises(InputFormatError, match="not labelled"):
        build_case_from_ct(patient.ct, patient.labels, {1: "liver"}, tmp_path / "a", spect_voxel_mm=8.0)
    with pytest.raises(InputFormatError, match="one .x, y, z. shift per timepoint"):
        build_case_from_ct(patient.ct, patient.labels, patient.label_names, tmp_path / "b", spect_voxel_mm=8.0,
                           misregistration_mm=[(1.0, 0.0, 0.0)])
    with pytest.raises(InputFormatError, match="strictly increasing"):
        build_case_from_ct(patient.ct, patient.labels, patient.label_names, tmp_path / "c", times_h=(24, 4))
    assert not (tmp_path / "a").exists()
