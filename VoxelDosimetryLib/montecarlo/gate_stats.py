"""Read the run statistics of a GATE simulation (SimulationStatisticsActor) or of this library's MC engine.

Three on-disk formats are recognised from the content, whatever the file is called:

- GATE 9 ``stat.txt``: ``# NumberOfEvents = 1000000`` lines, times in seconds (GateSimulationStatisticActor.cc);
  ``# Track types:`` is followed by ``# e- = 123`` lines.
- GATE 10 (opengate) JSON (the default encoder, even when the file is named ``stats.txt``):
  ``{"events": {"value": 1000, "unit": null}, "duration": {"value": 2.5, "unit": "s"}, ...}``.
- GATE 10 "legacy" text: ``events              1000`` / ``duration            2.5 s`` lines, then
  ``track_types`` and indented ``e-: 123`` lines.
- VoxelDosimetry MC ``<prefix>_stats.json`` (MonteCarloResult.write): ``{"engine": ..., "histories": N, ...}``.

Times are converted to seconds. The number of events is the number of simulated primaries; with an ion
source (one radioactive decay per primary, as `gate export` sets up) it is the number of decays.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from VoxelDosimetryLib.errors import InputFormatError

# Geant4 "Time" best-unit symbols (G4UnitsTable) -> seconds
_TIME_UNITS_S = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "mus": 1e-6, "ns": 1e-9, "ps": 1e-12, "min": 60.0,
                 "h": 3600.0, "d": 86400.0, "y": 365.0 * 86400.0, "": 1.0}

# GATE 9 key -> our key
_GATE9_KEYS = {"numberofrun": "runs", "numberofevents": "events", "numberoftracks": "tracks",
               "numberofsteps": "steps", "numberofgeometricalsteps": "geometrical_steps",
               "numberofphysicalsteps": "physical_steps", "elapsedtime": "elapsed_time_s",
               "elapsedtimewoinit": "elapsed_time_without_init_s", "startdate": "start_date", "enddate": "end_date",
               "pps(primarypersec)": "primaries_per_s", "tps(trackpersec)": "tracks_per_s",
               "sps(steppersec)": "steps_per_s"}
_COUNT_KEYS = ("runs", "events", "tracks", "steps", "threads")


@dataclass(frozen=True)
class GateStats:
    """Parsed run statistics. `values` holds every field read (times in s); `events` the primaries."""

    format: str  # gate9 | gate10-json | gate10-legacy | voxeldosimetry
    values: dict = field(default_factory=dict)
    track_types: dict = field(default_factory=dict)
    path: str | None = None

    @property
    def events(self) -> int | None:
        return self.values.get("events")

    @property
    def elapsed_time_s(self) -> float | None:
        return self.values.get("elapsed_time_s")

    @property
    def engine(self) -> str:
        return str(self.values.get("engine", "VoxelDosimetry-MC")) if self.format == "voxeldosimetry" else "GATE"

    @property
    def engine_version(self) -> str | None:
        version = self.values.get("engine_version")
        return None if version is None else str(version)

    def to_dict(self) -> dict:
        return {"format": self.format, "path": self.path, **self.values,
                **({"track_types": dict(self.track_types)} if self.track_types else {})}


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InputFormatError(f"GATE statistics: {what} = {text!r} is not a number.") from None


def _finish(values: dict, fmt: str, track_types: dict, source: str) -> GateStats:
    for key in _COUNT_KEYS:
        if key in values and values[key] is not None:
            values[key] = int(round(float(values[key])))
    return GateStats(fmt, values, {str(k): int(float(v)) for k, v in track_types.items()}, source or None)


def _parse_gate9(text: str, source: str) -> GateStats:
    values: dict[str, Any] = {}
    tracks: dict[str, Any] = {}
    in_tracks = False
    for line in text.splitlines():
        body = line.lstrip("#").strip()
        if not body:
            continue
        if body.lower().startswith("track types"):
            in_tracks = True
            continue
        if "=" not in body:
            continue
        key, value = (s.strip() for s in body.split("=", 1))
        if in_tracks:
            tracks[key] = _number(value, key)
            continue
        name = _GATE9_KEYS.get(key.replace(" ", "").lower(), key)
        values[name] = value if name.endswith("_date") else _number(value, key)
    return _finish(values, "gate9", tracks, source)


def _parse_gate10_json(data: dict, source: str) -> GateStats:
    values: dict[str, Any] = {}
    tracks: dict[str, Any] = {}
    for key, item in data.items():
        value, unit = (item.get("value"), item.get("unit")) if isinstance(item, dict) else (item, None)
        if key == "track_types":
            tracks = dict(value or {})
        elif key in ("duration", "init", "sim_start_time", "sim_stop_time"):
            name = {"duration": "elapsed_time_s", "init": "init_time_s"}.get(key, key + "_s")
            values[name] = _to_seconds(value, unit, key)
        else:
            values[{"pps": "primaries_per_s", "tps": "tracks_per_s", "sps": "steps_per_s"}.get(key, key)] = value
    return _finish(values, "gate10-json", tracks, source)


def _to_seconds(value: Any, unit: Any, what: str) -> float:
    unit = "" if unit is None else str(unit).strip()
    if unit not in _TIME_UNITS_S:
        raise InputFormatError(f"GATE statistics: unknown time unit {unit!r} for {what}; expected one of "
                               f"{', '.join(u for u in _TIME_UNITS_S if u)}.")
    return _number(str(value), what) * _TIME_UNITS_S[unit]


def _parse_gate10_legacy(text: str, source: str) -> GateStats:
    data: dict[str, dict] = {}
    tracks: dict[str, Any] = {}
    in_tracks = False
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.strip() == "track_types":
            in_tracks = True
            continue
        if in_tracks and line[:1].isspace() and ":" in line:
            name, count = line.strip().rsplit(":", 1)
            tracks[name.strip()] = _number(count.strip(), name)
            continue
        in_tracks = False
        match = re.match(r"(\S+)\s+(.*?)\s*$", line)
        if not match or not match.group(2):
            continue
        key, text = match.group(1), match.group(2)
        words = text.split()
        try:  # "1000", "2.5 s"
            data[key] = {"value": float(words[0]), "unit": words[1] if len(words) == 2 else None}
        except ValueError:  # dates, arch, python version: keep the text as written
            data[key] = {"value": text, "unit": None}
    stats = _parse_gate10_json(data, source)
    return _finish(dict(stats.values), "gate10-legacy", tracks, source)


def parse_gate_stats(text: str, source: str = "") -> GateStats:
    """Parse the text of a statistics file in any of the formats in the module docstring."""
    stripped = text.strip()
    if not stripped:
        raise InputFormatError(f"The statistics file {source or ''} is empty; re-run the simulation with a "
                               "SimulationStatisticsActor that writes to disk.")
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise InputFormatError(f"The statistics file {source} looks like JSON but is malformed: {exc}.") from None
        if "histories" in data and "engine" in data:
            values = dict(data)
            values["events"] = data["histories"]
            values.setdefault("elapsed_time_s", data.get("time_s"))
            return _finish(values, "voxeldosimetry", {}, source)
        if "events" in data:
            return _parse_gate10_json(data, source)
        raise InputFormatError(f"The statistics file {source} is JSON but holds neither GATE 10 'events' nor "
                               "VoxelDosimetry 'histories'; pass the number of simulated primaries explicitly.")
    if re.search(r"^\s*#\s*NumberOfEvents\s*=", stripped, flags=re.MULTILINE):
        return _parse_gate9(stripped, source)
    if re.search(r"^events\s+\S", stripped, flags=re.MULTILINE):
        return _parse_gate10_legacy(stripped, source)
    raise InputFormatError(f"{source or 'The statistics text'} is not a GATE statistics file: expected GATE 9 "
                           "'# NumberOfEvents = N' lines, GATE 10 JSON or legacy 'events N' lines.")


def read_gate_stats(path: str | Path) -> GateStats:
    """Read a GATE 9/10 or VoxelDosimetry statistics file (see the module docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputFormatError(f"Cannot read the statistics file {path}: {exc.strerror or exc}.") from None
    return parse_gate_stats(text, str(path))
