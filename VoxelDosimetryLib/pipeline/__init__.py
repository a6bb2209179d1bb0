"""Case folders and the config -> outputs pipeline (docs/CASE_FORMAT.md, docs/PIPELINE.md)."""
from __future__ import annotations

from VoxelDosimetryLib.io.case import Case, Timepoint, read_case, write_case
from VoxelDosimetryLib.pipeline.config import PipelineConfig, TimepointInput
from VoxelDosimetryLib.pipeline.run import PipelineCancelled, PipelineResult, run_pipeline

__all__ = ["Case", "Timepoint", "read_case", "write_case", "PipelineConfig", "TimepointInput", "PipelineCancelled",
           "PipelineResult", "run_pipeline"]
