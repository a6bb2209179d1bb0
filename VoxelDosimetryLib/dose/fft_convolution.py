"""FFT convolution engine (torch) for the kernel dose methods: voxel S-values (SVSV, MVSV) and dose kernels (DVK).

Conventions: arrays are (z, y, x); a kernel is an odd-sized 3-D array (each axis odd, sizes may differ per axis)
centred on the source voxel, ``kernel[c]`` with ``c = shape // 2`` being the self-dose. The result is the
'same'-size *linear* (zero-padded, not circular) convolution

    out[i] = sum_j source[j] * kernel[i - j + c]

which equals ``scipy.signal.convolve(source, kernel, mode="same")`` and
``scipy.ndimage.convolve(source, kernel, mode="constant", cval=0)`` for odd kernels.

How it works: real FFTs (``torch.fft.rfftn`` / ``irfftn``) on a zero-padded grid whose sizes are "fast" (prime
factors 2, 3, 5, 7 only) and at least ``source + kernel // 2`` per axis, so nothing wraps into the 'same'-size
output (z-slabs of the overlap-add path use ``slab + kernel - 1``; a kernel
longer than ``2 * source - 1`` along an axis is first cropped to that length: the rest never reaches the output,
so ``stats["padded_shape"]`` can be smaller than ``padded_shape(source.shape, kernel.shape)``; the kernels of one
call share the grid of their largest extent per axis). The source
spectrum is computed once per call; each kernel costs one spectrum product and one inverse FFT. Kernel spectra
are cached (LRU, bounded in bytes) by kernel content (sha1 of bytes, shape, dtype), padded shape, device and
dtype, so repeated calls with the same kernels on the same grid skip the kernel FFT.

Memory: before allocating, a call estimates its working set. When that exceeds the memory budget, it tiles by
overlap-add along z: the source is cut into z-slabs, each slab is convolved (full linear convolution along z) and
the slab results are added into the output in float64, which gives the one-shot result up to round-off. On CUDA an
out-of-memory error frees the kernel cache and retries with thinner slabs, then falls back to the CPU
(``stats["fell_back_to_cpu"]``); the next call tries the GPU again.

Round-off can leave tiny negative values where the true result is 0; they are not clipped here (the dose value
policy of the caller handles them).
"""
from __future__ import annotations

import hashlib
import math
import os
import time
from collections import OrderedDict
from functools import lru_cache
from typing import Callable, Optional, Sequence

import numpy as np

from VoxelDosimetryLib.device import resolve_device
from VoxelDosimetryLib.errors import InputFormatError

__all__ = ["FFTConvolver", "fast_fft_size", "fft_convolve", "padded_shape"]

_DTYPES = ("float32", "float64")
_CUDA_MARGIN_BYTES = 512 * 2**20  # left free on the GPU for the allocator, cuFFT plans and other users
_CPU_RAM_FRACTION = 0.5  # default CPU budget: this fraction of the available RAM
_CACHE_FRACTION = 0.25  # default kernel-cache bound: this fraction of GPU memory / available RAM
_MIN_CACHE_BYTES = 64 * 2**20


# ----------------------------------------------------------------------------------------------------------------
# Sizes
# ----------------------------------------------------------------------------------------------------------------

@lru_cache(maxsize=4096)
def _fast_size(n: int) -> int:
    m = n
    while True:
        r = m
        for p in (2, 3, 5, 7):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def fast_fft_size(n: int) -> int:
    """Smallest m >= n whose prime factors are all 2, 3, 5 or 7 (a size FFT libraries handle fast); n >= 1."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputFormatError(f"fast_fft_size needs an integer >= 1; got {n!r}.")
    return _fast_size(int(n))


def padded_shape(source_shape, kernel_shape) -> tuple[int, int, int]:
    """Per axis the fast FFT size >= source + kernel//2: the smallest grid on which the 'same'-size part of the
    linear convolution does not wrap (its rows k//2 .. s+k//2-1 alias only rows beyond the full length s+k-1)."""
    s, k = tuple(int(v) for v in source_shape), tuple(int(v) for v in kernel_shape)
    if len(s) != 3 or len(k) != 3 or min(s + k) < 1:
        raise InputFormatError(f"padded_shape needs two 3-D shapes with sizes >= 1; got {s} and {k}.")
    return tuple(fast_fft_size(a + b // 2) for a, b in zip(s, k))


# ----------------------------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------------------------

def _check_real_3d(array, what: str) -> np.ndarray:
    arr = np.asarray(array)
    if arr.ndim != 3:
        raise InputFormatError(f"The {what} must be a 3-D (z, y, x) array; got {arr.ndim} dimension(s), "
                               f"shape {arr.shape}.")
    if arr.size == 0:
        raise InputFormatError(f"The {what} is empty (shape {arr.shape}).")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
            or arr.dtype == np.bool_):
        raise InputFormatError(f"The {what} must hold real numbers; got dtype {arr.dtype}.")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise InputFormatError(f"The {what} holds {bad} NaN or infinite value(s); replace them (e.g. with 0) "
                               f"before the convolution.")
    return arr


def _check_kernel(kernel, index: Optional[int] = None) -> np.ndarray:
    what = "kernel" if index is None else f"kernel {index}"
    arr = _check_real_3d(kernel, what)
    if any(n % 2 == 0 for n in arr.shape):
        raise InputFormatError(f"The {what} must have an odd size along every axis (centred on the source "
                               f"voxel); got shape {arr.shape}. Pad or crop it symmetrically to odd sizes.")
    return arr


def _check_kernels(kernels) -> list[np.ndarray]:
    if isinstance(kernels, np.ndarray):
        kernels = [kernels] if kernels.ndim == 3 else list(kernels)
    kernels = list(kernels)
    if not kernels:
        raise InputFormatError("At least one kernel is needed; got an empty sequence.")
    return [_check_kernel(k, i) for i, k in enumerate(kernels)]


def _is_oom(exc: BaseException) -> bool:
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):  # pragma: no cover - torch < 1.13
        pass
    if isinstance(exc, (RuntimeError, MemoryError)):
        text = str(exc).lower()
        return isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate memory" in text
    return False


class _Selection:
    """The output voxels of each kernel, grouped once per slab: for kernel i, `dst` (flat indices into the slab's
    float64 accumulator) and `src` (flat indices into the padded irfftn result). Keeping kernel i's values is then
    a gather + scatter over its own voxels only, O(voxels) over all kernels instead of O(voxels x kernels) for
    masked writes (measured 10x less time than torch.where per kernel on CPU)."""

    def __init__(self, selector: np.ndarray, n_kernels: int, padded, offset, device) -> None:
        import torch

        small = selector.astype(np.int16 if n_kernels < 2 ** 15 else np.int64, copy=False).reshape(-1)
        dst = np.argsort(small, kind="stable")  # radix sort for 16-bit keys: linear time
        self.present = np.bincount(small, minlength=n_kernels)
        self.starts = np.concatenate([[0], np.cumsum(self.present)])
        rows, ny, nx = selector.shape
        n0, cy, cx = offset
        # flat index in the padded result of every output voxel (broadcast sum of three ranges), then reordered
        py, px = int(padded[1]), int(padded[2])
        where = ((np.arange(n0, n0 + rows, dtype=np.int64)[:, None, None] * py
                  + np.arange(cy, cy + ny, dtype=np.int64)[None, :, None]) * px
                 + np.arange(cx, cx + nx, dtype=np.int64)[None, None, :])
        src = where.reshape(-1)[dst]
        del where
        self.dst = torch.from_numpy(dst.astype(np.int64, copy=False)).to(device)
        self.src = torch.from_numpy(src.astype(np.int64, copy=False)).to(device)

    def keep(self, acc, result, index: int) -> None:
        """acc takes result's values at kernel `index`'s voxels (float64), in place."""
        a, b = int(self.starts[index]), int(self.starts[index + 1])
        if b > a:
            acc.view(-1)[self.dst[a:b]] = result.reshape(-1)[self.src[a:b]].to(acc.dtype)


def _available_ram_bytes() -> int:
    """Available RAM: MemAvailable from /proc/meminfo, else os.sysconf, else 4 GiB."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return 4 * 2**30


# ----------------------------------------------------------------------------------------------------------------
# Engine
# ----------------------------------------------------------------------------------------------------------------

class FFTConvolver:
    """'Same'-size linear 3-D convolution with FFTs in torch, with a kernel-spectrum cache and z-tiling.

    device: "auto", "cpu", "cuda" or "cuda:N" (see VoxelDosimetryLib.device.resolve_device).
    dtype: "float32" (default) or "float64" (reference): precision of the FFTs. Results are accumulated and
        returned in float64 (convolve, convolve_select); convolve_many returns this dtype to bound memory.
    memory_budget_bytes: working memory one call may use on its device. None: on CUDA the free GPU memory
        (torch.cuda.mem_get_info plus torch's reserved-but-unused blocks) minus a margin and minus the room the
        kernel cache may still grow into; on CPU half the available RAM minus that room. When a call would need
        more it tiles along z (overlap-add); a small value forces tiling (used by the tests).
    cache_bytes: bound of the kernel-spectrum cache (bytes, LRU); None: a quarter of the GPU memory (CUDA) or of
        the available RAM (CPU), at least 64 MiB; 0 disables the cache.

    ``stats`` describes the last call: device, padded_shape, tiles, slab_depth, fft_seconds, seconds,
    kernels_cached (cache hits), kernels_computed (kernel FFTs done), kernels_used, kernels_skipped,
    cache_entries, cache_bytes, estimated_bytes, memory_budget_bytes, oom_retries, fell_back_to_cpu.
    """

    def __init__(self, device: str = "auto", dtype: str = "float32", memory_budget_bytes: int | None = None,
                 cache_bytes: int | None = None) -> None:
        import torch

        if dtype not in _DTYPES:
            raise InputFormatError(f"dtype must be one of {_DTYPES}; got {dtype!r}.")
        if memory_budget_bytes is not None and int(memory_budget_bytes) <= 0:
            raise InputFormatError(f"memory_budget_bytes must be positive; got {memory_budget_bytes!r}.")
        if cache_bytes is not None and int(cache_bytes) < 0:
            raise InputFormatError(f"cache_bytes must be >= 0; got {cache_bytes!r}.")
        self.device = resolve_device(device)
        self.dtype = dtype
        self.memory_budget_bytes = None if memory_budget_bytes is None else int(memory_budget_bytes)
        self._np_dtype = np.dtype(dtype)
        self._torch_dtype = torch.float32 if dtype == "float32" else torch.float64
        if cache_bytes is None:
            if self.device.type == "cuda":
                total = torch.cuda.get_device_properties(self.device).total_memory
            else:
                total = _available_ram_bytes()
            cache_bytes = max(_MIN_CACHE_BYTES, int(total * _CACHE_FRACTION))
        self.cache_max_bytes = int(cache_bytes)
        self._cache: OrderedDict = OrderedDict()  # key -> torch complex tensor (kernel spectrum)
        self._cache_nbytes = 0
        # Test hook: called as hook(device, slab_depth) before each slab is processed (may raise a fake OOM).
        self._fault_hook: Optional[Callable] = None
        self.stats: dict = {}

    # ---------------------------------------------------------------------------------------------------------
    # public API
    # ---------------------------------------------------------------------------------------------------------

    def convolve(self, source: np.ndarray, kernel: np.ndarray, out_dtype: str = "float64") -> np.ndarray:
        """'Same'-size linear convolution of `source` with one odd-sized `kernel`, (z, y, x) in `out_dtype`
        ("float64", or "float32", which skips a float64 copy of a float32 result: half the memory and time)."""
        src = _check_real_3d(source, "source")
        ker = _check_kernel(kernel)
        if out_dtype not in _DTYPES:
            raise InputFormatError(f"out_dtype must be one of {_DTYPES}; got {out_dtype!r}.")
        return self._execute("single", src, [ker], None, None, np.dtype(out_dtype))

    def convolve_many(self, source: np.ndarray, kernels: Sequence[np.ndarray]) -> np.ndarray:
        """(len(kernels), z, y, x) convolutions of `source` with each kernel, one source FFT for all.

        The result has the engine's dtype (float32 by default: k full volumes in float64 would double the memory;
        use dtype="float64" for a float64 result). Slab contributions (tiling) are added in that dtype.
        """
        src = _check_real_3d(source, "source")
        kers = _check_kernels(kernels)
        return self._execute("many", src, kers, None, None)

    def convolve_select(self, source: np.ndarray, kernels: Sequence[np.ndarray], selector: np.ndarray,
                        scale: np.ndarray | None = None) -> np.ndarray:
        """out[v] = (source ⊛ kernels[selector[v]])[v] * scale[v] (scale optional); float64 (z, y, x).

        The multiple-voxel-S-value scheme: one forward FFT of the source, per kernel one spectrum product and one
        inverse FFT whose result is kept only where selector == that kernel's index, accumulated in float64.
        Kernels whose index never occurs in `selector` are skipped. selector: integer array of the source's shape
        with values in 0..len(kernels)-1; scale: real array of the source's shape.
        """
        src = _check_real_3d(source, "source")
        kers = _check_kernels(kernels)
        sel = np.asarray(selector)
        if sel.shape != src.shape:
            raise InputFormatError(f"The selector shape {sel.shape} differs from the source shape {src.shape}; "
                                   "it must name one kernel per source voxel.")
        if not (np.issubdtype(sel.dtype, np.integer) or sel.dtype == np.bool_):
            raise InputFormatError(f"The selector must be an integer array (kernel indices); got dtype "
                                   f"{sel.dtype}. Convert it with .astype(int) after checking its values.")
        lo, hi = int(sel.min()), int(sel.max())
        if lo < 0 or hi >= len(kers):
            raise InputFormatError(f"Selector values must lie in 0..{len(kers) - 1} (one per kernel); found "
                                   f"values from {lo} to {hi}.")
        scl = None
        if scale is not None:
            scl = np.asarray(scale)
            if scl.shape != src.shape:
                raise InputFormatError(f"The scale shape {scl.shape} differs from the source shape {src.shape}.")
            scl = _check_real_3d(scl, "scale")
        return self._execute("select", src, kers, sel, scl)

    def clear_cache(self) -> None:
        """Drop every cached kernel spectrum (and give the GPU memory back to the driver)."""
        self._cache.clear()
        self._cache_nbytes = 0
        if self.device.type == "cuda":
            self._empty_cuda_cache()

    # ---------------------------------------------------------------------------------------------------------
    # planning
    # ---------------------------------------------------------------------------------------------------------

    def working_set_bytes(self, padded: Sequence[int], region_shape: Sequence[int], mode: str,
                          device_type: str = "cpu") -> int:
        """Estimated peak bytes of one slab on its device: padded source/product/result arrays, spectra, FFT
        workspace and the slab's output region (float64 accumulator, selector, scale). The planner adds the
        returned array when the device is the CPU."""
        real = 4 if self.dtype == "float32" else 8
        cplx = 2 * real
        n_real = int(np.prod(padded))
        n_half = int(padded[0]) * int(padded[1]) * (int(padded[2]) // 2 + 1)
        n_region = int(np.prod(region_shape))
        total = 2 * n_real * real  # padded source copy inside rfftn, irfftn result buffer
        total += 4 * n_half * cplx  # source spectrum, kernel spectrum, product buffer, FFT workspace
        total += n_region * (real + 8 + 8)  # cropped contiguous result, float64 accumulator and its update
        if mode == "select":
            total += n_region * (4 + 8 + 8 + 24 + 8)  # selector, scale, dst/src indices, index temporaries, gather
        return int(total * 1.1) + (64 * 2**20 if device_type == "cuda" else 0)

    def _budget(self, device, spectrum_bytes: int, n_new: int) -> int:
        if self.memory_budget_bytes is not None:
            return self.memory_budget_bytes
        room = 0
        if self.cache_max_bytes > 0 and spectrum_bytes <= self.cache_max_bytes:
            room = max(0, min(self.cache_max_bytes - self._cache_nbytes, n_new * spectrum_bytes))
        if device.type == "cuda":
            import torch

            free, _total = torch.cuda.mem_get_info(device)
            unused_reserved = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
            return max(1, int(free + unused_reserved - _CUDA_MARGIN_BYTES - room))
        return max(1, int(_available_ram_bytes() * _CPU_RAM_FRACTION - room))

    def _plan(self, source_shape, kshape, mode, n_out, device, max_depth: Optional[int] = None, n_new: int = 0):
        """Slab depth along z and padded shape: one slab when the working set fits the budget, else the deepest
        slabs that fit (at least 1 voxel), balanced so that all slabs share one padded shape."""
        Z, Y, X = source_shape
        kz = kshape[0]
        # 'same' output: a period of s + k//2 keeps the wanted rows free of wrap-around (rows c..s+c-1 of the
        # full convolution; their aliases lie beyond its last row s+k-2), 1.2-1.4x smaller than s + k - 1
        py, px = fast_fft_size(Y + kshape[1] // 2), fast_fft_size(X + kshape[2] // 2)
        out_item = 8 if (mode != "many" or self.dtype == "float64") else 4
        out_bytes = n_out * Z * Y * X * out_item  # the returned array (host memory)

        def need(depth: int) -> tuple[int, int]:
            # one slab: as y and x; z-slabs (overlap-add) need their full linear extent
            pz = fast_fft_size(depth + kz // 2) if depth >= Z else fast_fft_size(depth + kz - 1)
            region = (min(depth + kz - 1, Z), Y, X)  # output rows one slab touches
            est = self.working_set_bytes((pz, py, px), region, mode, device.type)
            return pz, est + (out_bytes if device.type == "cpu" else 0)

        depth = Z if max_depth is None else max(1, min(Z, max_depth))
        spectrum_bytes = 2 * self._np_dtype.itemsize * fast_fft_size(depth + kz - 1) * py * (px // 2 + 1)
        budget = self._budget(device, spectrum_bytes, n_new)
        if need(depth)[1] > budget and depth > 1:
            best, lo, hi = 1, 1, depth - 1  # deepest slab that fits (need() is non-decreasing in depth)
            while lo <= hi:
                mid = (lo + hi) // 2
                if need(mid)[1] <= budget:
                    best, lo = mid, mid + 1
                else:
                    hi = mid - 1
            depth = best
        n_slabs = math.ceil(Z / depth)
        depth = math.ceil(Z / n_slabs)  # balance the slabs
        pz, est = need(depth)
        return depth, n_slabs, (pz, py, px), est, budget

    # ---------------------------------------------------------------------------------------------------------
    # execution
    # ---------------------------------------------------------------------------------------------------------

    def _execute(self, mode, source, kernels, selector, scale, out_dtype=np.dtype(np.float64)):
        import torch

        t_start = time.perf_counter()
        shape = tuple(source.shape)
        # kernel entries farther than (source size - 1) from the centre never reach the output: crop them; then
        # every kernel is embedded (centred, zero-padded) in the common shape so all share one grid and crop
        kshapes = [tuple(min(k, 2 * s - 1) for s, k in zip(shape, ker.shape)) for ker in kernels]
        common = tuple(max(k[a] for k in kshapes) for a in range(3))
        if mode == "select":
            counts = np.bincount(selector.ravel().astype(np.int64, copy=False), minlength=len(kernels))
            used = [i for i in range(len(kernels)) if counts[i] > 0]
        else:
            used = list(range(len(kernels)))
        digests = [self._digest(k) for k in kernels]
        n_out = len(kernels) if mode == "many" else 1
        self.stats = {"device": str(self.device), "dtype": self.dtype, "mode": mode, "fell_back_to_cpu": False,
                      "oom_retries": 0, "kernels_used": len(used), "kernels_skipped": len(kernels) - len(used)}
        device = self.device
        max_depth: Optional[int] = None
        while True:
            n_new = sum(1 for i in used if not self._cached_any(digests[i], kshapes[i], common, device))
            depth, n_slabs, padded, est, budget = self._plan(shape, common, mode, n_out, device, max_depth, n_new)
            self.stats.update({"device": str(device), "padded_shape": padded, "tiles": n_slabs,
                               "slab_depth": depth, "estimated_bytes": est, "memory_budget_bytes": budget,
                               "fft_seconds": 0.0, "kernels_cached": 0, "kernels_computed": 0})
            out_of_memory = False
            try:
                out = self._run(mode, source, kernels, kshapes, common, digests, used, selector, scale, device,
                                depth, n_slabs, padded, out_dtype)
            except Exception as exc:  # noqa: BLE001 - only out-of-memory errors are handled, others re-raised
                if not _is_oom(exc) or (depth <= 1 and device.type != "cuda"):
                    raise
                out_of_memory = True
            if not out_of_memory:
                break
            # Outside the except block: the traceback (and the tensors its frames hold) is gone, so the cache
            # and the CUDA allocator can really give the memory back.
            self.stats["oom_retries"] += 1
            self.clear_cache()
            if device.type == "cuda":
                self._empty_cuda_cache()
            if depth > 1:  # retry with thinner slabs
                max_depth = max(1, depth // 2)
            else:  # one-voxel slabs still fail on the GPU: finish on the CPU
                device = torch.device("cpu")
                self.stats["fell_back_to_cpu"] = True
                max_depth = None
        self.stats.update({"seconds": time.perf_counter() - t_start, "cache_entries": len(self._cache),
                           "cache_bytes": self._cache_nbytes})
        return out

    def _run(self, mode, source, kernels, kshapes, common, digests, used, selector, scale, device, depth,
             n_slabs, padded, out_dtype=np.dtype(np.float64)):
        import torch

        Z, Y, X = source.shape
        cz, cy, cx = (k // 2 for k in common)
        kz = common[0]
        tdt = self._torch_dtype
        cdt = torch.complex64 if tdt == torch.float32 else torch.complex128
        dims = (0, 1, 2)
        if self._fault_hook is not None:
            self._fault_hook(device, depth)
        product = torch.empty((padded[0], padded[1], padded[2] // 2 + 1), dtype=cdt, device=device)
        result = torch.empty(padded, dtype=tdt, device=device)
        if mode == "many":
            out = np.empty((len(kernels), Z, Y, X), self._np_dtype) if n_slabs == 1 else \
                np.zeros((len(kernels), Z, Y, X), self._np_dtype)
        else:
            out_dtype = out_dtype if mode == "single" else np.dtype(np.float64)
            out = None if n_slabs == 1 else np.zeros((Z, Y, X), out_dtype)
            out_torch = torch.float32 if out_dtype == np.float32 else torch.float64
        for s in range(n_slabs):
            z0, z1 = s * depth, min(Z, (s + 1) * depth)
            if z0 >= z1:
                break
            if self._fault_hook is not None and s > 0:
                self._fault_hook(device, depth)
            # rows n of the slab's full convolution that land in the output, at z = z0 + n - cz
            n0, n1 = max(0, cz - z0), min(z1 - z0 + kz - 1, Z - z0 + cz)
            rows = slice(z0 + n0 - cz, z0 + n1 - cz)
            slab = self._to_device(source[z0:z1], device)
            spectrum = self._timed(device, torch.fft.rfftn, slab, s=padded, dim=dims)
            del slab
            if mode == "select":
                selection = _Selection(np.asarray(selector[rows]), len(kernels), padded, (n0, cy, cx), device)
                present = selection.present
                acc = torch.zeros((n1 - n0, Y, X), dtype=torch.float64, device=device)
            for i in used:
                if mode == "select" and present[i] == 0:
                    continue
                kspec = self._kernel_spectrum(kernels[i], kshapes[i], common, digests[i], padded, device)
                torch.mul(spectrum, kspec, out=product)
                del kspec
                self._timed(device, torch.fft.irfftn, product, s=padded, dim=dims, out=result)
                if mode == "select":
                    selection.keep(acc, result, i)
                    continue
                part = result[n0:n1, cy:cy + Y, cx:cx + X]
                if mode == "single":  # a dense copy: never a view that keeps the padded grid alive
                    out = self._accumulate(out, rows, part.to(out_torch).contiguous(), n_slabs)
                else:  # many: the engine's dtype, slab rows added in that dtype
                    host = part.cpu().numpy()
                    if n_slabs == 1:
                        out[i] = host
                    else:
                        out[i, rows] += host
                del part
            del spectrum
            if mode == "select":
                if scale is not None:
                    acc.mul_(self._to_device(scale[rows], device, np.float64))
                out = self._accumulate(out, rows, acc, n_slabs)
                del acc, selection
        return out

    @staticmethod
    def _accumulate(out, rows: slice, values, n_slabs: int):
        """One slab's float64 rows into the output (the tensor's own memory when there is a single slab)."""
        host = values.detach().cpu().numpy()
        if n_slabs == 1:
            return host
        out[rows] += host
        return out

    def _to_device(self, array: np.ndarray, device, dtype=None):
        """Tensor on `device` (the compute dtype unless `dtype` is given); never a writable view of an input."""
        import torch

        arr = np.ascontiguousarray(array, dtype=self._np_dtype if dtype is None else dtype)
        if not arr.flags.writeable:
            arr = arr.copy()
        return torch.from_numpy(arr).to(device)

    def _timed(self, device, fn, *args, **kwargs):
        """fn(*args, **kwargs), its time added to stats["fft_seconds"] (synchronised on CUDA)."""
        import torch

        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        value = fn(*args, **kwargs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.stats["fft_seconds"] += time.perf_counter() - t0
        return value

    @staticmethod
    def _empty_cuda_cache() -> None:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()

    # ---------------------------------------------------------------------------------------------------------
    # kernel spectra and their cache
    # ---------------------------------------------------------------------------------------------------------

    @staticmethod
    def _digest(kernel: np.ndarray) -> str:
        """Kernel identity: sha1 of its dtype, shape and bytes."""
        h = hashlib.sha1()
        h.update(kernel.dtype.str.encode())
        h.update(repr(tuple(kernel.shape)).encode())
        h.update(np.ascontiguousarray(kernel).tobytes())
        return h.hexdigest()

    def _cached_any(self, digest, kshape, common, device) -> bool:
        return any(k[0] == digest and k[1] == tuple(kshape) and k[2] == tuple(common) and k[4] == str(device)
                   for k in self._cache)

    def _kernel_spectrum(self, kernel, kshape, common, digest, padded, device):
        """rfftn of the kernel (cropped to kshape, centred in the common shape, at the grid origin) on `padded`."""
        import torch

        key = (digest, tuple(kshape), tuple(common), tuple(padded), str(device), self.dtype)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            self.stats["kernels_cached"] += 1
            return hit
        crop = tuple(slice((n - k) // 2, (n - k) // 2 + k) for n, k in zip(kernel.shape, kshape))
        ker = self._to_device(kernel[crop], device)
        if tuple(kshape) != tuple(common):
            pads = []
            for n, k in zip(reversed(common), reversed(kshape)):  # F.pad wants the last axis first
                pads += [(n - k) // 2, (n - k) // 2]
            ker = torch.nn.functional.pad(ker, pads)
        spec = self._timed(device, torch.fft.rfftn, ker, s=padded, dim=(0, 1, 2))
        del ker
        self.stats["kernels_computed"] += 1
        nbytes = spec.numel() * spec.element_size()
        if 0 < nbytes <= self.cache_max_bytes:
            while self._cache and self._cache_nbytes + nbytes > self.cache_max_bytes:
                _old_key, old = self._cache.popitem(last=False)
                self._cache_nbytes -= old.numel() * old.element_size()
            self._cache[key] = spec
            self._cache_nbytes += nbytes
        return spec


def fft_convolve(source, kernel, device: str = "auto") -> np.ndarray:
    """'Same'-size linear convolution of `source` with one odd-sized `kernel` (float64), a one-off FFTConvolver."""
    return FFTConvolver(device=device).convolve(source, kernel)
