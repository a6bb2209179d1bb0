"""`voxeldosimetry demo`: the main job on the embedded default case (grows with each pipeline stage)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("demo", help="run the pipeline on the embedded generated four-timepoint case",
                            description="Generate the default virtual-patient case (CT, labels, four Lu-177 SPECT "
                                        "timepoints), load it, convert CT to density and media, bring every SPECT "
                                        "onto the CT grid and print the case summary.")
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the generated case")
    return parser


def _progress(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from VoxelDosimetryLib.io import write_volume
    from VoxelDosimetryLib.physics import MediaTable, ct_to_density
    from VoxelDosimetryLib.pipeline import read_case
    from VoxelDosimetryLib.pipeline.case_summary import spects_on_ct_grid, summarize_case
    from VoxelDosimetryLib.simulate.demo_case import generate_demo_case

    out = Path(args.out)
    _progress(f"generating the virtual-patient case in {out / 'case'}")
    generate_demo_case(out / "case", seed=args.seed)
    case = read_case(out / "case")
    ct, labels = case.load_ct(), case.load_labels()
    _progress(f"loaded case {case.id}: CT {ct.shape} at {ct.spacing} mm, {len(case.timepoints)} SPECT timepoints")

    converted = out / "converted"
    _progress("converting CT to density (Schneider 2000) and media (GATE tolerance 0.05 g/cm3)")
    density = ct_to_density(ct)
    media_table = MediaTable.from_schneider(0.05)
    media = ct.with_array(media_table.media_index(ct.array), quantity="media", unit="label")
    write_volume(density, converted / "density.nrrd")
    write_volume(media, converted / "media.nrrd")
    (converted / "media.json").write_text(media_table.to_json())
    write_volume(ct, converted / "ct.nii.gz")

    _progress("resampling each SPECT onto the CT grid (activity-conserving)")
    spects = spects_on_ct_grid(case, ct)
    for tp, spect in zip(case.timepoints, spects):
        write_volume(spect, converted / f"spect_{tp.time_h:g}h_on_ct.nrrd")
    summary = summarize_case(case, spects, labels)
    summary["density_g_cm3"] = {"min": float(density.array.min()), "max": float(density.array.max())}
    summary["media_used"] = int(len(set(media.array.reshape(-1).tolist())))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _print_summary(summary, case.label_names)
    _progress(f"done: outputs in {out}")
    return 0


def _print_summary(summary: dict, names: dict[str, str]) -> None:
    print(f"Case {summary['case']}: {summary['nuclide']} (T1/2 {summary['half_life_h']:.1f} h), "
          f"administered {summary['administered_activity_bq'] / 1e9:.2f} GBq")
    print(f"CT density {summary['density_g_cm3']['min']:.3f}-{summary['density_g_cm3']['max']:.3f} g/cm3, "
          f"{summary['media_used']} Schneider media present")
    header = f"{'time (h)':>8} {'total (MBq)':>12} {'% adm':>7} {'% adm, decay-corr':>18}"
    print(header)
    for row in summary["timepoints"]:
        print(f"{row['time_h']:8.1f} {row['total_activity_bq'] / 1e6:12.1f} {row['percent_of_administered']:7.2f} "
              f"{row['percent_of_decayed_administered']:18.2f}")
    print("segment activity (MBq) per timepoint:")
    print(f"{'segment':<14}" + "".join(f"{row['time_h']:>10.0f} h" for row in summary["timepoints"]))
    for name in names.values():
        print(f"{name:<14}" + "".join(f"{row['segments_bq'][name] / 1e6:12.2f}" for row in summary["timepoints"]))
