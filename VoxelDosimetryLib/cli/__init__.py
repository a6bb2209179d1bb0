"""Command-line interface `voxeldosimetry` (DESIGN.md CLI contract)."""
from __future__ import annotations
