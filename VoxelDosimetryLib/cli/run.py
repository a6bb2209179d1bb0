"""`voxeldosimetry run`: the whole pipeline on a case folder or a YAML/JSON config (docs/PIPELINE.md)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

TABLE_COLUMNS = ("label", "name", "status", "volume_ml", "mass_g", "tia_mbq_h", "mean_gy", "d90_gy", "d10_gy",
                 "max_gy")


def add_parser(sub) -> argparse.ArgumentParser:
    from VoxelDosimetryLib.volume.numbers import integer_type, number_type

    parser = sub.add_parser(
        "run", help="run the whole pipeline on a case folder or a YAML/JSON config",
        description="Registration of each timepoint's CT to the reference CT, SPECT calibration (counts -> Bq/mL), "
                    "activity onto the dose grid, time integration, dose, segment statistics, DVH and a Markdown "
                    "report, every intermediate saved in --out. Steps whose inputs and parameters are unchanged "
                    "are reused on reruns (--force recomputes). Progress on stderr; the segment dose table on "
                    "stdout. Config keys: docs/PIPELINE.md.")
    parser.add_argument("source", metavar="CASE_OR_CONFIG", help="case folder (with case.json) or a .yaml/.json config")
    parser.add_argument("--out", required=True, help="output folder (reruns into it reuse unchanged steps)")
    parser.add_argument("--data-root", help="folder that relative input paths of the config refer to")
    parser.add_argument("--json", action="store_true", help="print the result (outputs, steps, table) as JSON")
    override = parser.add_argument_group("settings overriding the config")
    override.add_argument("--method", help="dose method from the registry (e.g. led, mc)")
    override.add_argument("--model", help="time-integration model (auto, trapezoid, trapezoid_fit_tail, mono_exp, "
                                          "bi_exp, hanscheid)")
    override.add_argument("--dose-order", choices=("tia_then_dose", "dose_rate_then_integrate"))
    override.add_argument("--dose-grid", choices=("spect", "ct"))
    override.add_argument("--registration", choices=("rigid", "affine", "bspline", "none"))
    override.add_argument("--histories", type=integer_type(positive=True), help="decays to simulate (Monte Carlo)")
    override.add_argument("--seed", type=integer_type(minimum=0, example="42"), help="random seed of the dose method")
    override.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    override.add_argument("--max-negative-fraction", type=number_type(minimum=0), metavar="F",
                          help="value policy: negative voxels are zeroed as noise while their sum stays below this "
                               "fraction of the positive sum (default 0.1); above it the input is refused")
    return parser


def load_config(source: str | Path, data_root: str | None = None):
    """PipelineConfig from a case folder or a config file."""
    from VoxelDosimetryLib.errors import InputFormatError
    from VoxelDosimetryLib.pipeline import PipelineConfig

    path = Path(source)
    if path.is_dir():
        if not (path / "case.json").is_file():
            raise InputFormatError(f"{path} is a folder without case.json; give a case folder or a .yaml/.json config.")
        config = PipelineConfig.from_case(path)
        return config.with_changes(data_root=data_root) if data_root else config
    return PipelineConfig.from_file(path, data_root=data_root)


def apply_overrides(config, args: argparse.Namespace):
    dose = {k: v for k, v in (("method", args.method), ("order", args.dose_order), ("histories", args.histories),
                              ("seed", args.seed), ("device", args.device)) if v is not None}
    changes = {}
    if dose:
        changes["dose"] = dose
    if args.model:
        changes["time_integration"] = {"model": args.model}
    if args.registration:
        changes["registration"] = {"kind": args.registration}
    if args.dose_grid:
        changes["dose_grid"] = args.dose_grid
    if args.max_negative_fraction is not None:
        changes["max_negative_fraction"] = args.max_negative_fraction
    return config.with_changes(**changes) if changes else config


def progress(fraction: float, message: str) -> None:
    from VoxelDosimetryLib.cli.common import say

    say(f"run {100 * fraction:.0f}%", message)


def format_table(rows: list[dict]) -> str:
    """The segment dose table (segments with voxels on the dose grid) as aligned text."""
    from VoxelDosimetryLib.voi import SegmentTable

    shown = [r for r in rows if r.get("voxels")]
    return SegmentTable(rows=shown, dvhs={}).to_text([c for c in TABLE_COLUMNS if any(c in r for r in shown)])


def print_result(config, result, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
        return
    times = ", ".join(f"{float(tp.time_h):g}" for tp in config.timepoints)
    print(f"Case {config.case_id}: {config.nuclide}, {len(config.timepoints)} timepoint(s) at {times} h, "
          f"time integration {config.model_for_run()}, dose method {config.dose.method} ({config.dose.order})")
    print(format_table(result.segment_rows))
    print(f"report: {result.report}")


def run(args: argparse.Namespace) -> int:
    from VoxelDosimetryLib.cli.common import prepare_outputs
    from VoxelDosimetryLib.pipeline import run_pipeline

    config = apply_overrides(load_config(args.source, args.data_root), args)
    prepare_outputs({}, [args.source])  # the config file (or case folder) is an input too
    result = run_pipeline(config, args.out, progress=progress, force=args.force)
    print_result(config, result, args.json)
    return 0
