"""Voxel phantom for Monte Carlo transport: medium index + mass density per voxel, on the CT grid.

Transport coordinates: millimetres in the volume's own *index frame*, with (0, 0, 0) at the outer corner of
voxel (x=0, y=0, z=0) and axes along the index axes, so voxel (ix, iy, iz) spans
[ix*sx, (ix+1)*sx) x [iy*sy, (iy+1)*sy) x [iz*sz, (iz+1)*sz). The grid is treated as axis-aligned in that
frame; the direction matrix and origin only matter for output, which stays on the CT grid (a rotation does
not change distances, so transport in the index frame is exact for any orthonormal direction matrix).
Flat voxel index = (iz * ny + iy) * nx + ix, i.e. the C order of the (z, y, x) array.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from VoxelDosimetryLib.errors import GridMismatchError, InputFormatError, UnitError
from VoxelDosimetryLib.physics.media import MediaTable, Medium
from VoxelDosimetryLib.volume.volume import Grid, Volume

#: ICRU water (H 11.19 %, O 88.81 % by mass), used by homogeneous test phantoms.
WATER = Medium(index=0, name="Water", hu_low=-1.0e6, hu_high=1.0e6, density_g_cm3=1.0,
               mass_fractions={"H": 0.111894, "O": 0.888106}, composition="Water")
#: Dry air near sea level (NIST composition, Schneider/GATE density 0.00121 g/cm3).
AIR = Medium(index=0, name="Air", hu_low=-1.0e6, hu_high=1.0e6, density_g_cm3=0.00121,
             mass_fractions={"C": 0.000124, "N": 0.755268, "O": 0.231781, "Ar": 0.012827}, composition="Air")
#: ICRP cortical bone (NIST composition; density 1.85 g/cm3).
BONE = Medium(index=0, name="CorticalBone", hu_low=-1.0e6, hu_high=1.0e6, density_g_cm3=1.85,
              mass_fractions={"H": 0.047234, "C": 0.144330, "N": 0.041990, "O": 0.446096, "Mg": 0.002200,
                              "P": 0.104970, "S": 0.003150, "Ca": 0.209930, "Zn": 0.000100},
              composition="CorticalBone")
#: ICRP lung tissue composition (used with any lung density, e.g. 0.26 g/cm3).
LUNG = Medium(index=0, name="Lung", hu_low=-1.0e6, hu_high=1.0e6, density_g_cm3=0.26,
              mass_fractions={"H": 0.101278, "C": 0.102310, "N": 0.028650, "O": 0.757072, "Na": 0.001840,
                              "Mg": 0.000730, "P": 0.000800, "S": 0.002250, "Cl": 0.002660, "K": 0.001940,
                              "Ca": 0.000090, "Fe": 0.000370, "Zn": 0.000010, "Ar": 0.0},
              composition="Lung")


def _renumber(media: Sequence[Medium]) -> tuple[Medium, ...]:
    return tuple(Medium(index=i, name=m.name, hu_low=m.hu_low, hu_high=m.hu_high, density_g_cm3=m.density_g_cm3,
                        mass_fractions=dict(m.mass_fractions), composition=m.composition)
                 for i, m in enumerate(media))


@dataclass(frozen=True, eq=False)
class VoxelPhantom:
    """Media and densities of a voxel grid, ready for transport (numpy here; `to_torch` for the device).

    `media_index` (z, y, x) int64 indexes `media` (only the media present, renumbered 0..k-1);
    `density_g_cm3` (z, y, x) float32 > 0. `grid` is the output grid (the CT's).
    """

    grid: Grid
    media: tuple[Medium, ...]
    media_index: np.ndarray
    density_g_cm3: np.ndarray

    def __post_init__(self) -> None:
        idx = np.asarray(self.media_index)
        rho = np.asarray(self.density_g_cm3, dtype=np.float32)
        if idx.shape != tuple(self.grid.shape) or rho.shape != tuple(self.grid.shape):
            raise GridMismatchError(f"Phantom arrays {idx.shape} / {rho.shape} do not match the grid {self.grid.shape}.")
        if idx.dtype.kind not in "iu":
            raise InputFormatError(f"The medium index volume must hold integers; got {idx.dtype}.")
        if idx.size and (idx.min() < 0 or idx.max() >= len(self.media)):
            raise InputFormatError(f"Medium indices must lie in 0..{len(self.media) - 1}; got {idx.min()}..{idx.max()}.")
        if not np.all(np.isfinite(rho)) or rho.min() <= 0:
            raise InputFormatError("Densities must be finite and > 0 g/cm3 (use air, 0.00121 g/cm3, for vacuum).")
        idx = idx.astype(np.int64, copy=True)
        rho = rho.copy()
        idx.setflags(write=False)
        rho.setflags(write=False)
        object.__setattr__(self, "media_index", idx)
        object.__setattr__(self, "density_g_cm3", rho)
        object.__setattr__(self, "media", tuple(self.media))

    # constructors -----------------------------------------------------------------------------------------
    @classmethod
    def from_ct(cls, ct: Volume, media_table: MediaTable | None = None, curve: Any = None) -> "VoxelPhantom":
        """HU -> Schneider media (GATE density-tolerance split, 0.05 g/cm3) and HU -> density (Schneider curve,
        or `curve`). Only the media present are kept. The CT is not modified."""
        from VoxelDosimetryLib.physics import ct_to_density, schneider_media

        if not isinstance(ct, Volume):
            raise TypeError(f"from_ct needs a CT Volume; got {type(ct).__name__}.")
        if ct.quantity != "ct":
            raise UnitError(f"The Monte Carlo geometry needs a CT in HU (quantity 'ct'); got {ct.quantity!r} "
                            f"({ct.unit}). Use VoxelPhantom.from_density for a density volume.")
        table = schneider_media(0.05) if media_table is None else media_table
        idx = np.asarray(table.media_index(ct.array), dtype=np.int64)
        rho = ct_to_density(ct, curve).array.astype(np.float32)
        rho = np.maximum(rho, np.float32(1e-4))
        return cls.from_arrays(ct.grid, tuple(table.media), idx, rho)

    @classmethod
    def from_density(cls, density: Volume, media_table: MediaTable | None = None) -> "VoxelPhantom":
        """A density volume (g/cm3): media from the Schneider media whose nominal density is closest."""
        from VoxelDosimetryLib.physics import schneider_media

        if not isinstance(density, Volume) or density.quantity != "density":
            raise UnitError("from_density needs a Volume of quantity 'density' (g/cm3).")
        table = schneider_media(0.05) if media_table is None else media_table
        rho = density.to_canonical_unit().array.astype(np.float32)
        nominal = np.asarray(table.densities_g_cm3, dtype=float)
        order = np.argsort(nominal)
        pos = np.clip(np.searchsorted(nominal[order], rho), 1, len(order) - 1)
        lo, hi = order[pos - 1], order[pos]
        idx = np.where(np.abs(nominal[lo] - rho) <= np.abs(nominal[hi] - rho), lo, hi)
        return cls.from_arrays(density.grid, tuple(table.media), idx.astype(np.int64), np.maximum(rho, 1e-4))

    @classmethod
    def from_arrays(cls, grid: Grid, media: Sequence[Medium], media_index: np.ndarray,
                    density_g_cm3: np.ndarray | None = None) -> "VoxelPhantom":
        """Media list + index volume (+ density volume; default each medium's nominal density). Unused media are
        dropped and the indices renumbered."""
        media = tuple(media)
        idx = np.asarray(media_index)
        if idx.dtype.kind not in "iu":
            raise InputFormatError(f"The medium index volume must hold integers; got {idx.dtype}.")
        if idx.size and (idx.min() < 0 or idx.max() >= len(media)):
            raise InputFormatError(f"Medium indices must lie in 0..{len(media) - 1}; got {idx.min()}..{idx.max()}.")
        if density_g_cm3 is None:
            density_g_cm3 = np.asarray([m.density_g_cm3 for m in media], dtype=np.float32)[idx]
        used, compact = np.unique(idx, return_inverse=True)
        kept = _renumber([media[int(i)] for i in used])
        return cls(grid, kept, compact.reshape(idx.shape).astype(np.int64), np.asarray(density_g_cm3, np.float32))

    @classmethod
    def homogeneous(cls, shape_zyx: Sequence[int], spacing_mm: Sequence[float], medium: Medium = WATER,
                    density_g_cm3: float | None = None, origin: Sequence[float] = (0.0, 0.0, 0.0)) -> "VoxelPhantom":
        grid = Grid(tuple(int(s) for s in shape_zyx), tuple(spacing_mm), tuple(origin))
        rho = medium.density_g_cm3 if density_g_cm3 is None else float(density_g_cm3)
        return cls(grid, _renumber([medium]), np.zeros(grid.shape, np.int64), np.full(grid.shape, rho, np.float32))

    # geometry -------------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.grid.shape)  # type: ignore[return-value]

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return tuple(self.grid.spacing)  # type: ignore[return-value]

    @property
    def size_mm(self) -> tuple[float, float, float]:
        """Extent (x, y, z) in mm of the index frame."""
        nz, ny, nx = self.shape
        sx, sy, sz = self.spacing_mm
        return (nx * sx, ny * sy, nz * sz)

    @property
    def voxel_mass_g(self) -> np.ndarray:
        """Mass of each voxel (g), (z, y, x) float64."""
        return self.density_g_cm3.astype(np.float64) * self.grid.voxel_volume_ml

    def voxel_centres_mm(self) -> np.ndarray:
        """(z, y, x, 3) voxel centres (x, y, z) in mm of the transport (index) frame."""
        nz, ny, nx = self.shape
        sx, sy, sz = self.spacing_mm
        z, y, x = np.meshgrid((np.arange(nz) + 0.5) * sz, (np.arange(ny) + 0.5) * sy, (np.arange(nx) + 0.5) * sx,
                              indexing="ij")
        return np.stack([x, y, z], axis=-1)

    def index_to_transport_mm(self, ijk: Any) -> np.ndarray:
        """Continuous index (i=x, j=y, k=z; voxel centres at integers) -> transport-frame mm."""
        return (np.asarray(ijk, dtype=float) + 0.5) * np.asarray(self.spacing_mm)

    def transport_mm_to_world(self, xyz_mm: Any) -> np.ndarray:
        """Transport-frame mm -> LPS world mm (via the grid's origin and direction)."""
        return self.grid.index_to_world(np.asarray(xyz_mm, dtype=float) / np.asarray(self.spacing_mm) - 0.5)

    def world_to_transport_mm(self, lps_mm: Any) -> np.ndarray:
        return (self.grid.world_to_index(lps_mm) + 0.5) * np.asarray(self.spacing_mm)

    def to_torch(self, device: Any) -> "TorchPhantom":
        import torch

        nz, ny, nx = self.shape
        return TorchPhantom(
            media_index=torch.tensor(self.media_index.reshape(-1), device=device),  # copy: source may be read-only
            density_g_cm3=torch.tensor(self.density_g_cm3.reshape(-1), device=device),
            shape_xyz=(nx, ny, nz), spacing_mm=self.spacing_mm, n_media=len(self.media))


@dataclass(eq=False)
class TorchPhantom:
    """Flat device tensors of a VoxelPhantom plus vectorised position -> voxel lookup."""

    media_index: Any
    density_g_cm3: Any
    shape_xyz: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    n_media: int

    @property
    def n_voxels(self) -> int:
        nx, ny, nz = self.shape_xyz
        return nx * ny * nz

    def distance_to_faces_mm(self, pos_mm: Any) -> Any:
        """Distance (mm) from each position (n, 3) to the nearest face of the voxel that holds it."""
        import torch

        spacing = torch.tensor(self.spacing_mm, dtype=pos_mm.dtype, device=pos_mm.device)
        frac = pos_mm / spacing
        frac = frac - torch.floor(frac)
        return (torch.minimum(frac, 1.0 - frac) * spacing).min(dim=1).values

    def locate(self, pos_mm: Any) -> tuple[Any, Any]:
        """(flat voxel index, inside mask) of positions (n, 3) mm; the index is 0 where outside."""
        import torch

        nx, ny, nz = self.shape_xyz
        sx, sy, sz = self.spacing_mm
        ix = torch.floor(pos_mm[:, 0] / sx).long()
        iy = torch.floor(pos_mm[:, 1] / sy).long()
        iz = torch.floor(pos_mm[:, 2] / sz).long()
        inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny) & (iz >= 0) & (iz < nz)
        flat = (iz * ny + iy) * nx + ix
        return torch.where(inside, flat, torch.zeros_like(flat)), inside
