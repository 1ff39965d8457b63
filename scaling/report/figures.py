"""The report's figures: each drawn with matplotlib, saved as PNG and SVG in ``figures/`` and kept as base64 PNG
for the page.

One function per figure or group of figures, by what the table holds: the data (loss against N, D and C), each fit
(fitted curves with their bands, residuals), the compute-optimal approaches (isoFLOP profiles, frontiers), the
backtest (forecast against measured) and the transfer, repetition and calibration columns. Every axis names its
quantity and unit. No backend is forced (Agg is what matplotlib picks without a display); the fitted-curve panels
of two-input laws reuse :mod:`scaling.report.plots` (the sweep's figures).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm

from scaling.errors import ScalingError
from scaling.results import training_compute

if TYPE_CHECKING:
    from scaling.analysis.allocation import Allocation
    from scaling.analysis.backtest import BacktestResult
    from scaling.fitting.result import Fit

LABELS = {
    "N": "parameters N",
    "D": "training tokens D",
    "C": "training compute C = 6ND (FLOPs)",
    "loss": "held-out loss (nats/token)",
    "D_F": "fine-tuning tokens D_F",
    "U": "unique tokens U",
    "epochs": "epochs (D / U)",
    "ece": "expected calibration error",
    "N_opt": "compute-optimal parameters N_opt",
}
DPI = 100


@dataclass
class Figure:
    """One figure of the page: its file name (without extension), caption and PNG bytes in base64."""

    name: str
    caption: str
    png_b64: str


class FigureFolder:
    """Saves each figure as PNG and SVG under ``folder`` and keeps the PNG for embedding."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def save(self, fig, name: str, caption: str) -> Figure:
        fig.tight_layout()
        # Text stays text in the SVG (editable in a paper, searchable), not glyph outlines.
        with plt.rc_context({"svg.fonttype": "none"}):
            fig.savefig(self.folder / f"{name}.svg")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI)
        plt.close(fig)
        data = buf.getvalue()
        (self.folder / f"{name}.png").write_bytes(data)
        return Figure(name, caption, base64.b64encode(data).decode())

    def from_file(self, png: Path, caption: str) -> Figure:
        return Figure(png.stem, caption, base64.b64encode(png.read_bytes()).decode())


def _label(column: str) -> str:
    return LABELS.get(column, column)


def _numeric(df: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(df[column], errors="coerce").to_numpy(float)


def varies(df: pd.DataFrame, column: str) -> bool:
    """Whether ``column`` exists and holds more than one number (a figure against it would show something)."""
    return column in df.columns and pd.to_numeric(df[column], errors="coerce").nunique() > 1


def _scatter_by(ax, x, y, color, color_label, runs=None):
    """Log-log scatter coloured (log scale) by another column; points of one run joined by a thin line."""
    if runs is not None:
        for key in pd.unique(runs):
            sel = runs == key
            if sel.sum() > 1:
                order = np.argsort(x[sel])
                ax.plot(x[sel][order], y[sel][order], color="0.75", linewidth=0.6, zorder=1)
    positive = color[np.isfinite(color) & (color > 0)]
    norm = (
        LogNorm(vmin=positive.min(), vmax=positive.max()) if len(positive) and positive.min() < positive.max() else None
    )
    sc = ax.scatter(x, y, c=color, cmap="viridis", norm=norm, s=22, edgecolor="black", linewidth=0.3, zorder=3)
    ax.figure.colorbar(sc, ax=ax, label=color_label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)


def data_figures(df: pd.DataFrame, figs: FigureFolder) -> list[Figure]:
    """Every measured point: loss against N, D and (from both) C, coloured by the other size."""
    out = []
    runs = df["run_id"].astype(str).to_numpy() if "run_id" in df.columns else None
    loss = _numeric(df, "loss")
    pairs = [("N", "D"), ("D", "N")]
    if {"N", "D"} <= set(df.columns):
        pairs.append(("C", "N"))
    for x, color in pairs:
        if x != "C" and x not in df.columns:
            continue
        xs = training_compute(df) if x == "C" else _numeric(df, x)
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        if color in df.columns:
            _scatter_by(ax, xs, loss, _numeric(df, color), _label(color), runs)
        else:
            ax.scatter(xs, loss, s=22, color="C0", edgecolor="black", linewidth=0.3)
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel(_label(x))
        ax.set_ylabel(_label("loss"))
        ax.set_title(f"Measured loss against {x}", fontsize=10)
        out.append(
            figs.save(
                fig,
                f"data_loss_vs_{x}",
                f"Every measured point: loss against {_label(x)}, "
                f"coloured by {_label(color)}; lines join evaluations of one run.",
            )
        )
    return out


def _fit_rows(df: pd.DataFrame, fit) -> pd.DataFrame:
    cols = list(fit.law.inputs) + [fit.law.output]
    if not set(cols) <= set(df.columns):
        return pd.DataFrame(columns=cols)
    rows = df[cols].apply(pd.to_numeric, errors="coerce").dropna()
    return rows[(rows > 0).all(axis=1)]


def fit_figures(df: pd.DataFrame, name: str, fit: Fit, figs: FigureFolder) -> list[Figure]:
    """Fitted curves with extrapolation bands and residuals for one fit (when the table has its inputs)."""
    from scaling.report import plots

    rows = _fit_rows(df, fit)
    out: list[Figure] = []
    slug = "".join(ch if ch.isalnum() else "_" for ch in name)
    inputs = list(fit.law.inputs)
    if len(rows) == 0:
        return out
    if set(inputs) == {"N", "D"}:
        for x in ("N", "D"):
            top = 10 * rows[x].max()
            for ext in ("svg", "png"):
                path = figs.folder / f"fit_{slug}_vs_{x}.{ext}"
                with plt.rc_context({"svg.fonttype": "none"}):
                    plots.plot_loss_vs(
                        rows,
                        fit,
                        x,
                        path,
                        extrapolate_to=top,
                        title=f"{name}: loss against {x}; dashed = extrapolation with band",
                    )
            out.append(
                figs.from_file(
                    path,
                    f"Fit {name}: measured loss (points) and the fitted {fit.law.name} "
                    f"(lines) against {_label(x)}, extrapolated to {top:.3g} with its "
                    f"{fit.ci:.0%} confidence band of the mean law (dark) and prediction interval for one new run "
                    "(light) where the fit has intervals.",
                )
            )
        if fit.law.optimal is not None or set(inputs) == {"N", "D"}:
            fig = _frontier_loss_figure(rows, name, fit)
            if fig is not None:
                out.append(
                    figs.save(
                        fig,
                        f"fit_{slug}_frontier",
                        f"Fit {name}: loss of the compute-optimal model "
                        f"against compute, two decades beyond the data, with its {fit.ci:.0%} confidence band (dark) and "
                        "prediction interval (light); "
                        "points are the measured runs.",
                    )
                )
    elif len(inputs) == 1:
        out.append(
            figs.save(
                _single_input_figure(rows, name, fit),
                f"fit_{slug}_curve",
                f"Fit {name}: measured points and the fitted curve, extrapolated one decade with its "
                f"{fit.ci:.0%} confidence band (dark) and prediction interval (light) where the fit has intervals.",
            )
        )
    out.append(
        figs.save(
            _residual_figure(rows, name, fit),
            f"fit_{slug}_residuals",
            f"Fit {name}: log residuals log(measured / fitted) against each input; a law that fits leaves no trend.",
        )
    )
    return out


def _frontier_loss_figure(rows: pd.DataFrame, name: str, fit):
    C = 6.0 * rows["N"].to_numpy() * rows["D"].to_numpy()
    grid = np.geomspace(C.min(), C.max() * 100, 60)
    try:
        opt = fit.optimal(grid)
    except ScalingError:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.scatter(C, rows[fit.law.output], s=18, color="0.4", edgecolor="black", linewidth=0.3, label="measured runs")
    _curve_with_bands(ax, grid, opt, "loss", "loss_", C.max(), "fitted, compute-optimal", fit.ci)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(_label("C"))
    ax.set_ylabel(_label("loss"))
    ax.set_title(f"{name}: best achievable loss at each compute", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _curve_with_bands(ax, grid: np.ndarray, table: pd.DataFrame, value: str, prefix: str, measured_max: float,
                      label: str, ci: float) -> None:
    """The fitted curve (solid over the measured range, dashed beyond), its prediction interval (one new run) and
    its confidence band (the mean law), each band drawn only where the fit gives one (``PREFIXpred_lower`` ...)."""
    inside = grid <= measured_max
    ax.plot(grid[inside], table[value][inside], color="C3", label=label)
    ax.plot(grid[~inside], table[value][~inside], "--", color="C3", label="extrapolation")
    for kind, alpha, text in (("pred", 0.08, "prediction interval (one new run)"),
                              ("conf", 0.2, "confidence band (mean law)")):
        lo, hi = table[f"{prefix}{kind}_lower"], table[f"{prefix}{kind}_upper"]
        if lo.notna().all():
            ax.fill_between(grid, lo, hi, color="C3", alpha=alpha, linewidth=0, label=f"{ci:.0%} {text}")


def _single_input_figure(rows: pd.DataFrame, name: str, fit):
    x = fit.law.inputs[0]
    xs = rows[x].to_numpy()
    grid = np.geomspace(xs.min(), xs.max() * 10, 80)
    pred = fit.predict(**{x: grid})
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.scatter(xs, rows[fit.law.output], s=22, color="C0", edgecolor="black", linewidth=0.3, label="measured")
    _curve_with_bands(ax, grid, pred, "point", "", xs.max(), f"fitted {fit.law.name}", fit.ci)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(_label(x))
    ax.set_ylabel(_label(fit.law.output))
    ax.set_title(f"{name}: {fit.law.formula}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _residual_figure(rows: pd.DataFrame, name: str, fit):
    inputs = list(fit.law.inputs)
    pred = fit.predict(**{c: rows[c].to_numpy() for c in inputs})["point"].to_numpy()
    resid = np.log(rows[fit.law.output].to_numpy() / pred)
    fig, axes = plt.subplots(1, len(inputs), figsize=(4.2 * len(inputs), 3.4), squeeze=False)
    for ax, c in zip(axes[0], inputs):
        ax.scatter(rows[c], resid, s=16, color="C0", edgecolor="black", linewidth=0.3)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlabel(_label(c))
        ax.set_ylabel("log(measured / fitted) (nats)")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_title(f"{name}: residuals (RMSE {np.sqrt(np.mean(resid**2)):.3g})", fontsize=10)
    return fig


def isoflop_figure(alloc: Allocation, figs: FigureFolder) -> Figure:
    """Approach 2's isoFLOP profiles: loss against N at each budget, the fitted parabolas and their minima."""
    prof, pts = alloc.profiles, alloc.points
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    budgets = np.unique(prof["budget"])
    cmap = plt.get_cmap("viridis")
    norm = LogNorm(vmin=budgets.min(), vmax=budgets.max()) if len(budgets) > 1 else None
    for i, b in enumerate(budgets):
        color = cmap(norm(b) if norm else 0.5)
        sel = prof["budget"] == b
        ax.scatter(
            prof.loc[sel, "N"],
            prof.loc[sel, "loss"],
            s=18,
            color=color,
            edgecolor="black",
            linewidth=0.3,
            label=f"C = {b:.2g}",
        )
        v = pts[np.isclose(pts["C"], b)]
        if len(v):
            x = np.linspace(np.log(prof.loc[sel, "N"].min()), np.log(prof.loc[sel, "N"].max()), 50)
            c2, c1, c0 = v[["c2", "c1", "c0"]].iloc[0]
            ax.plot(np.exp(x), c2 * x**2 + c1 * x + c0, color=color, linewidth=1)
            ax.plot(v["N_opt"], v["loss"], marker="*", markersize=11, color=color, markeredgecolor="black")
    ax.set_xscale("log")
    ax.set_xlabel(_label("N"))
    ax.set_ylabel(_label("loss"))
    ax.set_title("IsoFLOP profiles (approach 2): parabolas in log N, stars at their minima", fontsize=10)
    ax.grid(True, alpha=0.3)
    if len(budgets) <= 10:
        ax.legend(fontsize=7, ncol=2)
    elif norm is not None:  # dozens of budgets (digitised data): a colour bar instead of a legend
        fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=_label("C"))
    return figs.save(
        fig,
        "isoflop_profiles",
        "IsoFLOP profiles: at each compute budget, loss against model size with "
        "the fitted parabola (in log N); the star is the budget's compute-optimal size (Hoffmann et al. "
        "2022, approach 2).",
    )


def frontier_figure(allocations: dict[int, Allocation], figs: FigureFolder, budgets: Sequence[float]) -> Figure:
    """N_opt against compute from each approach that applies, with bootstrap bands and the planned budgets."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    lo = min([a.points["C"].min() for a in allocations.values() if len(a.points)] + list(budgets))
    hi = max([a.points["C"].max() for a in allocations.values() if len(a.points)] + list(budgets))
    grid = np.geomspace(lo, hi, 60)
    for k, a in allocations.items():
        opt = a.optimal(grid)
        ax.plot(grid, opt["N_opt"], color=f"C{k}", label=f"approach {k} ({a.name}): a = {a.a:.3f}")
        if opt["N_opt_lower"].notna().all():
            ax.fill_between(grid, opt["N_opt_lower"], opt["N_opt_upper"], color=f"C{k}", alpha=0.12, linewidth=0)
        if len(a.points):
            step = max(1, len(a.points) // 60)
            ax.scatter(a.points["C"][::step], a.points["N_opt"][::step], s=12, color=f"C{k}", alpha=0.7)
    for b in budgets:
        ax.axvline(b, color="0.5", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(_label("C"))
    ax.set_ylabel(_label("N_opt"))
    ax.set_title("Compute-optimal model size: the three approaches", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return figs.save(
        fig,
        "frontier",
        "Compute-optimal parameters against compute from each approach (lines, with "
        "bootstrap bands); points are what each frontier was fitted to (envelope winners, isoFLOP "
        "minima); dotted lines mark the budgets asked for.",
    )


def backtest_figure(result: BacktestResult, figs: FigureFolder) -> Figure | None:
    """Held-out forecasts against measured values, one colour per law (None without held-out predictions)."""
    p = result.predictions
    if p.empty:
        return None
    output = next((c for c in ("loss", "ece") if c in p.columns), None)
    if output is None:
        return None
    fig, ax = plt.subplots(figsize=(6.0, 4.6))
    for i, law in enumerate(pd.unique(p["law"])):
        q = p[p["law"] == law]
        err = np.vstack([q["point"] - q["lower95"], q["upper95"] - q["point"]]).clip(min=0)
        ax.errorbar(
            q[output],
            q["point"],
            yerr=np.nan_to_num(err),
            fmt="o",
            markersize=4,
            capsize=2,
            color=f"C{i}",
            label=law,
            alpha=0.8,
        )
    both = np.concatenate([p[output].to_numpy(float), p["point"].to_numpy(float)])
    both = both[np.isfinite(both) & (both > 0)]
    lims = [both.min() / 1.05, both.max() * 1.05]
    ax.plot(lims, lims, color="black", linewidth=0.8, label="perfect forecast")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lims)
    ax.set_ylim(lims)
    ax.set_xlabel(f"measured {_label(output)} (held out)")
    ax.set_ylabel(f"forecast {_label(output)}")
    ax.set_title(f"Backtest, held out {result.settings.get('holdout')}: forecast against measured", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return figs.save(
        fig,
        "backtest",
        "Held-out points: each law's forecast (with its 95% interval) against the "
        "measured value; points on the diagonal were forecast exactly.",
    )


def special_figures(df: pd.DataFrame, figs: FigureFolder) -> list[tuple[str, Figure]]:
    """Transfer, repetition and calibration plots for the columns that exist."""
    out = []
    runs = df["run_id"].astype(str).to_numpy() if "run_id" in df.columns else None
    color = _numeric(df, "N") if "N" in df.columns else np.ones(len(df))
    specs = [
        (
            "Transfer",
            "D_F",
            "loss",
            "transfer",
            (
                "Loss after fine-tuning against fine-tuning tokens, coloured by "
                "model size (Hernandez et al. 2021: the effective data transferred shows as a shift of these curves)."
            ),
        ),
        (
            "Repetition",
            "epochs",
            "loss",
            "repetition",
            (
                "Loss against epochs over the unique data, coloured by model "
                "size (Muennighoff et al. 2023: repeated tokens are worth less than new ones)."
            ),
        ),
        (
            "Calibration",
            "N",
            "ece",
            "calibration",
            ("Expected calibration error of next-token predictions against model size (Kadavath et al. 2022)."),
        ),
    ]
    data = df.copy()
    if "epochs" not in data.columns and {"D", "U"} <= set(data.columns):
        data["epochs"] = _numeric(data, "D") / _numeric(data, "U")
    for title, x, y, name, caption in specs:
        if x not in data.columns or y not in data.columns or not varies(data, x):
            continue
        xs, ys = _numeric(data, x), _numeric(data, y)
        ok = np.isfinite(xs) & np.isfinite(ys) & (xs > 0) & (ys > 0)
        if ok.sum() < 2:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        _scatter_by(ax, xs[ok], ys[ok], color[ok], _label("N"), runs[ok] if runs is not None else None)
        ax.set_xlabel(_label(x))
        ax.set_ylabel(_label(y))
        ax.set_title(title, fontsize=10)
        out.append((title, figs.save(fig, name, caption)))
    return out


__all__ = ["Figure", "FigureFolder", "backtest_figure", "data_figures", "fit_figures", "frontier_figure",
           "isoflop_figure", "special_figures", "varies"]
