"""Which homogeneous medium a kernel is made for: a named medium, a density, or both.

Names: `soft_tissue` (ICRP soft tissue, NIST composition, 1.04 g/cm³ as in DblurDoseNet §2.3.2), `water`,
`cortical_bone`, `lung`, `air`, or any Schneider 2000 medium of the MC engine (`SoftTissus_1`, `Lung_5`,
`Marrow_Bone07_1`, …; `voxeldosimetry kernel --medium list` prints them). A density alone picks the Schneider
tissue medium of closest nominal density (as the MVSV density bins do) at that density; a name with a density
uses the name's composition at that density.
"""
from __future__ import annotations

import math
from dataclasses import replace

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.physics.media import DensityBin, DensityBins, Medium, closest_tissue_medium, schneider_media

SOFT_TISSUE = "soft_tissue"
# DblurDoseNet (Li et al. 2022, §2.3.2): Lu-177 soft-tissue kernels at 1.04 g/cm³, the density DVK scales by.
SOFT_TISSUE_DENSITY_G_CM3 = 1.04
MAX_DENSITY_G_CM3 = 25.0  # denser than any element: a typo, not a medium


def _named() -> dict:
    from VoxelDosimetryLib.montecarlo.geometry import AIR, BONE, LUNG, WATER
    from VoxelDosimetryLib.montecarlo.validation import icrp_soft_tissue

    return {SOFT_TISSUE: icrp_soft_tissue(SOFT_TISSUE_DENSITY_G_CM3), "water": WATER, "cortical_bone": BONE,
            "lung": LUNG, "air": AIR}


def canonical_medium_name(name: str | None, density_g_cm3: float | None = None) -> str:
    """The name a kernel is stored and looked up under: the lower-case name of a named medium (`Soft_Tissue` ->
    `soft_tissue`), the exact Schneider name, or for a density alone the Schneider tissue picked for it."""
    if name is None:
        return kernel_medium(None, density_g_cm3).name
    key = str(name).strip()
    if key.lower() in _named():
        return key.lower()
    return kernel_medium(key, density_g_cm3).name


def medium_names() -> list[str]:
    """Every name `kernel_medium` accepts."""
    return list(_named()) + [m.name for m in schneider_media(0.05)]


def kernel_medium(name: str | None = None, density_g_cm3: float | None = None) -> Medium:
    """The Medium (composition + density) of a kernel; InputFormatError naming the choices for a bad request."""
    if density_g_cm3 is not None:
        rho = float(density_g_cm3)
        if not (math.isfinite(rho) and 0 < rho <= MAX_DENSITY_G_CM3):
            raise InputFormatError(f"The kernel density must be a number in (0, {MAX_DENSITY_G_CM3:g}] g/cm3; got "
                                   f"{density_g_cm3}.")
    if name is None and density_g_cm3 is None:
        raise InputFormatError("Name the kernel's medium (--medium NAME, e.g. soft_tissue) or give its density "
                               "(--density RHO in g/cm3).")
    if name is None:
        return replace(closest_tissue_medium(rho), density_g_cm3=rho)
    named = _named()
    key = str(name).strip()
    medium = named.get(key.lower())
    if medium is None:
        by_name = {m.name: m for m in schneider_media(0.05)}
        medium = by_name.get(key)
    if medium is None:
        raise InputFormatError(f"Unknown kernel medium {name!r}. Use one of {', '.join(named)} or a Schneider "
                               "medium name of the Monte Carlo engine (`voxeldosimetry kernel --medium list` prints "
                               "them), or give --density RHO alone.")
    return medium if density_g_cm3 is None else replace(medium, density_g_cm3=rho)


def tissue_bins(min_density_g_cm3: float) -> list[DensityBin]:
    """The default MVSV density bins whose representative density is at least `min_density_g_cm3` (the dose
    methods pass their air threshold, 0.1 g/cm³: bins below it are air and get no dose, so need no kernel)."""
    return [b for b in DensityBins.default() if b.representative_g_cm3 >= min_density_g_cm3]


def method_media(method: str, min_density_g_cm3: float) -> list[tuple[str, float]]:
    """(medium, density) of every kernel a kernel method needs: the soft-tissue kernel for svsv and dvk, one per
    tissue bin for mvsv."""
    if method in ("svsv", "dvk"):
        return [(SOFT_TISSUE, SOFT_TISSUE_DENSITY_G_CM3)]
    if method == "mvsv":
        return [(b.medium, b.representative_g_cm3) for b in tissue_bins(min_density_g_cm3)]
    raise InputFormatError(f"No kernel set for method {method!r}; kernel methods: svsv, dvk, mvsv.")
