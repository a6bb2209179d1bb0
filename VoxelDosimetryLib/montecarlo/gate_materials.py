"""CT media for GATE: this library's Schneider media as explicit GATE materials, and the Schneider 2000 tables
in GATE's text format.

`gate_media_list` turns a MediaTable (default MediaTable.from_schneider(0.05), 74 media) into the HU intervals,
densities and elemental mass fractions that the exported run_gate.py declares one by one
(material_database.add_material_weights + ImageVolume.voxel_materials), so GATE transports in exactly the media
this library uses. opengate's own HounsfieldUnit_to_material splits the bins on slightly different HU edges
(sub-bin width Δhu/n before rounding n up), so it is offered only as an option (the tables below).
HU outside the table go to the first/last medium, as MediaTable.media_index does (GATE alone would give them
the ImageVolume's default material).
"""
from __future__ import annotations

from pathlib import Path

from VoxelDosimetryLib.physics import MediaTable, schneider_composition_table, schneider_density_table, schneider_media
from VoxelDosimetryLib.io.safe_write import write_text_atomic

MATERIAL_PREFIX = "VD_"  # keeps our media apart from NIST (G4_*) and GATE database names
# element symbol -> the name GATE's Schneider material table uses (opengate.definitions.elements_name_symbol)
GATE_ELEMENT_NAMES = {"H": "Hydrogen", "C": "Carbon", "N": "Nitrogen", "O": "Oxygen", "Na": "Sodium",
                      "Mg": "Magnesium", "P": "Phosphor", "S": "Sulfur", "Cl": "Chlorine", "Ar": "Argon",
                      "K": "Potassium", "Ca": "Calcium", "Ti": "Titanium", "Cu": "Copper", "Zn": "Zinc",
                      "Ag": "Silver", "Sn": "Tin"}
MATERIALS_TABLE_FILE = "Schneider2000MaterialsTable.txt"
DENSITIES_TABLE_FILE = "Schneider2000DensitiesTable.txt"


def gate_media_list(media: MediaTable | None = None) -> list[dict]:
    """One dict per medium: name, hu_low, hu_high (open ends as None), density_g_cm3, elements, mass_fractions."""
    media = schneider_media(0.05) if media is None else media
    out = []
    last = len(media) - 1
    for m in media:
        elements = sorted(m.mass_fractions)
        out.append({"name": MATERIAL_PREFIX + m.name, "hu_low": None if m.index == 0 else m.hu_low,
                    "hu_high": None if m.index == last else m.hu_high, "density_g_cm3": m.density_g_cm3,
                    "elements": elements, "mass_fractions": [m.mass_fractions[e] for e in elements]})
    return out


def write_schneider_tables(folder: str | Path) -> tuple[Path, Path]:
    """Write the Schneider 2000 composition and density tables in GATE's text format; returns both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    comp = schneider_composition_table()
    unknown = [e for e in comp.elements if e not in GATE_ELEMENT_NAMES]
    if unknown:
        raise ValueError(f"No GATE element name for {unknown}; extend GATE_ELEMENT_NAMES.")
    lines = ["[Elements]", " ".join(GATE_ELEMENT_NAMES[e] for e in comp.elements), "[/Elements]",
             f"# {comp.source}; written by VoxelDosimetryLib.montecarlo.gate_materials",
             "# HU " + " ".join(comp.elements) + " name"]
    for i, name in enumerate(comp.names):
        percent = " ".join(f"{v:g}" for v in comp.mass_percent[i])
        lines.append(f"{int(comp.hu_low[i])} {percent} {name}")
    materials = folder / MATERIALS_TABLE_FILE
    write_text_atomic(materials, "\n".join(lines) + "\n")
    dens = schneider_density_table()
    rows = ["# HU density(g/cm3)", f"# {dens.source}"]
    rows += [f"{h:g} {d:g}" for h, d in zip(dens.hu, dens.density_g_cm3)]
    densities = folder / DENSITIES_TABLE_FILE
    write_text_atomic(densities, "\n".join(rows) + "\n")
    return materials, densities
