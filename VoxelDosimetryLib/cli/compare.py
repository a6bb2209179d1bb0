"""`voxeldosimetry compare`: agreement of a test dose map with a reference (report.md, figures, metrics.json)."""
from __future__ import annotations

import argparse
import json


def add_parser(sub) -> argparse.ArgumentParser:
    from VoxelDosimetryLib.volume.numbers import integer_type, number_type

    parser = sub.add_parser(
        "compare", help="compare a test dose map with a reference (MAE%%, NRMSE, CCC, Bland-Altman, report)",
        description="Compare a test dose (or dose-rate) map with a reference map, e.g. a kernel method against "
                    "Monte Carlo: MAE%% (Kim et al. 2022 Eq. 3), NRMSE and ensemble noise (DblurDoseNet Sec. 2.5), "
                    "Pearson r, Lin's CCC, Bland-Altman, line profiles and error maps, inside the body "
                    "(CT > -500 HU) and per label. Writes the Markdown report, PNG figures, metrics.json, "
                    "difference_gy.nrrd and relative_error.nrrd into the report's folder; prints the metrics "
                    "JSON on stdout. See docs/COMPARE.md.")
    parser.add_argument("--test", required=True, help="test dose map (e.g. SVSV, DVK, network)")
    parser.add_argument("--reference", required=True, help="reference dose map (e.g. Monte Carlo); defines the grid")
    parser.add_argument("--labels", help="label map (integer segments, 0 = background) on the reference grid")
    parser.add_argument("--names", help='label names: JSON {"1": "liver", ...}, a case.json with label_names, a run\'s '
                                        'label_names.json, a Slicer .seg.nrrd or colour table (.txt/.ctbl)')
    parser.add_argument("--ct", help="CT in HU: body mask (CT > -500 HU) and mass-weighted segment means")
    parser.add_argument("--out", required=True, help="report path (report.md); other files go next to it")
    parser.add_argument("--test-realisation", action="append", default=[], metavar="R",
                        help="another realisation of the test method (repeat); with --test they give the ensemble "
                             "noise")
    parser.add_argument("--resample", action="store_true",
                        help="resample test (and CT, labels) onto the reference grid instead of failing on a "
                             "grid mismatch (linear; labels nearest)")
    parser.add_argument("--threshold-fraction", type=number_type("1", minimum=0, maximum=1), default=0.01,
                        help="relative errors only where reference > this fraction of its maximum (default 0.01)")
    point = parser.add_mutually_exclusive_group()
    point.add_argument("--point-lps", type=number_type("mm"), nargs=3, metavar=("X", "Y", "Z"),
                       help="profile point in LPS mm (default: the reference maximum)")
    point.add_argument("--point-index", type=integer_type(minimum=0, example="0"), nargs=3, metavar=("I", "J", "K"),
                       help="profile point as voxel index i (x), j (y), k (z)")
    parser.add_argument("--quantity", choices=("dose", "dose_rate"),
                        help="what the dose files hold when a file does not say (unit: --unit, default Gy or Gy/s); "
                             "a file that declares another quantity is refused")
    parser.add_argument("--unit", help="unit of dose files that state none (e.g. mGy); a file that declares another "
                                       "unit is refused")
    parser.add_argument("--title", help="report title")
    return parser


def read_names(path: str | None) -> dict:
    """Label names as `voi --names` reads them (voi/label_names.py): a JSON map {"1": "liver"}, a case.json with
    "label_names", a `run` pipeline's label_names.json, a Slicer .seg.nrrd or colour table."""
    from VoxelDosimetryLib.voi import read_label_names

    return read_label_names(path) if path else {}


def _read_dose(path: str, args: argparse.Namespace):
    from VoxelDosimetryLib.cli.inputs import read_input
    from VoxelDosimetryLib.errors import InputFormatError

    volume = read_input(path, args.quantity, args.unit)
    if volume.quantity == "unknown" or volume.unit == "unknown":
        raise InputFormatError(f"{path} does not state what it holds ({volume.quantity}, {volume.unit}); pass "
                               "--quantity dose (or dose_rate) and --unit if not Gy (Gy/s).")
    return volume


def run(args: argparse.Namespace) -> int:
    from VoxelDosimetryLib.cli.common import MARKDOWN, prepare_outputs, say
    from VoxelDosimetryLib.cli.inputs import read_ct, read_labels
    from VoxelDosimetryLib.metrics import compare_doses, write_report
    from VoxelDosimetryLib.metrics.report import metrics_document, report_files

    companions = report_files(args.out)[1:]
    prepare_outputs({"--out": args.out, **{f"--out's companion {p.name}": p for p in companions}},
                    [args.test, args.reference, args.labels, args.names, args.ct, *args.test_realisation],
                    {"--out": MARKDOWN})
    reference = _read_dose(args.reference, args)
    test = _read_dose(args.test, args)
    realisations = [_read_dose(p, args) for p in args.test_realisation]
    labels = read_labels(args.labels) if args.labels else None
    ct = read_ct(args.ct) if args.ct else None
    say("compare", f"comparing {args.test} with {args.reference}")
    result = compare_doses(test, reference, labels=labels, ct=ct, names=read_names(args.names),
                           threshold_fraction=args.threshold_fraction, realisations=realisations,
                           resample=args.resample, point_lps=args.point_lps, point_index=args.point_index)
    report = write_report(result, args.out, title=args.title)
    say("compare", f"wrote {report} and its figures")
    print(json.dumps({"report": str(report), **metrics_document(result)}, indent=2, allow_nan=False))
    return 0
