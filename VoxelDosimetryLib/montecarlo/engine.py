"""Monte Carlo dose engine for internal emitters: decays from an activity/TIA map, electron and photon transport
in the CT-derived phantom, energy/dose/uncertainty on the CT grid (GATE DoseActor-like outputs).

    result = run_monte_carlo(activity, ct, nuclide="Lu-177", histories=1_000_000, device="auto", seed=1)
    result.dose, result.uncertainty, result.edep, result.dose_per_decay   # Volumes on the CT grid
    result.write("out", prefix="mc")  # mc_edep.nrrd, mc_dose.nrrd, mc_dose_uncertainty.nrrd, mc_stats.json

Normalisation: dose per decay D_1 = E_dep / (N_decays m_voxel) (Gy per decay). The absolute dose is D_1 x the
number of decays in the map (sum of TIA in Bq.s: quantity 'tia_concentration' (Bq.s/mL) x voxel volume or 'tia'
(Bq.s)) in Gy, or D_1 x the total activity (Bq) in Gy/s for 'activity_concentration'/'activity'. Any other
quantity is taken as relative weights and the dose volume is the dose per decay.
Uncertainty: batch method (n_batches >= 10 equal batches): relative standard error of the mean dose per voxel;
1.0 where nothing was deposited (GATE's convention).
Reproducibility: a torch.Generator on the device seeded with `seed`; results depend on seed, histories,
n_batches and batch_size (chunking), and on the device type (CPU and CUDA random streams differ).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from VoxelDosimetryLib.errors import GridMismatchError, InputFormatError, UnitError, VoxelDosimetryError
from VoxelDosimetryLib.montecarlo.geometry import VoxelPhantom
from VoxelDosimetryLib.montecarlo.sharding import all_max, all_sum, current_shard, launched_world, rank_device
from VoxelDosimetryLib.montecarlo.source import DecaySource
from VoxelDosimetryLib.montecarlo.stopping import CHECK_FRACTION, CHECK_INTERVAL_S, MIN_BATCHES, StopRule
from VoxelDosimetryLib.montecarlo.transport_electron import electron_tables_for_media, transport_electrons
from VoxelDosimetryLib.montecarlo.transport_photon import (
    photon_majorant,
    photon_tables_from_cross_sections,
    transport_photons,
)
from VoxelDosimetryLib.volume.source_weights import checked_source_weights
from VoxelDosimetryLib.volume.volume import Volume

ENGINE_NAME = "VoxelDosimetry-MC"
ENGINE_VERSION = "0.1"
MEV_TO_J = 1.602176634e-13
_ABSOLUTE = {"activity_concentration": ("dose_rate", "Gy/s", True), "activity": ("dose_rate", "Gy/s", False),
             "tia_concentration": ("dose", "Gy", True), "tia": ("dose", "Gy", False)}


class MonteCarloCancelled(VoxelDosimetryError):
    """The run was cancelled through the `cancel` event or callable."""


@dataclass
class MonteCarloResult:
    """Outputs on the CT grid plus run statistics (see module docstring for the normalisation)."""

    edep: Volume  # energy deposited over all simulated decays (MeV)
    dose_per_decay: Volume  # Gy per decay (= Gy/(Bq s))
    dose: Volume  # dose (Gy), dose rate (Gy/s) or dose per decay, depending on the source quantity
    uncertainty: Volume  # relative standard error of the dose (fraction)
    stats: dict = field(default_factory=dict)

    def write(self, folder: str | Path, prefix: str = "mc", extension: str = ".nrrd") -> dict:
        """Write `<prefix>_edep`, `<prefix>_dose`, `<prefix>_dose_uncertainty` (GATE DoseActor-like names) and
        `<prefix>_stats.json` into `folder`; returns {name: path}."""
        from VoxelDosimetryLib.io import write_volume
        from VoxelDosimetryLib.io.safe_write import write_text_atomic

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for key, vol in (("edep", self.edep), ("dose", self.dose), ("dose_uncertainty", self.uncertainty)):
            paths[key] = write_volume(vol, folder / f"{prefix}_{key}{extension}")
        stats_path = folder / f"{prefix}_stats.json"
        write_text_atomic(stats_path, json.dumps(self.stats, indent=1, default=float) + "\n")
        paths["stats"] = stats_path
        return paths


def _check_cancel(cancel: Any) -> None:
    if cancel is None:
        return
    flag = cancel.is_set() if hasattr(cancel, "is_set") else bool(cancel())
    if flag:
        raise MonteCarloCancelled("The Monte Carlo run was cancelled.")


# Torch threads for the transport on a CPU: None keeps the caller's setting. Measured on the 2-core machine
# (docs/BENCHMARKS.md): one thread against two was -25 % on the phantoms with 5e5-decay batches, +22 % on the real
# patient and +4 to +16 % with small batches; two processes with two threads each collapsed 6x. So a single run
# keeps the caller's threads and each torchrun rank uses one (the ranks are the parallelism).
CPU_THREADS = None
SHARDED_CPU_THREADS = 1


class MonteCarloEngine:
    """A phantom + nuclide + device with the interaction tables built once; `run(activity, ...)` simulates.

    `ct` is a CT Volume (HU), a density Volume (g/cm3) or a ready VoxelPhantom. `components` selects what is
    transported: ("electron", "photon") by default; leaving one out drops those particles entirely (their
    energy counts neither as emitted nor deposited), e.g. for electron-only kernels or speed measurements.
    `cpu_threads`: torch threads during a CPU run (None: the caller's setting, or one per torchrun rank; see
    CPU_THREADS).
    `electron_range_rejection`: electrons that cannot leave their voxel deposit their energy at once
    (transport_electron.py; same voxel doses, fewer steps).
    """

    def __init__(self, ct: Any, nuclide: str = "Lu-177", device: str = "auto", cut_mev: float = 0.01,
                 media_table: Any = None, components: Sequence[str] = ("electron", "photon"),
                 electron_range_fraction: float = 0.2, electron_voxel_fraction: float = 0.5,
                 cpu_threads: Optional[int] = CPU_THREADS, electron_range_rejection: bool = False) -> None:
        from VoxelDosimetryLib.device import resolve_device
        from VoxelDosimetryLib.montecarlo.photon_data import PhotonCrossSections
        from VoxelDosimetryLib.physics import get_nuclide

        self.nuclide = get_nuclide(nuclide) if isinstance(nuclide, str) else nuclide
        if isinstance(ct, VoxelPhantom):
            self.phantom = ct
        elif isinstance(ct, Volume):
            if ct.quantity == "ct":
                self.phantom = VoxelPhantom.from_ct(ct, media_table)
            elif ct.quantity == "density":
                self.phantom = VoxelPhantom.from_density(ct, media_table)
            else:
                raise UnitError(f"The Monte Carlo geometry needs a CT (HU) or density volume; got quantity "
                                f"{ct.quantity!r} ({ct.unit}).")
        else:
            raise TypeError(f"ct must be a Volume or a VoxelPhantom; got {type(ct).__name__}.")
        comps = tuple(components)
        unknown = set(comps) - {"electron", "photon"}
        if unknown or not comps:
            raise InputFormatError(f"components must be a non-empty subset of ('electron', 'photon'); got {comps}.")
        self.components = comps
        self.device = rank_device(resolve_device(device))  # under torchrun on CUDA: this rank's GPU
        self.cut_mev = float(cut_mev)
        self.range_fraction = float(electron_range_fraction)
        self.voxel_fraction = float(electron_voxel_fraction)
        self.cpu_threads = cpu_threads
        self.range_rejection = bool(electron_range_rejection)
        t0 = time.perf_counter()
        media = list(self.phantom.media)
        self.photon_xs = PhotonCrossSections.build(media)
        self.photon_tables = photon_tables_from_cross_sections(self.photon_xs, self.device)
        self.electron_tables = electron_tables_for_media(media, self.device)
        self.tphantom = self.phantom.to_torch(self.device)
        self.majorant = photon_majorant(self.tphantom, self.photon_tables)
        self.setup_time_s = time.perf_counter() - t0

    # ------------------------------------------------------------------------------------------------ run
    def run(self, activity: Volume | np.ndarray, histories: int = 1_000_000, seed: int = 0, n_batches: int = 10,
            batch_size: int = 200_000, progress: Optional[Callable[[float, str], Any]] = None, cancel: Any = None,
            track_length_photons: bool = False, stop: Optional[StopRule] = None) -> MonteCarloResult:
        """Simulate up to `histories` decays. `stop` (montecarlo/stopping.py) ends the run earlier at an
        uncertainty goal or a time limit; then batches are equal (see stopping.py) and `n_batches` is ignored.
        On the CPU the transport runs with `self.cpu_threads` torch threads, one per rank under torchrun (the
        caller's setting is restored afterwards)."""
        from VoxelDosimetryLib.device import torch_threads

        threads = self.cpu_threads
        if threads is None and launched_world() > 1:
            threads = SHARDED_CPU_THREADS
        with torch_threads(threads, self.device):
            return self._run(activity, histories, seed, n_batches, batch_size, progress, cancel,
                             track_length_photons, stop)

    def _run(self, activity, histories, seed, n_batches, batch_size, progress, cancel, track_length_photons,
             stop) -> MonteCarloResult:
        import torch

        phantom = self.phantom
        if isinstance(activity, Volume):
            problem = activity.grid.mismatch(phantom.grid)
            if problem is not None:
                raise GridMismatchError(f"The activity map and the CT are on different voxel grids: {problem}. "
                                        "Resample the activity onto the CT grid first "
                                        "(VoxelDosimetryLib.geometry.resample_to).")
            act = activity.to_canonical_unit() if activity.quantity in _ABSOLUTE else activity
            weights = np.asarray(act.array, dtype=np.float64)
            quantity = activity.quantity
        else:
            weights = np.asarray(activity, dtype=np.float64)
            if weights.shape != phantom.shape:
                raise GridMismatchError(f"The activity array {weights.shape} does not match the phantom {phantom.shape}.")
            quantity = "unknown"
        histories = int(histories)
        n_batches = int(n_batches)
        if n_batches < 2:
            raise InputFormatError("n_batches must be >= 2 for the batch uncertainty (10 or more recommended).")
        if histories < n_batches:
            raise InputFormatError(f"--histories must be at least {n_batches} (the uncertainty is estimated from "
                                   f"{n_batches} batches); got {histories}. In a pipeline config: dose.histories; "
                                   "in Python: histories=.")
        if int(batch_size) < 1:
            raise InputFormatError("batch_size must be >= 1.")
        dev = self.device
        stop = stop or StopRule()
        shard = current_shard(dev)
        if shard.sharded:  # this rank's share and random stream (montecarlo/sharding.py)
            if histories // shard.world < max(n_batches, MIN_BATCHES if stop.adaptive else 0):  # same on every rank
                raise InputFormatError(f"--histories must allow {n_batches} batches on each of the {shard.world} "
                                       f"processes; got {histories // shard.world} per process.")
            histories = histories // shard.world if stop.adaptive else shard.decays(histories)
        source = DecaySource(weights, phantom.spacing_mm, self.nuclide, dev, self.cut_mev)
        gen = torch.Generator(device=dev)
        gen.manual_seed(shard.seed(seed))
        n_vox = self.tphantom.n_voxels
        s1 = torch.zeros(n_vox, dtype=torch.float64, device=dev)
        s2 = torch.zeros(n_vox, dtype=torch.float64, device=dev)
        tally = torch.zeros(n_vox, dtype=torch.float64, device=dev)
        if stop.adaptive:
            adaptive_batch = StopRule.batch_decays(histories, batch_size, self.tphantom.n_voxels)
            per_batch = [adaptive_batch] * (histories // adaptive_batch)
            goal_index = stop.goal_index(phantom.shape, dev)
            inverse_mass = torch.from_numpy(1.0 / np.asarray(phantom.voxel_mass_g, dtype=np.float64).reshape(-1)) \
                .to(dev)  # the goal's 10 % cut is on dose, not energy
        else:
            per_batch = [histories // n_batches + (1 if b < histories % n_batches else 0) for b in range(n_batches)]
        stop_reason, sigma, next_check = "histories", None, 0.0
        do_e = "electron" in self.components
        do_p = "photon" in self.components
        totals = {"emitted_mev": 0.0, "emitted_electron_mev": 0.0, "emitted_photon_mev": 0.0, "escaped_mev": 0.0,
                  "escaped_electron_mev": 0.0, "escaped_photon_mev": 0.0, "local_cut_mev": 0.0,
                  "electrons": 0, "electron_steps": 0, "photons": 0, "photon_interactions": 0}
        t_e = t_p = 0.0
        t0 = time.perf_counter()
        done = 0
        for b, nb in enumerate(per_batch):
            tally.zero_()
            left = nb
            while left > 0:
                _check_cancel(cancel)
                n = min(left, int(batch_size))
                left -= n
                em = source.sample(n, gen)
                keep_local = torch.ones_like(em.local_is_photon) if (do_e and do_p) else \
                    (em.local_is_photon if do_p else ~em.local_is_photon)
                local_e = em.local_energy[keep_local].double()
                tally.index_add_(0, em.local_voxel[keep_local], local_e)
                totals["local_cut_mev"] += float(local_e.sum())
                if do_e:
                    totals["emitted_electron_mev"] += em.emitted_electron_mev
                    t1 = time.perf_counter()
                    er = transport_electrons(em.electrons.pos, em.electrons.dir, em.electrons.energy, self.tphantom,
                                             self.electron_tables, tally, gen, cut_mev=self.cut_mev,
                                             range_fraction=self.range_fraction, voxel_fraction=self.voxel_fraction,
                                             range_rejection=self.range_rejection)
                    t_e += time.perf_counter() - t1
                    totals["escaped_electron_mev"] += er.escaped_energy_mev
                    totals["electrons"] += len(em.electrons)
                    totals["electron_steps"] += er.electron_steps
                if do_p:
                    totals["emitted_photon_mev"] += em.emitted_photon_mev
                    t1 = time.perf_counter()
                    pr = transport_photons(em.photons.pos, em.photons.dir, em.photons.energy, self.tphantom,
                                           self.photon_tables, tally, gen, cut_mev=self.cut_mev,
                                           kerma=track_length_photons, majorant=self.majorant)
                    t_p += time.perf_counter() - t1
                    totals["escaped_photon_mev"] += pr.escaped_energy_mev
                    totals["photons"] += len(em.photons)
                    totals["photon_interactions"] += pr.interactions
                done += n
                if progress is not None:
                    progress(*_progress(done, histories, b, len(per_batch), stop, sigma, time.perf_counter() - t0))
            s1 += tally
            s2 += (tally / nb) ** 2
            if stop.adaptive and b + 1 >= MIN_BATCHES:
                now = time.perf_counter() - t0
                fresh = None
                if shard.sharded:  # every rank checks after every batch, on the merged goal voxels: in lockstep
                    now = all_max(now, dev)
                    if stop.uncertainty_goal is not None:
                        g1, g2 = _goal_sums(s1, s2, goal_index)
                        sigma = fresh = stop.median_sigma(g1, g2, (b + 1) * shard.world, done * shard.world, None,
                                                          inverse_mass if goal_index is None else inverse_mass[goal_index])
                elif stop.uncertainty_goal is not None and (now >= next_check or b + 1 == len(per_batch)):
                    sigma = fresh = stop.median_sigma(s1, s2, b + 1, done, goal_index, inverse_mass)
                    next_check = now + max(CHECK_INTERVAL_S, CHECK_FRACTION * now)
                reason = stop.reason_to_stop(fresh, now, b + 1)
                if reason is not None:
                    stop_reason = reason
                    break
        elapsed = time.perf_counter() - t0
        batches = b + 1
        if shard.sharded:  # merge the ranks: tallies, batch sums of squares, counters; wall time = the slowest
            counters = ["emitted_electron_mev", "emitted_photon_mev", "escaped_electron_mev", "escaped_photon_mev",
                        "local_cut_mev", "electrons", "electron_steps", "photons", "photon_interactions"]
            merged = torch.tensor([done, batches] + [totals[k] for k in counters], dtype=torch.float64, device=dev)
            all_sum(s1, s2, merged)
            done, batches = int(merged[0]), int(merged[1])
            t_e, t_p = all_max(t_e, dev), all_max(t_p, dev)  # like the wall time: the slowest rank
            for k, v in zip(counters, merged[2:].tolist()):
                totals[k] = int(v) if k in ("electrons", "electron_steps", "photons", "photon_interactions") else v
            elapsed = all_max(elapsed, dev)
        if stop.adaptive and (sigma is None or stop_reason != "uncertainty_goal" or shard.sharded):
            sigma = stop.median_sigma(s1, s2, batches, done, goal_index, inverse_mass)  # the σ reached
        histories, n_batches = done, batches  # what was simulated (fewer than the cap when a stop rule ended it)
        totals["emitted_mev"] = totals["emitted_electron_mev"] + totals["emitted_photon_mev"]
        totals["escaped_mev"] = totals["escaped_electron_mev"] + totals["escaped_photon_mev"]
        edep = s1
        deposited = float(edep.sum())
        # batch method: d_b = tally_b / n_b; mean = sum(tally)/N; var(mean) = (mean(d_b^2) - mean(d_b)^2)/(B - 1)
        mean_per_decay = s1 / histories
        mean_sq = s2 / n_batches
        # unequal batch sizes differ by at most one decay: the equal-size formula is used (error < 1/nb)
        mean_b = s1 / histories
        var = torch.clamp(mean_sq - mean_b * mean_b, min=0.0) / (n_batches - 1)
        rel = torch.where(mean_per_decay > 0, torch.sqrt(var) / torch.where(mean_per_decay > 0, mean_per_decay,
                                                                            torch.ones_like(mean_per_decay)),
                          torch.ones_like(mean_per_decay))
        shape = phantom.shape
        edep_np = edep.cpu().numpy().reshape(shape)
        mass_kg = phantom.voxel_mass_g * 1e-3
        dpd = edep_np / histories * MEV_TO_J / mass_kg
        rel_np = rel.cpu().numpy().reshape(shape)
        grid = phantom.grid
        meta = {"engine": ENGINE_NAME, "engine_version": ENGINE_VERSION, "nuclide": self.nuclide.name,
                "histories": histories, "seed": int(seed)}
        edep_vol = Volume(edep_np.astype(np.float32), grid=grid, quantity="energy_deposited", unit="MeV",
                          metadata=dict(meta))
        dpd_vol = Volume(dpd.astype(np.float32), grid=grid, quantity="dose_per_decay", unit="Gy/(Bq*s)",
                         metadata=dict(meta))
        if quantity in _ABSOLUTE:
            out_q, out_unit, per_ml = _ABSOLUTE[quantity]
            scale = float(weights.sum()) * (grid.voxel_volume_ml if per_ml else 1.0)
            dose_vol = Volume((dpd * scale).astype(np.float32), grid=grid, quantity=out_q, unit=out_unit,
                              metadata=dict(meta, source_total=scale,
                                            source_total_unit="Bq" if out_q == "dose_rate" else "Bq*s"))
        else:
            scale = 1.0
            dose_vol = dpd_vol
        unc_vol = Volume(rel_np.astype(np.float32), grid=grid, quantity="relative_uncertainty", unit="1",
                         metadata=dict(meta))
        balance = (deposited + totals["escaped_mev"] - totals["emitted_mev"]) / max(totals["emitted_mev"], 1e-300)
        stats = dict(meta)
        stats.update({
            "device": str(dev), "n_batches": n_batches,
            "batch_size": int(adaptive_batch if stop.adaptive else batch_size), "cut_mev": self.cut_mev,
            "components": list(self.components), "track_length_photons": bool(track_length_photons),
            "electron_range_rejection": self.range_rejection,
            "source_quantity": quantity, "source_total": scale,
            "emitted_energy_mev": totals["emitted_mev"], "deposited_energy_mev": deposited,
            "escaped_energy_mev": totals["escaped_mev"], "energy_balance_relative_error": balance,
            "emitted_per_decay_kev": totals["emitted_mev"] / histories * 1e3,
            "deposited_per_decay_kev": deposited / histories * 1e3,
            "escaped_per_decay_kev": totals["escaped_mev"] / histories * 1e3,
            "emitted_electron_mev": totals["emitted_electron_mev"], "emitted_photon_mev": totals["emitted_photon_mev"],
            "escaped_electron_mev": totals["escaped_electron_mev"], "escaped_photon_mev": totals["escaped_photon_mev"],
            "local_cut_mev": totals["local_cut_mev"], "electrons_transported": totals["electrons"],
            "electron_steps": totals["electron_steps"],
            "photons_transported": totals["photons"], "photon_interactions": totals["photon_interactions"],
            "setup_time_s": self.setup_time_s, "time_s": elapsed, "electron_time_s": t_e, "photon_time_s": t_p,
            "decays_per_s": histories / elapsed if elapsed > 0 else float("inf"),
            "processes": shard.world,
            "stop_reason": stop_reason, "uncertainty_goal": stop.uncertainty_goal, "time_limit_s": stop.time_limit_s,
            "goal_median_relative_uncertainty": sigma,
        })
        return MonteCarloResult(edep=edep_vol, dose_per_decay=dpd_vol, dose=dose_vol, uncertainty=unc_vol, stats=stats)


def _goal_sums(s1, s2, index):
    """The goal voxels' tally sums added over the ranks (copies: the rank's own sums stay its own)."""
    g1 = (s1 if index is None else s1[index]).clone()
    g2 = (s2 if index is None else s2[index]).clone()
    all_sum(g1, g2)
    return g1, g2


def _progress(done: int, cap: int, batch: int, batches: int, stop: StopRule, sigma: Optional[float],
              elapsed_s: float) -> tuple[float, str]:
    """Progress fraction and message: decays against the cap, and with a stop rule the time or σ reached."""
    if not stop.adaptive:
        return done / cap, f"batch {batch + 1}/{batches}: {done}/{cap} decays"
    fraction = done / cap
    text = f"{done} decays"
    if stop.time_limit_s is not None:
        fraction = max(fraction, elapsed_s / stop.time_limit_s)
        text += f", {elapsed_s:.0f}/{stop.time_limit_s:g} s"
    if sigma is not None and stop.uncertainty_goal is not None and sigma > 0:
        fraction = max(fraction, (stop.uncertainty_goal / sigma) ** 2)  # σ falls as 1/sqrt(decays)
        text += f", median sigma {100 * sigma:.2g} % (goal {100 * stop.uncertainty_goal:g} %)"
    return min(fraction, 1.0), text


def run_monte_carlo(activity: Volume, ct: Any, nuclide: str = "Lu-177", histories: int = 1_000_000,
                    device: str = "auto", seed: int = 0, batch_size: int = 200_000, n_batches: int = 10,
                    progress: Optional[Callable[[float, str], Any]] = None, cancel: Any = None,
                    track_length_photons: bool = False, cut_mev: float = 0.01, media_table: Any = None,
                    components: Sequence[str] = ("electron", "photon"),
                    stop: Optional[StopRule] = None, electron_range_rejection: bool = False) -> MonteCarloResult:
    """Simulate `histories` decays of `nuclide` distributed like `activity` in the CT (HU) phantom (fewer when
    `stop`, montecarlo/stopping.py, reaches its uncertainty goal or time limit first).

    Raises GridMismatchError when the activity and CT grids differ, InputFormatError for negative/NaN/all-zero
    activity, UnknownNuclideError for an unknown nuclide. Inputs are never modified.
    """
    if not isinstance(activity, Volume):
        raise TypeError(f"activity must be a Volume; got {type(activity).__name__}.")
    if isinstance(ct, Volume):
        problem = activity.grid.mismatch(ct.grid)
        if problem is not None:
            raise GridMismatchError(f"The activity map and the CT are on different voxel grids: {problem}. Resample "
                                    "the activity onto the CT grid first (VoxelDosimetryLib.geometry.resample_to).")
    # validate the source before the (slower) table set-up
    checked_source_weights(activity.array)
    engine = MonteCarloEngine(ct, nuclide=nuclide, device=device, cut_mev=cut_mev, media_table=media_table,
                              components=components, electron_range_rejection=electron_range_rejection)
    return engine.run(activity, histories=histories, seed=seed, n_batches=n_batches, batch_size=batch_size,
                      progress=progress, cancel=cancel, track_length_photons=track_length_photons, stop=stop)
