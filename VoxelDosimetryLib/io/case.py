"""Case folder layout (DESIGN.md): case.json + ct.nrrd + spect_<t>.nrrd (+ truth, labels, mc/)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.io.datetime_parse import parse_datetime
from VoxelDosimetryLib.io.timepoints import timepoint_time_problems
from VoxelDosimetryLib.io.volume_io import read_volume, write_volume
from VoxelDosimetryLib.volume import Volume
from VoxelDosimetryLib.volume.numbers import collect_number
from VoxelDosimetryLib.io.safe_write import write_text_atomic

CASE_FORMAT = "voxeldosimetry-case"
# time_h and the date-times may differ by rounding (acquisition start vs mid-scan), not by more.
TIME_TOLERANCE_H = 0.25
CASE_VERSION = 1


@dataclass
class Timepoint:
    """One imaging time: hours after injection and the files (relative to the case folder)."""

    time_h: float
    spect: str
    activity_true: str | None = None
    acquisition_datetime: str | None = None

    @property
    def time_s(self) -> float:
        return self.time_h * 3600.0


@dataclass
class Case:
    """A patient case: metadata plus file names; volumes load on demand from `folder`."""

    id: str
    nuclide: str
    timepoints: list[Timepoint]
    ct: str = "ct.nrrd"
    patient_id: str | None = None
    injection_datetime: str | None = None
    administered_activity_bq: float | None = None
    labels: str | None = None
    label_names: dict[str, str] = field(default_factory=dict)
    tia: str | None = None
    mc: dict | None = None
    notes: dict = field(default_factory=dict)
    folder: Path | None = None

    def __post_init__(self) -> None:
        """Numbers may be text in any notation ('7.4e9', '7.4 GBq', '1 d'); bad ones are reported by validate()."""
        self._problems: list[str] = []
        for i, tp in enumerate(self.timepoints):
            tp.time_h = collect_number(tp.time_h, self._problems, name=f"timepoints[{i}].time_h", unit="h")
        self.administered_activity_bq = collect_number(self.administered_activity_bq, self._problems,
                                                       name="administered_activity_bq", unit="Bq", positive=True,
                                                       optional=True)

    def validate(self) -> None:
        """Raise InputFormatError naming every problem (missing files, bad numbers, bad times).

        The nuclide name is checked against the decay database by its users (physics layer, above io).
        """
        problems = list(self._problems)
        if not isinstance(self.nuclide, str) or not self.nuclide.strip():
            problems.append(f"nuclide must be a name such as 'Lu-177'; got {self.nuclide!r}")
        times = [tp.time_h for tp in self.timepoints]
        if all(isinstance(t, float) for t in times):  # numbers that did not parse are already in _problems
            problems += timepoint_time_problems(times, labels=[f"timepoints[{i}].time_h" for i in range(len(times))])
        parsed = {}
        for name, value in [("injection_datetime", self.injection_datetime)] + [
                (f"timepoints[{i}].acquisition_datetime", tp.acquisition_datetime)
                for i, tp in enumerate(self.timepoints)]:
            try:
                parsed[name] = parse_datetime(value, name)
            except InputFormatError as exc:
                problems.append(str(exc).rstrip("."))
        problems += self._time_disagreements(parsed)
        if self.folder is not None:
            files = [self.ct] + [tp.spect for tp in self.timepoints]
            files += [f for f in [self.labels, self.tia] + [tp.activity_true for tp in self.timepoints] if f]
            problems += [f"file {name!r} is missing from {self.folder}" for name in files
                         if not (self.folder / name).exists()]
        if problems:
            raise InputFormatError("Invalid case " + repr(self.id) + ": " + "; ".join(problems) + ".")

    def _time_disagreements(self, parsed: dict) -> list[str]:
        """time_h that disagrees with acquisition minus injection date-time by more than TIME_TOLERANCE_H."""
        injection = parsed.get("injection_datetime")
        if injection is None:
            return []
        problems = []
        for i, tp in enumerate(self.timepoints):
            acquired = parsed.get(f"timepoints[{i}].acquisition_datetime")
            if acquired is None or not isinstance(tp.time_h, float):
                continue
            if (acquired.tzinfo is None) != (injection.tzinfo is None):
                continue  # one has a UTC offset and the other not: not comparable
            hours = (acquired - injection).total_seconds() / 3600.0
            if abs(hours - tp.time_h) > TIME_TOLERANCE_H:
                problems.append(f"timepoints[{i}].time_h is {tp.time_h:g} h but its acquisition_datetime is "
                                f"{hours:.3g} h after injection_datetime; correct one of them")
        return problems

    def path(self, name: str) -> Path:
        if self.folder is None:
            raise InputFormatError(f"Case {self.id!r} has no folder; read it with read_case() or write it first.")
        return self.folder / name

    def load_ct(self) -> Volume:
        return read_volume(self.path(self.ct), quantity="ct")

    def load_spect(self, index: int) -> Volume:
        return read_volume(self.path(self.timepoints[index].spect))

    def load_labels(self) -> Volume | None:
        return None if self.labels is None else read_volume(self.path(self.labels), quantity="labels")

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("folder")
        return {"format": CASE_FORMAT, "version": CASE_VERSION, **data}


def read_case(folder: str | Path) -> Case:
    """Read and validate `folder/case.json`."""
    folder = Path(folder)
    path = folder / "case.json"
    if not path.is_file():
        raise InputFormatError(f"{path} not found: a case folder needs a case.json (see docs/CASE_FORMAT.md).")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputFormatError(f"{path} is not valid JSON: {exc}.") from exc
    if data.pop("format", None) != CASE_FORMAT:
        raise InputFormatError(f"{path} is not a VoxelDosimetry case (\"format\": \"{CASE_FORMAT}\" missing).")
    version = data.pop("version", None)
    if version != CASE_VERSION:
        raise InputFormatError(f"{path} has case format version {version}; this library reads version {CASE_VERSION}.")
    for key in ("id", "nuclide", "timepoints"):
        if key not in data:
            raise InputFormatError(f"{path} lacks the required field {key!r}.")
    try:
        timepoints = [Timepoint(**tp) for tp in data.pop("timepoints")]
        case = Case(timepoints=timepoints, folder=folder, **data)
    except TypeError as exc:
        raise InputFormatError(f"{path} has an unexpected field: {exc}.") from exc
    case.validate()
    return case


def write_case(case: Case, folder: str | Path, volumes: dict[str, Volume]) -> Case:
    """Write the volumes (file name -> Volume, names as listed in `case`) and case.json into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, volume in volumes.items():
        write_volume(volume, folder / name)
    written = Case(**{**{k: getattr(case, k) for k in case.__dataclass_fields__}, "folder": folder})
    write_text_atomic(folder / "case.json", json.dumps(written.to_json(), indent=2) + "\n")
    written.validate()
    return written
