"""`voxeldosimetry kernel` and the kernel methods from `voxeldosimetry dose` (issue #9)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from VoxelDosimetryLib import Volume
from VoxelDosimetryLib.cli.main import main
from VoxelDosimetryLib.io import read_volume, write_volume
from VoxelDosimetryLib.kernels.kernel import read_kernel


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VOXELDOSIMETRY_CACHE_DIR", str(tmp_path / "cache"))


def _kernel_args(out, *extra):
    return ["kernel", "--nuclide", "Lu-177", "--voxel-mm", "6", "--medium", "water", "--size", "3",
            "--histories", "2000", "--component", "electron", "--device", "cpu", "--out", str(out), *extra]


def test_kernel_is_simulated_once_then_served_from_the_cache(tmp_path, capsys):
    assert main(_kernel_args(tmp_path / "k1.nrrd")) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["size_xyz"] == [3, 3, 3] and first["component"] == "electron"
    kernel = read_kernel(tmp_path / "k1.nrrd")
    assert kernel.metadata["histories"] == 2000
    assert "voxeldosimetry kernel" in kernel.metadata["command"]
    assert main(_kernel_args(tmp_path / "k2.nrrd")) == 0
    assert "cached" in capsys.readouterr().err
    np.testing.assert_array_equal(read_kernel(tmp_path / "k2.nrrd").values, kernel.values)


def test_kernel_resample_from_a_finer_kernel_conserves_energy(tmp_path, capsys):
    assert main(_kernel_args(tmp_path / "fine.nrrd")) == 0
    capsys.readouterr()
    assert main(["kernel", "--resample-from", str(tmp_path / "fine.nrrd"), "--voxel-mm", "18",
                 "--out", str(tmp_path / "coarse.nrrd")]) == 0
    fine, coarse = read_kernel(tmp_path / "fine.nrrd"), read_kernel(tmp_path / "coarse.nrrd")
    assert coarse.spacing_mm == (18.0, 18.0, 18.0)
    assert coarse.energy_per_decay_kev() == pytest.approx(fine.energy_per_decay_kev(), rel=1e-5)


def test_medium_list_names_the_media(capsys):
    assert main(["kernel", "--medium", "list"]) == 0
    out = capsys.readouterr().out
    assert "soft_tissue" in out and "Marrow_Bone07_1" in out


@pytest.mark.parametrize("args, message", [
    (["--voxel-mm", "4.8", "--medium", "water", "--size", "4", "--histories", "100"], "odd"),
    (["--voxel-mm", "0", "--medium", "water", "--size", "3", "--histories", "100"], "positive"),
    (["--voxel-mm", "4.8", "--medium", "water", "--size", "3", "--histories", "0"], "histories"),
    (["--voxel-mm", "4.8", "--medium", "water", "--size", "3001", "--histories", "100"], "GiB"),
    (["--voxel-mm", "4.8", "--medium", "kryptonite", "--size", "3", "--histories", "100"], "Unknown kernel medium"),
    (["--voxel-mm", "4.8", "--size", "3", "--histories", "100"], "--medium"),
    (["--medium", "water", "--size", "3"], "--voxel-mm"),
])
def test_bad_kernel_requests_fail_with_a_clear_message(tmp_path, capsys, args, message):
    try:
        status = main(["kernel", *args, "--out", str(tmp_path / "k.nrrd")])
    except SystemExit as exc:  # argparse refuses malformed numbers itself
        status = exc.code
    assert status != 0
    assert message in capsys.readouterr().err
    assert not (tmp_path / "k.nrrd").exists()


def test_dose_with_a_kernel_file_and_the_flags_from_the_registry(tmp_path, capsys):
    assert main(["kernel", "--voxel-mm", "6", "--medium", "soft_tissue", "--size", "3", "--histories", "2000",
                 "--component", "electron", "--device", "cpu", "--out", str(tmp_path / "k.nrrd")]) == 0
    ct = Volume(np.full((6, 6, 6), 40.0, np.float32), spacing=(6, 6, 6), quantity="ct", unit="HU")
    act = np.zeros((6, 6, 6), np.float32)
    act[3, 3, 3] = 1000.0
    write_volume(ct, tmp_path / "ct.nrrd")
    write_volume(Volume(act, spacing=(6, 6, 6), quantity="activity_concentration", unit="Bq/mL"),
                 tmp_path / "a.nrrd")
    capsys.readouterr()
    assert main(["dose", "--activity", str(tmp_path / "a.nrrd"), "--ct", str(tmp_path / "ct.nrrd"), "--method",
                 "svsv", "--kernel", str(tmp_path / "k.nrrd"), "--component", "electron",
                 "--out", str(tmp_path / "d.nrrd")]) == 0
    dose = read_volume(tmp_path / "d.nrrd")
    kernel = read_kernel(tmp_path / "k.nrrd")
    assert dose.array[3, 3, 3] == pytest.approx(1000.0 * 0.216 * kernel.centre_value, rel=1e-5)
    # a kernel option given to a method that has none
    assert main(["dose", "--activity", str(tmp_path / "a.nrrd"), "--ct", str(tmp_path / "ct.nrrd"), "--method",
                 "led", "--kernel", str(tmp_path / "k.nrrd"), "--out", str(tmp_path / "d2.nrrd")]) != 0
    assert "--kernel" in capsys.readouterr().err


def test_kernel_command_guards(tmp_path, capsys, monkeypatch):
    from VoxelDosimetryLib.kernels.cache import kernel_cache_dir

    assert main(_kernel_args(tmp_path / "fine.nrrd")) == 0
    # output inside the managed cache
    assert main(_kernel_args(kernel_cache_dir() / "mine.nrrd")) == 1
    assert "kernel cache" in capsys.readouterr().err
    # options that only apply to a simulation are refused with --resample-from
    assert main(["kernel", "--resample-from", str(tmp_path / "fine.nrrd"), "--voxel-mm", "18", "--histories", "10",
                 "--out", str(tmp_path / "c.nrrd")]) == 1
    assert "drop --histories" in capsys.readouterr().err
    # an untiled ratio is refused
    assert main(["kernel", "--resample-from", str(tmp_path / "fine.nrrd"), "--voxel-mm", "12",
                 "--out", str(tmp_path / "c.nrrd")]) == 1
    assert "do not tile" in capsys.readouterr().err
    # abbreviated flags are not guessed
    with pytest.raises(SystemExit):
        main(["kernel", "--voxel-mm", "6", "--med", "water", "--size", "3", "--out", str(tmp_path / "x.nrrd")])


def test_a_swapped_cache_file_is_not_trusted(tmp_path, capsys):
    from VoxelDosimetryLib.kernels.cache import kernel_cache_dir

    assert main(_kernel_args(tmp_path / "a.nrrd")) == 0
    cached = sorted(kernel_cache_dir().glob("*.nrrd"))
    assert len(cached) == 1
    other = tmp_path / "other.nrrd"
    assert main(["kernel", "--voxel-mm", "9", "--medium", "water", "--size", "3", "--histories", "2000",
                 "--component", "electron", "--device", "cpu", "--out", str(other)]) == 0
    cached[0].write_bytes(other.read_bytes())  # the right name, the wrong kernel
    capsys.readouterr()
    assert main(_kernel_args(tmp_path / "b.nrrd")) == 0
    assert "cached" not in capsys.readouterr().err  # simulated again
    assert read_kernel(tmp_path / "b.nrrd").spacing_mm == (6.0, 6.0, 6.0)


def test_a_missing_kernel_folder_is_an_error(tmp_path, capsys):
    ct = Volume(np.full((4, 4, 4), 40.0, np.float32), spacing=(4.8,) * 3, quantity="ct", unit="HU")
    act = Volume(np.ones((4, 4, 4), np.float32), spacing=(4.8,) * 3, quantity="activity_concentration", unit="Bq/mL")
    write_volume(ct, tmp_path / "ct.nrrd")
    write_volume(act, tmp_path / "a.nrrd")
    assert main(["dose", "--activity", str(tmp_path / "a.nrrd"), "--ct", str(tmp_path / "ct.nrrd"), "--method",
                 "svsv", "--kernel-folder", str(tmp_path / "nope"), "--out", str(tmp_path / "d.nrrd")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_photon_tail_is_made_into_the_cache_and_found_by_the_methods(tmp_path, capsys):
    """A nuclide without a shipped tail (I-131): the command makes it once, then the dose methods find it."""
    from VoxelDosimetryLib.kernels.photon_tail import find_photon_tail, read_photon_tail

    assert find_photon_tail("I-131") is None
    args = ["kernel", "--nuclide", "I-131", "--photon-tail", "--histories", "3000", "--device", "cpu",
            "--out", str(tmp_path / "tail.json")]
    assert main(args) == 0
    made = json.loads(capsys.readouterr().out)
    tail = read_photon_tail(tmp_path / "tail.json")
    assert tail.nuclide == "I-131" and made["reach_mm"] == pytest.approx(tail.reach_mm, rel=1e-6)
    assert tail.metadata["command"] == "voxeldosimetry kernel --nuclide I-131 --photon-tail --histories 3000 --seed 0"
    assert find_photon_tail("I-131").fingerprint() == tail.fingerprint()
    assert main(args[:-2]) == 0
    assert "cached" in capsys.readouterr().err


def test_photon_tail_refuses_kernel_flags(tmp_path, capsys):
    assert main(["kernel", "--photon-tail", "--voxel-mm", "4", "--size", "5"]) != 0
    err = capsys.readouterr().err
    assert "--photon-tail" in err and "--voxel-mm" in err and "--size" in err
