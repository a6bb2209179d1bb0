"""`voxeldosimetry demo`: generate a four-timepoint case and run the whole pipeline on it (`make demo`)."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> argparse.ArgumentParser:
    from VoxelDosimetryLib.volume.numbers import integer_type

    parser = sub.add_parser(
        "demo", help="generate a four-timepoint Lu-177 case and run the pipeline on it",
        description="Generate the default virtual-patient case (or, with --from-ct, a case built on a real CT and "
                    "its organ labels, with known patient shifts between timepoints) into OUT/case, run the whole "
                    "pipeline (registration, calibration, time integration, dose, segment statistics, DVH, "
                    "report) into OUT/run and print the segment dose table.")
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    parser.add_argument("--seed", type=integer_type(minimum=0, example="42"), default=0,
                        help="random seed of the generated case")
    parser.add_argument("--from-ct", metavar="CT", help="build the case on this CT (HU) instead of the phantom")
    parser.add_argument("--labels", help="with --from-ct: organ label map on the CT")
    parser.add_argument("--names", help="with --from-ct: label names (JSON {label: name}, e.g. class_map_total.json)")
    parser.add_argument("--counts", action="store_true",
                        help="with --from-ct: store the SPECTs as counts (the pipeline calibrates them)")
    parser.add_argument("--method", default="led", help="dose method (default led)")
    parser.add_argument("--model", default="auto", help="time-integration model (default auto)")
    return parser


def _say(message: str) -> None:
    from VoxelDosimetryLib.cli.common import say

    say("demo", message)


def run(args: argparse.Namespace) -> int:
    from VoxelDosimetryLib.cli.common import prepare_outputs
    from VoxelDosimetryLib.cli.run import print_result, progress
    from VoxelDosimetryLib.errors import InputFormatError
    from VoxelDosimetryLib.pipeline import PipelineConfig, run_pipeline

    out = Path(args.out)
    case_folder = "" if args.out == "" else out / "case"  # an empty --out is refused, not taken as "."
    prepare_outputs({"--out (case folder)": case_folder}, [args.from_ct, args.labels, args.names])
    if args.from_ct:
        if not (args.labels and args.names):
            raise InputFormatError("--from-ct needs --labels (organ label map) and --names (label names JSON).")
        from VoxelDosimetryLib.simulate.ct_based_case import build_case_from_ct

        _say(f"building a four-timepoint case on {args.from_ct} in {out / 'case'}")
        build_case_from_ct(args.from_ct, args.labels, args.names, out / "case", seed=args.seed,
                           spect_unit="counts" if args.counts else "Bq/mL")
    else:
        if args.labels or args.names or args.counts:
            raise InputFormatError("--labels, --names and --counts go with --from-ct.")
        from VoxelDosimetryLib.simulate.demo_case import generate_demo_case

        _say(f"generating the virtual-patient case in {out / 'case'}")
        generate_demo_case(out / "case", seed=args.seed)
    config = PipelineConfig.from_case(out / "case").with_changes(dose={"method": args.method},
                                                                time_integration={"model": args.model})
    result = run_pipeline(config, out / "run", progress=progress, force=args.force)
    print_result(config, result, as_json=False)
    return 0
