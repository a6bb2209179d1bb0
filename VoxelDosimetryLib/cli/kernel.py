"""`voxeldosimetry kernel`: generate a voxel S-value kernel with the project's Monte Carlo engine, resample one,
or make every kernel a dose method needs for a voxel size (cached, so the method finds them)."""
from __future__ import annotations

import argparse
import json


def add_parser(sub) -> argparse.ArgumentParser:
    from VoxelDosimetryLib.volume.numbers import integer_type, number_type

    parser = sub.add_parser(
        "kernel", help="generate a voxel S-value kernel (Monte Carlo) or resample one",
        description="Simulate decays uniform in the centre voxel of a homogeneous medium and write the dose per "
                    "decay (Gy/(Bq*s)) as a kernel (NRRD, DESIGN.md format; centre uncertainty, histories, seed and "
                    "this command in its metadata). Results are cached in the user's cache folder "
                    "($VOXELDOSIMETRY_CACHE_DIR/kernels) keyed by every parameter and the engine version; the "
                    "svsv, dvk and mvsv dose methods find cached kernels automatically. --medium list prints the "
                    "media. With --resample-from, a finer kernel is resampled to --voxel-mm with energy conserved. "
                    "With --for-method, every kernel that method needs at --voxel-mm is made into the cache. With "
                    "--photon-tail, the nuclide's radial photon tail (docs/KERNELS.md).")
    parser.add_argument("--nuclide", default=None, help="radionuclide (default Lu-177)")
    parser.add_argument("--voxel-mm", nargs="+", type=number_type("mm", positive=True), metavar="MM",
                        help="voxel size: one value (isotropic) or three (x y z), mm")
    parser.add_argument("--medium", help="soft_tissue, water, cortical_bone, lung, air or a Schneider medium name "
                                         "(`--medium list`); with --density, that composition at that density")
    parser.add_argument("--density", type=number_type("g/cm3", positive=True), metavar="RHO",
                        help="density, g/cm3 (alone: the Schneider tissue of closest density)")
    parser.add_argument("--size", nargs="+", type=integer_type(positive=True), metavar="N",
                        help="odd voxel count: one value (cube) or three (x y z); e.g. 51 at 4.8 mm reaches 122 mm "
                             "(default with --for-method: about 120 mm on every axis)")
    parser.add_argument("--histories", type=integer_type(positive=True), default=None,
                        help="decays per component run (default 1e6; the centre uncertainty must be < 0.5 %%)")
    parser.add_argument("--component", choices=("total", "electron", "photon"), default=None,
                        help="total (default), or the electron or photon part alone")
    parser.add_argument("--seed", type=integer_type(minimum=0, example="42"), default=None,
                        help="random seed (default 0)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--resample-from", metavar="FINE.nrrd", help="resample this (finer) kernel instead of "
                                                                     "simulating")
    parser.add_argument("--for-method", choices=("svsv", "dvk", "mvsv"),
                        help="make (into the cache) every kernel this method needs at --voxel-mm")
    parser.add_argument("--photon-tail", action="store_true",
                        help="make the nuclide's soft-tissue photon tail (the radial photon dose beyond the voxel "
                             "kernels' reach, added by svsv, dvk and mvsv) into the cache; Lu-177's is shipped")
    parser.add_argument("--no-cache", action="store_true", help="simulate even if the cache holds this kernel")
    parser.add_argument("--out", help="output kernel file (.nrrd)")
    return parser


def _media_list() -> int:
    from VoxelDosimetryLib.kernels.medium import medium_names
    from VoxelDosimetryLib.physics.media import schneider_media

    rho = {m.name: m.density_g_cm3 for m in schneider_media(0.05)}
    for name in medium_names():
        print(f"{name:<20} {rho[name]:.3f} g/cm3" if name in rho else name)
    return 0


def _one(args, medium: str | None, density: float | None, size, progress):
    """The kernel from the cache or a new simulation (then cached)."""
    from VoxelDosimetryLib.cli.common import say
    from VoxelDosimetryLib.kernels.cache import load_cached, store_cached
    from VoxelDosimetryLib.kernels.generate import generate_kernel, odd_size, voxel_size
    from VoxelDosimetryLib.kernels.medium import canonical_medium_name, kernel_medium
    from VoxelDosimetryLib.physics import get_nuclide

    nuclide = get_nuclide(args.nuclide).name
    spacing = voxel_size(args.voxel_mm)
    size_xyz = odd_size(size)
    the_medium = kernel_medium(medium, density)
    params = {"nuclide": nuclide, "voxel_mm": [round(v, 6) for v in spacing], "size_xyz": list(size_xyz),
              "medium": canonical_medium_name(medium, density), "density_g_cm3": the_medium.density_g_cm3,
              "mass_fractions": dict(the_medium.mass_fractions), "component": args.component,
              "histories": int(args.histories), "seed": int(args.seed)}
    if not args.no_cache:
        cached = load_cached(params)
        if cached is not None:
            say("kernel", f"cached: {params['medium']} {params['density_g_cm3']:g} g/cm3 (no simulation needed)")
            return cached
    kernel = generate_kernel(nuclide, spacing, size_xyz, medium=medium, density_g_cm3=density,
                             histories=args.histories, component=args.component, seed=args.seed,
                             device=args.device, progress=progress)
    store_cached(params, kernel)
    return kernel


def _tail(args, progress, histories: int | None) -> dict:
    """Make (or find in the cache) the soft-tissue photon tail of args.nuclide; --out also writes it."""
    from VoxelDosimetryLib.cli.common import say
    from VoxelDosimetryLib.kernels.photon_tail import TAIL_HISTORIES, make_photon_tail, write_photon_tail

    histories = TAIL_HISTORIES if histories is None else histories
    tail, path, cached = make_photon_tail(args.nuclide or "Lu-177", histories, args.seed or 0, args.device,
                                          use_cache=not args.no_cache, progress=progress)
    say("kernel", f"photon tail {'cached' if cached else 'made'}: {path}")
    out = {"photon_tail": str(path), "nuclide": tail.nuclide, "reach_mm": tail.reach_mm,
           "energy_beyond_fraction": tail.metadata.get("energy_beyond_fraction")}
    if args.out:
        out["out"] = str(write_photon_tail(tail, args.out))
    return out


def run(args: argparse.Namespace) -> int:
    from VoxelDosimetryLib.cli.common import prepare_outputs, progress_printer, say
    from VoxelDosimetryLib.errors import InputFormatError
    from VoxelDosimetryLib.kernels.kernel import read_kernel, write_kernel

    if args.medium == "list":
        return _media_list()
    if args.photon_tail:
        extra = [flag for flag, value in (("--voxel-mm", args.voxel_mm), ("--size", args.size),
                                          ("--medium", args.medium), ("--density", args.density),
                                          ("--component", args.component), ("--resample-from", args.resample_from),
                                          ("--for-method", args.for_method)) if value]
        if extra:
            raise InputFormatError(f"--photon-tail makes the nuclide's soft-tissue photon tail (its grid is fixed): "
                                   f"drop {', '.join(extra)}.")
        if args.out:
            prepare_outputs({"--out": args.out}, [], {"--out": (".json",)})
        print(json.dumps(_tail(args, progress_printer("kernel"), args.histories), indent=1))
        return 0
    resampling = bool(args.resample_from)
    given = [flag for flag, value in (("--nuclide", args.nuclide), ("--histories", args.histories),
                                      ("--component", args.component), ("--seed", args.seed),
                                      ("--medium", args.medium), ("--density", args.density)) if value is not None]
    if resampling and given:
        raise InputFormatError(f"--resample-from keeps everything of the fine kernel but its voxel size: drop "
                               f"{', '.join(given)}.")
    args.nuclide = args.nuclide or "Lu-177"
    args.tail_histories = args.histories  # --for-method: the tail's own default unless --histories was given
    args.histories = 1_000_000 if args.histories is None else args.histories
    args.component = args.component or "total"
    args.seed = 0 if args.seed is None else args.seed
    if not args.voxel_mm:
        raise InputFormatError("Give the voxel size: --voxel-mm X (isotropic) or --voxel-mm X Y Z (mm).")
    progress = progress_printer("kernel")
    if args.for_method:
        if args.out or args.resample_from or args.medium or args.density is not None:
            raise InputFormatError("--for-method makes the method's kernels into the cache: drop --out, "
                                   "--resample-from, --medium and --density.")
        from VoxelDosimetryLib.dose.value_policy import AIR_DENSITY_G_CM3
        from VoxelDosimetryLib.kernels.generate import voxel_size
        from VoxelDosimetryLib.kernels.library import default_kernel_size
        from VoxelDosimetryLib.kernels.medium import method_media

        size = args.size or list(default_kernel_size(voxel_size(args.voxel_mm)))
        made = []
        for medium, density in method_media(args.for_method, AIR_DENSITY_G_CM3):
            kernel = _one(args, medium, density, size, progress)
            made.append({"medium": medium, "density_g_cm3": density,
                         "centre_relative_uncertainty": kernel.metadata.get("centre_relative_uncertainty")})
        from VoxelDosimetryLib.kernels.photon_tail import emits_photons, find_photon_tail

        needs_tail = emits_photons(args.nuclide) and args.component != "electron"
        tail = _tail(args, progress, args.tail_histories) if needs_tail and find_photon_tail(args.nuclide) is None \
            else None
        print(json.dumps({"method": args.for_method, "kernels": made, "photon_tail_made": tail}, indent=1))
        return 0
    if not args.out:
        raise InputFormatError("Name the output kernel file: --out K.nrrd.")
    from VoxelDosimetryLib.kernels.cache import inside_cache, kernel_cache_dir

    if inside_cache(args.out):
        raise InputFormatError(f"--out {args.out} lies in the kernel cache ({kernel_cache_dir()}), which this command "
                               "manages itself (every kernel it makes is cached there anyway): write elsewhere.")
    prepare_outputs({"--out": args.out}, [args.resample_from], {"--out": (".nrrd", ".nhdr")})
    if args.resample_from:
        from VoxelDosimetryLib.kernels.resample import resample_kernel

        fine = read_kernel(args.resample_from)
        size = args.size or None  # one value or three: resample_kernel reads both
        command = (f"voxeldosimetry kernel --resample-from {args.resample_from} --voxel-mm "
                   f"{' '.join(f'{v:g}' for v in args.voxel_mm)}"
                   + (f" --size {' '.join(str(n) for n in args.size)}" if args.size else "") + f" --out {args.out}")
        kernel = resample_kernel(fine, args.voxel_mm, size, command=command)
    else:
        if not args.size:
            raise InputFormatError("Give the kernel size: --size N (odd voxel count) or --size NX NY NZ.")
        if args.medium is None and args.density is None:
            raise InputFormatError("Name the medium (--medium soft_tissue; `--medium list` prints them) or give "
                                   "--density RHO (g/cm3).")
        kernel = _one(args, args.medium, args.density, args.size, progress)
    path = write_kernel(kernel, args.out)
    say("kernel", f"wrote {path}")
    print(json.dumps({"out": str(path), **kernel.describe(),
                      "absorbed_fraction_in_kernel": kernel.metadata.get("absorbed_fraction_in_kernel")},
                     indent=1, default=str))
    return 0
