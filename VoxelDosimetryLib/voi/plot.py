"""Cumulative DVH plot (PNG, matplotlib Agg backend, imported lazily)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Union

import numpy as np

from VoxelDosimetryLib.errors import InputFormatError
from VoxelDosimetryLib.voi.dvh import DVH
from VoxelDosimetryLib.voi.label_names import default_label_name
from VoxelDosimetryLib.voi.table import DEFAULT_DVH_SAMPLES, SegmentTable
from VoxelDosimetryLib.io.safe_write import atomic_output

_LINE_STYLES = ("-", "--", ":", "-.")


def _curves(table_or_dvhs: Union[SegmentTable, Mapping]) -> tuple[list[tuple[str, DVH]], str]:
    """(legend text, DVH) pairs and the unit of their dose axis."""
    if isinstance(table_or_dvhs, SegmentTable):
        names = table_or_dvhs.names()
        curves = [(names.get(label, default_label_name(label)), dvh)
                  for label, dvh in sorted(table_or_dvhs.dvhs.items())]
    elif isinstance(table_or_dvhs, Mapping):
        curves = [(default_label_name(key) if isinstance(key, (int, np.integer)) else str(key), dvh)
                  for key, dvh in table_or_dvhs.items()]
    else:
        raise InputFormatError(f"plot_dvh needs a SegmentTable or a {{name: DVH}} mapping, "
                               f"got {type(table_or_dvhs).__name__}.")
    if not curves:
        raise InputFormatError("There is no DVH to plot: no segment has voxels on the dose grid.")
    units = {dvh.unit for _, dvh in curves}
    if len(units) != 1:
        raise InputFormatError(f"The DVHs to plot mix units {sorted(units)}; plot dose and dose rate separately.")
    return curves, units.pop()


def plot_dvh(table_or_dvhs: Union[SegmentTable, Mapping], path: str | Path, title: str | None = None,
             samples: int = DEFAULT_DVH_SAMPLES) -> Path:
    """Write cumulative DVH curves (volume % receiving >= dose) as a PNG with one legend entry per segment."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend and figures alone

    curves, unit = _curves(table_or_dvhs)
    low = min(0.0, min(float(d.knot_doses[0]) for _, d in curves))
    high = max(d.max_dose for _, d in curves)
    high = high if high > low else low + 1.0
    points = np.linspace(low, high + 0.05 * (high - low), int(samples) + 1)  # a margin shows the drop at the maximum
    quantity = "Dose rate" if unit == "Gy/s" else "Dose"
    columns = max(1, math.ceil(len(curves) / 30))
    width_in = 8.0 + 2.5 * columns  # 7 inches of axes, the legend to their right
    fig = Figure(figsize=(width_in, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.8 / width_in, 0.1, 7.0 / width_in, 0.82))
    colours = colormaps["tab10"]
    for i, (name, dvh) in enumerate(curves):
        percent = dvh.tabulate(points)["cumulative_pct"]
        ax.plot(points, percent, color=colours(i % 10), linestyle=_LINE_STYLES[(i // 10) % 4],
                linewidth=1.2, label=name)
    ax.set_xlabel(f"{quantity} ({unit})")
    ax.set_ylabel("Volume (%)")
    ax.set_xlim(points[0], points[-1])
    ax.set_ylim(0, 102)
    ax.grid(True, alpha=0.3)
    ax.set_title(title or f"Cumulative {'dose-rate' if unit == 'Gy/s' else 'dose'}-volume histogram")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, ncol=columns, frameon=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as staged:
        fig.savefig(staged, format="png")
    return path
