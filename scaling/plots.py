"""PNG figures of a sweep's losses with the fitted law: loss against N, loss against D, and the fitted surface.

Matplotlib with the Agg backend (no display needed). Every axis carries its quantity and unit; measured points
are markers, the fitted law is lines (solid over the trained range, dashed where it extrapolates), and the
forecast interval is a band where the fit has bootstrap draws.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: never needs a display, safe in worker processes and CI
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
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


def plot_loss_vs(
    df: pd.DataFrame,
    fit: Any,
    x: str,
    path: str | os.PathLike,
    *,
    extrapolate_to: float | None = None,
    title: str | None = None,
) -> Path:
    """Loss against ``x`` ("N" or "D"), one colour per value of the other input, with the fitted law.

    ``extrapolate_to`` extends the fitted curves (dashed) up to that value of ``x``, e.g. the forecast's N.
    """
    other = "D" if x == "N" else "N"
    path = Path(path)
    xs, os_, loss = (df[c].to_numpy(dtype=float) for c in (x, other, "loss"))
    levels = _levels(df[other])
    groups = _group_of(os_, levels)
    cmap = plt.get_cmap("viridis")
    colors = [cmap(i / max(1, len(levels) - 1)) for i in range(len(levels))]

    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=120)
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
            if style == "--" and pred["lower"].notna().all():
                ax.fill_between(grid, pred["lower"], pred["upper"], color=colors[i], alpha=0.15, linewidth=0)
    ax.set_xscale("log")
    _log_loss_axis(ax)
    ax.set_xlabel(LABELS[x])
    ax.set_ylabel(LABELS["loss"])
    ax.set_title(title or f"Loss against {x}: measured (points) and fitted {fit.law.name} (lines; dashed = extrapolation)",
                 fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, title=f"{other}", title_fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _log_loss_axis(ax) -> None:
    """Log scale for losses, labelled with plain numbers: a loss axis spans less than a decade, where the
    default log labels (2 x 10^0, 3 x 10^0) are hard to read."""
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    formatter = FormatStrFormatter("%.2f" if hi / lo < 1.5 else "%.1f")
    ax.yaxis.set_major_formatter(formatter)
    ax.yaxis.set_minor_formatter(formatter if hi / lo < 4 else NullFormatter())


def plot_surface(df: pd.DataFrame, fit: Any, path: str | os.PathLike, *, extrapolate_to: float | None = None) -> Path:
    """The fitted loss over (N, D) as filled contours, the measured runs on top, iso-compute lines and,
    when the law has one, the compute-optimal frontier."""
    path = Path(path)
    N, D, loss = (df[c].to_numpy(dtype=float) for c in ("N", "D", "loss"))
    n_hi = max(N.max(), extrapolate_to or N.max()) * 1.5
    n_grid = np.geomspace(N.min() / 2, n_hi, 120)
    d_grid = np.geomspace(D.min() / 2, D.max() * 4, 120)
    NN, DD = np.meshgrid(n_grid, d_grid)
    surface = fit.predict(N=NN.ravel(), D=DD.ravel())["point"].to_numpy().reshape(NN.shape)

    fig, ax = plt.subplots(figsize=(7.5, 5.5), dpi=120)
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
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_fit(df: pd.DataFrame, fit: Any, out_dir: str | os.PathLike, *, extrapolate_to: float | None = None) -> list[Path]:
    """All three figures into ``out_dir``: loss_vs_N.png, loss_vs_D.png, loss_surface.png."""
    out = Path(out_dir)
    return [
        plot_loss_vs(df, fit, "N", out / "loss_vs_N.png", extrapolate_to=extrapolate_to),
        plot_loss_vs(df, fit, "D", out / "loss_vs_D.png"),
        plot_surface(df, fit, out / "loss_surface.png", extrapolate_to=extrapolate_to),
    ]
