"""Command-line interface `voxeldosimetry` (DESIGN.md CLI contract)."""
