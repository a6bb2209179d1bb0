"""`voxeldosimetry-train`: command line of the Training package."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from Training.dataset_index import index_cases


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxeldosimetry-train",
                                     description="Train VoxelDosimetry dose networks from case folders.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    cases = sub.add_parser("cases", help="list the case folders under ROOT and whether each can be used for training")
    cases.add_argument("root", metavar="ROOT")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        entries = index_cases(args.root)
    except FileNotFoundError as exc:
        print(f"voxeldosimetry-train: error: {exc}", file=sys.stderr)
        return 1
    print(f"{'case':<28} {'timepoints':>10} {'labels':>6} {'truth':>5} {'mc':>3}  status")
    for e in entries:
        status = "usable" if e.usable else (e.problem or "no Monte Carlo dose label (case.json \"mc\")")
        print(f"{(e.case_id or e.folder.name):<28} {e.timepoints:>10} {'yes' if e.has_labels else 'no':>6} "
              f"{'yes' if e.has_truth else 'no':>5} {'yes' if e.has_mc else 'no':>3}  {status}")
    print(f"{sum(e.usable for e in entries)} of {len(entries)} cases usable for training", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
