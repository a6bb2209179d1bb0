"""`voxeldosimetry dose`: absorbed dose (from TIA) or dose rate (from activity) with a registered method."""
from __future__ import annotations

import argparse
import json


def add_parser(sub) -> argparse.ArgumentParser:
    from VoxelDosimetryLib.dose import available_dose_methods
    from VoxelDosimetryLib.volume.numbers import integer_type, number_type

    methods = ", ".join(f"{m.name} ({m.description})" for m in available_dose_methods())
    parser = sub.add_parser(
        "dose", help="dose or dose rate from a TIA or activity map and a CT",
        description="Compute absorbed dose (Gy) from a time-integrated activity map, or dose rate (Gy/s) from an "
                    f"activity map, on the CT grid (or --grid). Methods: {methods}. A source on another grid is "
                    "resampled onto the dose grid conserving activity. Stochastic methods end with an uncertainty "
                    "summary on stderr.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--activity", help="activity concentration image (Bq/mL) -> dose rate (Gy/s)")
    source.add_argument("--tia", help="time-integrated activity image (Bq*s/mL) -> dose (Gy)")
    parser.add_argument("--ct", required=True, help="CT image in HU (defines the dose grid unless --grid says "
                                                    "otherwise)")
    parser.add_argument("--grid", default="ct", metavar="ct|activity|FILE",
                        help="the dose grid: the CT's (default), the activity/TIA map's (the CT is averaged onto it: "
                             "far fewer voxels for Monte Carlo, e.g. a SPECT grid), or that of an image FILE "
                             "(both moved onto it; activity conserved)")
    parser.add_argument("--nuclide", default="Lu-177", help="radionuclide (default Lu-177)")
    parser.add_argument("--method", required=True, help="dose method name (see above)")
    parser.add_argument("--out", required=True, help="output dose image")
    parser.add_argument("--uncertainty", help="output relative uncertainty image (stochastic methods)")
    parser.add_argument("--histories", type=integer_type(positive=True),
                        help="number of decays to simulate (stochastic methods only, e.g. mc), e.g. 1e6")
    parser.add_argument("--seed", type=integer_type(minimum=0, example="42"), default=0,
                        help="random seed (stochastic methods)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--ct-offset-hu", type=number_type("HU"), default=0.0,
                        help="added to the CT file's values to obtain HU (e.g. -1000 for attenuation maps stored as "
                             "HU + 1000, such as the patient15 phantom)")
    parser.add_argument("--max-negative-fraction", type=number_type("1", minimum=0, example="0.1 or '10 %'"),
                        default=None, metavar="F",
                        help="value policy: negative source voxels are zeroed as reconstruction noise while their sum "
                             "stays below this fraction of the positive sum (default 0.1); above it the map is "
                             "refused (docs/RELIABILITY.md)")
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--total-activity-mbq", type=number_type("MBq", positive=True),
                       help="with --activity: the file holds relative activity; scale it to this total (MBq, or e.g. "
                            "'7.4 GBq')")
    scale.add_argument("--total-tia-mbq-h", type=number_type("MBq*h", positive=True),
                       help="with --tia: the file holds relative TIA; scale it to this total (MBq*h)")
    add_method_option_flags(parser, available_dose_methods())
    return parser


# dest prefix of the flags made from the methods' option schemas (kept apart from the command's own flags)
OPTION_DEST = "method_option_"


def method_option_flags(methods) -> dict:
    """{option name: [(method, DoseOption), ...]} over every registered method, in registry order."""
    flags: dict = {}
    for method in methods:
        for option in method.options:
            flags.setdefault(option.name, []).append((method, option))
    return flags


def _option_help(option) -> str:
    default = "none" if option.default is None else (str(option.default).lower() if option.type == "bool"
                                                     else option.default if option.default != "" else "''")
    text = f"{option.allowed_text()} (default {default})"
    return text + (f": {option.help}" if option.help else "")


def _flag_help(declared) -> str:
    """'led: electron|total (default electron): ...; dvk, svsv: total|electron|photon (default total): ...'
    (methods declaring the same schema share one entry)."""
    entries: dict = {}
    for method, option in declared:
        entries.setdefault(_option_help(option), []).append(method.name)
    return "; ".join(f"{', '.join(names)}: {text}" for text, names in entries.items())


def add_method_option_flags(parser: argparse.ArgumentParser, methods) -> list[str]:
    """One flag per distinct option name over `methods` (--track-length-photons for track_length_photons), its
    help generated from the schemas; values stay text, validated by the chosen method's resolve_options. An
    option whose flag would shadow one of the command's own flags is left to the API and the pipeline."""
    added = []
    group = parser.add_argument_group(
        "method options", "options declared by the dose methods (docs/DOSE_METHODS.md); each applies only to the "
                          "methods named in its help; `voxeldosimetry info` lists them all")
    for name, declared in method_option_flags(methods).items():
        flag = declared[0][1].flag
        if flag in parser._option_string_actions:  # e.g. a plug-in option called 'seed'
            continue
        metavar = "true|false" if all(o.type == "bool" for _, o in declared) else name.upper()
        text = _flag_help(declared)
        group.add_argument(flag, dest=OPTION_DEST + name, metavar=metavar, default=None,
                           help=text.replace("%", "%%"))
        added.append(flag)
    return added


def method_options(args: argparse.Namespace, method, methods) -> dict:
    """The method options given as flags, converted and checked by `method` (defaults filled); InputFormatError
    for a flag the method does not declare (naming the methods that do) or an invalid value."""
    from VoxelDosimetryLib.errors import InputFormatError

    declared = method_option_flags(methods)
    given = {name: getattr(args, OPTION_DEST + name) for name in declared
             if getattr(args, OPTION_DEST + name, None) is not None}
    foreign = [name for name in given if name not in method.option_names]
    if foreign:
        problems = [f"{declared[name][0][1].flag} applies to {', '.join(m.name for m, _ in declared[name])}"
                    for name in foreign]
        own = ", ".join(o.flag for o in method.options) or "none"
        raise InputFormatError(f"{'; '.join(problems)}, not to {method.name} (its options: {own}); drop "
                               f"{'it' if len(foreign) == 1 else 'them'} or choose that method.")
    return method.resolve_options(given, "--")


def _read_ct(path: str, offset_hu: float):
    """CT in HU (cli.inputs.read_ct: files declaring anything else are refused); `offset_hu` is added first
    (files that store HU + 1000). The file's own values are untouched."""
    import numpy as np

    from VoxelDosimetryLib.cli.inputs import read_ct

    ct = read_ct(path)
    if offset_hu == 0.0:
        return ct
    return ct.with_array(ct.array.astype(np.float32) + np.float32(offset_hu))


# What a relative source map (scaled to --total-activity-mbq / --total-tia-mbq-h) may declare itself to hold.
RELATIVE_SOURCE_QUANTITIES = ("unknown", "counts", "activity", "activity_concentration", "tia", "tia_concentration")


def _scaled_source(path: str, quantity: str, total: float | None, total_unit: str,
                   max_negative_fraction: float | None = None):
    """The source volume in its canonical unit; relative maps (`total` given) scaled so their sum is `total`
    after the shared value policy (NaN refused, small negatives zeroed, volume/source_values.py)."""
    import numpy as np

    from VoxelDosimetryLib.errors import InputFormatError
    from VoxelDosimetryLib.io import read_volume
    from VoxelDosimetryLib.volume.source_values import checked_source
    from VoxelDosimetryLib.volume.source_weights import checked_source_weights
    from VoxelDosimetryLib.volume.units import conversion_factor

    volume = read_volume(path)
    if total is None:
        volume.require_quantity(quantity)
        return volume
    if not total > 0:
        raise InputFormatError(f"The total must be > 0 {total_unit}; got {total}.")
    if volume.quantity not in RELATIVE_SOURCE_QUANTITIES:
        from VoxelDosimetryLib.errors import UnitError

        raise UnitError(f"{path} declares {volume.quantity} ({volume.unit}), not activity, TIA or counts: it cannot "
                        "be scaled to a total as a relative source map. Give the activity (or TIA) image.")
    volume, _summary = checked_source(volume, f"The relative source map {path}", max_negative_fraction)
    weights = checked_source_weights(volume.array, f"The relative source map {path}")
    canonical = "Bq/mL" if quantity == "activity_concentration" else "Bq*s/mL"
    total_canonical = total * conversion_factor(total_unit, canonical.replace("/mL", ""))
    per_ml = weights * (total_canonical / weights.sum() / volume.voxel_volume_ml)
    return volume.with_array(per_ml.astype(np.float32), quantity=quantity, unit=canonical)


def _source_fix(path: str, option: str, wanted: str, found: str) -> str:
    """What to do when the --activity/--tia file holds `found` instead of `wanted` (this command's own options)."""
    unit = "Bq/mL" if wanted == "activity_concentration" else "Bq*s/mL"
    total = "--total-activity-mbq" if option == "--activity" else "--total-tia-mbq-h"
    relabel = f"voxeldosimetry convert {path} COPY.nrrd --quantity {wanted} --unit {unit}"
    if found == "counts":
        return ("Counts must be calibrated first: `voxeldosimetry tia --image FILE --time-h H ... "
                "--sensitivity-cps-per-mbq S --counts-duration-s D` gives a TIA map for --tia, and the "
                f"`voxeldosimetry run` pipeline calibrates and integrates the timepoints; {total} uses the file as "
                f"a relative map scaled to a known total; if the file really holds {unit}, relabel a copy: "
                + relabel.replace(" --quantity", " --relabel --quantity"))
    if found == "unknown":
        return (f"State what it holds by writing a labelled copy: {relabel} (or the unit it is in), or use it as "
                f"a relative map with {total}")
    if option == "--activity" and found == "tia_concentration":
        return "It is a time-integrated activity map: give it as --tia (the result is then a dose in Gy)"
    if option == "--tia" and found == "activity_concentration":
        return ("It is an activity map: give it as --activity (dose rate in Gy/s), or integrate the timepoints "
                "into a TIA map first with `voxeldosimetry tia`")
    if found in ("activity", "tia"):
        return (f"It holds a total per voxel, not a concentration: use it as a relative map with {total}, or "
                "divide it by the voxel volume (mL) first")
    return f"Give the {wanted.replace('_', ' ')} map ({unit}) as {option}"


def run(args: argparse.Namespace) -> int:
    from VoxelDosimetryLib.cli.common import VOLUME_EXTENSIONS, prepare_outputs, progress_printer
    from VoxelDosimetryLib.dose import DoseRequest, available_dose_methods, compute_dose, get_dose_method
    from VoxelDosimetryLib.errors import InputFormatError, QuantityMismatchError
    from VoxelDosimetryLib.geometry import resample_to
    from VoxelDosimetryLib.io import write_volume

    method = get_dose_method(args.method)
    if args.uncertainty and not method.provides_uncertainty:
        raise InputFormatError(f"Method {method.name!r} gives no uncertainty map; drop --uncertainty.")
    if args.histories is not None and not method.stochastic:
        stochastic = ", ".join(m.name for m in available_dose_methods() if m.stochastic) or "none is registered"
        raise InputFormatError(f"--histories applies to stochastic methods ({stochastic}); {method.name} is "
                               "deterministic: drop --histories.")
    from VoxelDosimetryLib.montecarlo.sharding import is_main_process

    options = method_options(args, method, available_dose_methods())
    main_process = is_main_process()  # under torchrun only rank 0 writes and prints (montecarlo/sharding.py)
    if main_process:
        prepare_outputs({"--out": args.out, "--uncertainty": args.uncertainty}, [args.activity, args.tia, args.ct],
                        {"--out": VOLUME_EXTENSIONS, "--uncertainty": VOLUME_EXTENSIONS})
    _progress = progress_printer("dose") if main_process else (lambda fraction, message: None)
    ct = _read_ct(args.ct, args.ct_offset_hu)
    try:
        if args.activity:
            if args.total_tia_mbq_h is not None:
                raise InputFormatError("--total-tia-mbq-h goes with --tia; use --total-activity-mbq with --activity.")
            source = _scaled_source(args.activity, "activity_concentration", args.total_activity_mbq, "MBq",
                                    args.max_negative_fraction)
        else:
            if args.total_activity_mbq is not None:
                raise InputFormatError("--total-activity-mbq goes with --activity; use --total-tia-mbq-h with --tia.")
            source = _scaled_source(args.tia, "tia_concentration", args.total_tia_mbq_h, "MBq*h",
                                    args.max_negative_fraction)
    except QuantityMismatchError as exc:  # name this command's own fix, not the library's generic one
        option, path, wanted = (("--activity", args.activity, "activity_concentration") if args.activity
                                else ("--tia", args.tia, "tia_concentration"))
        found, found_unit = exc.found
        holds = "does not say what it holds" if found == "unknown" else f"holds {found} ({found_unit})"
        raise QuantityMismatchError(
            f"{path} {holds}, but {option} needs {wanted.replace('_', ' ')} "
            f"({'Bq/mL' if args.activity else 'Bq*s/mL'}). {_source_fix(path, option, wanted, found)}.",
            expected=exc.expected, found=exc.found) from None
    grid = _dose_grid(args.grid, ct, source)
    if ct.grid.mismatch(grid) is not None:
        from VoxelDosimetryLib.physics.voxel_mass import ct_on_grid

        _progress(0.0, f"averaging the CT onto the dose grid {grid.shape} at {_mm(grid.spacing)} mm")
        ct = ct_on_grid(ct, grid)
    difference = source.grid.mismatch(grid)
    if difference is not None:
        _progress(0.0, f"resampling the source onto the dose grid ({difference})")
        source = resample_to(source, ct, mode="activity")
    request = DoseRequest(source, ct, nuclide=args.nuclide, device=args.device, seed=args.seed,
                          histories=args.histories,
                          options=options,
                          max_negative_fraction=args.max_negative_fraction, progress=_progress)
    result = compute_dose(method.name, request)
    if not main_process:
        return 0
    written = {"dose": str(write_volume(result.dose, args.out))}
    if args.uncertainty and result.uncertainty is not None:
        written["uncertainty"] = str(write_volume(result.uncertainty, args.uncertainty))
    print(json.dumps({"method": method.name, "options": options, "outputs": written, "info": result.info,
                      "dose": result.dose.summary()}, indent=2, default=str))
    _say_uncertainty(result.info)
    return 0


def _mm(spacing) -> str:
    return " x ".join(f"{v:g}" for v in spacing)


def _dose_grid(choice: str, ct, source):
    """The Grid of --grid: 'ct', 'activity' (the source's) or an image file's."""
    from VoxelDosimetryLib.errors import InputFormatError
    from VoxelDosimetryLib.io import read_volume

    if choice == "ct":
        return ct.grid
    if choice == "activity":
        return source.grid
    from pathlib import Path

    if not Path(choice).is_file():
        raise InputFormatError(f"--grid takes ct, activity or an image file whose grid to use; {choice!r} is none "
                               "of these (no such file).")
    return read_volume(choice).grid


def _say_uncertainty(info: dict) -> None:
    """One stderr line with the statistical uncertainty of a stochastic method's dose (value policy summary) and,
    for a run with a stop rule, why it stopped."""
    from VoxelDosimetryLib.cli.common import say

    policy = info.get("value_policy") or {}
    median = policy.get("median_relative_uncertainty")
    if median is None:
        return
    text = (f"uncertainty: median {100 * median:.2g} %, 90th percentile "
            f"{100 * policy.get('p90_relative_uncertainty', float('nan')):.2g} % over the "
            f"{policy.get('uncertainty_voxels')} voxels above 10 % of the maximum dose")
    if info.get("uncertainty_goal") is not None or info.get("time_limit_s") is not None:
        text += (f"; {info.get('histories')} decays, stopped by {info['stop_reason'].replace('_', ' ')} (median "
                 f"{100 * info['goal_median_relative_uncertainty']:.2g} % over the body tissue the goal watches)")
    say("dose", text)
