"""VoxelDosimetry Training: trains dose networks from Monte Carlo-labelled case folders.

Imports VoxelDosimetryLib; the library never imports this package.
"""
from __future__ import annotations
