"""run.json: the machine-readable record of a pipeline run (versions, config, steps, outputs with sha256)."""
from __future__ import annotations

import json
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path

from VoxelDosimetryLib import __version__
from VoxelDosimetryLib.io.safe_write import write_text_atomic

MANIFEST_FORMAT = "voxeldosimetry-run"
MANIFEST_VERSION = 1
PACKAGES = ("numpy", "scipy", "SimpleITK", "pynrrd", "pydicom", "torch", "matplotlib", "PyYAML", "icrp107-database")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages the pipeline uses (None when absent), without importing them."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="seconds")


def write_manifest(path: Path, config, records: dict, result, cache, started: float, finished: float) -> Path:
    """Write run.json: versions, parameters, every step (status, key, timing, inputs/outputs with sha256)."""
    outputs = {}
    for name, value in result.outputs.items():
        file = Path(value)
        if file.is_file() and file != Path(path):
            outputs[name] = {"path": cache.relative(file), "sha256": cache.sha256(file)}
    document = {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
        "library_version": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
        "packages": package_versions(),
        "started": _iso(started), "finished": _iso(finished), "elapsed_s": round(finished - started, 3),
        "config": config.to_dict(),
        "steps": [{"name": name, "status": r["status"], "key": r["key"], "elapsed_s": r["elapsed_s"],
                   "computed_elapsed_s": r.get("computed_elapsed_s", r["elapsed_s"]), "inputs": r.get("inputs", {}),
                   "params": r.get("params", {}), "outputs": r.get("outputs", {}), "info": r.get("info", {})}
                  for name, r in records.items()],
        "outputs": outputs,
        "warnings": list(result.warnings),
        "qc": list(result.qc),
    }
    write_text_atomic(path, json.dumps(document, indent=2, default=str) + "\n")
    return path
