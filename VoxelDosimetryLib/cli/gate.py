"""`voxeldosimetry gate import|export`: GATE (9 and 10/opengate) Monte Carlo interoperability."""
from __future__ import annotations

import argparse
from pathlib import Path
import json
import os


def add_parser(sub) -> argparse.ArgumentParser:
    from VoxelDosimetryLib.volume.numbers import integer_type, number_type

    parser = sub.add_parser(
        "gate", help="import GATE dose outputs into a case, or export a case as a GATE 10 simulation",
        description="GATE interoperability. 'import' turns DoseActor outputs (GATE 9 or 10, or this library's MC "
                    "outputs) into the case's Monte Carlo label (mc/); 'export' writes a GATE 10 (opengate) "
                    "simulation folder with a run_gate.py script. See docs/GATE.md.")
    actions = parser.add_subparsers(dest="gate_command", metavar="ACTION")
    actions.required = True

    imp = actions.add_parser(
        "import", help="import DoseActor outputs as a case's MC dose label",
        description="Read PREFIX dose/edep/uncertainty images and the statistics file from GATE_OUTPUT_DIR, divide "
                    "the dose by the number of simulated decays (Gy per decay), optionally scale it by the source's "
                    "total TIA (-> Gy) or activity (-> Gy/s), check the grid against the case CT and write "
                    "CASE_DIR/mc/{dose,uncertainty}.nrrd, mc/metadata.json and case.json's 'mc' entry.")
    imp.add_argument("output_dir", metavar="GATE_OUTPUT_DIR", help="folder with the DoseActor outputs")
    imp.add_argument("--case", required=True, metavar="CASE_DIR", help="case folder to receive the MC label")
    imp.add_argument("--prefix", help="output set to import, e.g. 'output' for GATE 9 output-Dose.mhd or 'dose' for "
                                      "GATE 10 dose_dose.mhd (default: the only set in the folder)")
    imp.add_argument("--stats", metavar="FILE", help="statistics file (default: the *stat* .txt/.json in the folder)")
    imp.add_argument("--histories", type=integer_type(positive=True),
                     help="number of simulated primaries (overrides the statistics file)")
    total = imp.add_mutually_exclusive_group()
    total.add_argument("--total-tia-bq-s", type=number_type("Bq*s", positive=True), metavar="T",
                       help="total TIA of the simulated source (Bq*s): store dose in Gy")
    total.add_argument("--total-activity-bq", type=number_type("Bq", positive=True), metavar="A",
                       help="total activity of the simulated source (Bq): store dose rate in Gy/s")
    imp.add_argument("--align-to-ct", action="store_true",
                     help="adopt the CT grid when the MC grid has the CT's shape and spacing but another origin")

    exp = actions.add_parser(
        "export", help="write a GATE 10 (opengate) simulation of a case",
        description="Write ct.mhd, activity.mhd (on the CT grid), simulation.json, Schneider tables, run_gate.py and "
                    "README.md into --out. The source is an ion (e.g. Lu-177) at rest with radioactive decay, one "
                    "decay per primary. --build also constructs the opengate.Simulation in this process (needs "
                    "opengate; sets GATEONRTD=1 when unset so no Geant4 data are fetched).")
    exp.add_argument("--case", metavar="CASE_DIR", help="case folder: its CT and TIA (or --activity)")
    exp.add_argument("--ct", help="CT image in HU (without --case)")
    exp.add_argument("--activity", help="source image: activity (Bq/mL, Bq) or TIA (Bq*s/mL, Bq*s)")
    exp.add_argument("--out", required=True, metavar="DIR", help="export folder")
    exp.add_argument("--nuclide", help="radionuclide (default: the case's, else Lu-177)")
    exp.add_argument("--histories", type=integer_type(positive=True), default=1_000_000,
                     help="decays to simulate (default 1e6)")
    exp.add_argument("--seed", type=integer_type(minimum=0, example="42"), default=1, help="random seed (default 1)")
    exp.add_argument("--threads", type=integer_type(positive=True, example="4"), default=1,
                     help="opengate threads written to simulation.json")
    exp.add_argument("--physics-list", default="G4EmStandardPhysics_option4", help="Geant4 physics list")
    exp.add_argument("--cut-mm", type=number_type("mm", positive=True), default=0.1,
                     help="production cut in the patient (mm, default 0.1)")
    exp.add_argument("--density-tolerance", type=number_type("g/cm3", positive=True), default=0.05,
                     help="Schneider media density tolerance (g/cm3, default 0.05 -> 74 media)")
    exp.add_argument("--materials", choices=("media_table", "schneider_tables"), default="media_table",
                     help="declare VoxelDosimetry's media (default) or let opengate split the Schneider tables")
    exp.add_argument("--build", action="store_true", help="also build the opengate.Simulation here and report it")
    return parser


def _import(args: argparse.Namespace) -> int:
    from VoxelDosimetryLib.cli.common import prepare_outputs, say
    from VoxelDosimetryLib.io.safe_write import current_session
    from VoxelDosimetryLib.montecarlo.gate_import import MC_FOLDER, import_gate_to_case

    mc = Path(args.case) / MC_FOLDER
    prepare_outputs({"--case mc/dose.nrrd": mc / "dose.nrrd", "--case mc/uncertainty.nrrd": mc / "uncertainty.nrrd",
                     "--case mc/metadata.json": mc / "metadata.json"}, [args.output_dir, args.stats])
    session = current_session()
    if session is not None:
        session.allow_update(Path(args.case) / "case.json")  # the import adds its mc entry to the case
    summary = import_gate_to_case(args.output_dir, args.case, prefix=args.prefix, stats=args.stats,
                                  histories=args.histories, total_tia_bq_s=args.total_tia_bq_s,
                                  total_activity_bq=args.total_activity_bq, align_to_ct=args.align_to_ct)
    print(json.dumps(summary, indent=2, default=str))
    offset = summary["geometry"]["offset_mm"]
    say("gate import", f"imported {summary['mc']['histories']} histories into {args.case}/mc "
                       f"({summary['mc']['quantity']}); MC minus CT origin {[round(v, 3) for v in offset]} mm")
    return 0


def _export(args: argparse.Namespace) -> int:
    from VoxelDosimetryLib.cli.common import FOLDER, prepare_outputs, say
    from VoxelDosimetryLib.cli.inputs import read_ct
    from VoxelDosimetryLib.errors import InputFormatError
    from VoxelDosimetryLib.io import read_volume
    from VoxelDosimetryLib.montecarlo.gate_export import (OpenGateUnavailableError, build_gate_simulation,
                                                          export_case, export_gate_simulation)

    options = {"histories": args.histories, "seed": args.seed, "threads": args.threads,
               "physics_list": args.physics_list, "cut_mm": args.cut_mm,
               "density_tolerance_g_cm3": args.density_tolerance, "materials_mode": args.materials}
    if args.nuclide:
        options["nuclide"] = args.nuclide
    prepare_outputs({"--out": args.out}, [args.case, args.ct, args.activity], {"--out": FOLDER})
    if args.case:
        if args.ct:
            raise InputFormatError("Give either --case (its CT is used) or --ct, not both.")
        export = export_case(args.case, args.out, args.activity, **options)
    else:
        if not (args.ct and args.activity):
            raise InputFormatError("Give --case CASE_DIR, or both --ct CT and --activity IMAGE.")
        export = export_gate_simulation(read_ct(args.ct), read_volume(args.activity), args.out,
                                        **options)
    result = export.to_dict()
    say("gate export", f"wrote the GATE 10 simulation to {export.folder}")
    if args.build:
        if os.environ.get("GATEONRTD") is None:
            os.environ["GATEONRTD"] = "1"  # build only: skip opengate's Geant4 data check/download at import
            say("gate export", "GATEONRTD=1 set for this process: the simulation is built, not run")
        try:
            _, result["build"] = build_gate_simulation(export.folder)
        except OpenGateUnavailableError as exc:
            raise OpenGateUnavailableError(f"The export in {export.folder} is complete, but --build failed: {exc}") \
                from None
    print(json.dumps(result, indent=2, default=str))
    return 0


def run(args: argparse.Namespace) -> int:
    return _import(args) if args.gate_command == "import" else _export(args)
