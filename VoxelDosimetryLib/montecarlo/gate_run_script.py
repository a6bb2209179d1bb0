#!/usr/bin/env python3
"""Run a GATE 10 (opengate) simulation exported by VoxelDosimetry (`voxeldosimetry gate export`).

This file is copied as run_gate.py into the export folder and needs only opengate (pip install opengate;
Geant4 data are fetched on first import) and the files beside it: simulation.json, ct.mhd (HU),
activity.mhd (source weights), and the media or Schneider tables it names.

    python run_gate.py                      # run; outputs in ./output (dose_*.mhd, stats.json, run_info.json)
    python run_gate.py --threads 8 --histories 10000000 --seed 7
    python run_gate.py --dry-run            # build the simulation and print it, do not run
    voxeldosimetry gate import output --case CASE --total-tia-bq-s T   # afterwards, back in VoxelDosimetry

Set up: CT as an ImageVolume with one material per HU interval (VoxelDosimetry's Schneider media), an ion
source (Z, A at rest, radioactive decay on) distributed like the activity image (one decay per primary), a
DoseActor on the CT grid (edep, dose, both relative uncertainties; output in the CT image's own frame) and a
SimulationStatisticsActor. Standalone on purpose: no VoxelDosimetry import.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

CONFIG_FILE = "simulation.json"
RUN_INFO_FILE = "run_info.json"


def load_config(folder: str | Path) -> dict:
    path = Path(folder) / CONFIG_FILE
    with open(path, encoding="utf-8") as fh:
        config = json.load(fh)
    if config.get("format") != "voxeldosimetry-gate-export":
        raise SystemExit(f"{path} is not a VoxelDosimetry GATE export (format field missing).")
    return config


def _declare_media(sim, media: list, g_cm3: float) -> list:
    """Declare each medium as a GATE material; returns ImageVolume.voxel_materials [[hu_low, hu_high, name]]."""
    voxel_materials = []
    for m in media:
        sim.volume_manager.material_database.add_material_weights(
            m["name"], list(m["elements"]), list(m["mass_fractions"]), m["density_g_cm3"] * g_cm3)
        low = -math.inf if m["hu_low"] is None else m["hu_low"]
        high = math.inf if m["hu_high"] is None else m["hu_high"]
        voxel_materials.append([low, high, m["name"]])
    return voxel_materials


def _schneider_media(sim, folder: Path, config: dict, g_cm3: float) -> list:
    """opengate's own Schneider split of the tables; HU outside them clamped to the end media like VoxelDosimetry."""
    from opengate.geometry.materials import HounsfieldUnit_to_material

    tables = config["schneider_tables"]
    voxel_materials, _ = HounsfieldUnit_to_material(sim, config["density_tolerance_g_cm3"] * g_cm3,
                                                    str(folder / tables["materials"]),
                                                    str(folder / tables["densities"]))
    voxel_materials[0][0] = -math.inf
    voxel_materials[-1][1] = math.inf
    return voxel_materials


def build_simulation(folder: str | Path = ".", output_dir: str | Path | None = None, threads: int | None = None,
                     histories: int | None = None, seed: int | None = None):
    """The configured opengate.Simulation (not initialised or run)."""
    import opengate as gate

    folder = Path(folder).resolve()
    config = load_config(folder)
    units = gate.g4_units
    mm, keV, g_cm3 = units.mm, units.keV, units.g_cm3
    threads = int(threads or config["threads"])
    histories = int(histories or config["histories"])
    seed = int(config["seed"] if seed is None else seed)

    sim = gate.Simulation()
    sim.random_engine = "MixMaxRng"
    sim.random_seed = seed
    sim.number_of_threads = threads
    sim.output_dir = str(Path(output_dir) if output_dir is not None else folder / config["output_dir"])
    sim.world.size = [s * mm for s in config["world_size_mm"]]
    sim.world.material = config["world_material"]

    patient = sim.add_volume("Image", "patient")
    patient.image = str(folder / config["ct_image"])
    patient.material = config["world_material"]
    if config["materials_mode"] == "media_table":
        patient.voxel_materials = _declare_media(sim, config["materials"], g_cm3)
    else:
        patient.voxel_materials = _schneider_media(sim, folder, config, g_cm3)

    ion = config["ion"]
    source = sim.add_source("VoxelSource", "activity")
    source.attached_to = "patient"
    source.image = str(folder / config["activity_image"])
    source.particle = "ion"
    source.ion.Z = int(ion["Z"])
    source.ion.A = int(ion["A"])
    source.ion.E = float(ion.get("excitation_kev", 0.0)) * keV
    source.energy.mono = 0 * keV
    source.direction.type = "iso"
    source.position.translation = [0, 0, 0]  # the activity image is on the CT grid
    source.n = int(math.ceil(histories / threads))  # opengate's n is per thread

    physics = sim.physics_manager
    physics.physics_list_name = config["physics_list"]
    physics.enable_decay = True
    physics.set_production_cut("world", "all", config["production_cut_mm"]["world"] * mm)
    physics.set_production_cut("patient", "all", config["production_cut_mm"]["patient"] * mm)

    dose = sim.add_actor("DoseActor", "dose")
    dose.attached_to = "patient"
    dose.size = list(config["ct_grid"]["size_xyz"])
    dose.spacing = [s * mm for s in config["ct_grid"]["spacing_mm"]]
    dose.output_coordinate_system = "attached_to_image"  # keep the CT's origin and direction
    dose.hit_type = "random"
    dose.output_filename = config["dose_output_filename"]
    dose.edep_uncertainty.active = True
    dose.dose.active = True
    dose.dose_uncertainty.active = True

    stats = sim.add_actor("SimulationStatisticsActor", "stats")
    stats.track_types_flag = True
    stats.output_filename = config["stats_file"]
    return sim


def describe_simulation(sim) -> dict:
    """A JSON-friendly summary of what build_simulation set up."""
    patient = sim.volume_manager.get_volume("patient")
    source = sim.source_manager.get_source("activity")
    dose = sim.actor_manager.get_actor("dose")
    return {
        "threads": sim.number_of_threads, "seed": sim.random_seed, "output_dir": str(sim.output_dir),
        "world_size_mm": [float(s) for s in sim.world.size], "ct_image": str(patient.image),
        "voxel_materials": len(patient.voxel_materials),
        "declared_materials": len(sim.volume_manager.material_database.new_materials_weights),
        "source": {"image": str(source.image), "particle": source.particle,
                   "ion": [int(source.ion.Z), int(source.ion.A)], "n_per_thread": int(source.n)},
        "physics_list": sim.physics_manager.physics_list_name,
        "decay": bool(sim.physics_manager.enable_decay),
        "dose_outputs": {name: str(getattr(dose, name).get_output_path())
                         for name in ("edep", "edep_uncertainty", "dose", "dose_uncertainty")},
        "dose_size": [int(v) for v in dose.size],
    }


def _version(package: str) -> str | None:
    try:
        from importlib.metadata import version
        return version(package)
    except Exception:  # noqa: BLE001 - metadata lookups fail in odd installs; the version is informative only
        return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Run the exported GATE 10 dosimetry simulation.")
    parser.add_argument("--threads", type=int, help="worker threads (default from simulation.json)")
    parser.add_argument("--histories", type=int, help="number of decays to simulate (default from simulation.json)")
    parser.add_argument("--seed", type=int, help="random seed (default from simulation.json)")
    parser.add_argument("--output", help="output folder (default ./output next to this script)")
    parser.add_argument("--dry-run", action="store_true", help="build and describe the simulation, do not run it")
    args = parser.parse_args(argv)
    folder = Path(__file__).resolve().parent
    sim = build_simulation(folder, args.output, args.threads, args.histories, args.seed)
    summary = describe_simulation(sim)
    print(json.dumps(summary, indent=1))
    if args.dry_run:
        return 0
    config = load_config(folder)
    start = time.time()
    sim.run(start_new_process=False)
    info = {"opengate_version": _version("opengate"), "opengate_core_version": _version("opengate-core"),
            "threads": sim.number_of_threads, "seed": sim.random_seed,
            "histories_requested": summary["source"]["n_per_thread"] * sim.number_of_threads,
            "wall_time_s": time.time() - start, "source": config.get("source"),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    out = Path(sim.output_dir)
    (out / RUN_INFO_FILE).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    print(f"Done in {info['wall_time_s']:.1f} s. Import with:\n  {config.get('import_command', '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
