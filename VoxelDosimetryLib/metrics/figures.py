"""PNG figures of a dose comparison (matplotlib, Agg backend, imported lazily)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from VoxelDosimetryLib.io.safe_write import atomic_output

# Scatter-type plots draw at most this many points (a fixed-seed random subset); statistics use every voxel.
MAX_PLOTTED_POINTS = 50_000


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _subset(n: int) -> np.ndarray:
    if n <= MAX_PLOTTED_POINTS:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, MAX_PLOTTED_POINTS, replace=False))


def plot_bland_altman(stats: dict, path: Path, unit: str, title: str) -> Path:
    """Bland-Altman plot: difference vs mean with bias and 95 % limits of agreement."""
    plt = _pyplot()
    keep = _subset(stats["mean"].size)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(stats["mean"][keep], stats["difference"][keep], s=4 if keep.size > 100 else 25, alpha=0.5)
    for value, style, text in ((stats["bias"], "-", "bias"), (stats["loa_lower"], "--", "-1.96 SD"),
                               (stats["loa_upper"], "--", "+1.96 SD")):
        ax.axhline(value, color="k", linestyle=style, linewidth=1)
        ax.annotate(f"{text} {value:.4g}", xy=(1.0, value), xycoords=("axes fraction", "data"),
                    ha="right", va="bottom", fontsize=8)
    diff_unit = "%" if stats.get("percent") else unit
    ax.set_xlabel(f"mean of test and reference ({unit})")
    ax.set_ylabel(f"test - reference ({diff_unit})")
    ax.set_title(f"{title} (n = {stats['n']})")
    fig.tight_layout()
    with atomic_output(path) as staged:
        fig.savefig(staged, dpi=100, format="png")
    plt.close(fig)
    return path


def plot_scatter(test_values: np.ndarray, reference_values: np.ndarray, path: Path, unit: str, title: str) -> Path:
    """Test vs reference voxel values with the identity line."""
    plt = _pyplot()
    keep = _subset(test_values.size)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(reference_values[keep], test_values[keep], s=3, alpha=0.4)
    high = float(max(test_values.max(), reference_values.max()))
    low = float(min(test_values.min(), reference_values.min(), 0.0))
    ax.plot([low, high], [low, high], "k--", linewidth=1, label="identity")
    ax.set_xlabel(f"reference ({unit})")
    ax.set_ylabel(f"test ({unit})")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    with atomic_output(path) as staged:
        fig.savefig(staged, dpi=100, format="png")
    plt.close(fig)
    return path


def plot_profiles(profiles: dict, path: Path) -> Path:
    """Test and reference line profiles along x, y and z through the profile point."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, name in zip(axes, ("x", "y", "z")):
        p = profiles[name]
        ax.plot(p["offset_mm"], p["reference"], "k-", label="reference")
        ax.plot(p["offset_mm"], p["test"], "r--", label="test")
        ax.set_xlabel(f"distance along {name} from the point (mm)")
        ax.set_ylabel(profiles["unit"])
        ax.set_title(f"{name} profile")
    axes[0].legend()
    i, j, k = profiles["point_index"]
    fig.suptitle(f"profiles through voxel (i, j, k) = ({i}, {j}, {k}), LPS "
                 + ", ".join(f"{v:.1f}" for v in profiles["point_lps_mm"]) + " mm")
    fig.tight_layout()
    with atomic_output(path) as staged:
        fig.savefig(staged, dpi=100, format="png")
    plt.close(fig)
    return path


def _oriented(image: np.ndarray, flip_rows: bool, flip_cols: bool) -> np.ndarray:
    return image[::-1 if flip_rows else 1, ::-1 if flip_cols else 1]


def plot_slices(test: np.ndarray, reference: np.ndarray, difference: np.ndarray, point_index: tuple,
                spacing: tuple, direction: np.ndarray, unit: str, path: Path) -> Path:
    """Axial and coronal slices through the profile point: reference, test and difference.

    Axis-aligned grids are shown in radiological convention (patient left on the right, anterior and
    superior at the top); other grids in array index order.
    """
    plt = _pyplot()
    i, j, k = point_index
    sx, sy, sz = spacing
    d = np.asarray(direction, dtype=float)
    aligned = bool(np.allclose(np.abs(d), np.eye(3), atol=1e-3))
    fx, fy, fz = (np.diag(d) < 0) if aligned else (False, False, False)  # LPS: +x left, +y posterior, +z superior
    vmax = float(max(reference.max(), test.max(), 1e-30))
    dmax = float(max(np.abs(difference).max(), 1e-30))
    views = (("axial", lambda a: _oriented(a[k], fy, fx), sy / sx, "upper"),
             ("coronal", lambda a: _oriented(a[:, j, :], fz, fx), sz / sx, "lower"))
    fig, axes = plt.subplots(2, 3, figsize=(13, 8))
    for row, (view, cut, aspect, origin) in enumerate(views):
        for col, (name, data, cmap, lim) in enumerate((("reference", reference, "inferno", (0, vmax)),
                                                       ("test", test, "inferno", (0, vmax)),
                                                       ("test - reference", difference, "coolwarm", (-dmax, dmax)))):
            ax = axes[row, col]
            image = ax.imshow(cut(data), cmap=cmap, vmin=lim[0], vmax=lim[1], aspect=aspect, origin=origin)
            ax.set_title(f"{view}: {name}")
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=unit)
    layout = "radiological view: patient left on the right" if aligned else "array index axes (oblique grid)"
    fig.suptitle(f"slices through voxel (i, j, k) = ({i}, {j}, {k}); {layout}")
    fig.tight_layout()
    with atomic_output(path) as staged:
        fig.savefig(staged, dpi=100, format="png")
    plt.close(fig)
    return path
