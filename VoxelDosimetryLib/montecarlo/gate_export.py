"""Export a dosimetry case as a GATE 10 (opengate) simulation folder, and build it in memory when opengate is
installed.

    export = export_gate_simulation(ct, tia, "gate_case", histories=10_000_000, seed=1)
    sim, summary = build_gate_simulation("gate_case")          # needs opengate (GATEONRTD=1: skip G4 data)

The folder holds ct.mhd (HU, the CT grid), activity.mhd (source weights on the CT grid), simulation.json
(every setting), the Schneider tables in GATE's format, run_gate.py (gate_run_script.py: builds and runs the
simulation with opengate alone) and README.md. Writing needs no opengate. The simulated source is an ion
(e.g. Lu-177: Z 71, A 177) at rest with radioactive decay, so each primary is one decay and the outputs
import back with `voxeldosimetry gate import` (dose per decay = dose / events).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError, UnitError, VoxelDosimetryError
from VoxelDosimetryLib.volume.source_values import checked_source
from VoxelDosimetryLib.volume.source_weights import checked_source_weights
from VoxelDosimetryLib.volume.volume import Volume
from VoxelDosimetryLib.io.safe_write import atomic_output, write_text_atomic

EXPORT_FORMAT = "voxeldosimetry-gate-export"
CONFIG_FILE = "simulation.json"
SCRIPT_FILE = "run_gate.py"
OUTPUT_DIR = "output"
DOSE_OUTPUT_FILENAME = "dose.mhd"  # opengate then writes dose_edep.mhd, dose_dose.mhd, dose_*_uncertainty.mhd
STATS_FILE = "stats.json"
PHYSICS_LISTS = ("G4EmStandardPhysics_option4", "G4EmStandardPhysics_option3", "G4EmLivermorePhysics",
                 "G4EmPenelopePhysics", "QGSP_BIC_EMZ", "QGSP_BERT_EMZ")
_SOURCE_TOTALS = {"activity_concentration": ("Bq", True), "activity": ("Bq", False),
                  "tia_concentration": ("Bq*s", True), "tia": ("Bq*s", False)}
# atomic numbers of the elements of radionuclides used in therapy and imaging
_Z = {"F": 9, "P": 15, "Cu": 29, "Ga": 31, "Sr": 38, "Y": 39, "Tc": 43, "In": 49, "I": 53, "Sm": 62, "Tb": 65,
      "Ho": 67, "Er": 68, "Lu": 71, "Re": 75, "Pb": 82, "Bi": 83, "At": 85, "Ra": 88, "Ac": 89, "Th": 90}


class OpenGateUnavailableError(VoxelDosimetryError, ImportError):
    """opengate is not installed, or importing it failed."""


@dataclass(frozen=True)
class GateExport:
    """What export_gate_simulation wrote: the folder, file paths by role, and the configuration."""

    folder: Path
    files: dict
    config: dict

    def to_dict(self) -> dict:
        return {"folder": str(self.folder), "files": {k: str(v) for k, v in self.files.items()},
                "histories": self.config["histories"], "seed": self.config["seed"],
                "physics_list": self.config["physics_list"], "ion": self.config["ion"],
                "source": self.config["source"], "materials": len(self.config.get("materials", [])),
                "notes": self.config["notes"], "import_command": self.config["import_command"]}


def nuclide_ion(nuclide: str) -> dict:
    """{'Z', 'A', 'excitation_kev'} of a ground-state radionuclide name such as 'Lu-177'."""
    from VoxelDosimetryLib.physics import canonical_nuclide_name

    name = canonical_nuclide_name(nuclide)
    match = re.fullmatch(r"([A-Z][a-z]?)-(\d+)", name)
    if not match:
        raise InputFormatError(f"{name} is not a ground-state nuclide; the GATE export sets up ground-state ions "
                               "only (edit run_gate.py's source.ion.E for an isomer).")
    symbol, mass = match.group(1), int(match.group(2))
    if symbol not in _Z:
        raise InputFormatError(f"No atomic number known for {symbol} ({name}); known: {', '.join(sorted(_Z))}.")
    return {"Z": _Z[symbol], "A": mass, "excitation_kev": 0.0, "nuclide": name}


def _check_source(source: Volume, ct: Volume) -> tuple[Volume, list[str]]:
    notes = []
    if source.quantity not in _SOURCE_TOTALS and source.quantity != "unknown":
        raise UnitError(f"The source image holds {source.quantity!r} ({source.unit}); the GATE source needs activity "
                        "(Bq/mL, Bq) or time-integrated activity (Bq*s/mL, Bq*s).")
    source, _summary = checked_source(source, "The source image")  # the shared value policy (NaN, negatives)
    checked_source_weights(source.array, "The source image")  # and something to simulate
    if source.grid.mismatch(ct.grid) is not None:
        from VoxelDosimetryLib.geometry import resample_to

        notes.append(f"source resampled onto the CT grid, conserving activity ({source.grid.mismatch(ct.grid)})")
        source = resample_to(source, ct, mode="activity")
    if source.quantity == "unknown":
        notes.append("the source image states no quantity: its values are used as relative weights and no total "
                     "is known (give --total-tia-bq-s or --total-activity-bq at import for absolute dose)")
    return source, notes


def _source_total(source: Volume) -> dict:
    if source.quantity not in _SOURCE_TOTALS:
        return {"quantity": source.quantity, "unit": source.unit, "total": None, "total_unit": None}
    unit, per_ml = _SOURCE_TOTALS[source.quantity]
    canonical = source.to_canonical_unit().array.astype(np.float64)
    total = float(canonical.sum() * (source.voxel_volume_ml if per_ml else 1.0))
    return {"quantity": source.quantity, "unit": source.unit, "total": total, "total_unit": unit}


def _ct_for_gate(ct: Volume) -> Volume:
    """The CT as int16 when its HU are whole numbers in range (smaller file), else float32; values unchanged."""
    ct.require_quantity("ct")
    values = np.asarray(ct.array)
    if not np.all(np.isfinite(values)):
        raise InputFormatError("The CT has NaN or infinite voxels; replace them (e.g. -1000 HU) before exporting.")
    if np.array_equal(values, np.round(values)) and values.min() >= -32768 and values.max() <= 32767:
        return ct.with_array(values.astype(np.int16))
    return ct.with_array(values.astype(np.float32))


def _import_command(total: dict) -> str:
    """The import command for the run's outputs; with the source total when it is known (relative maps: none)."""
    flags = {"Bq*s": "--total-tia-bq-s", "Bq": "--total-activity-bq"}
    flag = flags.get(total["total_unit"]) if total["total"] is not None else None
    option = f" {flag} {total['total']:.6g}" if flag else ""
    return f"voxeldosimetry gate import output --case CASE_DIR{option}"


def export_gate_simulation(ct: Volume, source: Volume, out_dir: str | Path, *, nuclide: str = "Lu-177",
                           histories: int = 1_000_000, seed: int = 1, threads: int = 1,
                           physics_list: str = "G4EmStandardPhysics_option4", cut_mm: float = 0.1,
                           world_cut_mm: float = 1000.0, density_tolerance_g_cm3: float = 0.05,
                           materials_mode: str = "media_table", media_table: Any = None) -> GateExport:
    """Write a GATE 10 simulation of `source` (activity or TIA image) in `ct` (HU) into `out_dir`.

    The source is resampled onto the CT grid (conserving activity) when the grids differ. materials_mode
    "media_table" declares this library's Schneider media (gate_materials.gate_media_list, split at
    density_tolerance_g_cm3, or `media_table`); "schneider_tables" lets opengate split the written tables.
    cut_mm: production cut in the patient (mm); world_cut_mm: in the surrounding air. Inputs are not modified.
    """
    from VoxelDosimetryLib import __version__
    from VoxelDosimetryLib.io import write_volume
    from VoxelDosimetryLib.montecarlo.gate_materials import gate_media_list, write_schneider_tables
    from VoxelDosimetryLib.physics import MediaTable

    if int(histories) < 1 or int(threads) < 1:
        raise InputFormatError(f"histories and threads must be >= 1; got {histories} and {threads}.")
    if physics_list not in PHYSICS_LISTS:
        raise InputFormatError(f"Unknown physics list {physics_list!r}; use one of {', '.join(PHYSICS_LISTS)}.")
    if materials_mode not in ("media_table", "schneider_tables"):
        raise InputFormatError(f"materials_mode must be 'media_table' or 'schneider_tables'; got {materials_mode!r}.")
    for value, name in ((cut_mm, "cut_mm"), (world_cut_mm, "world_cut_mm"), (density_tolerance_g_cm3, "tolerance")):
        if not (math.isfinite(value) and value > 0):
            raise InputFormatError(f"{name} must be a positive number; got {value}.")
    ion = nuclide_ion(nuclide)
    ct_out = _ct_for_gate(ct)
    source, notes = _check_source(source, ct)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"ct": write_volume(ct_out, out / "ct.mhd"),
             "activity": write_volume(source.with_array(source.array.astype(np.float32)), out / "activity.mhd")}
    files["schneider_materials"], files["schneider_densities"] = write_schneider_tables(out)
    media = media_table if media_table is not None else MediaTable.from_schneider(density_tolerance_g_cm3)
    grid = ct.grid
    extent = np.asarray(grid.size_xyz, dtype=float) * np.asarray(grid.spacing)
    total = _source_total(source)
    if not np.allclose(grid.direction, np.eye(3), atol=1e-6):
        notes.append("the CT direction is not the identity: GATE places the image axis-aligned; the DoseActor "
                     "writes its output back in the CT's frame (output_coordinate_system='attached_to_image')")
    config = {
        "format": EXPORT_FORMAT, "version": 1, "created_by": f"voxeldosimetry {__version__}",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "ct_image": files["ct"].name, "activity_image": files["activity"].name,
        "ct_grid": {"size_xyz": list(grid.size_xyz), "spacing_mm": list(grid.spacing),
                    "origin_lps_mm": list(grid.origin), "direction": grid.direction.reshape(-1).tolist()},
        "ion": ion, "histories": int(histories), "seed": int(seed), "threads": int(threads),
        "physics_list": physics_list, "production_cut_mm": {"patient": float(cut_mm), "world": float(world_cut_mm)},
        "world_material": "G4_AIR", "world_size_mm": [float(e * 1.2 + 200.0) for e in extent],
        "materials_mode": materials_mode, "density_tolerance_g_cm3": float(density_tolerance_g_cm3),
        "materials": gate_media_list(media), "media_source": media.source,
        "schneider_tables": {"materials": files["schneider_materials"].name,
                             "densities": files["schneider_densities"].name},
        "dose_output_filename": DOSE_OUTPUT_FILENAME, "stats_file": STATS_FILE, "output_dir": OUTPUT_DIR,
        "source": total, "import_command": _import_command(total), "notes": notes,
    }
    files["config"] = out / CONFIG_FILE
    write_text_atomic(files["config"], json.dumps(config, indent=1) + "\n")
    files["script"] = out / SCRIPT_FILE
    with atomic_output(files["script"]) as staged:
        shutil.copyfile(Path(__file__).with_name("gate_run_script.py"), staged)
    files["readme"] = out / "README.md"
    write_text_atomic(files["readme"], _readme(config))
    return GateExport(out, files, config)


def export_case(case_dir: str | Path, out_dir: str | Path, source_path: str | Path | None = None,
                **options: Any) -> GateExport:
    """export_gate_simulation for a case folder: its CT, and its TIA (case.json "tia") unless `source_path`
    names another activity or TIA image. options: as export_gate_simulation (nuclide defaults to the case's)."""
    from VoxelDosimetryLib.io import read_volume
    from VoxelDosimetryLib.io.case import read_case

    case = read_case(case_dir)
    if source_path is None:
        if case.tia is None:
            raise InputFormatError(f"Case {case.id!r} has no TIA image (case.json 'tia'); compute it first "
                                   "(voxeldosimetry tia) or name the source image (--activity FILE).")
        source_path = case.path(case.tia)
    options.setdefault("nuclide", case.nuclide)
    return export_gate_simulation(case.load_ct(), read_volume(source_path), out_dir, **options)


def _readme(config: dict) -> str:
    total = config["source"]
    source_line = (f"{total['total']:.6g} {total['total_unit']} in total ({total['quantity']})" if total["total"]
                   else "relative weights (no total known)")
    return f"""# GATE 10 simulation exported by VoxelDosimetry

Written by {config['created_by']} on {config['created_at']}.

- `ct.mhd`: CT (HU) on the dose grid {config['ct_grid']['size_xyz']} voxels of {config['ct_grid']['spacing_mm']} mm.
- `activity.mhd`: source image on the same grid; GATE samples decays in proportion to its values
  ({source_line}).
- `simulation.json`: every setting (nuclide {config['ion']['nuclide']} as ion Z={config['ion']['Z']}
  A={config['ion']['A']}, {config['histories']} decays, seed {config['seed']}, {config['physics_list']},
  production cut {config['production_cut_mm']['patient']} mm in the patient, {len(config['materials'])} media).
- `Schneider2000*Table.txt`: the Schneider 2000 tables in GATE's format (used when materials_mode is
  "schneider_tables"; by default the media listed in simulation.json are declared one by one).
- `run_gate.py`: builds and runs the simulation with opengate alone.

## Run

```
pip install opengate          # GATE 10; downloads the Geant4 data (~2 GB) on first import
python run_gate.py --threads 8            # add --dry-run to only build the simulation
```

Outputs go to `output/`: `dose_edep.mhd`, `dose_dose.mhd`, `dose_edep_uncertainty.mhd`,
`dose_dose_uncertainty.mhd` (relative), `stats.json` and `run_info.json`. opengate's `n` is per thread, so
the run simulates ceil(histories / threads) x threads decays; the import uses the count in `stats.json`.

## Import back

```
{config['import_command']}
```

The dose is divided by the number of simulated decays (Gy per decay) and multiplied by the total TIA (Gy)
or activity (Gy/s) when given; the result lands in CASE_DIR/mc/.
"""


# ---------------------------------------------------------------------------------------------- opengate
def opengate_installed() -> bool:
    """True when the opengate package can be found (without importing it: the import may fetch Geant4 data)."""
    import importlib.util

    return importlib.util.find_spec("opengate") is not None


def import_opengate():
    """Import opengate, or raise OpenGateUnavailableError naming the fix."""
    if not opengate_installed():
        raise OpenGateUnavailableError("opengate (GATE 10) is not installed: pip install opengate (about 2 GB with its "
                                       "dependencies, plus ~2 GB of Geant4 data on first use); see docs/GATE.md.")
    try:
        import opengate
    except Exception as exc:  # noqa: BLE001 - opengate_core downloads Geant4 data at import and may fail any way
        raise OpenGateUnavailableError(
            f"Importing opengate failed ({type(exc).__name__}: {str(exc)[:200]}). Without network access set "
            "GATEONRTD=1 to build simulations without the Geant4 data (running them needs the data).") from None
    return opengate


def _load_run_script(folder: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("voxeldosimetry_run_gate", folder / SCRIPT_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_gate_simulation(export_dir: str | Path, output_dir: str | Path | None = None, threads: int | None = None,
                          histories: int | None = None, seed: int | None = None) -> tuple[Any, dict]:
    """Build (not run) the opengate.Simulation of an export folder with its own run_gate.py; returns
    (simulation, summary). Needs opengate; GATEONRTD=1 skips the Geant4 data check at import."""
    folder = Path(export_dir)
    if not (folder / CONFIG_FILE).is_file() or not (folder / SCRIPT_FILE).is_file():
        raise InputFormatError(f"{folder} is not a GATE export folder ({CONFIG_FILE} and {SCRIPT_FILE} expected); "
                               "write one with voxeldosimetry gate export.")
    import_opengate()
    script = _load_run_script(folder)
    sim = script.build_simulation(folder, output_dir, threads, histories, seed)
    summary = script.describe_simulation(sim)
    summary["geant4_data_checked"] = os.environ.get("GATEONRTD") is None
    return sim, summary
