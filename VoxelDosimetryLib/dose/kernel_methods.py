"""Kernel-convolution dose methods: single voxel S-value (svsv), density-scaled dose voxel kernel (dvk) and
multiple voxel S-values (mvsv). Each maps activity (Bq/mL) → dose rate (Gy/s) or TIA (Bq·s/mL) → dose (Gy):
D_i = Σ_j Ã_j · S(i − j), Ã_j the decays (Bq or Bq·s) in voxel j, S the kernel in Gy per decay (docs/KERNELS.md).

- svsv: the ICRP soft-tissue kernel (1.04 g/cm³) everywhere.
- dvk: the svsv dose × ρ_kernel / ρ_voxel, 0 where ρ < 0.1 g/cm³ (DblurDoseNet, Li et al. 2022, §2.3.2).
- mvsv: one kernel per density bin (physics/media.py DensityBins, Schneider media of the MC engine); the
  activity is convolved with each bin's kernel and each result kept where the voxel belongs to that bin (Lee et
  al. 2018, J Nucl Med 59:1133, used by Kim et al. 2022); bins below 0.1 g/cm³ are air and get no dose.
Kernels come from the shipped Lu-177 set, the user's cache, or a resampled finer kernel (kernels/library.py);
all convolutions go through the one torch FFT engine (dose/fft_convolution.py).
"""
from __future__ import annotations

import numpy as np

from VoxelDosimetryLib.dose.registry import DoseMethod, DoseOption, DoseRequest, DoseResult, register_dose_method
from VoxelDosimetryLib.dose.value_policy import AIR_DENSITY_G_CM3
from VoxelDosimetryLib.errors import InputFormatError, VoxelDosimetryError
from VoxelDosimetryLib.volume import Volume

_CONVOLVERS: dict = {}


class DoseCancelled(VoxelDosimetryError):
    """The dose calculation was cancelled through the request's cancel callable."""


def _convolver(device: str):
    from VoxelDosimetryLib.dose.fft_convolution import FFTConvolver

    key = str(device)
    if key not in _CONVOLVERS:  # one engine per device keeps the kernel spectra cached between calls
        _CONVOLVERS[key] = FFTConvolver(device=device)
    return _CONVOLVERS[key]


def _check_cancel(request: DoseRequest) -> None:
    if request.cancel is not None and request.cancel():
        raise DoseCancelled("The dose calculation was cancelled.")


def _decays_per_voxel(source: Volume) -> np.ndarray:
    """Bq (activity) or Bq·s (TIA) per voxel from the per-mL source (float32: the FFT runs in float32 anyway)."""
    canonical = source.to_canonical_unit().array
    return np.multiply(canonical, np.float32(source.voxel_volume_ml), dtype=np.float32)


# float32 FFT round-off: absolute errors up to ~eps32 x log2(N) x Σ decays x max kernel value (eps32 = 1.2e-7); a
# negative value within 1e-5 of that scale is round-off, set to 0 here. It cannot be judged against the final dose's
# maximum (the value policy's 1e-6 rule): in MVSV a low-density bin's kernel is ~8x the soft-tissue one, so its
# round-off far from the activity exceeds 1e-6 of the peak dose.
FFT_ROUNDOFF = 1e-5
# Photon dose counted out to 120 mm from each source by default: the reach of the shipped SPECT-grid kernels, and
# against MC in a finite patient (patient15) closer than the infinite-medium tail (docs/VALIDATION.md)
DEFAULT_PHOTON_REACH_MM = 120.0


def _clear_roundoff(dose: np.ndarray, decays: np.ndarray, kernel_max: float) -> int:
    """Zero FFT round-off negatives in place (see FFT_ROUNDOFF); returns how many."""
    floor = -FFT_ROUNDOFF * float(np.abs(decays).sum(dtype=np.float64)) * kernel_max
    flat = dose.reshape(-1)  # a view: the engine's results are contiguous
    negative = np.flatnonzero(flat < 0)  # few voxels: judge only those
    roundoff = negative[flat[negative] >= floor]
    flat[roundoff] = 0.0
    if not np.shares_memory(flat, dose):
        dose[...] = flat.reshape(dose.shape)
    return int(roundoff.size)


def _output(request: DoseRequest, values: np.ndarray) -> Volume:
    quantity = "dose_rate" if request.source.quantity == "activity_concentration" else "dose"
    return request.ct.with_array(values.astype(np.float32, copy=False), quantity=quantity,
                                 unit="Gy/s" if quantity == "dose_rate" else "Gy")


def _kernel(request: DoseRequest, medium: str, density: float, method: str):
    """The kernel for the request's grid (option `kernel` = a file overrides the lookup)."""
    from VoxelDosimetryLib.kernels.kernel import read_kernel
    from VoxelDosimetryLib.kernels.library import KernelNotAvailableError, check_kernel_quality, find_kernel
    from VoxelDosimetryLib.kernels.resample import same_voxel_size
    from VoxelDosimetryLib.physics import get_nuclide

    options = request.options
    path = options.get("kernel") or ""
    component = options.get("component", "total")
    if path:
        kernel = read_kernel(path)
        nuclide = get_nuclide(request.nuclide).name
        if kernel.nuclide != nuclide:
            raise InputFormatError(f"The kernel {path} is for {kernel.nuclide}, not {nuclide}: make one for "
                                   f"{nuclide} with `voxeldosimetry kernel --nuclide {nuclide} ...`.")
        if not same_voxel_size(kernel.spacing_mm, request.ct.spacing):
            raise InputFormatError(f"The kernel {path} has voxels of {kernel.spacing_mm} mm, the dose grid "
                                   f"{tuple(request.ct.spacing)} mm (x, y, z): make a kernel for the dose grid "
                                   "with `voxeldosimetry kernel --voxel-mm X Y Z ...`, or drop the kernel option "
                                   "to use the shipped set.")
        if kernel.component != component:
            raise InputFormatError(f"The kernel {path} holds the {kernel.component} component; the option "
                                   f"component={component!r} asks for another. Set component={kernel.component}.")
        check_kernel_quality(kernel, f"{method}: kernel {path}")
        return kernel
    folders = [options["kernel_folder"]] if options.get("kernel_folder") else []
    try:
        kernel = find_kernel(request.nuclide, request.ct.spacing, medium, density, component, folders)
    except KernelNotAvailableError as exc:
        spacing = " ".join(f"{v:g}" for v in request.ct.spacing)
        raise KernelNotAvailableError(
            f"{exc} To make every kernel the {method} method needs on this dose grid in one go (cached; seconds to "
            "minutes per kernel on a CPU, depending on the histories): voxeldosimetry kernel --nuclide "
            f"{get_nuclide(request.nuclide).name} --for-method {method} --voxel-mm {spacing}. Shipped grids: 4.8, "
            "4.42, 3.9 mm isotropic and 0.98x0.98x3 mm (and grids whose voxels they tile by odd whole "
            "numbers).") from None
    check_kernel_quality(kernel, f"{method}: {medium} kernel")
    return kernel


def _kernel_info(kernel) -> dict:
    return {**kernel.describe(), "command": kernel.metadata.get("command")}


def _photon_tail(request: DoseRequest, kernel_shapes: list, method: str):
    """(tail, window, reach mm) when photon dose beyond the kernels' reach is to be added (option
    photon_reach_mm farther than the kernels reach, a total or photon kernel, a nuclide with photons), else None;
    QC warnings say why a wanted tail is missing."""
    from VoxelDosimetryLib.dose.photon_tail import window_for
    from VoxelDosimetryLib.kernels.photon_tail import emits_photons, find_photon_tail
    from VoxelDosimetryLib.physics import get_nuclide
    from VoxelDosimetryLib.qc import qc_warn

    reach = float(request.options.get("photon_reach_mm", DEFAULT_PHOTON_REACH_MM))
    if reach <= 0 or request.options.get("component", "total") == "electron":
        return None
    window = window_for(kernel_shapes, request.ct.spacing)
    if reach <= window.r1_mm + max(request.ct.spacing):  # the kernels reach that far already
        return None
    the_nuclide = get_nuclide(request.nuclide)
    if not emits_photons(the_nuclide.name):  # a pure beta emitter: no photon tail to add
        return None
    tail = find_photon_tail(the_nuclide.name)
    if tail is None:
        qc_warn("photon_tail_missing",
                f"{method}: no photon tail for {the_nuclide.name}, so photon dose beyond the kernels' reach "
                f"({window.r1_mm:.0f} mm) is missing. Make it once (cached): voxeldosimetry kernel --nuclide "
                f"{the_nuclide.name} --photon-tail", nuclide=the_nuclide.name)
        return None
    if window.r0_mm < tail.valid_from_mm:
        qc_warn("kernel_short_reach",
                f"{method}: the kernels reach only {window.r1_mm:.0f} mm; handing over to the photon tail needs at "
                f"least {2 * tail.valid_from_mm:.0f} mm, so photon dose from farther away is missing. Use kernels "
                "with a larger --size.", reach_mm=window.r1_mm)
        return None
    return tail, window, min(reach, tail.reach_mm)


def _convolve_with_tail(request: DoseRequest, decays: np.ndarray, kernels: list, selector, method: str) -> tuple:
    """The decays convolved with `kernels` (one, or one per selector value) plus the photon tail when it applies:
    (dose: float32 for one kernel, float64 accumulated over the selector's kernels; tail info)."""
    from VoxelDosimetryLib.dose.photon_tail import near_kernel, tail_dose

    engine = _convolver(request.device)
    tail = _photon_tail(request, [k.shape for k in kernels], method)
    near = kernels if tail is None else [near_kernel(k, request.ct.spacing, tail[1]) for k in kernels]
    if selector is None:  # one kernel: float32 throughout (no accumulation over kernels to protect)
        dose = engine.convolve(decays, near[0], out_dtype="float32")
    else:
        dose = engine.convolve_select(decays, near + [np.zeros((1, 1, 1))], selector)
    fft = dict(engine.stats)
    if tail is None:
        return dose, {"photon_tail": None, "fft": fft}
    the_tail, window, reach = tail
    _check_cancel(request)
    request.report(0.85, f"adding the photon dose from {window.r1_mm:.0f} to {reach:.0f} mm")
    dose += tail_dose(decays, request.ct.spacing, the_tail, window, engine, reach)
    return dose, {"fft": fft, "photon_tail": {
        "from_mm": window.r0_mm, "full_at_mm": window.r1_mm, "reach_mm": reach,
        "coarse_blocks_zyx": list(window.block_factors(request.ct.spacing)), "fingerprint": the_tail.fingerprint(),
        "command": the_tail.metadata.get("command")}}


def _soft_tissue_dose(request: DoseRequest, method: str) -> tuple:
    """The soft-tissue kernel convolved with the decays, plus the photon tail (svsv's dose, dvk's before density
    scaling): the kernel, the float32 dose with FFT round-off cleared, and the result info."""
    from VoxelDosimetryLib.kernels.medium import SOFT_TISSUE, SOFT_TISSUE_DENSITY_G_CM3

    kernel = _kernel(request, SOFT_TISSUE, SOFT_TISSUE_DENSITY_G_CM3, method)
    request.report(0.1, "convolving with the soft-tissue kernel")
    decays = _decays_per_voxel(request.source)
    dose, tail_info = _convolve_with_tail(request, decays, [kernel.values], None, method)
    cleared = _clear_roundoff(dose, decays, float(kernel.values.max()))
    return kernel, dose, {"method": method, "kernel": _kernel_info(kernel), **tail_info,
                          "fft_roundoff_zeroed": cleared}


def svsv_dose(request: DoseRequest) -> DoseResult:
    """Single soft-tissue voxel S-value kernel convolution."""
    _, dose, info = _soft_tissue_dose(request, "svsv")
    request.report(1.0, "done")
    return DoseResult(_output(request, dose), info=info)


def dvk_dose(request: DoseRequest) -> DoseResult:
    """Soft-tissue kernel dose × ρ_kernel/ρ_voxel; 0 below 0.1 g/cm³ (DblurDoseNet §2.3.2)."""
    import torch

    kernel, dose, info = _soft_tissue_dose(request, "dvk")
    density = torch.from_numpy(np.ascontiguousarray(request.density_volume().array, dtype=np.float32))
    # in place on the dose (torch: multi-threaded): x rho_kernel / rho, and 0 below 0.1 g/cm3
    scaled = torch.from_numpy(dose)
    scaled.mul_(float(kernel.density_g_cm3)).div_(density.clamp(min=AIR_DENSITY_G_CM3))
    scaled.masked_fill_(density < AIR_DENSITY_G_CM3, 0.0)
    request.report(1.0, "done")
    return DoseResult(_output(request, dose), info={**info, "air_density_g_cm3": AIR_DENSITY_G_CM3})


def mvsv_dose(request: DoseRequest) -> DoseResult:
    """Multiple voxel S-values: one kernel per density bin, each kept where the voxel is in its bin."""
    from VoxelDosimetryLib.kernels.medium import tissue_bins
    from VoxelDosimetryLib.physics.media import DensityBins

    bins = DensityBins.default()
    density = request.density_volume().array
    selector = bins.bin_index(density).astype(np.int64)  # physics/media.py bins
    _warn_dense_voxels(density, float(bins.edges_g_cm3[-1]))
    counts = np.bincount(selector.ravel(), minlength=len(bins))
    used = [b for b in tissue_bins(AIR_DENSITY_G_CM3) if counts[b.index] > 0]
    kernels, kernel_rows = [], []
    for i, b in enumerate(used):
        _check_cancel(request)
        request.report(0.05 + 0.25 * i / max(len(used), 1), f"kernel for density bin {b.index} ({b.medium})")
        kernel = _kernel(request, b.medium, b.representative_g_cm3, "mvsv")
        kernels.append(kernel.values)
        kernel_rows.append({"bin": b.index, "low_g_cm3": b.low_g_cm3, "high_g_cm3": b.high_g_cm3,
                            "voxels": int(counts[b.index]), **_kernel_info(kernel)})
    # selector over the used kernels; air bins (and empty ones) point at an extra all-zero kernel
    lookup = np.full(len(bins), len(kernels), dtype=np.int64)
    for k, b in enumerate(used):
        lookup[b.index] = k
    local = lookup[selector]
    air = local == len(kernels)
    _check_cancel(request)
    request.report(0.3, f"convolving with {len(kernels)} kernels")
    cleared, tail_info = 0, {"photon_tail": None}
    if kernels:
        decays = _decays_per_voxel(request.source)
        dose, tail_info = _convolve_with_tail(request, decays, kernels, local, "mvsv")
        dose[air] = 0.0
        cleared = _clear_roundoff(dose, decays, max(float(k.max()) for k in kernels))
    else:
        dose = np.zeros(request.ct.shape)
    request.report(1.0, "done")
    return DoseResult(_output(request, dose), info={"method": "mvsv", "density_bins": kernel_rows,
                                                    "air_bins_below_g_cm3": AIR_DENSITY_G_CM3, **tail_info,
                                                    "fft_roundoff_zeroed": cleared})


_COMPONENT = DoseOption("component", "str", "total", choices=("total", "electron", "photon"),
                        help="kernel component: total, or the electron or photon part alone")
_KERNEL_FOLDER = DoseOption("kernel_folder", "str", "", help="an extra folder of kernel files (NRRD from "
                            "`voxeldosimetry kernel`) searched besides the shipped set and the user cache")
_PHOTON_REACH = DoseOption(
    "photon_reach_mm", "float", DEFAULT_PHOTON_REACH_MM, unit="mm", minimum=0.0, maximum=1000.0,
    help="count photon dose at least this far from each source: where the kernels reach less far (the "
         "0.98x0.98x3 mm set: 48 mm) the radial soft-tissue photon kernel continues them to this distance; kernels "
         "reaching farther are used whole; 0 = the kernels as they are; the largest value counts the photons as in "
         "an infinite medium (< 0.1 % of their energy beyond; docs/DOSE_METHODS.md)")
_KERNEL_FILE = DoseOption("kernel", "str", "", help="a kernel file (NRRD from `voxeldosimetry kernel`) for the dose "
                          "grid, used instead of the shipped soft-tissue kernel")


def _kernel_fingerprint(options: dict) -> str:
    """What the kernel lookup can see for these options: shipped set, cache, photon tails, the `kernel_folder`'s
    files and the `kernel` file (names, sizes and modification times)."""
    from pathlib import Path

    from VoxelDosimetryLib.kernels.library import kernel_fingerprint

    folder = options.get("kernel_folder") or ""
    text = kernel_fingerprint([folder] if folder else [])
    path = Path(options.get("kernel") or "")
    if options.get("kernel") and path.is_file():
        stat = path.stat()
        text += f"|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return text


def _warn_dense_voxels(density: np.ndarray, top: float) -> None:
    from VoxelDosimetryLib.qc import qc_warn

    dense = int(np.count_nonzero(density >= top))
    if dense:
        qc_warn("mvsv_density_above_bins",
                f"{dense} voxel(s) are denser than the last MVSV bin ({top:g} g/cm3: metal, contrast or dense "
                "cortex); they use the cortical-bone kernel, which overestimates their dose (dvk scales by density "
                "instead).", voxels=dense, top_g_cm3=top)


register_dose_method(DoseMethod(
    "svsv", "single voxel S-value: convolution with the ICRP soft-tissue (1.04 g/cm3) kernel", svsv_dose,
    options=(_COMPONENT, _PHOTON_REACH, _KERNEL_FILE, _KERNEL_FOLDER), fingerprint=_kernel_fingerprint))
register_dose_method(DoseMethod(
    "dvk", "dose voxel kernel with density scaling: soft-tissue kernel dose x 1.04/density, 0 below 0.1 g/cm3 "
           "(DblurDoseNet)", dvk_dose, options=(_COMPONENT, _PHOTON_REACH, _KERNEL_FILE, _KERNEL_FOLDER),
    fingerprint=_kernel_fingerprint))
register_dose_method(DoseMethod(
    "mvsv", "multiple voxel S-values: one kernel per density bin (18 tissue bins from lung to cortical bone), each "
            "result kept in its bin (Lee et al. 2018)", mvsv_dose, options=(_COMPONENT, _PHOTON_REACH, _KERNEL_FOLDER),
    fingerprint=_kernel_fingerprint))
