"""`voxeldosimetry register` end to end on a small phantom: transform, moved SPECT and CT, quality report."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from VoxelDosimetryLib.cli.main import main
from VoxelDosimetryLib.geometry import resample_to
from VoxelDosimetryLib.io import read_volume, write_volume
from VoxelDosimetryLib.kinetics.registration import read_transform
from VoxelDosimetryLib.kinetics.registration_quality import displacement_stats
from VoxelDosimetryLib.physics.body_mask import body_mask_volume
from VoxelDosimetryLib.simulate import build_virtual_patient
from VoxelDosimetryLib.volume import Grid


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("register")
    patient = build_virtual_patient(voxel_mm=8.0, seed=2)
    truth = sitk.Euler3DTransform()
    truth.SetRotation(*[math.radians(a) for a in (0.0, 2.0, -3.0)])
    truth.SetTranslation((-6.0, 4.0, 10.0))
    moving_ct = resample_to(patient.ct.replace(array=patient.ct.array.astype(np.float32)), patient.ct,
                            transform=truth.GetInverse(), default_value=-1000.0)
    activity = patient.true_activity(24 * 3600.0)
    spect_grid = moving_ct.grid  # the SPECT of this timepoint sits in the moving CT's frame
    moving_spect = resample_to(activity, spect_grid, mode="activity", transform=truth.GetInverse())
    paths = {"fixed": folder / "ct0.nrrd", "moving": folder / "ct1.nrrd", "spect": folder / "spect1.nrrd",
             "reference_spect": folder / "spect0.nrrd"}
    write_volume(patient.ct, paths["fixed"])
    write_volume(moving_ct, paths["moving"])
    write_volume(moving_spect.replace(array=moving_spect.array.astype(np.float32)), paths["spect"])
    reference = resample_to(activity, Grid((30, 25, 30), (12.0, 12.0, 12.0), (-174.0, -144.0, -174.0)),
                            mode="activity")
    write_volume(reference, paths["reference_spect"])
    return folder, paths, patient, truth, moving_spect


def test_register_writes_transform_spect_ct_and_report(case, capsys):
    folder, paths, patient, truth, moving_spect = case
    out = {"transform": folder / "t1.tfm", "spect": folder / "spect1_reg.nrrd", "ct": folder / "ct1_reg.nrrd",
           "report": folder / "report.json"}
    rc = main(["register", "--fixed", str(paths["fixed"]), "--moving", str(paths["moving"]),
               "--moving-spect", str(paths["spect"]), "--out-transform", str(out["transform"]),
               "--out-spect", str(out["spect"]), "--out-ct", str(out["ct"]), "--report", str(out["report"]),
               "--seed", "3"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "[register" in captured.err  # progress on stderr
    report = json.loads(captured.out)
    assert report == json.loads(out["report"].read_text())
    assert report["kind"] == "rigid" and report["options"]["seed"] == 3
    quality = report["quality"]
    assert quality["dice_body_after"] > quality["dice_body_before"]
    assert report["outputs"]["spect_grid"] == "moving SPECT voxel size, covering the fixed CT"

    transform = read_transform(out["transform"])
    error = displacement_stats(transform, body_mask_volume(patient.ct), reference=truth)
    assert error["max_mm"] <= 1.5  # 8 mm voxels

    spect = read_volume(out["spect"])
    assert spect.quantity == "activity_concentration" and spect.spacing == moving_spect.spacing
    total_in = moving_spect.array.sum() * moving_spect.voxel_volume_ml
    assert spect.array.sum() * spect.voxel_volume_ml == pytest.approx(total_in, rel=1e-5)  # float32 file

    ct = read_volume(out["ct"])
    assert ct.grid == patient.ct.grid and ct.quantity == "ct"


def test_register_onto_the_reference_spect_grid(case, capsys):
    folder, paths, _, _, moving_spect = case
    out_spect = folder / "spect1_on_spect0.nrrd"
    rc = main(["register", "--fixed", str(paths["fixed"]), "--moving", str(paths["moving"]),
               "--moving-spect", str(paths["spect"]), "--reference-spect", str(paths["reference_spect"]),
               "--out-transform", str(folder / "t.h5"), "--out-spect", str(out_spect)])
    assert rc == 0, capsys.readouterr().err
    spect = read_volume(out_spect)
    assert spect.grid == read_volume(paths["reference_spect"]).grid
    total_in = moving_spect.array.sum() * moving_spect.voxel_volume_ml
    assert spect.array.sum() * spect.voxel_volume_ml == pytest.approx(total_in, rel=1e-5)


def test_register_refuses_bad_input(case, capsys):
    folder, paths, _, _, _ = case
    rc = main(["register", "--fixed", str(paths["fixed"]), "--moving", str(paths["moving"]),
               "--out-transform", str(folder / "t.tfm"), "--out-spect", str(folder / "s.nrrd")])
    assert rc == 1 and "--moving-spect" in capsys.readouterr().err
    rc = main(["register", "--fixed", str(paths["spect"]), "--moving", str(paths["moving"]),
               "--out-transform", str(folder / "t.tfm")])
    assert rc == 1 and "--fixed needs a CT in HU" in capsys.readouterr().err
    rc = main(["register", "--fixed", str(paths["fixed"]), "--moving", str(paths["moving"]),
               "--out-transform", str(folder / "t.nrrd")])
    assert rc == 1 and ".tfm" in capsys.readouterr().err
