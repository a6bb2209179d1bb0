"""Monte Carlo sharded over 2 CPU processes with torchrun (issue #10): the merged result equals a single run of the
same total decays within the statistical uncertainty; only rank 0 writes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from VoxelDosimetryLib import Volume
from VoxelDosimetryLib.io import read_volume, write_volume
from VoxelDosimetryLib.montecarlo.sharding import SEED_STRIDE, Shard

TORCHRUN = Path(sys.executable).with_name("torchrun")


def test_shares_add_up_and_streams_differ():
    shards = [Shard(rank, 3) for rank in range(3)]
    assert sum(s.decays(1_000_001) for s in shards) == 1_000_001
    assert shards[0].decays(1_000_001) == 333_335 and shards[2].decays(1_000_001) == 333_333
    assert len({s.seed(7) for s in shards}) == 3 and shards[1].seed(7) == 7 + SEED_STRIDE
    assert not Shard().sharded and Shard().decays(10) == 10


def _inputs(tmp_path):
    ct = np.zeros((12, 12, 12), np.int16)
    ct[:, :, 8:] = 700  # bone beside soft tissue
    write_volume(Volume(ct, spacing=(4, 4, 4), quantity="ct"), tmp_path / "ct.nrrd")
    act = np.zeros((12, 12, 12))
    act[4:8, 4:8, 4:8] = 1e6
    write_volume(Volume(act, spacing=(4, 4, 4), quantity="activity_concentration"), tmp_path / "a.nrrd")


def _dose_args(tmp_path, name, histories):
    return ["dose", "--activity", str(tmp_path / "a.nrrd"), "--ct", str(tmp_path / "ct.nrrd"), "--method", "mc",
            "--histories", str(histories), "--device", "cpu", "--seed", "3", "--out", str(tmp_path / f"{name}.nrrd"),
            "--uncertainty", str(tmp_path / f"{name}_u.nrrd")]


@pytest.mark.skipif(not TORCHRUN.exists() and shutil.which("torchrun") is None, reason="torchrun not installed")
def test_two_ranks_merge_to_the_single_run_result(tmp_path):
    _inputs(tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    histories = 200_000
    start = time.perf_counter()
    single = subprocess.run([sys.executable, "-m", "VoxelDosimetryLib.cli.main", *_dose_args(tmp_path, "one", histories)],
                            capture_output=True, text=True, env=env, timeout=600)
    t_single = time.perf_counter() - start
    assert single.returncode == 0, single.stderr
    torchrun = str(TORCHRUN) if TORCHRUN.exists() else shutil.which("torchrun")
    start = time.perf_counter()
    sharded = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "VoxelDosimetryLib.cli.main",
                              *_dose_args(tmp_path, "two", histories)], capture_output=True, text=True, env=env,
                             timeout=600)
    t_sharded = time.perf_counter() - start
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    report = json.loads(sharded.stdout[sharded.stdout.index("{"):])  # rank 0 alone prints the report
    assert report["info"]["processes"] == 2 and report["info"]["histories"] == histories
    assert report["info"]["n_batches"] == 20  # 10 batches per rank, merged
    one, two = read_volume(tmp_path / "one.nrrd").array, read_volume(tmp_path / "two.nrrd").array
    u1, u2 = read_volume(tmp_path / "one_u.nrrd").array, read_volume(tmp_path / "two_u.nrrd").array
    hot = one > 0.05 * one.max()
    z = (two[hot] - one[hot]) / np.sqrt((u1[hot] * one[hot]) ** 2 + (u2[hot] * two[hot]) ** 2)
    assert np.mean(np.abs(z) < 3) > 0.97 and abs(float(np.mean(z))) < 0.3  # same estimator, independent streams
    assert float(two.sum()) == pytest.approx(float(one.sum()), rel=0.01)
    assert not np.array_equal(one, two)  # the ranks used their own random streams
    print(f"\n2-rank torchrun: {t_sharded:.1f} s (including start-up) vs one process {t_single:.1f} s")
    # a stop rule: the ranks check the merged sigma after every batch and stop together
    goal = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "VoxelDosimetryLib.cli.main",
                           *_dose_args(tmp_path, "goal", 10**7)[:-2], "--uncertainty-goal", "0.05"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert goal.returncode == 0, goal.stderr[-3000:]
    info = json.loads(goal.stdout[goal.stdout.index("{"):])["info"]
    assert info["stop_reason"] == "uncertainty_goal" and info["processes"] == 2
    assert info["goal_median_relative_uncertainty"] <= 0.05 and info["histories"] < 10**7
    assert info["histories"] % 2 == 0 and info["n_batches"] % 2 == 0  # equal batches on both ranks
