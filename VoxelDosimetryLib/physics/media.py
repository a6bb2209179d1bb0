"""Media for transport and kernels: GATE-style density-tolerance splitting of the Schneider 2000 bins, and the
density bins (one kernel each) of the MVSV method.

MediaTable.from_schneider(tol) follows the algorithm GATE uses for voxelised CT phantoms
(opengate HounsfieldUnit_to_material, described in reference/PHYSICS.md section 3; implemented here from that
description):
  1. for each composition bin [HU_i, HU_i+1) take the density range Δρ of the HU->density curve over the bin
     (ends and any curve node inside it);
  2. split the bin into n = ceil(Δρ / tol) equal-HU sub-bins (the Air bin always 1);
  3. each sub-bin gets the curve density at its HU midpoint and the bin's composition renormalised to Σw = 1;
  4. the last composition row spans [HU, HU+1).
With tol = 0.05 g/cm3 this gives 74 media, as GATE does.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError, UnitError
from VoxelDosimetryLib.physics.calibration import HUDensityCurve, ct_to_density
from VoxelDosimetryLib.physics.schneider import (
    check_finite,
    log_range_report,
    range_report,
    schneider_composition_table,
)
from VoxelDosimetryLib.volume.volume import Volume
from VoxelDosimetryLib.io.safe_write import write_text_atomic

MEDIA_JSON_FORMAT = "voxeldosimetry-media-table"
_FRACTION_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Medium:
    """One material: HU interval [hu_low, hu_high), density (g/cm3) and elemental mass fractions (sum 1)."""

    index: int
    name: str
    hu_low: float
    hu_high: float
    density_g_cm3: float
    mass_fractions: Mapping[str, float] = field(default_factory=dict)
    composition: str = ""  # name of the Schneider composition bin it came from

    def __post_init__(self) -> None:
        fractions = {str(k): float(v) for k, v in dict(self.mass_fractions).items()}
        if not fractions or any(v < 0 or not math.isfinite(v) for v in fractions.values()):
            raise InputFormatError(f"Medium {self.name!r}: mass fractions must be non-negative numbers; got "
                                   f"{fractions}.")
        if abs(sum(fractions.values()) - 1.0) > _FRACTION_TOLERANCE:
            raise InputFormatError(f"Medium {self.name!r}: mass fractions sum to {sum(fractions.values()):.6f}, not 1. "
                                   "Renormalise them.")
        if not (self.density_g_cm3 > 0 and math.isfinite(self.density_g_cm3)):
            raise InputFormatError(f"Medium {self.name!r}: density must be > 0 g/cm3; got {self.density_g_cm3}.")
        if not self.hu_high > self.hu_low:
            raise InputFormatError(f"Medium {self.name!r}: hu_high ({self.hu_high}) must exceed hu_low ({self.hu_low}).")
        object.__setattr__(self, "mass_fractions", MappingProxyType(fractions))

    def __hash__(self) -> int:
        return hash((self.index, self.name, self.hu_low, self.hu_high, self.density_g_cm3,
                     tuple(self.mass_fractions.items())))

    def to_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "hu_low": self.hu_low, "hu_high": self.hu_high,
                "density_g_cm3": self.density_g_cm3, "mass_fractions": dict(self.mass_fractions),
                "composition": self.composition}


class MediaTable:
    """An ordered, contiguous set of media covering [hu_edges[0], hu_edges[-1]); immutable."""

    __slots__ = ("_media", "_edges", "tolerance_g_cm3", "source")

    def __init__(self, media: Sequence[Medium], *, tolerance_g_cm3: float | None = None, source: str = "") -> None:
        media = tuple(media)
        if not media:
            raise InputFormatError("A media table needs at least one medium.")
        for i, m in enumerate(media):
            if m.index != i:
                raise InputFormatError(f"Medium {m.name!r} has index {m.index}, expected {i}: indices must run 0..n-1 "
                                       "in HU order.")
            if i and not math.isclose(m.hu_low, media[i - 1].hu_high, rel_tol=0, abs_tol=1e-9):
                raise InputFormatError(f"Media {media[i - 1].name!r} and {m.name!r} are not contiguous in HU "
                                       f"({media[i - 1].hu_high} vs {m.hu_low}).")
        edges = np.array([m.hu_low for m in media] + [media[-1].hu_high], dtype=float)
        edges.setflags(write=False)
        object.__setattr__(self, "_media", media)
        object.__setattr__(self, "_edges", edges)
        object.__setattr__(self, "tolerance_g_cm3", tolerance_g_cm3)
        object.__setattr__(self, "source", source)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("MediaTable is immutable; build a new one.")

    # constructors ---------------------------------------------------------------------------------------
    @classmethod
    def from_schneider(cls, tolerance_g_cm3: float = 0.05, curve: HUDensityCurve | None = None) -> "MediaTable":
        """Split the Schneider 2000 composition bins by density tolerance (74 media at 0.05 g/cm3).

        `curve` gives the densities (default: the Schneider 2000 curve); compositions are always Schneider's.
        """
        tol = float(tolerance_g_cm3)
        if not (tol > 0 and math.isfinite(tol)):
            raise InputFormatError(f"The density tolerance must be > 0 g/cm3; got {tolerance_g_cm3}.")
        curve = HUDensityCurve.schneider2000() if curve is None else curve
        nodes_hu, nodes_rho = curve.hu, curve.density_g_cm3
        comp = schneider_composition_table()

        def rho(h: Any) -> np.ndarray:  # no range logging: bin ends outside the curve are expected here
            return np.interp(np.asarray(h, dtype=float), nodes_hu, nodes_rho)

        media: list[Medium] = []
        used: set[str] = set()
        for i in range(len(comp)):
            h1, h2 = float(comp.hu_low[i]), float(comp.hu_high[i])
            inside = nodes_hu[(nodes_hu > h1) & (nodes_hu < h2)]
            values = rho(np.concatenate([[h1, h2], inside]))
            span = float(values.max() - values.min())
            # PHYSICS.md §3 step 2: n = ceil(Δρ / tol), Air always one medium (tiny slack against round-off)
            n = 1 if i == 0 else max(1, int(math.ceil(span / tol - 1e-9)))
            fractions = comp.mass_fractions(i)
            edges = h1 + (h2 - h1) * np.arange(n + 1) / n
            mids = 0.5 * (edges[:-1] + edges[1:])
            densities = rho(mids)
            for k in range(n):
                name = comp.names[i] if n == 1 else f"{comp.names[i]}_{k + 1}"
                if name in used:
                    name = f"{name}_{int(h1)}HU"
                used.add(name)
                media.append(Medium(index=len(media), name=name, hu_low=float(edges[k]), hu_high=float(edges[k + 1]),
                                    density_g_cm3=float(densities[k]), mass_fractions=fractions,
                                    composition=comp.names[i]))
        source = f"{comp.source}; split at {tol:g} g/cm3 (GATE scheme); densities from curve {curve.name!r}"
        return cls(media, tolerance_g_cm3=tol, source=source)

    # container ------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._media)

    def __iter__(self) -> Iterator[Medium]:
        return iter(self._media)

    def __getitem__(self, index: int) -> Medium:
        return self._media[index]

    def __repr__(self) -> str:
        return (f"MediaTable({len(self)} media, HU {self._edges[0]:g}..{self._edges[-1]:g}, "
                f"tolerance={self.tolerance_g_cm3} g/cm3)")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MediaTable) and self._media == other._media

    def __hash__(self) -> int:
        return hash(self._media)

    @property
    def media(self) -> tuple[Medium, ...]:
        return self._media

    @property
    def hu_edges(self) -> np.ndarray:
        """n + 1 HU edges; medium i covers [hu_edges[i], hu_edges[i+1])."""
        return self._edges

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self._media)

    @property
    def densities_g_cm3(self) -> np.ndarray:
        return np.array([m.density_g_cm3 for m in self._media])

    def by_name(self, name: str) -> Medium:
        for m in self._media:
            if m.name == name:
                return m
        raise KeyError(f"No medium named {name!r}; known: {', '.join(self.names)}.")

    def mass_fraction_matrix(self, elements: Sequence[str] | None = None) -> tuple[tuple[str, ...], np.ndarray]:
        """(elements, W) with W[i, j] the mass fraction of elements[j] in medium i."""
        if elements is None:
            seen: dict[str, None] = {}
            for m in self._media:
                seen.update(dict.fromkeys(m.mass_fractions))
            elements = tuple(seen)
        elements = tuple(elements)
        w = np.array([[m.mass_fractions.get(el, 0.0) for el in elements] for m in self._media])
        return elements, w

    # mapping --------------------------------------------------------------------------------------------
    def media_index(self, hu: Any, *, return_report: bool = False):
        """Medium index (int16) of each HU value, vectorised (np.searchsorted; input not modified).

        A value equal to an edge belongs to the medium starting there. HU below the first edge go to medium 0
        (air) and HU >= the last edge to the last medium; both are counted and logged.
        """
        arr = check_finite(hu, "media index")
        report = range_report(arr, float(self._edges[0]), float(self._edges[-1]), high_inclusive=False)
        log_range_report(report, "HU->medium")
        idx = np.searchsorted(self._edges[:-1], arr, side="right") - 1
        idx = np.clip(idx, 0, len(self) - 1).astype(np.int16)
        return (idx, report) if return_report else idx

    def media_volume(self, ct_volume: Volume) -> Volume:
        """Label volume (quantity 'media') of medium indices for a CT volume (quantity 'ct', HU)."""
        _require_ct(ct_volume, "media_volume")
        idx, report = self.media_index(ct_volume.array, return_report=True)
        out = ct_volume.with_array(idx, quantity="media", unit="label")
        meta = dict(out.metadata)
        meta.update({"label_meaning": "media_table_index", "media_table_source": self.source,
                     "media_count": len(self), "media_tolerance_g_cm3": self.tolerance_g_cm3,
                     "hu_below_range_voxels": report.n_below, "hu_above_range_voxels": report.n_above})
        return out.replace(metadata=meta)

    # serialisation ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": MEDIA_JSON_FORMAT, "version": 1, "source": self.source,
                "tolerance_g_cm3": self.tolerance_g_cm3, "media": [m.to_dict() for m in self._media]}

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "MediaTable":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputFormatError(f"Media table JSON is malformed: {exc}.") from exc
        if not isinstance(data, dict) or data.get("format") != MEDIA_JSON_FORMAT:
            raise InputFormatError(f"Not a media table: expected a JSON object with format {MEDIA_JSON_FORMAT!r}.")
        try:
            media = [Medium(index=int(m["index"]), name=str(m["name"]), hu_low=float(m["hu_low"]),
                            hu_high=float(m["hu_high"]), density_g_cm3=float(m["density_g_cm3"]),
                            mass_fractions=dict(m["mass_fractions"]), composition=str(m.get("composition", "")))
                     for m in data["media"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise InputFormatError(f"Media table JSON: a medium entry is incomplete or malformed ({exc!r}); each needs "
                                   "index, name, hu_low, hu_high, density_g_cm3 and mass_fractions.") from exc
        tol = data.get("tolerance_g_cm3")
        return cls(media, tolerance_g_cm3=None if tol is None else float(tol), source=str(data.get("source", "")))

    def write_json(self, path: str | Path) -> Path:
        return write_text_atomic(path, self.to_json() + "\n")

    @classmethod
    def read_json(cls, path: str | Path) -> "MediaTable":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputFormatError(f"Cannot read the media table {path}: {exc.strerror or exc}.") from exc
        return cls.from_json(text)


_SCHNEIDER_CACHE: dict[float, MediaTable] = {}


def schneider_media(tolerance_g_cm3: float = 0.05) -> MediaTable:
    """Cached MediaTable.from_schneider(tolerance_g_cm3) with the Schneider density curve."""
    key = float(tolerance_g_cm3)
    if key not in _SCHNEIDER_CACHE:
        _SCHNEIDER_CACHE[key] = MediaTable.from_schneider(key)
    return _SCHNEIDER_CACHE[key]


def _require_ct(volume: Volume, what: str) -> None:
    if not isinstance(volume, Volume):
        raise TypeError(f"{what} needs a Volume; got {type(volume).__name__}.")
    if volume.quantity != "ct":
        raise UnitError(f"{what} needs a CT volume (quantity 'ct', unit HU); got {volume.quantity!r} ({volume.unit}). "
                        "Load the CT with quantity 'ct', or volume.replace(quantity='ct', unit='HU') if the values "
                        "are Hounsfield units.")


# ------------------------------------------------------------------------------------------ density bins
# Default MVSV density bins (g/cm3), 20 bins from air to cortical bone. Narrow (0.04-0.07 g/cm3) where tissue is
# common and the Schneider media are closely spaced (adipose 0.90-0.97, water-like 0.97-1.02, soft tissue
# 1.02-1.10 = Schneider SoftTissus, connective tissue/marrow 1.10-1.15), wider in lung and bone. Bin 0 is air (representative 0.00121 g/cm3, the Schneider air density); the other bins are
# represented by their midpoint; the top bin [1.90, 2.10) holds cortical bone (Schneider 1.96 g/cm3 at 1600 HU);
# denser voxels (> ~1830 HU: dense cortex, metal) are put in it and counted as above range.
DEFAULT_DENSITY_BIN_EDGES_G_CM3: tuple[float, ...] = (
    0.0, 0.02, 0.10, 0.15, 0.20, 0.25, 0.30, 0.40, 0.55, 0.75, 0.90,
    0.97, 1.02, 1.06, 1.10, 1.15, 1.30, 1.50, 1.70, 1.90, 2.10,
)
AIR_DENSITY_G_CM3 = 0.00121  # Schneider 2000 / GATE air


def closest_tissue_medium(density_g_cm3: float, media: MediaTable | None = None) -> Medium:
    """The medium (default: Schneider, tolerance 0.05) of nominal density closest to `density_g_cm3`, leaving out
    dental amalgam and metal implants (not tissue) unless nothing else is left. The MVSV bins and the kernels made
    for a density use it."""
    media = schneider_media(0.05) if media is None else media
    tissue = [m for m in media if m.composition not in ("AmalgamTooth", "MetallImplants")] or list(media)
    return min(tissue, key=lambda m: abs(m.density_g_cm3 - density_g_cm3))


@dataclass(frozen=True)
class DensityBin:
    """One MVSV density bin [low, high) with the density and medium its kernel is generated for."""

    index: int
    low_g_cm3: float
    high_g_cm3: float
    representative_g_cm3: float
    medium: str  # Schneider medium (tolerance 0.05) whose density is closest to the representative density

    def to_dict(self) -> dict:
        return {"index": self.index, "low_g_cm3": self.low_g_cm3, "high_g_cm3": self.high_g_cm3,
                "representative_g_cm3": self.representative_g_cm3, "medium": self.medium}


class DensityBins:
    """An ordered set of density bins; bin i covers [edges[i], edges[i+1]). Immutable."""

    __slots__ = ("_bins", "_edges")

    def __init__(self, edges_g_cm3: Sequence[float], representative_g_cm3: Sequence[float] | None = None,
                 media: MediaTable | None = None) -> None:
        edges = np.array(edges_g_cm3, dtype=float).reshape(-1)
        if edges.size < 2 or not np.all(np.isfinite(edges)) or edges[0] < 0 or not np.all(np.diff(edges) > 0):
            raise InputFormatError(f"Density bin edges must be at least two finite, non-negative, strictly increasing "
                                   f"values in g/cm3; got {edges.tolist()}.")
        if representative_g_cm3 is None:
            rep = 0.5 * (edges[:-1] + edges[1:])
            if edges[0] == 0.0 and edges[1] <= 0.05:  # an air bin: use the air density, not the midpoint
                rep[0] = min(AIR_DENSITY_G_CM3, 0.5 * edges[1])
        else:
            rep = np.array(representative_g_cm3, dtype=float).reshape(-1)
            if rep.size != edges.size - 1:
                raise InputFormatError(f"Give one representative density per bin: {edges.size - 1} bins, {rep.size} "
                                       "values.")
            if np.any(rep < edges[:-1]) or np.any(rep > edges[1:]) or np.any(rep <= 0):
                raise InputFormatError("Each representative density must be > 0 and lie inside its bin.")
        rep = np.round(rep, 6)
        bins = tuple(DensityBin(i, float(edges[i]), float(edges[i + 1]), float(rep[i]),
                                closest_tissue_medium(float(rep[i]), media).name)
                     for i in range(edges.size - 1))
        edges.setflags(write=False)
        object.__setattr__(self, "_bins", bins)
        object.__setattr__(self, "_edges", edges)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("DensityBins is immutable; build a new one.")

    @classmethod
    def default(cls) -> "DensityBins":
        """The 20 default MVSV bins (DEFAULT_DENSITY_BIN_EDGES_G_CM3)."""
        return cls(DEFAULT_DENSITY_BIN_EDGES_G_CM3)

    def __len__(self) -> int:
        return len(self._bins)

    def __iter__(self) -> Iterator[DensityBin]:
        return iter(self._bins)

    def __getitem__(self, index: int) -> DensityBin:
        return self._bins[index]

    def __repr__(self) -> str:
        return f"DensityBins({len(self)} bins, {self._edges[0]:g}..{self._edges[-1]:g} g/cm3)"

    @property
    def edges_g_cm3(self) -> np.ndarray:
        return self._edges

    @property
    def representative_g_cm3(self) -> np.ndarray:
        return np.array([b.representative_g_cm3 for b in self._bins])

    def bin_index(self, density: Any, *, return_report: bool = False):
        """Bin index (int16) of each density; below/above the edges -> first/last bin, counted and logged."""
        arr = check_finite(density, "density bin index")
        report = range_report(arr, float(self._edges[0]), float(self._edges[-1]), high_inclusive=False)
        log_range_report(report, "density->bin")
        idx = np.clip(np.searchsorted(self._edges[:-1], arr, side="right") - 1, 0, len(self) - 1).astype(np.int16)
        return (idx, report) if return_report else idx

    def to_dict(self) -> dict:
        return {"edges_g_cm3": self._edges.tolist(), "bins": [b.to_dict() for b in self._bins]}


def density_bin_map(volume: Volume, bins: DensityBins | Sequence[float] | None = None,
                    curve: HUDensityCurve | None = None,
                    media: MediaTable | None = None) -> tuple[Volume, list[dict]]:
    """Density-bin label volume (quantity 'media', int16) and a per-bin table, for MVSV.

    `volume` is a density volume (quantity 'density') or a CT (quantity 'ct', converted with `curve`, default
    Schneider). `bins` is a DensityBins, a sequence of edges in g/cm3, or None for DensityBins.default().
    Table rows: index, low_g_cm3, high_g_cm3, representative_g_cm3, medium (the medium the bin's kernel is
    made for), voxel_count, mean_density_g_cm3 (in this image, None if empty) and dominant_medium (the most
    frequent Schneider medium of the bin's voxels, by HU; only for CT input, else None).
    """
    if not isinstance(volume, Volume):
        raise TypeError(f"density_bin_map needs a Volume; got {type(volume).__name__}.")
    if bins is None:
        bins = DensityBins.default()
    elif not isinstance(bins, DensityBins):
        bins = DensityBins(bins, media=media)
    media_idx = None
    if volume.quantity == "ct":
        density_volume = ct_to_density(volume, curve)
        table = schneider_media(0.05) if media is None else media
        media_idx = table.media_index(volume.array)
    elif volume.quantity == "density":
        density_volume = volume.to_canonical_unit()
        table = None
    else:
        raise UnitError(f"density_bin_map needs a density (g/cm3) or CT (HU) volume; got {volume.quantity!r} "
                        f"({volume.unit}). Load the CT with quantity 'ct' or convert it with ct_to_density().")
    density = np.asarray(density_volume.array, dtype=float)
    idx, report = bins.bin_index(density, return_report=True)
    counts = np.bincount(idx.ravel(), minlength=len(bins))
    sums = np.bincount(idx.ravel(), weights=density.ravel(), minlength=len(bins))
    rows = []
    for b in bins:
        row = b.to_dict()
        n = int(counts[b.index])
        row["voxel_count"] = n
        row["mean_density_g_cm3"] = float(sums[b.index] / n) if n else None
        row["dominant_medium"] = None
        if media_idx is not None and n:
            sel = media_idx[idx == b.index]
            row["dominant_medium"] = table[int(np.bincount(sel).argmax())].name  # type: ignore[index]
        rows.append(row)
    out = volume.with_array(idx, quantity="media", unit="label")
    meta = dict(out.metadata)
    meta.update({"label_meaning": "density_bin_index", "density_bins": bins.to_dict(),
                 "density_below_range_voxels": report.n_below, "density_above_range_voxels": report.n_above})
    if volume.quantity == "ct":
        meta.update({k: density_volume.metadata[k] for k in ("density_curve", "hu_below_range_voxels",
                                                               "hu_above_range_voxels")})
    return out.replace(metadata=meta), rows
