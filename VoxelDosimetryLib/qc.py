"""Non-blocking quality-control (QC) warnings: collected by every command and pipeline step, never lost.

Library code calls `qc_warn(code, message, **details)` where it makes an assumption or finds something odd that
does not stop the computation (negative voxels zeroed, activity outside the body, HU clamped, ...). Warnings go
to every open `collect_qc()` block (the CLI opens one per command, the pipeline one per run and one per step)
and to the `VoxelDosimetryLib.qc` logger, so a library user without a collector still sees them on stderr.
The list of codes and what each means is in docs/RELIABILITY.md.
"""
from __future__ import annotations

import contextvars
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

LOGGER = logging.getLogger("VoxelDosimetryLib.qc")


@dataclass(frozen=True)
class QcWarning:
    """One warning: a stable `code` (for filtering and tests), a sentence for the user, and its numbers."""

    code: str
    message: str
    details: dict = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "details": dict(self.details)}

    @classmethod
    def from_dict(cls, data: dict) -> "QcWarning":
        return cls(str(data["code"]), str(data["message"]), dict(data.get("details") or {}))

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class QcLog:
    """An ordered list of warnings without repeats (same code and message)."""

    def __init__(self, items: list[QcWarning] | None = None) -> None:
        self.items: list[QcWarning] = []
        for item in items or []:
            self.add(item)

    def add(self, item: QcWarning) -> None:
        if item not in self.items:
            self.items.append(item)

    def extend(self, items) -> None:
        for item in items:
            self.add(item)

    def codes(self) -> list[str]:
        return [item.code for item in self.items]

    def messages(self) -> list[str]:
        return [str(item) for item in self.items]

    def to_list(self) -> list[dict]:
        return [item.to_dict() for item in self.items]

    def __iter__(self) -> Iterator[QcWarning]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


_OPEN: contextvars.ContextVar[tuple] = contextvars.ContextVar("voxeldosimetry_qc_logs", default=())


@contextmanager
def collect_qc(log: QcLog | None = None) -> Iterator[QcLog]:
    """Collect every warning raised inside the block (also those seen by enclosing blocks)."""
    log = QcLog() if log is None else log
    token = _OPEN.set(_OPEN.get() + (log,))
    try:
        yield log
    finally:
        _OPEN.reset(token)


def qc_warn(code: str, message: str, **details: Any) -> QcWarning:
    """Record a warning in every open collector and log it (logger VoxelDosimetryLib.qc, level WARNING)."""
    item = QcWarning(code, message, {k: _plain(v) for k, v in details.items()})
    logs = _OPEN.get()
    new = not logs or any(item not in log.items for log in logs)
    for log in logs:
        log.add(item)
    if new:  # the same finding twice in one command (e.g. the CT converted twice) is shown once
        LOGGER.warning("%s", item)
    return item


def replay(items) -> None:
    """Raise stored warnings again (a reused pipeline step reports what it found when it was computed)."""
    for item in items:
        item = item if isinstance(item, QcWarning) else QcWarning.from_dict(item)
        qc_warn(item.code, item.message, **item.details)


def _plain(value: Any) -> Any:
    """JSON-friendly detail values (numpy scalars become Python numbers)."""
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (ValueError, TypeError):
            return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
