"""Times of the imaging timepoints (hours after injection): the one check for case folders, pipeline configs,
time integration and the Slicer module.

A valid set: at least one time, one per image, every time a finite number > 0 h, no two equal and, where the
order matters (everywhere but the Slicer table, which sorts them), strictly increasing. Every sentence names the
timepoint at fault.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from VoxelDosimetryLib.errors import InputFormatError


def _hours_text(hours: float) -> str:
    """'-2.00 h', or seconds when the value is below 0.01 h in size ('-5 s')."""
    return f"{hours:.2f} h" if hours == 0 or abs(hours) >= 0.01 else f"{hours * 3600.0:.3g} s"


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def timepoint_time_problems(times_h: Sequence[Any], labels: Sequence[str] | None = None,
                            n_images: int | None = None, ordered: bool = True) -> list[str]:
    """One sentence per problem with the times after injection (h); an empty list means valid.

    labels: how to name each timepoint (default 'timepoint 1', ...). n_images: the number of images the times
    belong to. ordered: require strictly increasing times (False: only distinct).
    """
    times = list(times_h)
    names = list(labels) if labels is not None else [f"timepoint {i + 1}" for i in range(len(times))]
    problems = []
    if n_images is not None and len(times) != n_images:
        problems.append(f"{n_images} image(s) but {len(times)} time(s): give exactly one time after injection per "
                        "image, in the same order")
    if not times:
        problems.append("no timepoints are listed: give at least one image and its time after injection")
    valid: list[tuple[int, float]] = []  # (index, hours) of the finite times, for the pairwise checks
    for i, value in enumerate(times):
        hours = _number(value)
        if hours is None:
            problems.append(f"{names[i]}: the time {value!r} is not a number of hours after injection")
        elif not math.isfinite(hours):
            problems.append(f"{names[i]}: the time {hours} h is not finite; times must be finite numbers of hours "
                            "after injection")
        else:
            if hours <= 0:
                problems.append(f"{names[i]}: {_hours_text(hours)} after injection is not after the injection; "
                                "times must be > 0 h after injection (check the injection and acquisition "
                                "date-times)")
            valid.append((i, hours))
    first_with: dict[float, int] = {}
    for k, (i, hours) in enumerate(valid):
        if hours in first_with:
            problems.append(f"{names[i]}: same time after injection ({hours:g} h) as {names[first_with[hours]]}; "
                            "each timepoint needs its own time: drop or merge the duplicate")
        else:
            first_with[hours] = i
        if ordered and k and hours < valid[k - 1][1]:
            j, before = valid[k - 1]
            problems.append(f"{names[i]} ({hours:g} h) comes after {names[j]} ({before:g} h): the times must "
                            "increase from one timepoint to the next (strictly increasing); give the timepoints in "
                            "time order")
    return problems


def check_timepoint_times(times_h: Sequence[Any], labels: Sequence[str] | None = None,
                          n_images: int | None = None) -> list[float]:
    """The times (h) as floats when valid (timepoint_time_problems, ordered); else InputFormatError listing all."""
    problems = timepoint_time_problems(times_h, labels, n_images)
    if problems:
        raise InputFormatError("Invalid timepoint times: " + "; ".join(problems) + ".")
    return [float(t) for t in times_h]
