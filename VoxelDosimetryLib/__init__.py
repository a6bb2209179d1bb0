"""VoxelDosimetryLib: patient-specific voxel dosimetry for radiopharmaceutical therapy.

Pure-Python library (numpy, SimpleITK, torch); it never imports slicer, qt, ctk or vtk.
Coordinates are patient LPS, SI units inside (see docs/UNITS.md).
"""
from __future__ import annotations

__version__ = "0.1.0"

from VoxelDosimetryLib.errors import VoxelDosimetryError  # noqa: E402
from VoxelDosimetryLib.volume import Volume  # noqa: E402

__all__ = ["Volume", "VoxelDosimetryError", "__version__"]
