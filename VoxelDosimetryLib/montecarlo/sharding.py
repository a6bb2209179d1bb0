"""Monte Carlo runs split over processes or GPUs with torch.distributed (`torchrun`).

    torchrun --nproc-per-node 2 -m VoxelDosimetryLib.cli.main dose --activity A.nrrd --ct CT.nrrd --method mc \
        --histories 2e6 --out dose.nrrd

Every rank runs the same command on the same inputs. The engine splits the decays (rank r simulates its share,
rank 0 the remainder), gives each rank an independent random stream (seed + r · SEED_STRIDE) and, on CUDA, its
own GPU (LOCAL_RANK). After the transport the energy tallies and the batch sums of squares are added over the
ranks (all_reduce), so every rank holds the merged result: the same estimator as one run of all the batches of all
ranks. Only rank 0 writes files and prints. Without torchrun (no WORLD_SIZE > 1 in the environment) nothing
changes. Backend: gloo on CPU, nccl on CUDA.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

SEED_STRIDE = 1_000_003  # a prime: rank streams never share a seed for seeds below it


@dataclass(frozen=True)
class Shard:
    """This process's place in a sharded run: rank, world size, local rank (GPU index on its node)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def sharded(self) -> bool:
        return self.world > 1

    def decays(self, histories: int) -> int:
        """This rank's share of `histories` (rank 0 takes the remainder)."""
        share = histories // self.world
        return share + (histories - share * self.world if self.rank == 0 else 0)

    def seed(self, seed: int) -> int:
        return int(seed) + SEED_STRIDE * self.rank


def launched_world() -> int:
    """WORLD_SIZE set by torchrun (1 when not launched by it)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def is_main_process() -> bool:
    """True except on torchrun ranks other than 0 (those compute but do not write or print results)."""
    return int(os.environ.get("RANK", "0") or 0) == 0 or launched_world() == 1


def current_shard(device) -> Shard:
    """The Shard of this process, joining the process group (gloo on CPU, nccl on CUDA) on first use."""
    if launched_world() == 1:
        return Shard()
    import torch.distributed as dist

    if not dist.is_initialized():
        import atexit

        dist.init_process_group(backend="nccl" if getattr(device, "type", "cpu") == "cuda" else "gloo")
        # leave the group cleanly at exit: a rank that exits with the group alive can abort ("terminate called
        # without an active exception", seen once in CI with gloo)
        atexit.register(_leave_group)
    return Shard(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0") or 0))


def _leave_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        try:
            dist.barrier()  # every rank is done (rank 0 may still be writing) before the group goes
        finally:
            dist.destroy_process_group()


def rank_device(device):
    """On CUDA under torchrun: this rank's GPU (cuda:LOCAL_RANK) instead of cuda:0; otherwise `device`."""
    import torch

    if launched_world() == 1 or device.type != "cuda":
        return device
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    torch.cuda.set_device(local)
    return torch.device("cuda", local)


def all_sum(*tensors) -> None:
    """Add each tensor over the ranks in place (no-op in a single process)."""
    import torch.distributed as dist

    if launched_world() == 1 or not dist.is_initialized():
        return
    for tensor in tensors:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)


def all_max(value: float, device) -> float:
    """The largest of `value` over the ranks."""
    import torch
    import torch.distributed as dist

    if launched_world() == 1 or not dist.is_initialized():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())
