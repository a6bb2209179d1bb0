"""Helpers of the VoxelDosimetry Slicer module that need MRML but no Qt.

`mrml_adapter` converts between VoxelDosimetryLib Volumes (LPS) and MRML volume nodes (RAS) and keeps
timepoint metadata in subject-hierarchy attributes; `timepoints` is plain Python (date-time parsing,
timepoint bookkeeping and input validation) shared by the module Logic and its tests.

This package is named differently from VoxelDosimetryLib on purpose: both live side by side in Slicer's
qt-scripted-modules folder, and the library must never be shadowed.
"""
from __future__ import annotations

__all__ = ["mrml_adapter", "timepoints"]
