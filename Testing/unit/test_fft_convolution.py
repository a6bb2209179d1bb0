"""FFT convolution engine: equality with scipy's direct convolution, selection (MVSV), tiling, cache, OOM retry."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.ndimage
import scipy.signal
import torch

from VoxelDosimetryLib.dose.fft_convolution import FFTConvolver, fast_fft_size, fft_convolve, padded_shape
from VoxelDosimetryLib.errors import InputFormatError


def direct(source: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Reference: 'same'-size linear convolution computed directly in float64."""
    return scipy.signal.convolve(source.astype(np.float64), kernel.astype(np.float64), mode="same",
                                 method="direct")


def rel_err(result: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(result - reference).max() / np.abs(reference).max())


def fake_oom(message: str = "CUDA out of memory. Tried to allocate 2.00 GiB (fake)"):
    return torch.cuda.OutOfMemoryError(message)


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


# ----------------------------------------------------------------------------------------------------------------
# sizes
# ----------------------------------------------------------------------------------------------------------------

def _is_smooth(m: int) -> bool:
    for p in (2, 3, 5, 7):
        while m % p == 0:
            m //= p
    return m == 1


def test_fast_fft_size_is_the_smallest_7_smooth_size_at_least_n():
    smooth = [m for m in range(1, 1300) if _is_smooth(m)]
    for n in range(1, 1200):
        m = fast_fft_size(n)
        assert m == min(v for v in smooth if v >= n), n
    assert [fast_fft_size(n) for n in (1, 11, 13, 17, 114, 178, 562, 610)] == [1, 12, 14, 18, 120, 180, 567, 625]


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8"])
def test_fast_fft_size_rejects_non_positive_or_non_integers(bad):
    with pytest.raises(InputFormatError):
        fast_fft_size(bad)


def test_padded_shape_is_fast_and_just_large_enough_for_the_same_size_output():
    assert padded_shape((64, 64, 64), (51, 51, 51)) == (90, 90, 90)  # 64 + 25 -> 90 = 2·3²·5
    assert padded_shape((130, 512, 512), (99, 99, 33)) == (180, 567, 540)
    assert padded_shape((1, 1, 1), (1, 1, 1)) == (1, 1, 1)
    with pytest.raises(InputFormatError):
        padded_shape((4, 4), (3, 3, 3))


# ----------------------------------------------------------------------------------------------------------------
# equality with the direct convolution
# ----------------------------------------------------------------------------------------------------------------

SHAPES = [  # (source, kernel): odd kernel sizes differing per axis, kernels larger than the source in some axis
    ((12, 15, 17), (3, 5, 7)),
    ((9, 20, 14), (9, 9, 9)),
    ((7, 13, 11), (15, 3, 5)),  # kernel longer than the source along z (and cropped: 15 > 2*7-1)
    ((10, 6, 16), (5, 11, 1)),  # longer along y, 1 along x
    ((5, 5, 5), (11, 13, 9)),  # longer along every axis
    ((1, 8, 9), (3, 3, 3)),
]


@pytest.mark.parametrize("source_shape,kernel_shape", SHAPES)
def test_convolve_equals_direct_convolution_float32_and_float64(rng, source_shape, kernel_shape):
    source = rng.random(source_shape) * 1e3
    kernel = rng.random(kernel_shape)
    ref = direct(source, kernel)
    out32 = FFTConvolver(device="cpu").convolve(source, kernel)
    out64 = FFTConvolver(device="cpu", dtype="float64").convolve(source, kernel)
    assert out32.shape == out64.shape == source_shape
    assert out32.dtype == out64.dtype == np.float64
    assert rel_err(out32, ref) < 1e-5
    assert rel_err(out64, ref) < 1e-10


def test_reference_conventions_scipy_signal_same_equals_ndimage_constant(rng):
    """The convention in the module docstring: out[i] = sum_j s[j] k[i - j + c] (not a correlation)."""
    source, kernel = rng.random((8, 9, 10)), rng.random((3, 5, 7))
    ref = direct(source, kernel)
    np.testing.assert_allclose(scipy.ndimage.convolve(source, kernel, mode="constant", cval=0.0), ref,
                               rtol=1e-12, atol=1e-12)
    i, c = (4, 4, 5), (1, 2, 3)
    manual = sum(source[j] * kernel[tuple(a - b + cc for a, b, cc in zip(i, j, c))]
                 for j in np.ndindex(source.shape)
                 if all(0 <= a - b + cc < k for a, b, cc, k in zip(i, j, c, kernel.shape)))
    assert manual == pytest.approx(ref[i], rel=1e-12)
    assert FFTConvolver(device="cpu", dtype="float64").convolve(source, kernel)[i] == pytest.approx(manual, rel=1e-10)


def test_delta_source_reproduces_the_kernel(rng):
    kernel = rng.random((7, 5, 9))
    source = np.zeros((15, 16, 17))
    source[7, 8, 8] = 1.0
    out = FFTConvolver(device="cpu", dtype="float64").convolve(source, kernel)
    np.testing.assert_allclose(out[4:11, 6:11, 4:13], kernel, atol=1e-12)
    outside = out.copy()
    outside[4:11, 6:11, 4:13] = 0.0
    assert np.abs(outside).max() < 1e-12
    # a delta in a corner gives the kernel cut at the border, nothing wraps around to the other side
    corner = np.zeros((15, 16, 17))
    corner[0, 0, 0] = 1.0
    out = FFTConvolver(device="cpu", dtype="float64").convolve(corner, kernel)
    np.testing.assert_allclose(out[:4, :3, :5], kernel[3:, 2:, 4:], atol=1e-12)
    assert np.abs(out[4:]).max() < 1e-12 and np.abs(out[:, 3:]).max() < 1e-12 and np.abs(out[:, :, 5:]).max() < 1e-12


def test_fft_convolve_convenience_and_integer_or_strided_inputs(rng):
    source = rng.integers(0, 50, (10, 12, 8))
    kernel = rng.random((5, 5, 3))
    ref = direct(source, kernel)
    assert rel_err(fft_convolve(source, kernel, device="cpu"), ref) < 1e-5
    strided = np.asfortranarray(rng.random((8, 11, 12)))[:, ::-1, :]
    assert rel_err(fft_convolve(strided, kernel, device="cpu"), direct(strided, kernel)) < 1e-5


# ----------------------------------------------------------------------------------------------------------------
# many kernels, selection (MVSV)
# ----------------------------------------------------------------------------------------------------------------

def _kernel_set(rng):
    return [rng.random((3, 3, 3)), rng.random((7, 5, 9)), rng.random((1, 1, 1)), rng.random((5, 9, 3)),
            rng.random((11, 3, 7))]


def test_convolve_many_equals_each_direct_convolution(rng):
    source = rng.random((10, 14, 12))
    kernels = _kernel_set(rng)
    out = FFTConvolver(device="cpu").convolve_many(source, kernels)
    assert out.shape == (len(kernels),) + source.shape and out.dtype == np.float32
    for k, kernel in enumerate(kernels):
        assert rel_err(out[k], direct(source, kernel)) < 1e-5
    out64 = FFTConvolver(device="cpu", dtype="float64").convolve_many(source, kernels)
    assert out64.dtype == np.float64
    assert max(rel_err(out64[k], direct(source, kernel)) for k, kernel in enumerate(kernels)) < 1e-10


def test_convolve_select_equals_the_masked_sum_of_direct_convolutions(rng):
    source = rng.random((11, 13, 12))
    kernels = _kernel_set(rng)
    selector = rng.choice([0, 1, 3, 4], size=source.shape)  # kernel 2 is never selected
    scale = rng.random(source.shape) + 0.5
    refs = [direct(source, k) for k in kernels]
    expected = sum(np.where(selector == k, refs[k], 0.0) for k in range(len(kernels)))
    engine = FFTConvolver(device="cpu", dtype="float64")
    out = engine.convolve_select(source, kernels, selector)
    assert out.dtype == np.float64 and rel_err(out, expected) < 1e-10
    assert engine.stats["kernels_used"] == 4 and engine.stats["kernels_skipped"] == 1
    assert engine.stats["kernels_computed"] == 4
    scaled = engine.convolve_select(source, kernels, selector, scale=scale)
    assert rel_err(scaled, expected * scale) < 1e-10
    out32 = FFTConvolver(device="cpu").convolve_select(source, kernels, selector, scale=scale)
    assert rel_err(out32, expected * scale) < 1e-5


def test_convolve_select_accumulates_and_scales_in_float64(rng):
    """The scale is applied in float64: factors beyond float32's range (3.4e38) and below its resolution survive."""
    source = rng.random((6, 7, 8))
    kernels = [rng.random((3, 3, 3)), rng.random((5, 5, 5))]
    selector = (np.arange(source.size).reshape(source.shape) % 2).astype(np.int16)
    scale = np.full(source.shape, 1e40)
    scale[::2] = 1.0 + 1e-12
    expected = np.where(selector == 0, direct(source, kernels[0]), direct(source, kernels[1])) * scale
    for budget in (None, 30_000):  # one shot and z-tiles
        engine = FFTConvolver(device="cpu", dtype="float64", memory_budget_bytes=budget)
        out = engine.convolve_select(source, kernels, selector, scale=scale)
        assert out.dtype == np.float64 and np.isfinite(out).all()
        assert rel_err(out[1::2], expected[1::2]) < 1e-10  # the 1e40 rows
        assert rel_err(out[::2], expected[::2]) < 1e-10
    assert engine.stats["tiles"] > 1
    # float32 FFTs, float64 scaling: still finite and within float32 round-off
    out32 = FFTConvolver(device="cpu").convolve_select(source, kernels, selector, scale=scale)
    assert np.isfinite(out32).all() and rel_err(out32[1::2], expected[1::2]) < 1e-5


def test_convolve_can_return_float32_without_a_float64_copy(rng):
    """out_dtype="float32": the same values (float32 engine) as the default float64 result, one shot and tiled,
    contiguous and independent of the engine's buffers."""
    source = rng.random((23, 12, 10)).astype(np.float32)
    kernel = rng.random((7, 5, 3))
    for engine in (FFTConvolver(device="cpu"), FFTConvolver(device="cpu", memory_budget_bytes=60_000)):
        wide = engine.convolve(source, kernel)
        narrow = engine.convolve(source, kernel, out_dtype="float32")
        assert wide.dtype == np.float64 and narrow.dtype == np.float32 and narrow.flags.c_contiguous
        np.testing.assert_allclose(narrow, wide, rtol=1e-6)  # tiled: slabs added in float32
        again = engine.convolve(source, kernel, out_dtype="float32")
        np.testing.assert_array_equal(again, narrow)
    with pytest.raises(InputFormatError, match="out_dtype"):
        FFTConvolver(device="cpu").convolve(source, kernel, out_dtype="float16")


# ----------------------------------------------------------------------------------------------------------------
# ----------------------------------------------------------------------------------------------------------------
# tiling, cache, out-of-memory handling
# ----------------------------------------------------------------------------------------------------------------

def test_z_tiling_gives_the_one_shot_result(rng):
    source = rng.random((23, 12, 10))
    kernels = [rng.random((7, 5, 3)), rng.random((3, 3, 9)), rng.random((1, 3, 1))]
    selector = rng.integers(0, 3, source.shape)
    one = FFTConvolver(device="cpu", dtype="float64")
    tiled = FFTConvolver(device="cpu", dtype="float64", memory_budget_bytes=60_000)
    a, b = one.convolve(source, kernels[0]), tiled.convolve(source, kernels[0])
    assert one.stats["tiles"] == 1 and tiled.stats["tiles"] > 2
    assert tiled.stats["slab_depth"] < source.shape[0]
    assert tiled.stats["padded_shape"][0] < one.stats["padded_shape"][0]
    assert np.abs(a - b).max() <= 1e-12 * np.abs(a).max()
    np.testing.assert_allclose(tiled.convolve_many(source, kernels), one.convolve_many(source, kernels),
                               rtol=0, atol=1e-12 * np.abs(a).max())
    assert tiled.stats["tiles"] > 2
    np.testing.assert_allclose(tiled.convolve_select(source, kernels, selector),
                               one.convolve_select(source, kernels, selector), rtol=0, atol=1e-12 * np.abs(a).max())
    assert tiled.stats["tiles"] > 2
    # float32 engine, tiled: same tolerance against the reference as one shot
    tiled32 = FFTConvolver(device="cpu", memory_budget_bytes=30_000)
    assert rel_err(tiled32.convolve(source, kernels[0]), direct(source, kernels[0])) < 1e-5
    assert tiled32.stats["tiles"] > 2


def test_budget_below_one_slab_still_runs_with_one_voxel_slabs(rng):
    source, kernel = rng.random((5, 6, 7)), rng.random((3, 3, 3))
    engine = FFTConvolver(device="cpu", memory_budget_bytes=1)
    out = engine.convolve(source, kernel)
    assert engine.stats["tiles"] == 5 and engine.stats["slab_depth"] == 1
    assert rel_err(out, direct(source, kernel)) < 1e-5


def test_kernel_spectra_are_cached_between_calls(rng):
    source = rng.random((10, 11, 12))
    kernels = [rng.random((3, 5, 3)), rng.random((5, 5, 5))]
    selector = rng.integers(0, 2, source.shape)
    engine = FFTConvolver(device="cpu")
    engine.convolve_select(source, kernels, selector)
    assert engine.stats["kernels_computed"] == 2 and engine.stats["kernels_cached"] == 0
    assert engine.stats["cache_entries"] == 2
    other = rng.random(source.shape)  # another source on the same grid reuses the kernel spectra
    out = engine.convolve_select(other, [k.copy() for k in kernels], selector)  # same content, other objects
    assert engine.stats["kernels_computed"] == 0 and engine.stats["kernels_cached"] == 2
    expected = np.where(selector == 0, direct(other, kernels[0]), direct(other, kernels[1]))
    assert rel_err(out, expected) < 1e-5
    changed = kernels[0].copy()
    changed[1, 2, 1] += 1.0  # different content: not taken from the cache
    engine.convolve(source, changed)
    assert engine.stats["kernels_computed"] == 1 and engine.stats["kernels_cached"] == 0
    engine.convolve(rng.random((9, 11, 12)), kernels[0])  # other grid: other padded shape, new spectrum
    assert engine.stats["kernels_computed"] == 1
    engine.clear_cache()
    engine.convolve(source, kernels[0])
    assert engine.stats["kernels_computed"] == 1 and engine.stats["cache_entries"] == 1


def test_kernel_cache_is_bounded_in_bytes_lru(rng):
    source = rng.random((8, 8, 8))
    kernels = [rng.random((3, 3, 3)) for _ in range(4)]
    one = 2 * 4 * 10 * 10 * (10 // 2 + 1)  # complex64 spectrum on the padded 10^3 grid
    engine = FFTConvolver(device="cpu", cache_bytes=2 * one)
    for k in kernels:
        engine.convolve(source, k)
        assert engine.stats["cache_bytes"] <= 2 * one
    assert engine.stats["cache_entries"] == 2
    engine.convolve(source, kernels[3])  # most recent: hit
    assert engine.stats["kernels_cached"] == 1
    engine.convolve(source, kernels[0])  # evicted: recomputed
    assert engine.stats["kernels_computed"] == 1
    none = FFTConvolver(device="cpu", cache_bytes=0)
    none.convolve(source, kernels[0])
    none.convolve(source, kernels[0])
    assert none.stats["kernels_computed"] == 1 and none.stats["cache_entries"] == 0


def test_out_of_memory_retries_with_thinner_slabs(rng):
    source, kernel = rng.random((16, 9, 10)), rng.random((5, 3, 3))
    engine = FFTConvolver(device="cpu", dtype="float64")
    seen = []

    def hook(device, depth):
        seen.append(depth)
        if depth > 4:
            raise fake_oom()

    engine._fault_hook = hook
    out = engine.convolve(source, kernel)
    assert rel_err(out, direct(source, kernel)) < 1e-10
    assert engine.stats["oom_retries"] == 2 and engine.stats["slab_depth"] == 4 and engine.stats["tiles"] == 4
    assert seen[:3] == [16, 8, 4] and not engine.stats["fell_back_to_cpu"]

    def plain_runtime_oom(device, depth):  # RuntimeError naming "out of memory" counts as well
        if depth > 8:
            raise RuntimeError("CUDA error: out of memory")

    engine._fault_hook = plain_runtime_oom
    engine.convolve(source, kernel)
    assert engine.stats["oom_retries"] == 1 and engine.stats["tiles"] == 2


def test_out_of_memory_on_the_gpu_falls_back_to_the_cpu(rng):
    """The CUDA path, simulated: every GPU attempt fails (before touching the device), the CPU finishes."""
    source = rng.random((6, 7, 8))
    kernels = [rng.random((3, 3, 3)), rng.random((5, 3, 5))]
    selector = rng.integers(0, 2, source.shape)
    engine = FFTConvolver(device="cpu", memory_budget_bytes=10**9)
    engine.device = torch.device("cuda")  # pretend; the hook fails every attempt on it
    attempts = []

    def hook(device, depth):
        attempts.append((device.type, depth))
        if device.type == "cuda":
            raise fake_oom()

    engine._fault_hook = hook
    out = engine.convolve_select(source, kernels, selector)
    expected = np.where(selector == 0, direct(source, kernels[0]), direct(source, kernels[1]))
    assert rel_err(out, expected) < 1e-5
    assert engine.stats["fell_back_to_cpu"] and engine.stats["device"] == "cpu"
    assert [d for t, d in attempts if t == "cuda"] == [6, 3, 1]  # halved down to one-voxel slabs first
    assert engine.stats["oom_retries"] == 3


def test_other_errors_and_cpu_out_of_memory_at_one_voxel_slabs_propagate(rng):
    source, kernel = rng.random((4, 5, 6)), rng.random((3, 3, 3))
    engine = FFTConvolver(device="cpu")

    def boom(device, depth):
        raise RuntimeError("something else")

    engine._fault_hook = boom
    with pytest.raises(RuntimeError, match="something else"):
        engine.convolve(source, kernel)

    def always_oom(device, depth):
        raise fake_oom()

    engine._fault_hook = always_oom
    with pytest.raises(torch.cuda.OutOfMemoryError):
        engine.convolve(source, kernel)


def test_working_set_estimate_grows_with_the_padded_grid():
    engine = FFTConvolver(device="cpu")
    small = engine.working_set_bytes((120, 120, 120), (64, 64, 64), "single")
    large = engine.working_set_bytes((180, 567, 567), (130, 512, 512), "single")
    assert 0 < small < large < engine.working_set_bytes((180, 567, 567), (130, 512, 512), "select")
    # float32, 567x567x180 grid: padded arrays alone are ~0.23 GB each; the estimate covers several of them
    assert 5 * 4 * 180 * 567 * 567 < large < 12 * 4 * 180 * 567 * 567
    assert FFTConvolver(device="cpu", dtype="float64").working_set_bytes((180, 567, 567), (130, 512, 512),
                                                                          "single") > 1.5 * large


# ----------------------------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------------------------

def test_bad_inputs_raise_input_format_error(rng):
    engine = FFTConvolver(device="cpu")
    source, kernel = rng.random((6, 6, 6)), rng.random((3, 3, 3))
    nan_source = source.copy()
    nan_source[1, 2, 3] = np.nan
    inf_kernel = kernel.copy()
    inf_kernel[0, 0, 0] = np.inf
    cases = [
        (lambda: engine.convolve(source[0], kernel), "3-D"),
        (lambda: engine.convolve(source, kernel[0]), "3-D"),
        (lambda: engine.convolve(source, rng.random((3, 4, 3))), "odd"),
        (lambda: engine.convolve(nan_source, kernel), "NaN"),
        (lambda: engine.convolve(source, inf_kernel), "NaN or infinite"),
        (lambda: engine.convolve(source.astype(complex), kernel), "real"),
        (lambda: engine.convolve(np.zeros((0, 3, 3)), kernel), "empty"),
        (lambda: engine.convolve_many(source, []), "At least one kernel"),
        (lambda: engine.convolve_many(source, [kernel, rng.random((2, 3, 3))]), "kernel 1"),
        (lambda: engine.convolve_select(source, [kernel], np.zeros((6, 6, 5), int)), "selector shape"),
        (lambda: engine.convolve_select(source, [kernel, kernel], np.full(source.shape, 2)), "0..1"),
        (lambda: engine.convolve_select(source, [kernel], np.full(source.shape, -1)), "0..0"),
        (lambda: engine.convolve_select(source, [kernel], np.zeros(source.shape)), "integer"),
        (lambda: engine.convolve_select(source, [kernel], np.zeros(source.shape, int), np.ones((6, 6))),
         "scale shape"),
        (lambda: FFTConvolver(device="cpu", dtype="float16"), "dtype"),
        (lambda: FFTConvolver(device="cpu", memory_budget_bytes=0), "memory_budget_bytes"),
    ]
    for call, words in cases:
        with pytest.raises(InputFormatError, match=words):
            call()


def test_inputs_are_never_modified_and_read_only_arrays_work(rng):
    source = rng.random((7, 8, 9)).astype(np.float32)  # already the compute dtype: no conversion copy
    kernels = [rng.random((3, 3, 3)).astype(np.float32), rng.random((5, 5, 5))]
    selector = rng.integers(0, 2, source.shape)
    scale = rng.random(source.shape)
    saved = [a.copy() for a in (source, *kernels, selector, scale)]
    for a in (source, *kernels, selector, scale):
        a.flags.writeable = False
    engine = FFTConvolver(device="cpu", memory_budget_bytes=None)
    tiled = FFTConvolver(device="cpu", memory_budget_bytes=20_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. torch's "non-writable NumPy array" warning
        for e in (engine, tiled):
            out = e.convolve(source, kernels[0])
            out[...] = -1.0  # the result owns its memory: writing it leaves the inputs alone
            e.convolve_many(source, kernels)
            e.convolve_select(source, kernels, selector, scale)
    assert tiled.stats["tiles"] > 1
    for before, after in zip(saved, (source, *kernels, selector, scale)):
        np.testing.assert_array_equal(before, after)
        assert before.dtype == after.dtype


def test_negative_round_off_is_not_clipped(rng):
    source = np.zeros((9, 9, 9))
    source[4, 4, 4] = 1.0
    kernel = np.zeros((5, 5, 5))
    kernel[2, 2, 2] = 1.0
    kernel[0, 0, 0] = -0.5  # a signed kernel: negatives must come through unchanged
    out = FFTConvolver(device="cpu").convolve(source, kernel)
    assert out[2, 2, 2] == pytest.approx(-0.5, abs=1e-6)



def test_selection_keeps_only_the_selected_voxels_in_float64_in_place(rng):
    from VoxelDosimetryLib.dose.fft_convolution import _Selection

    result = torch.from_numpy(rng.random((6, 9, 8)).astype(np.float32))  # the padded irfftn output
    part = result[1:5, 2:7, 1:6]  # the slab's output region inside it
    selector = rng.integers(0, 3, (4, 5, 5)).astype(np.int32)
    acc = torch.full((4, 5, 5), -7.0, dtype=torch.float64)
    pointer = acc.data_ptr()
    selection = _Selection(selector, 3, (6, 9, 8), (1, 2, 1), torch.device("cpu"))
    assert selection.present.tolist() == np.bincount(selector.ravel(), minlength=3).tolist()
    selection.keep(acc, result, 1)
    assert acc.dtype == torch.float64 and acc.data_ptr() == pointer
    expected = np.where(selector == 1, part.numpy().astype(np.float64), -7.0)
    np.testing.assert_array_equal(acc.numpy(), expected)
