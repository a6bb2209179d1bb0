"""`voxeldosimetry voi`: per-segment dose statistics (mass-weighted mean, Dx, Vx) and DVH tables and plot."""
from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    from VoxelDosimetryLib.voi import DEFAULT_DX_PERCENT
    from VoxelDosimetryLib.voi.table import DEFAULT_DVH_SAMPLES
    from VoxelDosimetryLib.volume.numbers import integer_type, number_type

    parser = sub.add_parser(
        "voi", help="segment dose statistics and dose-volume histograms",
        description="Per-segment statistics of a dose (Gy) or dose-rate (Gy/s) image: volume, mass, mass-weighted "
                    "mean dose (Kim et al. Eq. 2), min/max/median/std, D_x%, D_x cc and V_x (linear interpolation "
                    "on the cumulative DVH, as SlicerRT). Labels are resampled onto the dose grid by nearest "
                    "neighbour. The table is printed on stdout (aligned text, or JSON with --json -). "
                    "See docs/SEGMENT_DOSE.md.")
    parser.add_argument("--dose", required=True, help="dose (Gy) or dose-rate (Gy/s) image; defines the grid")
    parser.add_argument("--dose-unit", help="unit of the dose image when the file does not say (Gy, mGy, Gy/s, ...); "
                                            "a file that declares another unit is refused")
    density = parser.add_mutually_exclusive_group()
    density.add_argument("--ct", help="CT in HU: voxel masses from Schneider 2000 densities (without it 1.0 g/cm3)")
    density.add_argument("--density", help="mass-density image (g/cm3) instead of a CT")
    parser.add_argument("--labels", required=True, help="label map (0 = background), e.g. a TotalSegmentator "
                                                        "output or a Slicer .seg.nrrd with one layer")
    parser.add_argument("--names", help="label names: JSON {\"1\": \"spleen\", ...}, Slicer .seg.nrrd or colour "
                                        "table (.txt/.ctbl); default: names in the label file, else label_<n>")
    parser.add_argument("--out", required=True, help="output table (CSV)")
    parser.add_argument("--json", metavar="PATH", help="also write the table as JSON ('-': on stdout instead of text)")
    parser.add_argument("--dvh", metavar="CSV", help="write the cumulative and differential DVHs (long format CSV)")
    parser.add_argument("--plot", metavar="PNG", help="write a cumulative DVH plot")
    parser.add_argument("--title", help="plot title")
    parser.add_argument("--dvh-samples", type=integer_type(positive=True, example="200"), default=DEFAULT_DVH_SAMPLES,
                        help=f"dose steps of the DVH CSV and plot (default {DEFAULT_DVH_SAMPLES})")
    parser.add_argument("--dx", type=number_type(example="90"), nargs="+", default=list(DEFAULT_DX_PERCENT),
                        metavar="X",
                        help="D_x%% values (default: %(default)s)")
    parser.add_argument("--dx-cc", type=number_type("mL", positive=True), nargs="+", default=[], metavar="ML",
                        help="D_x cc volumes (mL)")
    parser.add_argument("--vx-gy", type=number_type(minimum=0, example="20"), nargs="+", default=[], metavar="DOSE",
                        help="V_x doses, in Gy (or Gy/s for a dose-rate image)")
    return parser


def _progress(message: str) -> None:
    from VoxelDosimetryLib.cli.common import say

    say("voi", message)


def run(args: argparse.Namespace) -> int:
    from VoxelDosimetryLib.cli.common import CSV, JSON, PNG, prepare_outputs
    from VoxelDosimetryLib.cli.inputs import read_as, read_ct, read_input, read_labels
    from VoxelDosimetryLib.errors import InputFormatError, UnitError
    from VoxelDosimetryLib.voi import plot_dvh, read_label_names, segment_statistics

    if args.dvh_samples < 1:
        raise InputFormatError(f"--dvh-samples must be at least 1; got {args.dvh_samples}.")
    prepare_outputs({"--out": args.out, "--json": None if args.json == "-" else args.json, "--dvh": args.dvh,
                     "--plot": args.plot}, [args.dose, args.ct, args.density, args.labels, args.names],
                    {"--out": CSV, "--json": JSON, "--dvh": CSV, "--plot": PNG})
    dose = read_input(args.dose, unit=args.dose_unit, option="--dose-unit")
    if dose.quantity == "unknown":
        raise UnitError(f"{args.dose} does not say what it holds; add --dose-unit Gy (dose) or --dose-unit Gy/s "
                        "(dose rate), or the unit it is in (mGy, mGy/h, ...).")
    if dose.quantity not in ("dose", "dose_rate"):
        raise UnitError(f"{args.dose} declares {dose.quantity} ({dose.unit}), not a dose (Gy) or dose rate (Gy/s): "
                        "give a dose image as --dose. Make one with `voxeldosimetry dose` (--tia gives Gy, "
                        "--activity gives Gy/s) or the `voxeldosimetry run` pipeline.")
    labels = read_labels(args.labels)
    ct = read_ct(args.ct) if args.ct else None
    density = read_as(args.density, ("density",), "--density", "a mass-density image (g/cm3)") \
        if args.density else None
    names = read_label_names(args.names) if args.names else None
    if ct is None and density is None:
        _progress("no --ct or --density: masses use 1.0 g/cm3")
    table = segment_statistics(dose, labels, ct=ct, names=names, dx_percent=args.dx, dx_cc=args.dx_cc,
                               vx_gy=args.vx_gy, density=density)
    _progress(f"table written to {table.to_csv(args.out)}")
    if args.json and args.json != "-":
        _progress(f"JSON written to {table.to_json(args.json)}")
    if args.dvh:
        _progress(f"DVH table written to {table.dvh_to_csv(args.dvh, samples=args.dvh_samples)}")
    if args.plot:  # raises (exit 1) when no segment has voxels on the dose grid
        _progress(f"DVH plot written to {plot_dvh(table, args.plot, title=args.title, samples=args.dvh_samples)}")
    print(table.to_json_text() if args.json == "-" else table.to_text())
    return 0
