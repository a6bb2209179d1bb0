"""Compute-device selection shared by every torch component: "auto", "cpu", "cuda" or "cuda:N"."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from VoxelDosimetryLib.errors import VoxelDosimetryError


class DeviceError(VoxelDosimetryError, ValueError):
    """The requested compute device does not exist on this machine."""


def resolve_device(device: str = "auto"):
    """torch.device for `device`; "auto" picks CUDA when available, else CPU."""
    import torch

    name = (device or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"Device {device!r} was requested but CUDA is not available here "
                              f"(torch {torch.__version__}). Use --device cpu or --device auto.")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"{device!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s).")
        return dev
    raise DeviceError(f"Unknown device {device!r}; use auto, cpu, cuda or cuda:N.")


def describe_devices() -> dict:
    """Torch version and the devices it can use (for `voxeldosimetry info`)."""
    import torch

    info = {"torch": torch.__version__, "cuda_available": bool(torch.cuda.is_available()),
            "auto": str(resolve_device("auto")), "cpu_threads": torch.get_num_threads(), "cuda_devices": []}
    if info["cuda_available"]:
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            info["cuda_devices"].append({"index": i, "name": props.name,
                                         "memory_gib": round(props.total_memory / 2**30, 1)})
    return info


@contextmanager
def torch_threads(threads: int | None, device=None) -> Iterator[None]:
    """Run the block with `threads` torch intra-op threads on the CPU (None or a CUDA device: unchanged), then
    restore the previous count. The setting is process-wide, so it is restored even when the block fails."""
    import torch

    if threads is None or (device is not None and getattr(device, "type", str(device)) != "cpu"):
        yield
        return
    if int(threads) < 1:
        raise VoxelDosimetryError(f"The thread count must be >= 1; got {threads}.")
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
