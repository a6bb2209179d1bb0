"""Cross-check of our Monte Carlo transport against EGSnrc physics (ompMC 0.4.0 runs stored as numbers).

    python Testing/benchmarks/mc_vs_egsnrc.py [--photons 2000000] [--electrons 200000] [--device cpu]
                                              [--quick] [--write-doc]

Cases (pencil beams normally incident on water, the geometry of the stored reference):
  * photons 208.4 keV and 113.0 keV into a water cylinder r = 15 cm, 30 cm deep (vacuum around it), energy
    deposited per 0.5 cm slab (laterally integrated) and per radial ring;
  * electrons 100 keV and 498 keV: laterally integrated depth-dose in slabs of 1/40 of the CSDA range and the
    fraction of the incident energy that leaves the phantom (backscatter).
Our engine's transport functions are called directly (no source sampling). The EGSnrc numbers come from
Testing/benchmarks/data/egsnrc_ompmc_reference.json (provenance inside; ompMC is GPL and is not a dependency:
only its results are stored). Prints JSON on stdout; --write-doc rewrites the section between the EGSNRC
markers of docs/VALIDATION.md.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any, List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

REFERENCE_JSON = Path(__file__).resolve().parent / "data" / "egsnrc_ompmc_reference.json"
VALIDATION_MD = ROOT / "docs" / "VALIDATION.md"
BEGIN, END = "<!-- EGSNRC:BEGIN -->", "<!-- EGSNRC:END -->"
#: radii (cm) beyond which the photon energy deposition is compared
TAIL_RADII_CM = (1.0, 2.0, 5.0)
#: density standing in for vacuum around the cylinder (our phantoms need rho > 0); 30 cm of it attenuates 1e-6
VACUUM_DENSITY_G_CM3 = 1.0e-5


def load_reference(path: Path = REFERENCE_JSON) -> dict:
    """The stored EGSnrc (ompMC) results: {'provenance': ..., 'photon': {...}, 'electron': {...}}."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _batch_mean_sem(batches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over axis 0 (the batch method)."""
    n = batches.shape[0]
    mean = batches.mean(axis=0)
    sem = batches.std(axis=0, ddof=1) / math.sqrt(n) if n > 1 else np.zeros_like(mean)
    return mean, sem


# ------------------------------------------------------------------------------------------------ photons
def _ring_area_weights(centres_mm: np.ndarray, ring_edges_mm: np.ndarray, inside: np.ndarray,
                       sub: int = 8) -> np.ndarray:
    """(voxels, rings) share of each lateral voxel's area inside each ring (sub x sub points per voxel), so that
    ring energies do not carry the area error of assigning whole 1 mm voxels to rings by their centre."""
    h = float(centres_mm[1] - centres_mm[0])
    offs = ((np.arange(sub) + 0.5) / sub - 0.5) * h
    n = centres_mm.size
    weights = np.zeros((n * n, len(ring_edges_mm) - 1))
    ys, xs = np.meshgrid(centres_mm, centres_mm, indexing="ij")
    for oy in offs:
        for ox in offs:
            k = np.digitize(np.hypot(xs + ox, ys + oy), ring_edges_mm).reshape(-1) - 1
            ok = (k >= 0) & (k < weights.shape[1]) & inside.reshape(-1)
            weights[np.nonzero(ok)[0], k[ok]] += 1.0 / sub ** 2
    return weights


def run_photon_pencil(ref_case: dict, photons: int, device: str = "cpu", seed: int = 1, batches: int = 10,
                      lateral_mm: float = 1.0) -> dict:
    """Our engine: photon pencil beam on the axis of the reference cylinder (water inside r = r_max, near-vacuum
    outside), scored per reference slab and ring. Energies in MeV per incident photon."""
    import torch

    from VoxelDosimetryLib.montecarlo.geometry import AIR, WATER, VoxelPhantom
    from VoxelDosimetryLib.montecarlo.photon_data import PhotonCrossSections
    from VoxelDosimetryLib.montecarlo.transport_photon import (photon_majorant, photon_tables_from_cross_sections,
                                                               transport_photons)
    from VoxelDosimetryLib.volume.volume import Grid

    energy = float(ref_case["energy_mev"])
    z_edges_mm = 10.0 * np.asarray(ref_case["z_bounds_cm"], float)
    ring_edges_mm = 10.0 * np.asarray(ref_case["ring_bounds_cm"], float)
    dz = float(z_edges_mm[1] - z_edges_mm[0])
    if not np.allclose(np.diff(z_edges_mm), dz):
        raise ValueError("The photon reference slabs must be uniform.")
    nz = len(z_edges_mm) - 1
    r_max = float(ring_edges_mm[-1])
    n_lat = int(round(2.0 * r_max / lateral_mm))
    centre = 0.5 * n_lat * lateral_mm
    c = (np.arange(n_lat) + 0.5) * lateral_mm - centre
    radius = np.hypot(c[None, :], c[:, None])  # (y, x)
    inside = radius <= r_max
    idx = np.broadcast_to(np.where(inside, 0, 1)[None], (nz, n_lat, n_lat)).astype(np.int64)
    rho = np.where(idx == 0, 1.0, VACUUM_DENSITY_G_CM3).astype(np.float32)
    phantom = VoxelPhantom.from_arrays(Grid((nz, n_lat, n_lat), (lateral_mm, lateral_mm, dz), (0.0, 0.0, 0.0)),
                                       [WATER, AIR], idx, rho)
    tph = phantom.to_torch(device)
    tables = photon_tables_from_cross_sections(PhotonCrossSections.build(list(phantom.media)), device)
    majorant = photon_majorant(tph, tables)
    ring_weights = torch.as_tensor(_ring_area_weights(c, ring_edges_mm, inside), device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    per_batch = max(1, photons // batches)
    slab_b, ring_b, back_b, uncoll_b = [], [], [], []
    t0 = time.time()
    for _ in range(batches):
        edep = torch.zeros(tph.n_voxels, dtype=torch.float64, device=device)
        back = 0.0
        uncollided = 0
        for start in range(0, per_batch, 500_000):
            n = min(500_000, per_batch - start)
            pos = torch.zeros(n, 3, device=device)
            pos[:, 0] = centre
            pos[:, 1] = centre
            d = torch.zeros(n, 3, device=device)
            d[:, 2] = 1.0
            res = transport_photons(pos, d, torch.full((n,), energy, device=device), tph, tables, edep, gen,
                                    majorant=majorant, return_escaped=True)
            esc = res.escaped
            back += float(esc["energy"][esc["pos"][:, 2] < 0.0].double().sum())
            uncollided += int(((esc["energy"] == esc["energy"].new_tensor(energy))
                               & (esc["dir"][:, 2] == 1.0)).sum())
        e = edep.reshape(nz, n_lat * n_lat)
        rings = e @ ring_weights  # (slabs, rings)
        ring_b.append(rings.T.cpu().numpy() / per_batch)  # (rings, slabs)
        slab_b.append(e[:, torch.as_tensor(inside.reshape(-1), device=device)].sum(dim=1).cpu().numpy() / per_batch)
        back_b.append(back / (per_batch * energy))
        uncoll_b.append(uncollided / per_batch)
    slab, slab_sem = _batch_mean_sem(np.asarray(slab_b))
    ring, ring_sem = _batch_mean_sem(np.asarray(ring_b))
    absorbed = np.asarray(slab_b).sum(axis=1) / energy
    return {"energy_mev": energy, "photons": per_batch * batches, "time_s": time.time() - t0,
            "lateral_voxel_mm": lateral_mm, "slab_edep_mev": slab, "slab_sem_mev": slab_sem,
            "ring_edep_mev": ring, "ring_sem_mev": ring_sem,
            "absorbed_fraction": float(absorbed.mean()), "absorbed_fraction_sem": float(absorbed.std(ddof=1)
                                                                                         / math.sqrt(batches)),
            "backscattered_energy_fraction": float(np.mean(back_b)),
            "uncollided_exit_fraction": float(np.mean(uncoll_b)),
            "uncollided_exit_fraction_sem": float(np.std(uncoll_b, ddof=1) / math.sqrt(batches))}


def _mu_water_cm2_g(energy_mev: float) -> dict:
    """Water mu/rho (cm2/g) as our tables see it (xraylib, bound Compton) and as EGSnrc/ompMC builds it
    (XCOM photo + Rayleigh, free-electron Klein-Nishina Compton: Klein & Nishina 1929 total cross-section)."""
    import xraylib

    ek = energy_mev * 1e3
    fractions = {1: 0.111894, 8: 0.888106}
    photo = sum(w * xraylib.CS_Photo(z, ek) for z, w in fractions.items())
    incoh = sum(w * xraylib.CS_Compt(z, ek) for z, w in fractions.items())
    rayl = sum(w * xraylib.CS_Rayl(z, ek) for z, w in fractions.items())
    k = energy_mev / 0.51099895
    re2 = 2.8179403262e-13 ** 2
    sigma_kn = 2.0 * math.pi * re2 * ((1 + k) / k ** 2 * (2 * (1 + k) / (1 + 2 * k) - math.log(1 + 2 * k) / k)
                                      + math.log(1 + 2 * k) / (2 * k) - (1 + 3 * k) / (1 + 2 * k) ** 2)
    electrons_per_g = 6.02214076e23 * (0.111894 * 1 / 1.00794 + 0.888106 * 8 / 15.9994)
    return {"ours": photo + incoh + rayl, "egsnrc": photo + sigma_kn * electrons_per_g + rayl}


def compare_photon(ours: dict, ref: dict) -> dict:
    """Ratios ours/EGSnrc per slab, per ring, beyond TAIL_RADII_CM; absorbed fraction; analytic primary check."""
    e0 = float(ref["energy_mev"])
    ref_slab = np.asarray(ref["slab_edep_mev"], float)
    ref_slab_unc = np.asarray(ref["slab_rel_unc"], float) * ref_slab
    ratio = ours["slab_edep_mev"] / ref_slab
    ratio_unc = ratio * np.hypot(ours["slab_sem_mev"] / ours["slab_edep_mev"], ref_slab_unc / ref_slab)
    ref_ring = np.asarray(ref["ring_edep_mev"], float)  # (rings, slabs), from its own run
    ring_edges = np.asarray(ref["ring_bounds_cm"], float)
    ring_total_ours = ours["ring_edep_mev"].sum(axis=1)
    ring_total_ref = ref_ring.sum(axis=1)
    tails = {}
    for r in TAIL_RADII_CM:
        k = int(np.searchsorted(ring_edges, r))
        if not math.isclose(float(ring_edges[k]), r):
            raise ValueError(f"The reference rings have no edge at r = {r} cm.")
        ours_frac = float(ring_total_ours[k:].sum() / ring_total_ours.sum())
        ref_frac = float(ring_total_ref[k:].sum() / ring_total_ref.sum())
        tails[f"{r:g}"] = {"ours_fraction_of_deposit": ours_frac, "egsnrc_fraction_of_deposit": ref_frac,
                           "ours_mev_per_photon": float(ring_total_ours[k:].sum()),
                           "egsnrc_mev_per_photon": float(ring_total_ref[k:].sum()),
                           "ratio": float(ring_total_ours[k:].sum() / ring_total_ref[k:].sum())}
    z = np.asarray(ref["z_bounds_cm"], float)
    mu = _mu_water_cm2_g(e0)
    mu_ours = mu["ours"]
    # First-collision (primary) energy per slab: E0 (mu_en/mu) [exp(-mu z1) - exp(-mu z2)] (narrow-beam law)
    from VoxelDosimetryLib.montecarlo.geometry import WATER
    from VoxelDosimetryLib.montecarlo.photon_data import PhotonCrossSections

    xs = PhotonCrossSections.build([WATER])
    e_grid = np.asarray(xs.energies_mev, float)
    mu_en = float(np.exp(np.interp(math.log(e0), np.log(e_grid), np.log(np.asarray(xs.table("mu_en"))[0]))))
    primary = e0 * (mu_en / mu_ours) * (np.exp(-mu_ours * z[:-1]) - np.exp(-mu_ours * z[1:]))
    depth_cm = 30.0 if math.isclose(float(z[-1]), 30.0) else float(z[-1])
    groups = {}
    for lo, hi in ((0.0, 5.0), (5.0, 10.0), (10.0, 20.0), (20.0, 30.0)):
        sel = (z[:-1] >= lo - 1e-9) & (z[1:] <= hi + 1e-9)
        if sel.any():
            groups[f"{lo:g}-{hi:g} cm"] = float(ours["slab_edep_mev"][sel].sum() / ref_slab[sel].sum())
    return {
        "energy_kev": 1e3 * e0,
        "slab_ratio": ratio, "slab_ratio_unc": ratio_unc,
        "slab_ratio_mean_0_20cm": float(ratio[z[1:] <= 20.0 + 1e-9].mean()),
        "slab_ratio_max_dev_0_20cm": float(np.max(np.abs(ratio[z[1:] <= 20.0 + 1e-9] - 1.0))),
        "depth_group_ratio": groups,
        "ring_bounds_cm": ring_edges.tolist(),
        "ring_ratio": (ring_total_ours / ring_total_ref).tolist(),
        "tails": tails,
        "absorbed_fraction_ours": ours["absorbed_fraction"],
        "absorbed_fraction_egsnrc": float(ref["absorbed_fraction"]),
        "absorbed_ratio": ours["absorbed_fraction"] / float(ref["absorbed_fraction"]),
        "backscattered_energy_fraction_ours": ours["backscattered_energy_fraction"],
        "uncollided_exit_ours": ours["uncollided_exit_fraction"],
        "uncollided_exit_analytic_ours_mu": math.exp(-mu_ours * depth_cm),
        "uncollided_exit_analytic_egsnrc_mu": math.exp(-mu["egsnrc"] * depth_cm),
        "mu_water_cm2_g": mu,
        "buildup_ours": (ours["slab_edep_mev"] / primary).tolist(),
        "buildup_egsnrc": (ref_slab / primary).tolist(),
    }


# ---------------------------------------------------------------------------------------------- electrons
def run_electron_pencil(ref_case: dict, electrons: int, device: str = "cpu", seed: int = 2, batches: int = 10,
                        voxel_fraction: float = 0.5) -> dict:
    """Our engine: electron pencil beam into water scored in the reference's thin slabs (one 20 mm wide column of
    voxels: far wider than the range). `voxel_fraction` caps the step at that fraction of the slab thickness;
    a large value leaves the step at 0.2 x residual range, as in patient-size voxels."""
    import torch

    from VoxelDosimetryLib.montecarlo.geometry import VoxelPhantom
    from VoxelDosimetryLib.montecarlo.transport_electron import electron_tables_for_media, transport_electrons

    energy = float(ref_case["energy_mev"])
    dz = 10.0 * float(ref_case["slab_cm"])
    nz = int(ref_case["n_thin_slabs"])
    width = 20.0
    phantom = VoxelPhantom.homogeneous((nz, 1, 1), (width, width, dz))
    tph = phantom.to_torch(device)
    tables = electron_tables_for_media(list(phantom.media), device)
    gen = torch.Generator(device=device).manual_seed(seed)
    per_batch = max(1, electrons // batches)
    slab_b, esc_b = [], []
    t0 = time.time()
    for _ in range(batches):
        edep = torch.zeros(tph.n_voxels, dtype=torch.float64, device=device)
        pos = torch.zeros(per_batch, 3, device=device)
        pos[:, :2] = 0.5 * width
        d = torch.zeros(per_batch, 3, device=device)
        d[:, 2] = 1.0
        res = transport_electrons(pos, d, torch.full((per_batch,), energy, device=device), tph, tables, edep, gen,
                                  voxel_fraction=voxel_fraction)
        slab_b.append(edep.cpu().numpy() / per_batch)
        esc_b.append(res.escaped_energy_mev / (per_batch * energy))
    slab, sem = _batch_mean_sem(np.asarray(slab_b))
    return {"energy_mev": energy, "electrons": per_batch * batches, "time_s": time.time() - t0,
            "voxel_fraction": voxel_fraction, "slab_edep_mev": slab, "slab_sem_mev": sem,
            "escaped_energy_fraction": float(np.mean(esc_b)),
            "escaped_energy_fraction_sem": float(np.std(esc_b, ddof=1) / math.sqrt(batches))}


def _depth_metrics(edep: np.ndarray, dz_mm: float) -> dict:
    """Depth of the maximum, R50 (distal depth at half the maximum) and mean depth of deposition, mm."""
    centres = (np.arange(edep.size) + 0.5) * dz_mm
    k = int(np.argmax(edep))
    half = 0.5 * edep[k]
    distal = np.nonzero(edep[k:] < half)[0]
    if distal.size:
        j = k + int(distal[0])
        # linear interpolation between slab centres j-1 and j
        r50 = centres[j - 1] + (edep[j - 1] - half) / (edep[j - 1] - edep[j]) * dz_mm
    else:
        r50 = float("nan")
    return {"depth_of_max_mm": float(centres[k]), "r50_mm": float(r50),
            "mean_depth_mm": float((centres * edep).sum() / edep.sum())}


def compare_electron(ours: dict, ref: dict) -> dict:
    """Per-slab ratios (slabs holding >= 5 % of the EGSnrc maximum), depth metrics, backscatter."""
    n = int(ref["n_thin_slabs"])
    ref_slab = np.asarray(ref["slab_edep_mev"], float)[:n]
    ref_unc = np.asarray(ref["slab_rel_unc"], float)[:n] * ref_slab
    dz = 10.0 * float(ref["slab_cm"])
    e0 = float(ref["energy_mev"])
    mine = ours["slab_edep_mev"]
    sel = ref_slab >= 0.05 * ref_slab.max()
    ratio = np.where(sel, mine / np.where(sel, ref_slab, 1.0), np.nan)
    ratio_unc = ratio * np.hypot(ours["slab_sem_mev"] / np.maximum(mine, 1e-300), ref_unc / np.maximum(ref_slab,
                                                                                                         1e-300))
    m_ours, m_ref = _depth_metrics(mine, dz), _depth_metrics(ref_slab, dz)
    return {
        "energy_kev": 1e3 * e0, "voxel_fraction": ours["voxel_fraction"], "slab_mm": dz,
        "slab_ratio": ratio, "slab_ratio_unc": ratio_unc,
        "slab_ratio_max_dev": float(np.nanmax(np.abs(ratio - 1.0))),
        "metrics_ours": m_ours, "metrics_egsnrc": m_ref,
        "r50_ratio": m_ours["r50_mm"] / m_ref["r50_mm"],
        "mean_depth_ratio": m_ours["mean_depth_mm"] / m_ref["mean_depth_mm"],
        "first_slab_ratio": float(mine[0] / ref_slab[0]),
        "escaped_fraction_ours": ours["escaped_energy_fraction"],
        "escaped_fraction_ours_sem": ours["escaped_energy_fraction_sem"],
        "escaped_fraction_egsnrc": 1.0 - float(ref["energy_fraction_kept"]),
        "absorbed_in_thin_slabs_ours": float(mine.sum() / e0),
        "absorbed_in_thin_slabs_egsnrc": float(ref_slab.sum() / e0),
    }


# ---------------------------------------------------------------------------------------------------- doc
def _f(x: float, nd: int = 3) -> str:
    return f"{x:.{nd}f}"


def render_markdown(result: dict) -> str:
    prov = result["reference_provenance"]
    lines = [
        f"Measured by `Testing/benchmarks/mc_vs_egsnrc.py` on {result['device']} (Python {result['python']}, "
        f"torch {result['torch']}); total {result['time_s']:.0f} s. Reference: ompMC {prov['ompmc_version']} "
        f"(EGSnrc physics, {prov['physics_summary']}), stored in "
        f"`Testing/benchmarks/data/egsnrc_ompmc_reference.json` ({prov['date']}).",
        "",
        "**Photon pencil beams** into a water cylinder (r = 15 cm, 30 cm deep), laterally integrated energy per "
        "0.5 cm slab and per ring, ours / EGSnrc:",
        "",
        "| E (keV) | photons ours / EGSnrc | slab ratio 0-5 cm | 5-10 cm | 10-20 cm | 20-30 cm | max per-slab "
        "deviation 0-20 cm | absorbed fraction ours / EGSnrc | beyond r = 1 cm | beyond 2 cm | beyond 5 cm |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result["photon"]:
        g = c["depth_group_ratio"]
        t = c["tails"]
        lines.append(
            f"| {c['energy_kev']:.1f} | {c['photons_ours']:.1e} / {c['photons_egsnrc']:.1e} | "
            f"{_f(g['0-5 cm'])} | {_f(g['5-10 cm'])} | {_f(g['10-20 cm'])} | {_f(g['20-30 cm'])} | "
            f"{100 * c['slab_ratio_max_dev_0_20cm']:.1f} % | "
            f"{_f(c['absorbed_fraction_ours'], 4)} / {_f(c['absorbed_fraction_egsnrc'], 4)} | "
            + " | ".join(f"{_f(t[k]['ratio'])} ({100 * t[k]['ours_fraction_of_deposit']:.1f} / "
                         f"{100 * t[k]['egsnrc_fraction_of_deposit']:.1f} %)" for k in ("1", "2", "5")) + " |")
    lines += [
        "",
        "Beyond-r columns: ratio of the energy deposited outside that radius (all depths), with the share of the "
        "deposited energy it holds (ours / EGSnrc). Per ring (all depths), ours / EGSnrc:",
        "",
    ]
    c0 = result["photon"][0]
    edges = c0["ring_bounds_cm"]
    lines.append("| E (keV) | " + " | ".join(f"{edges[i]:g}-{edges[i + 1]:g} cm" for i in range(len(edges) - 1))
                 + " |")
    lines.append("|---" * len(edges) + "|")
    for c in result["photon"]:
        lines.append(f"| {c['energy_kev']:.1f} | " + " | ".join(_f(x) for x in c["ring_ratio"]) + " |")
    lines += ["", "Narrow-beam check (30 cm of water, photons leaving the back face uncollided): "]
    for c in result["photon"]:
        lines[-1] += (f"{c['energy_kev']:.1f} keV: ours {c['uncollided_exit_ours']:.5f}, exp(-mu z) with our "
                      f"mu {c['uncollided_exit_analytic_ours_mu']:.5f}, with EGSnrc's free-electron Compton mu "
                      f"{c['uncollided_exit_analytic_egsnrc_mu']:.5f} (mu/rho {c['mu_water_cm2_g']['ours']:.5f} "
                      f"vs {c['mu_water_cm2_g']['egsnrc']:.5f} cm²/g). ")
    lines += [
        "",
        "**Electron pencil beams** into water, slabs of 1/40 of the CSDA range (ours: default step cap of half a "
        "slab, and the step of patient-size voxels, 0.2 x residual range):",
        "",
        "| E (keV) | step | electrons | depth of max ours / EGSnrc (mm) | R50 ours / EGSnrc (mm) | mean depth "
        "ratio | first slab ratio | max per-slab deviation (slabs >= 5 % of max) | energy escaping (backscatter) "
        "ours / EGSnrc |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result["electron"]:
        mo, me = c["metrics_ours"], c["metrics_egsnrc"]
        step = "half slab" if c["voxel_fraction"] < 10 else "0.2 R"
        lines.append(
            f"| {c['energy_kev']:.0f} | {step} | {c['electrons_ours']:.0e} / {c['electrons_egsnrc']:.0e} | "
            f"{mo['depth_of_max_mm']:.4f} / {me['depth_of_max_mm']:.4f} | {mo['r50_mm']:.4f} / {me['r50_mm']:.4f} | "
            f"{_f(c['mean_depth_ratio'])} | {_f(c['first_slab_ratio'])} | {100 * c['slab_ratio_max_dev']:.0f} % | "
            f"{100 * c['escaped_fraction_ours']:.2f} % / {100 * c['escaped_fraction_egsnrc']:.2f} % |")
    lines += ["", "Reading:", ""] + [f"- {s}" for s in result["reading"]]
    return "\n".join(lines) + "\n"


def reading(result: dict) -> List[str]:
    """Short data-driven interpretation for the doc."""
    out = []
    for c in result["photon"]:
        t = c["tails"]
        out.append(
            f"{c['energy_kev']:.1f} keV photons: laterally integrated slabs agree within "
            f"{100 * c['slab_ratio_max_dev_0_20cm']:.1f} % per slab down to 20 cm (mean ratio "
            f"{c['slab_ratio_mean_0_20cm']:.3f}); absorbed fraction ratio {c['absorbed_ratio']:.3f}; energy beyond "
            f"r = 1, 2, 5 cm: ratio {t['1']['ratio']:.3f}, {t['2']['ratio']:.3f}, {t['5']['ratio']:.3f}.")
    worst = max(max(abs(c["tails"][k]["ratio"] - 1.0) for k in ("1", "2", "5")) for c in result["photon"])
    if worst <= 0.03:
        out.append(f"Our photon transport (Compton with S(x), Rayleigh, photoelectric, Woodcock tracking, local "
                   f"Compton electrons) puts the same energy far from the axis as EGSnrc, within {100 * worst:.1f} %. "
                   "The +15-25 % photon tail against the PyTheranostics 4.80 mm kernel (table above) is therefore "
                   "not explained by our photon scatter physics; with the ICRP-107 photon yield of the source "
                   "(35.1 keV/decay) it points at that kernel. The remaining per-mille differences at depth follow "
                   "the attenuation coefficients: EGSnrc (ompMC) uses free-electron Klein-Nishina Compton, ours the "
                   "bound (xraylib S(x)) cross-section, 0.4 % (208 keV) to 1.0 % (113 keV) lower.")
    else:
        out.append(f"Our photon transport differs from EGSnrc far from the axis by up to {100 * worst:.1f} %.")
    for c in result["electron"]:
        step = "half-slab steps" if c["voxel_fraction"] < 10 else "0.2 R steps"
        out.append(
            f"{c['energy_kev']:.0f} keV electrons ({step}): R50 ratio {c['r50_ratio']:.3f}, mean depth ratio "
            f"{c['mean_depth_ratio']:.3f}, energy escaping {100 * c['escaped_fraction_ours']:.2f} % vs "
            f"{100 * c['escaped_fraction_egsnrc']:.2f} % (EGSnrc's includes a few 0.01 % of escaping "
            "bremsstrahlung).")
    shallow = all(c["r50_ratio"] < 0.97 for c in result["electron"])
    less_back = all(c["escaped_fraction_ours"] < c["escaped_fraction_egsnrc"] for c in result["electron"])
    depth_ok = all(abs(c["r50_ratio"] - 1.0) < 0.06 and abs(c["mean_depth_ratio"] - 1.0) < 0.06
                   for c in result["electron"])
    more_back = all(c["escaped_fraction_ours"] > c["escaped_fraction_egsnrc"] for c in result["electron"])
    if depth_ok and more_back:
        out.append("Electrons (modified Wentzel multiple scattering with the exact first two transport moments per "
                   "step, Moliere-screened Rutherford mean free paths) penetrate nearly as deep as EGSnrc's (R50 "
                   "and mean depth within 6 %, independent of the step length) and backscatter somewhat more. "
                   "Likely causes: screened-Rutherford instead of Mott large-angle scattering (spin lowers "
                   "backscatter of fast electrons on light nuclei) and no step shortening near a boundary "
                   "(EGSnrc's PRESTA-II). The earlier Gaussian Highland model erred the other way and depended on "
                   "the step (R50 -9 to -11 %, backscatter -16 to -27 %). Inside a patient the only vacuum surface "
                   "is the skin.")
    elif shallow and less_back:
        out.append("Our electrons stop short of EGSnrc's (R50 and depth of maximum too shallow) and yet backscatter "
                   "less: the Gaussian Highland multiple scattering deflects too much in the core of the angular "
                   "distribution and has no single-scattering tail. Scaling its theta0 by 0.9 (a throwaway test) "
                   "restores the depth of maximum and the mean depth but halves the backscatter, so no rescaling "
                   "fixes both; a distribution with the right transport moment and a large-angle tail (e.g. a "
                   "modified Wentzel or Goudsmit-Saunderson model) would. The effect lives inside the electron "
                   "range (<= 1.8 mm for Lu-177): it moves energy between sub-millimetre depths; for a 4.80 mm "
                   "voxel, from which about 7 % of the electron energy escapes, 5-10 % shorter penetration is "
                   "estimated to raise the self-dose by well under 1 %.")
    return out


def write_doc(markdown: str, path: Path = VALIDATION_MD) -> None:
    text = path.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path} has no {BEGIN} / {END} markers: add them under the EGSnrc heading first.")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(head + BEGIN + "\n" + markdown + END + tail, encoding="utf-8")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def run_all(photons: int, electrons: int, device: str = "cpu", reference: Optional[dict] = None) -> dict:
    import torch

    ref = load_reference() if reference is None else reference
    t0 = time.time()
    photon_rows, electron_rows = [], []
    for key, ref_case in ref["photon"].items():
        ours = run_photon_pencil(ref_case, photons, device=device)
        row = compare_photon(ours, ref_case)
        row.update(case=key, photons_ours=ours["photons"], photons_egsnrc=ref_case["histories_slabs"],
                   time_ours_s=ours["time_s"])
        photon_rows.append(row)
    for key, ref_case in ref["electron"].items():
        for vf in (0.5, 1.0e6):
            ours = run_electron_pencil(ref_case, electrons, device=device, voxel_fraction=vf)
            row = compare_electron(ours, ref_case)
            row.update(case=key, electrons_ours=ours["electrons"], electrons_egsnrc=ref_case["histories"],
                       time_ours_s=ours["time_s"])
            electron_rows.append(row)
    result = {"device": device, "python": platform.python_version(), "torch": torch.__version__,
              "time_s": time.time() - t0, "reference_provenance": ref["provenance"],
              "photon": photon_rows, "electron": electron_rows}
    result["reading"] = reading(result)
    return result


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photons", type=int, default=2_000_000)
    ap.add_argument("--electrons", type=int, default=200_000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="10 %% of the histories (smoke run)")
    ap.add_argument("--write-doc", action="store_true", help="rewrite the EGSNRC section of docs/VALIDATION.md")
    args = ap.parse_args(argv)
    scale = 0.1 if args.quick else 1.0
    result = run_all(int(args.photons * scale), int(args.electrons * scale), device=args.device)
    print(json.dumps(_jsonable(result), indent=1))
    if args.write_doc:
        write_doc(render_markdown(result))
        print(f"wrote {VALIDATION_MD}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
