"""Index of a folder of case folders: which cases can serve as training data, and why not when they cannot."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from VoxelDosimetryLib.errors import VoxelDosimetryError
from VoxelDosimetryLib.pipeline import read_case


@dataclass(frozen=True)
class IndexedCase:
    folder: Path
    case_id: str | None
    timepoints: int
    has_labels: bool
    has_truth: bool
    has_mc: bool
    problem: str | None

    @property
    def usable(self) -> bool:
        """A case can train a network only with a Monte Carlo dose label (case.json "mc")."""
        return self.problem is None and self.has_mc


def index_cases(root: str | Path) -> list[IndexedCase]:
    """Read every `*/case.json` below `root` (one level) and report each case's training readiness."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of case folders.")
    entries = []
    for case_json in sorted(root.glob("*/case.json")):
        folder = case_json.parent
        try:
            case = read_case(folder)
        except VoxelDosimetryError as exc:
            entries.append(IndexedCase(folder, None, 0, False, False, False, str(exc)))
            continue
        entries.append(IndexedCase(folder, case.id, len(case.timepoints), case.labels is not None,
                                   any(tp.activity_true for tp in case.timepoints), bool(case.mc), None))
    return entries
