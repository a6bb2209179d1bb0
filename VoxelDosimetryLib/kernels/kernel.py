"""A voxel S-value (dose-voxel) kernel: Gy per decay in the source voxel, on an odd grid centred on the source.

File format (docs/KERNELS.md; the design card's "Kernel" format): NRRD float32, odd in every axis, spacing = voxel size, the centre voxel at the
origin, quantity `dose_per_decay` (Gy/(Bq·s) = Gy per decay), and the fields nuclide, medium, density_g_cm3,
component (total | electron | photon), histories, seed, centre_relative_uncertainty, generator and its version,
the Monte Carlo engine version and the command that made it (all in the `voxeldosimetry_metadata` field).
Shipped kernels are stored as the octant of non-negative offsets (`storage: octant`; they are symmetric by
construction) to keep the package small; reading mirrors them back to the full cube.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError, UnitError
from VoxelDosimetryLib.volume import Volume

KERNEL_QUANTITY = "dose_per_decay"
KERNEL_UNIT = "Gy/(Bq*s)"
COMPONENTS = ("total", "electron", "photon")
MEV_TO_J = 1.602176634e-13  # CODATA 2018 exact
OCTANT = "octant"
# the fields every kernel carries (docs/KERNELS.md); anything else in the metadata is kept as extra information
REQUIRED_FIELDS = ("nuclide", "medium", "density_g_cm3", "component")


def check_component(component: str) -> str:
    if component not in COMPONENTS:
        raise InputFormatError(f"Kernel component must be one of {', '.join(COMPONENTS)}; got {component!r}.")
    return component


@dataclass(frozen=True, eq=False)
class DoseKernel:
    """Gy per decay in the source voxel: `values` (z, y, x) odd, centred; `spacing_mm` (x, y, z) like Grid."""

    values: np.ndarray = field(repr=False)
    spacing_mm: tuple
    nuclide: str
    medium: str
    density_g_cm3: float
    component: str = "total"
    metadata: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim != 3 or any(n % 2 == 0 for n in values.shape):
            raise InputFormatError(f"A kernel must be a 3-D array with an odd size on every axis (centred on the "
                                   f"source voxel); got shape (z, y, x) {values.shape}.")
        if not np.all(np.isfinite(values)) or values.min() < 0:
            raise InputFormatError("Kernel values must be finite and non-negative (Gy per decay).")
        spacing = tuple(float(s) for s in self.spacing_mm)
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise InputFormatError(f"Kernel voxel size must be three positive numbers (mm); got {self.spacing_mm}.")
        if not (np.isfinite(self.density_g_cm3) and self.density_g_cm3 > 0):
            raise InputFormatError(f"Kernel density must be > 0 g/cm3; got {self.density_g_cm3}.")
        check_component(self.component)
        values = values.copy()
        values.setflags(write=False)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "spacing_mm", spacing)
        object.__setattr__(self, "density_g_cm3", float(self.density_g_cm3))
        object.__setattr__(self, "metadata", dict(self.metadata))

    # ------------------------------------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.values.shape)  # type: ignore[return-value]

    @property
    def centre_index(self) -> tuple[int, int, int]:
        return tuple(n // 2 for n in self.values.shape)  # type: ignore[return-value]

    @property
    def centre_value(self) -> float:
        """Self-dose S(0) in Gy per decay."""
        return float(self.values[self.centre_index])

    @property
    def voxel_mass_kg(self) -> float:
        return self.density_g_cm3 * float(np.prod(self.spacing_mm)) * 1e-3 * 1e-3  # mm3 -> mL -> g -> kg

    @property
    def half_extent_mm(self) -> tuple[float, float, float]:
        """Distance (x, y, z) from the source-voxel centre to the kernel's outer faces."""
        nz, ny, nx = self.shape
        return tuple((n / 2.0) * s for n, s in zip((nx, ny, nz), self.spacing_mm))  # type: ignore[return-value]

    def energy_per_decay_kev(self) -> float:
        """Energy absorbed inside the kernel per decay (keV): Σ S · m."""
        return float(self.values.sum()) * self.voxel_mass_kg / MEV_TO_J * 1e3

    def describe(self) -> dict:
        return {"nuclide": self.nuclide, "medium": self.medium, "density_g_cm3": self.density_g_cm3,
                "component": self.component, "voxel_mm": list(self.spacing_mm), "size_xyz": list(self.shape[::-1]),
                "centre_gy_per_decay": self.centre_value, "absorbed_kev_per_decay": self.energy_per_decay_kev(),
                **{k: v for k, v in self.metadata.items() if k in ("histories", "seed", "centre_relative_uncertainty",
                                                                   "generator_version", "engine_version",
                                                                   "command", "resampled_from")}}

    # ------------------------------------------------------------------------------------------ operations
    def with_values(self, values: np.ndarray, **changes: Any) -> "DoseKernel":
        return replace(self, values=values, **changes)

    def plus(self, other: "DoseKernel") -> "DoseKernel":
        """Sum of two components (electron + photon → total) on the larger of the two shapes."""
        if other.nuclide != self.nuclide or not np.allclose(other.spacing_mm, self.spacing_mm, rtol=1e-6):
            raise InputFormatError("Kernels added together must share the nuclide and the voxel size.")
        shape = tuple(max(a, b) for a, b in zip(self.shape, other.shape))
        total = np.zeros(shape)
        for k in (self, other):
            off = tuple((s - n) // 2 for s, n in zip(shape, k.shape))
            total[off[0]:off[0] + k.shape[0], off[1]:off[1] + k.shape[1], off[2]:off[2] + k.shape[2]] += k.values
        components = {self.component, other.component}
        component = "total" if components == {"electron", "photon"} else self.component
        unc = [k.metadata.get("centre_relative_uncertainty") for k in (self, other)]
        meta = {"parts": [self.metadata, other.metadata]}
        if all(u is not None for u in unc):
            sd = np.hypot(unc[0] * self.centre_value, unc[1] * other.centre_value)
            meta["centre_relative_uncertainty"] = float(sd / max(self.centre_value + other.centre_value, 1e-300))
        meta["histories"] = min(int(k.metadata.get("histories", 0)) for k in (self, other))
        commands = [k.metadata.get("command") for k in (self, other) if k.metadata.get("command")]
        if commands:
            meta["command"] = "; ".join(commands)
        for key in ("generator_version", "engine_version"):
            if self.metadata.get(key) == other.metadata.get(key):
                meta[key] = self.metadata.get(key)
        resampled = [k.metadata["resampled_from"] for k in (self, other) if "resampled_from" in k.metadata]
        if resampled:
            meta["resampled_from"] = resampled
        return replace(self, values=total, component=component, metadata=meta)

    # ----------------------------------------------------------------------------------------- conversion
    def to_volume(self, octant: bool = False) -> Volume:
        """A Volume with the centre voxel at the origin (LPS, identity direction); octant=True keeps only the
        non-negative offsets (for symmetric kernels)."""
        values = self.values
        meta = {"nuclide": self.nuclide, "medium": self.medium, "density_g_cm3": self.density_g_cm3,
                "component": self.component, "unit": KERNEL_UNIT, **self.metadata}
        centre = np.array(self.centre_index)
        origin = tuple(-float(c) * s for c, s in zip(centre[::-1], self.spacing_mm))
        if octant:
            if not is_symmetric(values):
                raise InputFormatError("Only a kernel symmetric under reflection of every axis can be stored as an "
                                       "octant.")
            values = values[centre[0]:, centre[1]:, centre[2]:]
            origin = (0.0, 0.0, 0.0)
            meta["storage"] = OCTANT
        return Volume(values.astype(np.float32), spacing=self.spacing_mm, origin=origin,
                      quantity=KERNEL_QUANTITY, unit=KERNEL_UNIT, metadata=meta)

    @classmethod
    def from_volume(cls, volume: Volume, where: str = "the kernel") -> "DoseKernel":
        if volume.quantity != KERNEL_QUANTITY:
            raise UnitError(f"{where} holds {volume.quantity!r} ({volume.unit}), not a dose kernel "
                            f"({KERNEL_QUANTITY}, {KERNEL_UNIT}). Make one with `voxeldosimetry kernel`.")
        meta = dict(volume.metadata)
        missing = [k for k in REQUIRED_FIELDS if k not in meta]
        if missing:
            raise InputFormatError(f"{where} lacks the kernel field(s) {missing} (docs/KERNELS.md kernel format); "
                                   "make it with `voxeldosimetry kernel`.")
        if np.abs(np.asarray(volume.direction) - np.eye(3)).max() > 1e-6:
            raise InputFormatError(f"{where} has a rotated direction matrix; kernels are axis-aligned.")
        values = np.asarray(volume.to_canonical_unit().array, dtype=np.float64)
        if meta.pop("storage", None) == OCTANT:
            values = mirror_octant(values)
        fields = {k: meta.pop(k) for k in REQUIRED_FIELDS}
        meta.pop("unit", None)
        return cls(values, tuple(volume.spacing), str(fields["nuclide"]), str(fields["medium"]),
                   float(fields["density_g_cm3"]), str(fields["component"]), meta)


def mirror_octant(octant: np.ndarray) -> np.ndarray:
    """Full odd cube from the octant of non-negative offsets (index 0 = the centre voxel)."""
    out = octant
    for axis in range(3):
        flipped = np.flip(np.take(out, range(1, out.shape[axis]), axis=axis), axis=axis)
        out = np.concatenate([flipped, out], axis=axis)
    return out


def is_symmetric(values: np.ndarray, rtol: float = 1e-6) -> bool:
    scale = float(np.abs(values).max()) or 1.0
    return all(np.allclose(values, np.flip(values, axis=a), rtol=0, atol=rtol * scale) for a in range(3))


def read_kernel(path: str | Path) -> DoseKernel:
    """A kernel file (NRRD, docs/KERNELS.md format; octant storage mirrored)."""
    from VoxelDosimetryLib.io import read_volume

    return DoseKernel.from_volume(read_volume(path), where=str(path))


def write_kernel(kernel: DoseKernel, path: str | Path, octant: bool = False) -> Path:
    """Write `kernel` (float32 NRRD, compressed) atomically."""
    from VoxelDosimetryLib.io import write_volume

    return write_volume(kernel.to_volume(octant=octant), path)
