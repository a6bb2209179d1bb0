"""QC checks of segments: size and density against adult anatomy, overlap with the body, partial-volume loss.

`segment_qc` runs on the rows of `segment_statistics` (so `voxeldosimetry voi`, `compare` and the pipeline all
get it) and emits non-blocking QC warnings (docs/RELIABILITY.md):
- `segment_volume_implausible`: a named organ outside x0.2..x5 of its ICRP 89 adult reference volume;
- `segment_density_implausible`: a segment's mean density (mass / volume) impossible for its name;
- `segment_outside_body`: less than half of a segment's voxels inside the CT body outline;
- `segment_partial_volume`: a segment so small that a uniform sphere of its volume keeps < 80 % of its mean
  activity after the SPECT blur (closed form for a sphere convolved with a 3-D Gaussian).
Organ names are matched on whole words (liver, spleen, kidney(s), lung(s), pancreas, thyroid, brain); names of
lesions or organ parts (tumour, node, lobe, cortex, ...) are never compared with whole-organ references.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from VoxelDosimetryLib.geometry.voxel_average import inside_mask
from VoxelDosimetryLib.physics.body_mask import body_mask
from VoxelDosimetryLib.physics.plausibility import check_ct_plausible
from VoxelDosimetryLib.physics.voxel_mass import ct_on_grid
from VoxelDosimetryLib.qc import qc_warn
from VoxelDosimetryLib.volume import Grid, Volume

# Lu-177 SPECT with medium-energy collimators resolves ~10 mm FWHM at typical patient depths (Ljungberg et al.
# 2016, MIRD Pamphlet 26, J Nucl Med 57:151).
DEFAULT_SPECT_FWHM_MM = 10.0
# Recovery below 80 %: partial-volume loss larger than the ~10 % accuracy of quantitative SPECT (Dewaraja et al.
# 2012, MIRD Pamphlet 23, J Nucl Med 53:1310); recovery correction is then advised (Soret et al. 2007, J Nucl
# Med 48:932).
MIN_RECOVERY = 0.80
# Adult organ masses vary about 2-3x between people (ICRP 89 male/female, disease); beyond x0.2..x5 of the
# reference the label, its name or the voxel size is wrong.
VOLUME_RATIO_LIMITS = (0.2, 5.0)
# At least half of an organ segment lies inside the patient when labels and CT belong together.
MIN_FRACTION_IN_BODY = 0.5
# Any tissue segment: above 0.1 g/mL (denser than air, lung is ~0.26) and below 2.0 g/mL (cortical bone is 1.92,
# ICRU Report 46, 1992).
GENERIC_DENSITY_RANGE = (0.1, 2.0)
# Soft-tissue organs are 1.04-1.06 g/mL (ICRU 46); the range allows fat at the edges (0.93-0.95) and contrast
# (about 1.15 g/mL at 250 HU on the Schneider 2000 curve).
SOFT_TISSUE_DENSITY_RANGE = (0.8, 1.3)
# Inflated lung 0.26 g/mL (ICRU 46); the range allows edges with the chest wall and denser (diseased) lung.
LUNG_DENSITY_RANGE = (0.1, 0.8)


@dataclass(frozen=True)
class ReferenceOrgan:
    """Adult reference organ: masses of one organ (ICRP 89 Table 2.8, male / female), density (ICRU 46)."""

    name: str
    mass_male_g: float
    mass_female_g: float
    density_g_ml: float
    density_range: tuple[float, float]
    paired: bool = False

    def volume_limits_ml(self, count: int | None) -> tuple[float, float]:
        """(lowest, highest) plausible volume of `count` organs (None: one or both of a pair)."""
        low_count, high_count = (1, 2) if count is None else (count, count)
        low = VOLUME_RATIO_LIMITS[0] * self.mass_female_g * low_count / self.density_g_ml
        high = VOLUME_RATIO_LIMITS[1] * self.mass_male_g * high_count / self.density_g_ml
        return low, high

    def reference_volume_ml(self, count: int | None) -> float:
        """Mean of the male and female reference volumes of `count` organs (None: one)."""
        return 0.5 * (self.mass_male_g + self.mass_female_g) * (count or 1) / self.density_g_ml


REFERENCE_SOURCE = "ICRP Publication 89 (2002) Table 2.8 adult masses; ICRU Report 46 (1992) densities"
# Masses of ONE organ (paired organs: half of ICRP 89's pair mass); lungs include their blood.
REFERENCE_ORGANS: dict[str, ReferenceOrgan] = {o.name: o for o in (
    ReferenceOrgan("liver", 1800.0, 1400.0, 1.06, SOFT_TISSUE_DENSITY_RANGE),
    ReferenceOrgan("spleen", 150.0, 130.0, 1.06, SOFT_TISSUE_DENSITY_RANGE),
    ReferenceOrgan("kidney", 155.0, 137.5, 1.05, SOFT_TISSUE_DENSITY_RANGE, paired=True),
    ReferenceOrgan("lung", 600.0, 475.0, 0.26, LUNG_DENSITY_RANGE, paired=True),
    ReferenceOrgan("pancreas", 140.0, 120.0, 1.04, SOFT_TISSUE_DENSITY_RANGE),
    ReferenceOrgan("thyroid", 20.0, 17.0, 1.05, SOFT_TISSUE_DENSITY_RANGE),
    ReferenceOrgan("brain", 1450.0, 1300.0, 1.04, SOFT_TISSUE_DENSITY_RANGE),
)}
_SYNONYMS = {"liver": "liver", "spleen": "spleen", "kidney": "kidney", "kidneys": "kidney", "renal": "kidney",
             "lung": "lung", "lungs": "lung", "pancreas": "pancreas", "thyroid": "thyroid", "brain": "brain"}
_PLURALS = {"kidneys", "lungs"}
_SIDES = {"left", "right", "l", "r", "lt", "rt", "sin", "dex"}
# Words naming lesions or parts of an organ: such segments are not whole organs.
_NOT_WHOLE_ORGAN = {"tumour", "tumor", "tumours", "tumors", "lesion", "lesions", "met", "mets", "metastasis",
                    "metastases", "node", "nodes", "lymph", "gtv", "ctv", "ptv", "cyst", "lobe", "segment", "cortex",
                    "medulla", "pelvis", "hilum", "vessel", "vessels", "vein", "artery", "wall", "ring", "shell",
                    "margin", "remnant", "part", "sub", "nodule"}
# Segments that may legitimately hold mostly air: no lower density bound for them.
_AIR_WORDS = {"air", "gas", "airway", "airways", "trachea", "bronchus", "bronchi", "lumen", "outside",
              "background", "couch", "table"}


def _words(name: str) -> list[str]:
    return re.findall(r"[a-z]+", str(name).lower())


def reference_organ(name: str) -> tuple[ReferenceOrgan, int | None] | None:
    """(reference organ, organ count: 1, 2 or None when unknown) for a whole-organ name, else None."""
    words = _words(name)
    if not words or _NOT_WHOLE_ORGAN.intersection(words):
        return None
    found = {_SYNONYMS[w] for w in words if w in _SYNONYMS}
    if len(found) != 1:
        return None
    organ = REFERENCE_ORGANS[found.pop()]
    if not organ.paired:
        return organ, 1
    if _SIDES.intersection(words):
        return organ, 1
    if _PLURALS.intersection(words) or {"both", "bilateral"}.intersection(words):
        return organ, 2
    return organ, None


def density_range(name: str) -> tuple[float, float]:
    """Plausible mean density (g/mL) of a segment called `name` (lower bound 0 for air-like names)."""
    match = reference_organ(name)
    if match is not None:
        return match[0].density_range
    if _AIR_WORDS.intersection(_words(name)):
        return 0.0, GENERIC_DENSITY_RANGE[1]
    return GENERIC_DENSITY_RANGE


def sphere_radius_mm(volume_ml: float) -> float:
    """Radius (mm) of a sphere of `volume_ml` (1 mL = 1000 mm3)."""
    return (3.0 * volume_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)


def sphere_recovery(volume_ml: float, fwhm_mm: float) -> float:
    """Mean activity recovered inside a uniform sphere of `volume_ml` blurred by an isotropic Gaussian of `fwhm_mm`.

    RC = (1/V) * integral over the sphere of (sphere * Gaussian) = erf(sqrt(2) p) + ((p^2 - 1) exp(-2 p^2) -
    (3 p^2 - 1)) / (sqrt(2 pi) p^3), with p = R / sigma: the integral over the distance d between two points of the
    sphere of the Gaussian times the overlap volume of two spheres of radius R at distance d, pi/12 (4R+d)(2R-d)^2.
    Tends to 1 - 3/(sqrt(2 pi) p) for large spheres and to 0 for small ones.
    """
    if volume_ml <= 0:
        return 0.0
    if fwhm_mm <= 0:
        return 1.0
    sigma = fwhm_mm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    p = sphere_radius_mm(volume_ml) / sigma
    return float(math.erf(math.sqrt(2.0) * p)
                 + ((p * p - 1.0) * math.exp(-2.0 * p * p) - (3.0 * p * p - 1.0)) / (math.sqrt(2.0 * math.pi) * p ** 3))


# ----------------------------------------------------------------------------------------------- checks

def check_segment_volume(name: str, volume_ml: float, label: int | None = None) -> bool:
    """`segment_volume_implausible` when a named organ's volume is outside x0.2..x5 of its adult reference."""
    match = reference_organ(name)
    if match is None or volume_ml is None:
        return True
    organ, count = match
    low, high = organ.volume_limits_ml(count)
    if low <= volume_ml <= high:
        return True
    reference = organ.reference_volume_ml(count)
    which = {1: f"one {organ.name}", 2: f"both {organ.name}s", None: f"one or both {organ.name}s"}[count]
    qc_warn("segment_volume_implausible",
            f"Segment '{name}' measures {volume_ml:.4g} mL, outside the plausible {low:.3g}-{high:.3g} mL for "
            f"{which} (x{VOLUME_RATIO_LIMITS[0]:g}-x{VOLUME_RATIO_LIMITS[1]:g} of the adult reference, "
            f"{REFERENCE_SOURCE}). It was used as given. Check that the label values carry the right names, that "
            "the label map belongs to this patient, and its voxel size.",
            name=name, label=label, volume_ml=volume_ml, reference_volume_ml=reference, lower_ml=low, upper_ml=high,
            ratio_to_reference=volume_ml / reference, organ=organ.name, organ_count=count)
    return False


def check_segment_density(name: str, mass_g: float, volume_ml: float, label: int | None = None) -> bool:
    """`segment_density_implausible` when mass / volume is outside the plausible density for the segment's name."""
    if mass_g is None or not volume_ml:
        return True
    rho = mass_g / volume_ml
    low, high = density_range(name)
    if low <= rho <= high:
        return True
    match = reference_organ(name)
    what = f"a {match[0].name} (ICRU 46: {match[0].density_g_ml:g} g/mL)" if match else "any tissue"
    qc_warn("segment_density_implausible",
            f"Segment '{name}' has a mean density of {rho:.3g} g/mL ({mass_g:.4g} g in {volume_ml:.4g} mL), outside "
            f"the plausible {low:g}-{high:g} g/mL for {what}. Its mass (and so its mass-weighted mean dose) was "
            "computed with it. Check that the label map lies on this CT (same patient, same frame of reference) and "
            "that the CT is in HU.",
            name=name, label=label, mass_g=mass_g, volume_ml=volume_ml, density_g_ml=rho, lower_g_ml=low,
            upper_g_ml=high)
    return False


def check_segment_in_body(name: str, voxels_in_body: int, voxels: int, label: int | None = None) -> bool:
    """`segment_outside_body` when fewer than half of a segment's voxels lie inside the CT body outline."""
    if not voxels:
        return True
    fraction = voxels_in_body / voxels
    if fraction >= MIN_FRACTION_IN_BODY:
        return True
    qc_warn("segment_outside_body",
            f"Only {100 * fraction:.1f} % of segment '{name}' ({voxels_in_body} of {voxels} voxels) lies inside the "
            "body outline of the CT (> -500 HU, largest component, holes filled): the rest is air outside the "
            "patient, where dose and mass mean nothing. Check that the label map is registered to this CT.",
            name=name, label=label, voxels=voxels, voxels_in_body=voxels_in_body, fraction_in_body=fraction,
            threshold=MIN_FRACTION_IN_BODY)
    return False


def check_segment_partial_volume(name: str, volume_ml: float, fwhm_mm: float = DEFAULT_SPECT_FWHM_MM,
                                 label: int | None = None) -> bool:
    """`segment_partial_volume` when a sphere of the segment's volume recovers < 80 % after the SPECT blur."""
    if not volume_ml or not fwhm_mm or fwhm_mm <= 0:
        return True
    recovery = sphere_recovery(volume_ml, fwhm_mm)
    if recovery >= MIN_RECOVERY:
        return True
    radius = sphere_radius_mm(volume_ml)
    qc_warn("segment_partial_volume",
            f"Segment '{name}' ({volume_ml:.3g} mL, a sphere of {2 * radius:.0f} mm diameter) is small for a SPECT "
            f"resolution of {fwhm_mm:g} mm FWHM: a uniform sphere of that volume keeps only ~{100 * recovery:.0f} % "
            "of its mean activity (partial-volume loss, no activity around). No recovery correction was applied, "
            "so its activity and mean dose are probably underestimated; apply a recovery coefficient or report this.",
            name=name, label=label, volume_ml=volume_ml, sphere_radius_mm=radius, fwhm_mm=fwhm_mm,
            recovery=recovery, threshold=MIN_RECOVERY)
    return False


def voxels_in_body(labels_on_grid: np.ndarray, ct: Volume, grid: Grid) -> dict[int, tuple[int, int]]:
    """{label: (voxels inside the body, voxels covered by the CT)} for labels on `grid` (flat or (z, y, x))."""
    body = body_mask(ct_on_grid(ct, grid)).reshape(-1)
    labels = np.asarray(labels_on_grid).reshape(-1).astype(np.int64)
    covered = inside_mask(grid, ct.grid).reshape(-1) & (labels > 0)
    size = int(labels.max()) + 1 if labels.size else 1
    total = np.bincount(labels[covered], minlength=size)
    inside = np.bincount(labels[covered & body], minlength=size)
    return {int(k): (int(inside[k]), int(total[k])) for k in np.flatnonzero(total) if k > 0}


def segment_qc(rows: Sequence[dict], labels_on_grid: np.ndarray | None = None, grid: Grid | None = None,
               ct: Volume | None = None, density_measured: bool = True,
               spect_fwhm_mm: float | None = DEFAULT_SPECT_FWHM_MM) -> None:
    """Run every segment check on segment_statistics rows (keys name, label, status, label_map_volume_ml,
    volume_ml, mass_g). The body check needs `labels_on_grid`, `grid` and `ct`; the density check is skipped when
    the masses come from an assumed density (density_measured=False); spect_fwhm_mm None skips partial volume."""
    body = {}
    if ct is not None:
        check_ct_plausible(ct, "the CT")
        if labels_on_grid is not None and grid is not None:
            body = voxels_in_body(labels_on_grid, ct, grid)
    for row in rows:
        if not row.get("label_map_volume_ml"):
            continue  # empty segment: statistics already say so
        name, label = str(row.get("name")), row.get("label")
        check_segment_volume(name, float(row["label_map_volume_ml"]), label)
        if density_measured and row.get("mass_g") is not None and row.get("volume_ml"):
            check_segment_density(name, float(row["mass_g"]), float(row["volume_ml"]), label)
        if label in body:
            check_segment_in_body(name, *body[label], label)
        if spect_fwhm_mm:
            check_segment_partial_volume(name, float(row["label_map_volume_ml"]), spect_fwhm_mm, label)
