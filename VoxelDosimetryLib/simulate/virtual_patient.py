"""A generated anthropomorphic phantom: CT (HU), organ labels and true organ kinetics.

Geometry is analytic (ellipsoids and cylinders placed in patient LPS millimetres), so the phantom can be built
at any voxel size. Organ kinetics are illustrative Lu-177 DOTATATE-like uptake/washout curves chosen for
testing, not clinical reference data.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.physics import get_nuclide
from VoxelDosimetryLib.volume import Grid, Volume

HOURS = 3600.0


@dataclass(frozen=True)
class OrganKinetics:
    """Organ time-activity model A(t) = A_adm·f·(exp(-(λp+λb)t) − exp(-(λp+λb+λu)t)) (uptake–washout).

    fraction: peak-scale fraction f of the administered activity; biological half-life (h) and uptake
    half-life (h); λp is the nuclide's physical decay constant.
    """

    fraction: float
    biological_half_life_h: float
    uptake_half_life_h: float

    def activity_bq(self, time_s, administered_bq: float, decay_constant_per_s: float):
        t = np.asarray(time_s, dtype=float)
        clearance = decay_constant_per_s + np.log(2) / (self.biological_half_life_h * HOURS)
        uptake = np.log(2) / (self.uptake_half_life_h * HOURS)
        return administered_bq * self.fraction * (np.exp(-clearance * t) - np.exp(-(clearance + uptake) * t))

    def tia_bq_s(self, administered_bq: float, decay_constant_per_s: float) -> float:
        """Exact time integral from 0 to infinity (Bq·s)."""
        clearance = decay_constant_per_s + np.log(2) / (self.biological_half_life_h * HOURS)
        uptake = np.log(2) / (self.uptake_half_life_h * HOURS)
        return administered_bq * self.fraction * (1.0 / clearance - 1.0 / (clearance + uptake))


@dataclass(frozen=True)
class Organ:
    label: int
    name: str
    hu: float
    kinetics: OrganKinetics


# label, name, HU, kinetics (fraction, T_bio h, T_uptake h): illustrative values for tests and the demo.
DEFAULT_ORGANS: tuple[Organ, ...] = (
    Organ(1, "liver", 60.0, OrganKinetics(0.045, 90.0, 1.0)),
    Organ(2, "spleen", 50.0, OrganKinetics(0.015, 100.0, 1.5)),
    Organ(3, "kidney_left", 35.0, OrganKinetics(0.010, 60.0, 0.5)),
    Organ(4, "kidney_right", 35.0, OrganKinetics(0.010, 60.0, 0.5)),
    Organ(5, "lung_left", -780.0, OrganKinetics(0.002, 20.0, 0.2)),
    Organ(6, "lung_right", -780.0, OrganKinetics(0.002, 20.0, 0.2)),
    Organ(7, "spine", 650.0, OrganKinetics(0.004, 40.0, 2.0)),
    Organ(8, "tumour_liver", 55.0, OrganKinetics(0.012, 200.0, 3.0)),
    Organ(9, "tumour_node", 45.0, OrganKinetics(0.004, 150.0, 3.0)),
    Organ(10, "body", 30.0, OrganKinetics(0.15, 8.0, 0.1)),
)


@dataclass
class VirtualPatient:
    """CT (HU), labels (organ indices), names and organ kinetics of a generated phantom."""

    ct: Volume
    labels: Volume
    organs: tuple[Organ, ...]
    nuclide: str
    administered_activity_bq: float
    label_names: dict[int, str] = field(default_factory=dict)

    def true_activity(self, time_s: float) -> Volume:
        """True activity concentration (Bq/mL) at `time_s` after injection, uniform inside each organ."""
        decay = get_nuclide(self.nuclide).decay_constant_per_s
        concentration = np.zeros(self.labels.shape, dtype=np.float64)
        for organ in self.organs:
            mask = self.labels.array == organ.label
            n = int(mask.sum())
            if n:
                activity = float(organ.kinetics.activity_bq(time_s, self.administered_activity_bq, decay))
                concentration[mask] = activity / (n * self.labels.voxel_volume_ml)
        return Volume(concentration, grid=self.ct.grid, quantity="activity_concentration", unit="Bq/mL",
                      metadata={"time_after_injection_s": float(time_s), "truth": "generated organ kinetics"})

    def true_organ_tia_bq_s(self) -> dict[str, float]:
        decay = get_nuclide(self.nuclide).decay_constant_per_s
        return {o.name: o.kinetics.tia_bq_s(self.administered_activity_bq, decay) for o in self.organs}


def _ellipsoid(points: np.ndarray, centre, semi_axes) -> np.ndarray:
    d = (points - np.asarray(centre, float)) / np.asarray(semi_axes, float)
    return np.sum(d * d, axis=-1) <= 1.0


def build_virtual_patient(voxel_mm: float = 4.0, shape_zyx: tuple[int, int, int] | None = None,
                          nuclide: str = "Lu-177", administered_activity_bq: float = 7.4e9,
                          seed: int = 0, ct_noise_hu: float = 10.0) -> VirtualPatient:
    """Build the phantom on an isotropic grid of `voxel_mm`, centred on the LPS origin.

    The body is an elliptic cylinder 340 mm wide (x), 220 mm deep (y) and 320 mm long (z); organs are placed
    anatomically (patient right = −x in LPS, posterior = +y, superior = +z).
    """
    if voxel_mm <= 0:
        raise InputFormatError(f"voxel_mm must be positive; got {voxel_mm}.")
    if shape_zyx is None:
        shape_zyx = tuple(int(np.ceil(extent / voxel_mm)) for extent in (384.0, 264.0, 384.0))  # margins >= 22 mm
    shape = tuple(int(s) for s in shape_zyx)
    origin = tuple(-(n - 1) * voxel_mm / 2.0 for n in (shape[2], shape[1], shape[0]))
    grid = Grid(shape, (voxel_mm,) * 3, origin)
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    points = grid.index_to_world(np.stack([i, j, k], axis=-1).astype(float))
    x, y, z = points[..., 0], points[..., 1], points[..., 2]

    labels = np.zeros(shape, dtype=np.uint8)
    body = ((x / 170.0) ** 2 + (y / 110.0) ** 2 <= 1.0) & (np.abs(z) <= 160.0)
    labels[body] = 10
    shapes = {
        5: _ellipsoid(points, (70, -5, 95), (55, 70, 70)),      # left lung (patient left = +x)
        6: _ellipsoid(points, (-70, -5, 95), (60, 70, 75)),     # right lung
        1: _ellipsoid(points, (-65, -10, 15), (75, 60, 55)),    # liver (patient right)
        2: _ellipsoid(points, (85, 35, 25), (35, 30, 40)),      # spleen
        3: _ellipsoid(points, (60, 55, -35), (25, 25, 45)),     # left kidney
        4: _ellipsoid(points, (-60, 55, -40), (25, 25, 45)),    # right kidney
        7: ((x / 18.0) ** 2 + ((y - 75.0) / 18.0) ** 2 <= 1.0) & (np.abs(z) <= 160.0),  # spine
        8: _ellipsoid(points, (-55, -25, 10), (16, 16, 16)),    # tumour in the liver
        9: _ellipsoid(points, (30, 10, -70), (11, 11, 11)),     # lymph-node tumour
    }
    for label in (5, 6, 1, 2, 3, 4, 7, 8, 9):  # later entries overwrite earlier ones (tumours last)
        labels[shapes[label] & body] = label

    hu_by_label = {organ.label: organ.hu for organ in DEFAULT_ORGANS}
    ct = np.full(shape, -1000.0)
    for label, hu in hu_by_label.items():
        ct[labels == label] = hu
    rng = np.random.default_rng(seed)
    ct[body] += rng.normal(0.0, ct_noise_hu, int(body.sum()))
    ct_volume = Volume(np.round(ct).astype(np.int16), grid=grid, quantity="ct", unit="HU",
                       metadata={"generator": "VoxelDosimetryLib.simulate.build_virtual_patient", "seed": seed})
    label_volume = Volume(labels, grid=grid, quantity="labels", unit="label")
    present = set(np.unique(labels).tolist())
    organs = tuple(o for o in DEFAULT_ORGANS if o.label in present)
    return VirtualPatient(ct_volume, label_volume, organs, get_nuclide(nuclide).name, float(administered_activity_bq),
                          {o.label: o.name for o in organs})
