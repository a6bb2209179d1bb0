"""Import Monte Carlo dose outputs (GATE 9, GATE 10/opengate, or this library's engine) as a case's MC label.

    summary = import_gate_to_case("gate_output/", "case/", total_tia_bq_s=3.2e14)

File names recognised (case-insensitive; PREFIX is the part before the role, chosen with `prefix=`):

    GATE 9   PREFIX-Dose.mhd  PREFIX-Edep.mhd  PREFIX-Dose-Uncertainty.mhd  PREFIX-Edep-Uncertainty.mhd
             (PREFIX-DoseToWater[-Uncertainty].mhd when no -Dose), stats: stat.txt / any *stat*.txt
    GATE 10  PREFIX_dose.mhd  PREFIX_edep.mhd  PREFIX_dose_uncertainty.mhd  PREFIX_edep_uncertainty.mhd
             (DoseActor.output_filename = "PREFIX.mhd"; the automatic names
             "..._from_doseactor_NAME-dose.mhd" work too), stats: stats.txt / *stats*.json (JSON or legacy)
    ours     PREFIX_dose.nrrd  PREFIX_edep.nrrd  PREFIX_dose_uncertainty.nrrd  PREFIX_stats.json
             (MonteCarloResult.write)

Normalisation: GATE dose images hold the dose of all N simulated primaries (Gy), so the dose per decay is
D_1 = D / N (Gy per decay = Gy/(Bq s)), assuming one decay per primary (an ion source; `gate export` sets
one up). With the source's total TIA T (Bq s) the stored dose is D_1 T (Gy); with its total activity A (Bq)
the dose rate D_1 A (Gy/s); otherwise D_1. This library's engine output is divided by its own source total.
Uncertainty: GATE 9 and GATE 10 both write the relative standard error of the mean (fraction; GATE 9
GateImageWithStatistic, Chetty et al. 2006 p.1250; GATE 10 sqrt(var)/mean). GATE 9 writes 1 where nothing was
deposited, GATE 10 writes 0: the import stores 1 there (GATE 9 and this library's convention).
Geometry: the dose grid must equal the case CT grid. Grids that differ only by a translation (or only in
direction) with the same shape and spacing can be adopted onto the CT grid with `align_to_ct=True`; the
offset is reported either way.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
import numpy as np

from VoxelDosimetryLib.errors import GridMismatchError, InputFormatError, MissingMetadataError
from VoxelDosimetryLib.montecarlo.gate_stats import GateStats, read_gate_stats
from VoxelDosimetryLib.volume.volume import DIRECTION_TOLERANCE, GRID_TOLERANCE_MM, Grid, Volume
from VoxelDosimetryLib.io.safe_write import write_text_atomic

IMAGE_SUFFIXES = (".mhd", ".mha", ".nrrd", ".nii.gz", ".nii")
RUN_INFO_FILE = "run_info.json"  # written by the run_gate.py script of `gate export`
MC_FOLDER = "mc"
_ROLE = re.compile(r"^(?P<prefix>.*?)[_\-](?P<role>edep|dose|dosetowater)(?:[_\-](?P<unc>uncertainty))?$",
                   re.IGNORECASE)
_STATS_NAME = re.compile(r"stat", re.IGNORECASE)


@dataclass(frozen=True)
class GateOutputFiles:
    """The files of one DoseActor output set; roles hold None when absent."""

    folder: Path
    prefix: str
    dose: Path | None
    edep: Path | None
    dose_uncertainty: Path | None
    edep_uncertainty: Path | None
    stats: Path | None
    run_info: Path | None
    dose_to_water: bool = False

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class GateDose:
    """A normalised MC dose on the simulation grid: `dose` (dose_per_decay, dose or dose_rate) and the
    relative `uncertainty` (fraction), with `metadata` describing sources and normalisation."""

    dose: Volume
    uncertainty: Volume
    metadata: dict


# ------------------------------------------------------------------------------------------------- files
def _image_stem(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def _scan_images(folder: Path) -> dict[str, dict[str, Path]]:
    """{prefix (lower case): {role: path}} for every DoseActor-like image in `folder`."""
    groups: dict[str, dict[str, Path]] = {}
    for path in sorted(folder.iterdir()):
        stem = _image_stem(path) if path.is_file() else None
        match = _ROLE.match(stem) if stem else None
        if not match:
            continue
        role = match.group("role").lower() + ("_uncertainty" if match.group("unc") else "")
        group = groups.setdefault(match.group("prefix").lower(), {})
        if role in group:
            raise InputFormatError(f"Two {role} images for prefix {match.group('prefix')!r} in {folder}: "
                                   f"{group[role].name} and {path.name}. Keep one (or move one away).")
        group[role] = path
    return groups


def _find_stats(folder: Path, prefix: str) -> Path | None:
    candidates = [p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in (".txt", ".json")
                  and _STATS_NAME.search(p.name)]
    if len(candidates) > 1:
        own = [p for p in candidates if p.name.lower().startswith(prefix.lower())] if prefix else []
        candidates = own or candidates
    if len(candidates) > 1:
        raise InputFormatError(f"Several statistics files in {folder}: {', '.join(p.name for p in candidates)}. "
                               "Name the right one (--stats FILE).")
    return candidates[0] if candidates else None


def find_gate_outputs(folder: str | Path, prefix: str | None = None,
                      stats: str | Path | None = None) -> GateOutputFiles:
    """Locate the dose/edep/uncertainty images and the statistics file of one output set in `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFormatError(f"{folder} is not a folder; pass the folder holding the GATE DoseActor outputs.")
    groups = {p: g for p, g in _scan_images(folder).items()
              if {"dose", "edep", "dosetowater"} & set(g)}
    if not groups:
        raise InputFormatError(f"No DoseActor outputs in {folder}: expected names like output-Dose.mhd (GATE 9), "
                               "dose_dose.mhd / dose_edep.mhd (GATE 10) or mc_dose.nrrd (VoxelDosimetry).")
    if prefix is not None:
        key = prefix.lower()
        if key not in groups:
            raise InputFormatError(f"No DoseActor outputs with prefix {prefix!r} in {folder}; prefixes found: "
                                   f"{', '.join(sorted(groups))}.")
    elif len(groups) == 1:
        key = next(iter(groups))
    else:
        raise InputFormatError(f"{folder} holds several output sets (prefixes {', '.join(sorted(groups))}); "
                               "choose one with --prefix.")
    g = groups[key]
    to_water = "dose" not in g and "dosetowater" in g
    dose = g.get("dose") or g.get("dosetowater")
    dose_unc = g.get("dose_uncertainty") or (g.get("dosetowater_uncertainty") if to_water else None)
    stats_path = Path(stats) if stats is not None else _find_stats(folder, key)
    if stats_path is not None and not stats_path.is_file():
        raise InputFormatError(f"The statistics file {stats_path} does not exist.")
    run_info = folder / RUN_INFO_FILE
    return GateOutputFiles(folder, key, dose, g.get("edep"), dose_unc, g.get("edep_uncertainty"), stats_path,
                           run_info if run_info.is_file() else None, to_water)


# ------------------------------------------------------------------------------------------------- load
def _read(path: Path, what: str, quantity: str | None = None, unit: str | None = None) -> Volume:
    from VoxelDosimetryLib.io import read_volume

    volume = read_volume(path)
    if quantity is not None and volume.quantity == "unknown":
        volume = volume.replace(quantity=quantity, unit=unit)
    values = np.asarray(volume.array)
    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise InputFormatError(f"The {what} image {path.name} has {bad} NaN/infinite voxels; re-run or repair the "
                               "simulation output before importing.")
    if values.size and values.min() < 0:
        raise InputFormatError(f"The {what} image {path.name} has negative values (min {values.min():.4g}); a Monte "
                               "Carlo tally cannot be negative. Check that this is the right file.")
    return volume


def _convention(files: GateOutputFiles, stats: GateStats | None) -> str:
    if stats is not None and stats.format == "voxeldosimetry":
        return "voxeldosimetry"
    if stats is not None and stats.format == "gate9":
        return "gate9"
    main = files.dose or files.edep
    stem = _image_stem(main) or ""
    return "gate9" if re.search(r"-(Dose|Edep|DoseToWater)$", stem) else "gate10"


def _number_of_primaries(stats: GateStats | None, histories: int | None, files: GateOutputFiles) -> int:
    if histories is not None:
        if int(histories) < 1:
            raise InputFormatError(f"histories must be >= 1; got {histories}.")
        return int(histories)
    if stats is None or not stats.events:
        where = f"the statistics file {files.stats.name}" if files.stats else f"{files.folder} (no statistics file)"
        raise MissingMetadataError(f"The number of simulated primaries is not in {where}. Add a "
                                   "SimulationStatisticsActor to the simulation, or pass it (--histories N).")
    return int(stats.events)


def _dose_per_decay(dose: Volume, n: int, stats: GateStats | None, convention: str) -> tuple[np.ndarray, str]:
    """Gy per decay (float64) and a sentence saying how it was obtained."""
    values = dose.to_canonical_unit().array.astype(np.float64)
    if dose.quantity == "dose_per_decay":
        return values, "dose image already in Gy per decay"
    if convention == "voxeldosimetry" and dose.quantity in ("dose", "dose_rate"):
        total = (stats.values.get("source_total") if stats is not None else None) or 0.0
        if not total > 0:
            raise MissingMetadataError("The VoxelDosimetry MC stats lack 'source_total', so its absolute dose cannot "
                                       "be turned back into dose per decay; write the result with MonteCarloResult.write, "
                                       "which records it.")
        return values / float(total), f"dose / source_total ({total:.6g}) from the engine's stats"
    if dose.quantity != "dose":
        raise InputFormatError(f"The dose image holds {dose.quantity!r} ({dose.unit}); expected an absorbed dose (Gy).")
    return values / n, f"dose / N (N = {n} simulated primaries, one decay each)"


def _dose_from_edep(edep: Volume, density: Volume | None) -> np.ndarray:
    if density is None:
        raise InputFormatError("Only an energy-deposit image was found and no density to turn it into dose; enable "
                               "the DoseActor's dose output (GATE 10: dose.dose.active = True; GATE 9: "
                               "enableDose true) or import into a case (its CT gives the density).")
    edep.require_same_grid(density, "energy-deposit and density volumes")
    mass_kg = np.asarray(density.to_unit("g/cm3").array, dtype=np.float64) * edep.voxel_volume_ml * 1e-3
    # D = E_dep / m (MeV -> J: 1.602176634e-13 J/MeV)
    edep_j = edep.to_unit("MeV").array.astype(np.float64) * 1.602176634e-13
    return np.divide(edep_j, mass_kg, out=np.zeros_like(edep_j), where=mass_kg > 0)


def _scale(total_tia_bq_s: float | None, total_activity_bq: float | None) -> tuple[str, str, float, dict]:
    if total_tia_bq_s is not None and total_activity_bq is not None:
        raise InputFormatError("Give either the total TIA (Bq*s, -> dose in Gy) or the total activity (Bq, -> dose "
                               "rate in Gy/s), not both.")
    for value, name in ((total_tia_bq_s, "total TIA"), (total_activity_bq, "total activity")):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise InputFormatError(f"The {name} must be a positive number; got {value}.")
    if total_tia_bq_s is not None:
        return "dose", "Gy", float(total_tia_bq_s), {"total_tia_bq_s": float(total_tia_bq_s)}
    if total_activity_bq is not None:
        return "dose_rate", "Gy/s", float(total_activity_bq), {"total_activity_bq": float(total_activity_bq)}
    return "dose_per_decay", "Gy/(Bq*s)", 1.0, {}


def _engine_version(files: GateOutputFiles, stats: GateStats | None) -> str | None:
    if stats is not None and stats.engine_version:
        return stats.engine_version
    if files.run_info is not None:
        try:
            info = json.loads(files.run_info.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return info.get("opengate_version")
    return None


def load_gate_dose(folder: str | Path, prefix: str | None = None, stats: str | Path | None = None,
                   histories: int | None = None, total_tia_bq_s: float | None = None,
                   total_activity_bq: float | None = None, density: Volume | None = None) -> GateDose:
    """Read one output set and normalise it (module docstring) on its own grid; inputs are not modified.

    histories overrides the number of primaries from the statistics file. density (g/cm3, same grid) is needed
    only when the set has an energy-deposit image but no dose image.
    """
    files = find_gate_outputs(folder, prefix, stats)
    gate_stats = read_gate_stats(files.stats) if files.stats is not None else None
    convention = _convention(files, gate_stats)
    n = _number_of_primaries(gate_stats, histories, files)
    notes = []
    if files.dose is not None:
        dose_in = _read(files.dose, "dose", "dose", "Gy")
        per_decay, how = _dose_per_decay(dose_in, n, gate_stats, convention)
        grid = dose_in.grid
        if files.dose_to_water:
            notes.append("the set has only a dose-to-water image (GATE DoseToWater); it was imported as the dose")
    else:
        edep = _read(files.edep, "energy deposit", "energy_deposited", "MeV")
        per_decay = _dose_from_edep(edep, density) / n
        grid = edep.grid
        how = f"edep / (density x voxel volume) / N (N = {n}); density from the case CT"
        notes.append("no dose image: dose computed from the energy deposit with the case CT density "
                     "(GATE used its own material densities; expect small differences)")
    unc_path = files.dose_uncertainty or files.edep_uncertainty
    if unc_path is None:
        raise InputFormatError(f"No uncertainty image in {files.folder} for prefix {files.prefix!r}. Enable it in the "
                               "DoseActor (GATE 10: dose.dose_uncertainty.active = True; GATE 9: "
                               "enableUncertaintyDose true) and re-run.")
    unc_in = _read(unc_path, "uncertainty", "relative_uncertainty", "1")
    if unc_in.grid.mismatch(grid) is not None:
        raise GridMismatchError(f"The uncertainty image {unc_path.name} and the dose are on different grids: "
                                f"{unc_in.grid.mismatch(grid)}. They must come from the same DoseActor.")
    relative = unc_in.to_unit("1").array.astype(np.float64)
    empty = per_decay <= 0
    relative = np.where(empty, 1.0, relative)
    dosed = relative[~empty]
    if dosed.size and float(np.median(dosed)) > 1.0:
        notes.append(f"median relative uncertainty in dosed voxels is {float(np.median(dosed)):.3g} (> 1): too few "
                     "primaries, or an uncertainty in percent")
    quantity, unit, factor, given = _scale(total_tia_bq_s, total_activity_bq)
    engine = gate_stats.engine if gate_stats is not None and convention == "voxeldosimetry" else "GATE"
    meta = {
        "engine": engine, "engine_version": _engine_version(files, gate_stats), "convention": convention,
        "histories": n, "stats": gate_stats.to_dict() if gate_stats is not None else None,
        "source_files": files.to_dict(),
        "normalisation": {"quantity": quantity, "unit": unit, "dose_per_decay_from": how,
                          "assumes_one_decay_per_primary": convention != "voxeldosimetry", "scale_factor": factor,
                          **given},
        "uncertainty": {"kind": "relative standard error of the mean (fraction, 1 sigma)",
                        "from": unc_path.name, "zero_dose_voxels_set_to_1": int(np.count_nonzero(empty))},
        "notes": notes,
    }
    if meta["engine_version"] is None:
        notes.append("the engine version is not recorded in these outputs")
    vol_meta = {"engine": engine, "histories": n}
    dose = Volume((per_decay * factor).astype(np.float32), grid=grid, quantity=quantity, unit=unit, metadata=vol_meta)
    unc = Volume(relative.astype(np.float32), grid=grid, quantity="relative_uncertainty", unit="1", metadata=vol_meta)
    return GateDose(dose, unc, meta)


# --------------------------------------------------------------------------------------------- geometry
def compare_grids(mc_grid: Grid, ct_grid: Grid) -> dict:
    """How the MC grid relates to the CT grid: match, offset (mm, LPS), and whether it can be adopted."""
    offset = (np.asarray(mc_grid.origin) - np.asarray(ct_grid.origin)).tolist()
    same_shape = mc_grid.shape == ct_grid.shape
    same_spacing = np.allclose(mc_grid.spacing, ct_grid.spacing, atol=GRID_TOLERANCE_MM, rtol=0)
    same_direction = np.allclose(mc_grid.direction, ct_grid.direction, atol=DIRECTION_TOLERANCE, rtol=0)
    size_mm = np.asarray(mc_grid.size_xyz, dtype=float) * np.asarray(mc_grid.spacing)
    centred = np.allclose(mc_grid.origin, -(size_mm - np.asarray(mc_grid.spacing)) / 2.0, atol=GRID_TOLERANCE_MM)
    return {"matches": mc_grid.mismatch(ct_grid) is None, "offset_mm": offset, "same_shape": same_shape,
            "same_spacing": bool(same_spacing), "same_direction": bool(same_direction),
            "alignable": bool(same_shape and same_spacing), "mc_centred_on_origin": bool(centred),
            "problem": mc_grid.mismatch(ct_grid)}


def _check_grid(check: dict, align_to_ct: bool) -> None:
    if check["matches"] or (check["alignable"] and align_to_ct):
        return
    if check["alignable"]:
        offset = ", ".join(f"{v:+.3f}" for v in check["offset_mm"])
        hint = (" The MC image is centred on (0, 0, 0): GATE 10's default 'local' output frame of the volume the "
                "DoseActor is attached to; set output_coordinate_system = 'attached_to_image' to keep the CT origin."
                if check["mc_centred_on_origin"] else "")
        what = f"offset ({offset}) mm" if check["same_direction"] else f"offset ({offset}) mm and another direction"
        raise GridMismatchError(f"The MC dose grid has the CT's shape and spacing but is shifted: {what} (MC origin "
                                f"minus CT origin, LPS).{hint} If the simulation used this CT voxel for voxel, adopt "
                                "the CT grid with --align-to-ct (align_to_ct=True).")
    raise GridMismatchError(f"The MC dose grid differs from the case CT: {check['problem']}. Simulate on the CT grid "
                            "(DoseActor size and spacing like the CT image; `voxeldosimetry gate export` does this).")


# ------------------------------------------------------------------------------------------------- case
def import_gate_to_case(folder: str | Path, case_dir: str | Path, prefix: str | None = None,
                        stats: str | Path | None = None, histories: int | None = None,
                        total_tia_bq_s: float | None = None, total_activity_bq: float | None = None,
                        align_to_ct: bool = False) -> dict:
    """Import an output set as the case's MC label: writes mc/dose.nrrd, mc/uncertainty.nrrd, mc/metadata.json
    and the case.json "mc" entry; returns a JSON-friendly summary. Raises GridMismatchError (see compare_grids)."""
    from VoxelDosimetryLib.io import write_volume
    from VoxelDosimetryLib.physics.voxel_mass import density_on_grid
    from VoxelDosimetryLib.io.case import read_case, write_case

    case = read_case(case_dir)
    ct = case.load_ct()
    files = find_gate_outputs(folder, prefix, stats)
    density = None
    if files.dose is None:  # edep only: dose needs the mass, from the CT on the MC grid
        edep_grid = _read(files.edep, "energy deposit", "energy_deposited", "MeV").grid
        _check_grid(compare_grids(edep_grid, ct.grid), align_to_ct)
        density = density_on_grid(ct.replace(grid=edep_grid), edep_grid)  # same CT voxels, MC grid geometry
    result = load_gate_dose(folder, files.prefix, files.stats, histories, total_tia_bq_s, total_activity_bq, density)
    check = compare_grids(result.dose.grid, ct.grid)
    _check_grid(check, align_to_ct)
    dose, unc = result.dose, result.uncertainty
    if not check["matches"]:
        dose, unc = dose.replace(grid=ct.grid), unc.replace(grid=ct.grid)
    meta = dict(result.metadata)
    meta["geometry"] = {**{k: v for k, v in check.items() if k != "problem"}, "difference": check["problem"],
                        "aligned_to_ct": not check["matches"], "mc_grid": result.dose.grid.to_dict(),
                        "ct_grid": ct.grid.to_dict()}
    meta["case"] = case.id
    meta["imported_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    meta["importer"] = "VoxelDosimetryLib.montecarlo.gate_import"
    mc_dir = case.path(MC_FOLDER)
    mc_dir.mkdir(parents=True, exist_ok=True)
    write_volume(dose, mc_dir / "dose.nrrd")
    write_volume(unc, mc_dir / "uncertainty.nrrd")
    write_text_atomic(mc_dir / "metadata.json", json.dumps(meta, indent=1, default=str) + "\n")
    entry = {"dose": f"{MC_FOLDER}/dose.nrrd", "uncertainty": f"{MC_FOLDER}/uncertainty.nrrd",
             "metadata": f"{MC_FOLDER}/metadata.json", "engine": meta["engine"],
             "engine_version": meta["engine_version"], "histories": meta["histories"],
             "quantity": dose.quantity, "unit": dose.unit}
    replaced = case.mc is not None
    write_case(dataclasses.replace(case, mc=entry), case.folder, {})
    return {"case": case.id, "mc": entry, "replaced_previous_mc": replaced, "geometry": meta["geometry"],
            "normalisation": meta["normalisation"], "uncertainty": meta["uncertainty"], "notes": meta["notes"],
            "dose": dose.summary(), "source_files": meta["source_files"]}

