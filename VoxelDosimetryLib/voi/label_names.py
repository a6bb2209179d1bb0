"""Segment names for label values: JSON maps, Slicer .seg.nrrd fields, Slicer colour tables, volume metadata.

Accepted sources (read_label_names picks by extension):
- JSON ``{"1": "spleen", "2": "kidney_right", ...}`` (TotalSegmentator's class_map_*.json), a case.json
  holding that map under "label_names", or the `run` pipeline's label_names.json (the map under "names");
- NRRD header (``.seg.nrrd``, ``.nrrd``, ``.nhdr``) with Slicer's ``SegmentN_Name`` / ``SegmentN_LabelValue``;
- Slicer colour table text (``.txt``, ``.ctbl``): lines ``value name r g b a``, ``#`` comments.
A label without a name is called ``label_<n>`` (default_label_name).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

from VoxelDosimetryLib.errors import InputFormatError

_SEGMENT_KEY = re.compile(r"^Segment(\d+)_(Name|LabelValue)$")


def default_label_name(label: int) -> str:
    return f"label_{int(label)}"


def _as_label(key: Any, where: str) -> int:
    try:
        value = float(str(key).strip())
    except ValueError:
        value = float("nan")
    if not value.is_integer() or value < 0:
        raise InputFormatError(f"{where}: label {key!r} is not a non-negative whole number; label names are keyed "
                               "by label value, e.g. {\"1\": \"spleen\"}.")
    return int(value)


def normalise_names(names: Mapping[Any, Any], where: str = "label names") -> dict[int, str]:
    """{label: name} with integer keys and string names; InputFormatError for malformed entries."""
    if not isinstance(names, Mapping):
        raise InputFormatError(f"{where} must map label numbers to names, e.g. {{1: liver, 2: spleen}}; got "
                               f"{type(names).__name__} {names!r}.")
    out = {}
    for key, name in names.items():
        if not isinstance(name, str) or not name.strip():
            raise InputFormatError(f"{where}: the name of label {key!r} must be a non-empty string, got {name!r} "
                                   "(keys are label numbers and values names, e.g. {1: liver}).")
        out[_as_label(key, where)] = name.strip()
    return out


def names_from_segment_fields(fields: Mapping[str, Any]) -> dict[int, str]:
    """Names from Slicer segmentation key/value fields (SegmentN_Name, SegmentN_LabelValue).

    A segment without a LabelValue field (files from Slicer before 4.11) is taken to hold label N + 1.
    """
    by_index: dict[int, dict[str, str]] = {}
    for key, value in fields.items():
        match = _SEGMENT_KEY.match(str(key))
        if match:
            by_index.setdefault(int(match.group(1)), {})[match.group(2)] = str(value)
    names = {}
    for index, entry in sorted(by_index.items()):
        if "Name" in entry:
            label = _as_label(entry.get("LabelValue", index + 1), f"Segment{index}_LabelValue")
            names[label] = entry["Name"].strip() or default_label_name(label)
    return names


def label_names_from_metadata(metadata: Mapping[str, Any]) -> dict[int, str]:
    """Names carried by a label volume: metadata['label_names'] or Slicer Segment fields of its NRRD header."""
    names: dict[int, str] = {}
    source = metadata.get("source")
    if isinstance(source, dict) and isinstance(source.get("nrrd_fields"), dict):
        names.update(names_from_segment_fields(source["nrrd_fields"]))
    if isinstance(metadata.get("label_names"), dict):
        names.update(normalise_names(metadata["label_names"], "volume metadata label_names"))
    return names


def _read_json(path: Path) -> dict[int, str]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputFormatError(f"Cannot read label names from {path}: {exc}. Fix the JSON.") from None
    if isinstance(content, dict) and isinstance(content.get("label_names"), dict):
        content = content["label_names"]
    elif isinstance(content, dict) and isinstance(content.get("names"), dict):
        content = content["names"]  # the `run` pipeline's label_names.json: {"source", "names", "named_but_absent"}
    if not isinstance(content, dict):
        raise InputFormatError(f"{path}: label names must be a JSON object {{\"1\": \"spleen\", ...}}, "
                               f"got {type(content).__name__}.")
    return normalise_names(content, str(path))


def _read_nrrd_header(path: Path) -> dict[int, str]:
    import nrrd

    try:
        header = nrrd.read_header(str(path))
    except (nrrd.NRRDError, OSError, ValueError) as exc:
        raise InputFormatError(f"Cannot read the NRRD header of {path}: {exc}") from None
    names = names_from_segment_fields(header)
    if not names:
        raise InputFormatError(f"{path} has no SegmentN_Name fields; it is not a Slicer segmentation. Give the "
                               "names as JSON {\"1\": \"spleen\", ...} instead.")
    return names


def _read_color_table(path: Path) -> dict[int, str]:
    names = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split()
        if len(parts) < 2:
            raise InputFormatError(f"{path}:{number}: expected 'value name r g b a', got {line!r}.")
        names[_as_label(parts[0], f"{path}:{number}")] = parts[1]
    return names


def read_label_names(path: str | Path) -> dict[int, str]:
    """{label value: name} from a JSON map, a Slicer .seg.nrrd header or a Slicer colour table (.txt/.ctbl)."""
    path = Path(path)
    if not path.is_file():
        raise InputFormatError(f"No such label-names file: {path}. Check the path.")
    suffix = path.name.lower()
    if suffix.endswith(".json"):
        names = _read_json(path)
    elif suffix.endswith((".nrrd", ".nhdr")):
        names = _read_nrrd_header(path)
    elif suffix.endswith((".txt", ".ctbl")):
        names = _read_color_table(path)
    else:
        raise InputFormatError(f"Cannot read label names from {path.name}: use a .json map, a Slicer .seg.nrrd or "
                               "a Slicer colour table (.txt/.ctbl).")
    names.pop(0, None)  # background
    return names
