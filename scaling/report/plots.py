"""PNG figures of a sweep's losses with the fitted law: loss against N, loss against D, and the fitted surface.

Every axis carries its quantity and unit; measured points are markers, the fitted law is lines (solid over the
trained range, dashed where it extrapolates), and the forecast interval is a band where the fit has bootstrap draws.

Each function draws on the matplotlib ``ax`` it is given (a new figure otherwise) and returns the Figure, so it
works in a notebook (shown inline), in a subplot grid of the caller's, or for files (``path=``: written, and a
figure made here is closed). No backend is chosen here: matplotlib picks an interactive or inline one where
there is a display and Agg where there is none (CI, worker processes).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, NullFormatter

LABELS = {
    "N": "non-embedding parameters N",
    "D": "training tokens D",
    "loss": "held-out loss (nats/token)",
    "C": "training compute C = 6ND (FLOPs)",
}


def _levels(values: pd.Series, max_levels: int = 8) -> list[float]:
    """The distinct values of a column (a few log-spaced representatives when there are many)."""
    distinct = np.unique(np.asarray(values, dtype=float))
    if len(distinct) <= max_levels:
        return list(distinct)
    picks = np.unique(np.round(np.linspace(0, len(distinct) - 1, max_levels)).astype(int))
    return list(distinct[picks])


def _group_of(values: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Index of the nearest level (in log) for each value."""
    lv = np.log(np.asarray(levels, dtype=float))
    return np.abs(np.log(values)[:, None] - lv[None, :]).argmin(axis=1)


def _fmt(x: float) -> str:
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes, bool]:
    """The caller's axes, or a new figure's; the flag says whether the figure is ours to close after saving."""
    if ax is not None:
        return ax.get_figure(), ax, False
    fig, ax = plt.subplots(figsize=figsize, dpi=120)
    return fig, ax, True


def _finish(fig: Figure, path: str | os.PathLike | None, owned: bool) -> Figure:
    """Write the figure when asked; close a figure made here once written (a loop of files must not pile up
    open figures), and leave the caller's own figure and an unsaved one open for display."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if owned:
            fig.tight_layout()
        fig.savefig(path)
        if owned:
            plt.close(fig)
    return fig


def plot_loss_vs(
    df: pd.DataFrame,
    fit: Any,
    x: str,
    path: str | os.PathLike | None = None,
    *,
    ax: Axes | None = None,
    extrapolate_to: float | None = None,
    title: str | None = None,
) -> Figure:
    """Loss against ``x`` ("N" or "D"), one colour per value of the other input, with the fitted law.

    ``extrapolate_to`` extends the fitted curves (dashed) up to that value of ``x``, e.g. the forecast's N.
    Draws on ``ax`` (a new figure when None); writes ``path`` when given; returns the Figure.
    """
    other = "D" if x == "N" else "N"
    xs, os_, loss = (df[c].to_numpy(dtype=float) for c in (x, other, "loss"))
    levels = _levels(df[other])
    groups = _group_of(os_, levels)
    cmap = plt.get_cmap("viridis")
    colors = [cmap(i / max(1, len(levels) - 1)) for i in range(len(levels))]

    fig, ax, owned = _axes(ax, (7.5, 5.0))
    lo, hi = xs.min(), xs.max()
    top = max(hi, extrapolate_to or hi)
    grid_in = np.geomspace(lo / 1.5, hi, 60)
    grid_out = np.geomspace(hi, top * 1.2, 40) if top > hi else np.array([])
    for i, level in enumerate(levels):
        sel = groups == i
        ax.scatter(xs[sel], loss[sel], color=colors[i], s=30, zorder=3, edgecolor="black", linewidth=0.4,
                   label=f"{other} = {_fmt(level)}")
        for grid, style in ((grid_in, "-"), (grid_out, "--")):
            if len(grid) == 0:
                continue
            pred = fit.predict(**{x: grid, other: np.full_like(grid, level)})
            ax.plot(grid, pred["point"], style, color=colors[i], linewidth=1.4)
            if style == "--" and pred["conf_lower"].notna().all():  # the band of the mean law
                ax.fill_between(grid, pred["conf_lower"], pred["conf_upper"], color=colors[i], alpha=0.15, linewidth=0)
    ax.set_xscale("log")
    _log_loss_axis(ax)
    ax.set_xlabel(LABELS[x])
    ax.set_ylabel(LABELS["loss"])
    ax.set_title(title or f"Loss against {x}: measured (points) and fitted {fit.law.name} (lines; dashed = extrapolation)",
                 fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, title=f"{other}", title_fontsize=8)
    return _finish(fig, path, owned)


def _log_loss_axis(ax) -> None:
    """Log scale for losses, labelled with plain numbers: a loss axis spans less than a decade, where the
    default log labels (2 x 10^0, 3 x 10^0) are hard to read."""
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    formatter = FormatStrFormatter("%.2f" if hi / lo < 1.5 else "%.1f")
    ax.yaxis.set_major_formatter(formatter)
    ax.yaxis.set_minor_formatter(formatter if hi / lo < 4 else NullFormatter())


def plot_surface(
    df: pd.DataFrame,
    fit: Any,
    path: str | os.PathLike | None = None,
    *,
    ax: Axes | None = None,
    extrapolate_to: float | None = None,
) -> Figure:
    """The fitted loss over (N, D) as filled contours, the measured runs on top, iso-compute lines and,
    when the law has one, the compute-optimal frontier. Draws on ``ax`` (a new figure when None); writes
    ``path`` when given; returns the Figure."""
    N, D, loss = (df[c].to_numpy(dtype=float) for c in ("N", "D", "loss"))
    n_hi = max(N.max(), extrapolate_to or N.max()) * 1.5
    n_grid = np.geomspace(N.min() / 2, n_hi, 120)
    d_grid = np.geomspace(D.min() / 2, D.max() * 4, 120)
    NN, DD = np.meshgrid(n_grid, d_grid)
    surface = fit.predict(N=NN.ravel(), D=DD.ravel())["point"].to_numpy().reshape(NN.shape)

    fig, ax, owned = _axes(ax, (7.5, 5.5))
    levels = np.geomspace(np.nanmin(surface), np.nanmax(surface), 16)
    cs = ax.contourf(NN, DD, surface, levels=levels, cmap="viridis_r", norm=LogNorm())
    fig.colorbar(cs, ax=ax, label="fitted " + LABELS["loss"], format="%.2f")
    # Points filled with the measured loss on the same colour scale: where the fit is good, a point's fill
    # matches the contour around it.
    ax.scatter(N, D, c=loss, cmap="viridis_r", norm=LogNorm(vmin=levels[0], vmax=levels[-1]), s=45,
               edgecolor="black", linewidth=0.9, zorder=3, label="measured runs (fill: measured loss)")
    for C in np.geomspace(6 * n_grid[0] * d_grid[0], 6 * n_grid[-1] * d_grid[-1], 9)[1:-1]:
        ax.plot(n_grid, C / (6 * n_grid), color="white", linewidth=0.6, alpha=0.7)
    if getattr(fit.law, "optimal", None) is not None:
        comp = np.geomspace(6 * n_grid[0] * d_grid[0], 6 * n_grid[-1] * d_grid[-1], 80)
        opt = fit.optimal(compute=comp)
        ax.plot(opt["N_opt"], opt["D_opt"], color="red", linewidth=1.5, label="compute-optimal N, D")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(n_grid[0], n_grid[-1])
    ax.set_ylim(d_grid[0], d_grid[-1])
    ax.set_xlabel(LABELS["N"])
    ax.set_ylabel(LABELS["D"])
    ax.set_title(f"Fitted {fit.law.name} surface {fit.law.formula}; white lines: constant C = 6ND", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    return _finish(fig, path, owned)


def plot_fit(df: pd.DataFrame, fit: Any, out_dir: str | os.PathLike, *, extrapolate_to: float | None = None) -> list[Path]:
    """All three figures into ``out_dir``: loss_vs_N.png, loss_vs_D.png, loss_surface.png."""
    out = Path(out_dir)
    paths = [out / "loss_vs_N.png", out / "loss_vs_D.png", out / "loss_surface.png"]
    plot_loss_vs(df, fit, "N", paths[0], extrapolate_to=extrapolate_to)
    plot_loss_vs(df, fit, "D", paths[1])
    plot_surface(df, fit, paths[2], extrapolate_to=extrapolate_to)
    return paths
