"""Segment (VOI) dose statistics and dose-volume histograms; see docs/SEGMENT_DOSE.md."""
from __future__ import annotations

from VoxelDosimetryLib.voi.dvh import (DVH, cumulative_dvh, dose_at_volume_ml, dose_at_volume_percent,
                                       volume_at_dose, volume_percent_at_dose)
from VoxelDosimetryLib.voi.label_names import (default_label_name, label_names_from_metadata,
                                               names_from_segment_fields, read_label_names)
from VoxelDosimetryLib.voi.plot import plot_dvh
from VoxelDosimetryLib.voi.statistics import DEFAULT_DX_PERCENT, segment_statistics
from VoxelDosimetryLib.voi.table import SegmentTable

__all__ = [
    "DVH", "cumulative_dvh", "dose_at_volume_ml", "dose_at_volume_percent", "volume_at_dose",
    "volume_percent_at_dose", "default_label_name", "label_names_from_metadata", "names_from_segment_fields",
    "read_label_names", "plot_dvh", "DEFAULT_DX_PERCENT", "segment_statistics", "SegmentTable",
]
