"""Comparison of dose maps: MAE% (Kim et al. 2022), NRMSE and ensemble noise (DblurDoseNet), Pearson r,
Lin's CCC, Bland-Altman, line profiles, error maps and a Markdown report (see docs/COMPARE.md)."""
from __future__ import annotations

from VoxelDosimetryLib.metrics.agreement import ensemble_noise, lin_ccc, mae_percent, nrmse, pearson_r
from VoxelDosimetryLib.metrics.bland_altman import bland_altman
from VoxelDosimetryLib.metrics.comparison import ComparisonResult, compare_doses
from VoxelDosimetryLib.metrics.masks import segment_mean
from VoxelDosimetryLib.metrics.profiles import line_profiles
from VoxelDosimetryLib.metrics.report import write_report

__all__ = ["ComparisonResult", "bland_altman", "compare_doses", "ensemble_noise", "lin_ccc", "line_profiles",
           "mae_percent", "nrmse", "pearson_r", "segment_mean", "write_report"]
