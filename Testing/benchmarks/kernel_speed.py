"""Kernel (FFT convolution) speed: the FFTConvolver engine against a bare torch rfftn + irfftn of the same padded
grid, for a 51^3 kernel (SVSV/DVK-like), 20 kernels with a random selector (MVSV-like) and a 9^3 + 99^3 pair
(short-range + long-range kernel). Times are the median of --repeats runs after one warm-up. Prints JSON on stdout
(one line per case on stderr while it runs).

    python Testing/benchmarks/kernel_speed.py [--device auto] [--quick] [--sizes 128,128,128 130,512,512]

Ratios engine / bare are per case; for the MVSV case, whose floor is one forward and n_used inverse FFTs, also
engine / ((n_used + 1) / 2 round trips) ("ratio_fft_engine_over_roundtrip_model"). Sizes are (z, y, x). Default 128^3 and 130x512x512; --quick uses 64^3 and 65x256x256 (about a minute on a
2-core CPU). Methods are entries of METHODS (name -> factory(case, device) returning a zero-argument callable to
time, or None when the method does not apply to the case); add dose methods there.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from VoxelDosimetryLib.device import resolve_device  # noqa: E402
from VoxelDosimetryLib.dose.fft_convolution import FFTConvolver, padded_shape  # noqa: E402

FULL_SIZES = [(128, 128, 128), (130, 512, 512)]
QUICK_SIZES = [(64, 64, 64), (65, 256, 256)]
QUICK_METHODS = ["bare_fft_roundtrip", "fft_engine"]  # --quick default (--methods overrides)


@dataclass
class Case:
    """One benchmark problem. kind: "single" (convolve), "select" (convolve_select), "sum" (sum of convolve)."""

    name: str
    kind: str
    source: np.ndarray
    kernels: list
    selector: Optional[np.ndarray] = None
    info: dict = field(default_factory=dict)

    @property
    def used(self) -> list[int]:
        if self.selector is None:
            return list(range(len(self.kernels)))
        return [int(i) for i in np.flatnonzero(np.bincount(self.selector.ravel(), minlength=len(self.kernels)))]

    def grids(self) -> list[tuple[int, int, int]]:
        """Padded grids the engine uses: one shared grid (single/select), one per kernel for "sum"."""
        shape = self.source.shape
        crop = [tuple(min(k, 2 * s - 1) for s, k in zip(shape, ker.shape)) for ker in self.kernels]
        if self.kind == "sum":
            return [padded_shape(shape, c) for c in crop]
        common = tuple(max(c[a] for c in crop) for a in range(3))
        return [padded_shape(shape, common)]


def radial_kernel(n: tuple[int, int, int], scale: float, rng) -> np.ndarray:
    """A smooth positive kernel (1/r^2-like with a finite centre), odd sizes, slightly noisy."""
    axes = [np.arange(m) - m // 2 for m in n]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    r2 = (z * z + y * y + x * x).astype(np.float64)
    return (np.exp(-np.sqrt(r2) / scale) / (1.0 + r2) * (1.0 + 0.01 * rng.random(n))).astype(np.float32)


def make_cases(shape: tuple[int, int, int], seed: int = 1) -> list[Case]:
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    source = (np.exp(-4 * (x * x + y * y + z * z)) * 1e3 + rng.random(shape)).astype(np.float32)
    k51 = radial_kernel((51, 51, 51), 8.0, rng)
    mvsv = [radial_kernel((51, 51, 51), 4.0 + 0.5 * i, rng) for i in range(20)]
    selector = rng.integers(0, 20, shape).astype(np.int16)
    pair = [radial_kernel((9, 9, 9), 1.0, rng), radial_kernel((99, 99, 99), 30.0, rng)]
    return [Case("single_51", "single", source, [k51]),
            Case("mvsv_20x51_random_selector", "select", source, mvsv, selector),
            Case("pair_9_and_99", "sum", source, pair)]


# ----------------------------------------------------------------------------------------------------------------
# methods: name -> factory(case, device) -> zero-argument callable (or None when not applicable)
# ----------------------------------------------------------------------------------------------------------------

def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_roundtrip(case: Case, device) -> Callable[[], object]:
    """One rfftn + irfftn per padded grid of the case (no kernel product, crop, transfer or cast)."""
    import torch

    arrays = [torch.rand(g, device=device) for g in case.grids()]

    def run():
        for a in arrays:
            torch.fft.irfftn(torch.fft.rfftn(a), s=a.shape)
        _sync(device)
    return run


def bare_minimum(case: Case, device) -> Callable[[], object]:
    """The FFT work the scheme cannot avoid: one rfftn of the source, one product + irfftn per used kernel
    (kernel spectra precomputed), per grid."""
    import torch

    grids = case.grids()
    n_inverse = len(case.used) if case.kind != "sum" else 1
    arrays = [torch.rand(g, device=device) for g in grids]
    spectra = [torch.fft.rfftn(torch.rand(g, device=device)) for g in grids]

    def run():
        for a, k in zip(arrays, spectra):
            s = torch.fft.rfftn(a)
            for _ in range(n_inverse):
                torch.fft.irfftn(s * k, s=a.shape)
        _sync(device)
    return run


def _engine_call(engine: FFTConvolver, case: Case, cold: bool) -> Callable[[], object]:
    def run():
        if cold:
            engine.clear_cache()
        if case.kind == "single":
            return engine.convolve(case.source, case.kernels[0])
        if case.kind == "select":
            return engine.convolve_select(case.source, case.kernels, case.selector)
        return sum(engine.convolve(case.source, k) for k in case.kernels)
    run.engine = engine  # type: ignore[attr-defined]  (the runner records engine.stats)
    return run


def fft_engine(case: Case, device) -> Callable[[], object]:
    """FFTConvolver, kernel spectra cached from the warm-up (repeated calls on one grid)."""
    return _engine_call(FFTConvolver(device=str(device)), case, cold=False)


def fft_engine_cold(case: Case, device) -> Callable[[], object]:
    """FFTConvolver with an empty kernel cache every call (first call on a grid)."""
    return _engine_call(FFTConvolver(device=str(device)), case, cold=True)


METHODS: dict[str, Callable[[Case, object], Optional[Callable[[], object]]]] = {
    "bare_fft_roundtrip": bare_roundtrip,
    "bare_fft_minimum": bare_minimum,
    "fft_engine": fft_engine,
    "fft_engine_cold": fft_engine_cold,
}


# ----------------------------------------------------------------------------------------------------------------

def time_it(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    fn()  # warm-up: plans, allocator, kernel cache
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def machine_info(device) -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"cpu_model": cpu, "cpu_threads_torch": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update({"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                     "cuda": torch.version.cuda})
    return info


def _parse_size(text: str) -> tuple[int, int, int]:
    parts = [int(v) for v in text.replace("x", ",").split(",")]
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"size {text!r}: give N or Z,Y,X")
    return tuple(parts)


# ----------------------------------------------------------------------------------------------------------------
# dose methods (registry) on a synthetic patient at a shipped kernel grid
# ----------------------------------------------------------------------------------------------------------------

DOSE_GRIDS = {(128, 128, 128): (4.8, 4.8, 4.8), (130, 512, 512): (0.98, 0.98, 3.0)}
DOSE_METHODS = ("led", "svsv", "dvk", "mvsv")


def synthetic_patient(shape: tuple[int, int, int], spacing: tuple, seed: int = 3):
    """CT (HU): an elliptic body of soft tissue with two lungs, a spine and a liver; activity in liver, kidneys-like
    blobs and lesions (Bq/mL). Enough density bins occupied that MVSV uses 5-8 kernels."""
    from VoxelDosimetryLib.volume import Volume

    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    hu = np.full(shape, -1000.0, np.float32)
    body = (xx / 0.9) ** 2 + (yy / 0.7) ** 2 < 1
    hu[body] = 40.0
    hu[body & (((xx - 0.4) / 0.3) ** 2 + (yy / 0.4) ** 2 < 1) & (zz > 0)] = -780.0
    hu[body & (((xx + 0.4) / 0.3) ** 2 + (yy / 0.4) ** 2 < 1) & (zz > 0)] = -820.0
    hu[body & ((xx / 0.12) ** 2 + ((yy + 0.45) / 0.12) ** 2 < 1)] = 700.0
    hu[body & ((xx / 0.06) ** 2 + ((yy + 0.45) / 0.06) ** 2 < 1)] = 250.0
    hu[body & (xx < -0.9 + 0.05)] = -90.0
    hu += rng.normal(0, 10, shape).astype(np.float32)
    liver = body & (((xx + 0.35) / 0.35) ** 2 + ((yy - 0.1) / 0.4) ** 2 + ((zz + 0.3) / 0.4) ** 2 < 1)
    act = np.where(body, 2e3, 0.0) + np.where(liver, 2e4, 0.0)
    for cx, cy, cz in rng.uniform(-0.5, 0.5, (6, 3)):
        act += 2e5 * np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2 + (zz - cz) ** 2) / 0.003))
    ct = Volume(hu, spacing=spacing, quantity="ct", unit="HU")
    return ct, Volume(act.astype(np.float32), spacing=spacing, quantity="activity_concentration", unit="Bq/mL")


def dose_method_rows(shapes, device, repeats: int) -> list[dict]:
    """Each registered fast method through compute_dose (value policy included) against a bare round trip of
    the padded grid its FFT engine used (mvsv: against 1 forward + n_used inverse FFTs = (n+1)/2 round trips)."""
    import torch

    from VoxelDosimetryLib.dose import DoseRequest, compute_dose, get_dose_method
    from VoxelDosimetryLib.dose.value_policy import checked_request

    rows = []
    for shape in shapes:
        spacing = DOSE_GRIDS.get(tuple(shape), (4.8, 4.8, 4.8))
        ct, act = synthetic_patient(tuple(shape), spacing)
        for name in DOSE_METHODS:
            def run(name=name):
                return compute_dose(name, DoseRequest(act, ct, device=str(device)))
            result = run()  # warm-up: kernels read, spectra cached
            median, runs = time_it(run, repeats)
            method = get_dose_method(name)
            checked, _ = checked_request(DoseRequest(act, ct, device=str(device),
                                                     options=method.resolve_options({})))
            core, _ = time_it(lambda: method.compute(checked), repeats)  # the method alone, no value policy
            row = {"size": list(shape), "spacing_mm": list(spacing), "method": name, "seconds": round(median, 4),
                   "method_seconds": round(core, 4), "runs": [round(t, 4) for t in runs],
                   "photon_tail_blocks": (result.info.get("photon_tail") or {}).get("coarse_blocks_zyx")}
            fft = result.info.get("fft")
            if fft:
                grid = tuple(fft["padded_shape"])
                used = int(fft.get("kernels_used", 1))
                a = torch.rand(grid, device=device)
                bare, _ = time_it(lambda: (torch.fft.irfftn(torch.fft.rfftn(a), s=grid), _sync(device)), repeats)
                bound = bare * (used + 1) / 2
                row.update({"padded_shape": list(grid), "kernels_used": used, "bare_roundtrip_seconds": round(bare, 4),
                            "fft_bound_seconds": round(bound, 4), "ratio_to_fft_bound": round(core / bound, 3),
                            "ratio_with_value_policy_to_fft_bound": round(median / bound, 3)})
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true",
                    help=f"sizes 64^3 and 65x256x256, methods {QUICK_METHODS} (about a minute on 2 CPU cores)")
    ap.add_argument("--sizes", type=_parse_size, nargs="+", default=None, help="Z,Y,X or N (overrides --quick)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", nargs="*", default=None, help="case names to run (default all)")
    ap.add_argument("--methods", nargs="*", default=None, help=f"methods to run (default all: {list(METHODS)})")
    ap.add_argument("--dose-methods", action="store_true",
                    help="time the registered dose methods (led, svsv, dvk, mvsv with the shipped kernels) on a "
                         "synthetic patient: 128^3 at 4.8 mm and 130x512x512 at 0.98x0.98x3 mm (--quick: 64^3 "
                         "only), each against the bare FFT bound of its padded grid")
    args = ap.parse_args(argv)
    if args.dose_methods:
        device = resolve_device(args.device)
        shapes = args.sizes or ([(64, 64, 64)] if args.quick else FULL_SIZES)
        t0 = time.perf_counter()
        rows = dose_method_rows(shapes, device, args.repeats)
        print(json.dumps({"benchmark": "kernel_speed_dose_methods", "machine": machine_info(device),
                          "repeats": args.repeats, "rows": rows,
                          "total_seconds": round(time.perf_counter() - t0, 1)}, indent=1))
        return 0

    device = resolve_device(args.device)
    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    default_methods = QUICK_METHODS if args.quick else list(METHODS)
    unknown = [m for m in (args.methods or []) if m not in METHODS]
    if unknown:
        ap.error(f"unknown method(s) {unknown}; known: {list(METHODS)}")
    methods = {name: METHODS[name] for name in (args.methods or default_methods)}
    out = {"benchmark": "kernel_speed", "machine": machine_info(device), "quick": bool(args.quick),
           "repeats": args.repeats, "methods": {n: (m.__doc__ or "").strip().split("\n")[0] for n, m in
                                                methods.items()}, "cases": []}
    t_all = time.perf_counter()
    for shape in sizes:
        for case in make_cases(shape):
            if args.cases and case.name not in args.cases:
                continue
            row = {"size": list(shape), "case": case.name, "kind": case.kind, "n_kernels": len(case.kernels),
                   "n_kernels_used": len(case.used), "kernel_shapes": sorted({k.shape for k in case.kernels}),
                   "padded_shapes": case.grids(), "seconds": {}, "runs": {}}
            for name, factory in methods.items():
                fn = factory(case, device)
                if fn is None:
                    continue
                median, runs = time_it(fn, args.repeats)
                row["seconds"][name] = round(median, 4)
                row["runs"][name] = [round(t, 4) for t in runs]
                engine = getattr(fn, "engine", None)  # engine-based methods expose their FFTConvolver
                if engine is not None:
                    st = engine.stats
                    row.setdefault("engine_stats", {})[name] = {
                        k: st.get(k) for k in ("device", "padded_shape", "tiles", "fft_seconds", "seconds",
                                               "kernels_cached", "kernels_computed", "kernels_skipped",
                                               "fell_back_to_cpu", "estimated_bytes")}
            secs = row["seconds"]
            if "bare_fft_roundtrip" in secs and case.kind == "select":
                # the scheme's floor is 1 rfftn + n_used irfftn ~ (n_used + 1) / 2 round trips of the grid
                model = secs["bare_fft_roundtrip"] * (len(case.used) + 1) / 2
                row["bare_fft_roundtrip_model_seconds"] = round(model, 4)
                if "fft_engine" in secs:
                    row["ratio_fft_engine_over_roundtrip_model"] = round(secs["fft_engine"] / model, 3)
            for eng in ("fft_engine", "fft_engine_cold"):
                for base in ("bare_fft_roundtrip", "bare_fft_minimum"):
                    if eng in secs and base in secs and secs[base] > 0:
                        row[f"ratio_{eng}_over_{base}"] = round(secs[eng] / secs[base], 3)
            out["cases"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    out["total_seconds"] = round(time.perf_counter() - t_all, 1)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
