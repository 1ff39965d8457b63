"""``scaling report``: one self-contained HTML page (plus PNG and SVG files) about a results table and its fits.

    build_report(df, fits, "report/")   # report/index.html, report/figures/*.png|svg

Sections, each present when the table supports it: the data (loss against N, D and C), each fit (parameters with
intervals, fitted curves with extrapolation bands, residuals), compute-optimal planning (Chinchilla approaches 1-3
side by side, isoFLOP profiles, frontiers), the backtest table (laws ranked by held-out error) with held-out
predictions, and transfer (``D_F``), repetition (``epochs``/``U``) and calibration (``ece``) plots.

The page needs no network and no files besides itself: figures are embedded as base64 PNG (the PNG and SVG copies
in ``figures/`` are for slides and papers). This module decides which sections the table supports, renders the
page and writes the folder in one move; the figures are drawn in :mod:`scaling.report.figures` and the tables
formatted in :mod:`scaling.report.tables`.
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

import scaling
from scaling.errors import ScalingError
from scaling.fitting.diagnostics import describe_status
from scaling.report.figures import (
    Figure,
    FigureFolder,
    backtest_figure,
    data_figures,
    fit_figures,
    frontier_figure,
    isoflop_figure,
    special_figures,
    varies,
)
from scaling.report.tables import format_value, quality_table
from scaling.values import with_intervals
from scaling.results import training_compute

if TYPE_CHECKING:
    from scaling.analysis.backtest import BacktestResult
    from scaling.fitting.result import Fit


@dataclass
class Section:
    """One ``<section>`` of the page: a title, an intro (HTML), tables, notes and figures, shown in that order."""

    title: str
    intro: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def build_report(
    data: pd.DataFrame,
    fits: Sequence[tuple[str, Any]] = (),
    out_dir: str | os.PathLike = "report",
    *,
    backtest_result=None,
    run_backtest: bool = True,
    holdout: str = "largest-N",
    compute: Sequence[float] = (),
    n_bootstrap: int = 50,
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/figures/``; returns the HTML path.

    ``fits`` are (name, Fit) pairs; with none, the default law for the columns is fitted. A backtest is run on the
    fits' laws (``holdout``) unless ``backtest_result`` is given or ``run_backtest`` is False. ``compute`` adds
    budgets to the compute-optimal table (default: 10x and 100x the largest compute in the table).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ScalingError(f"-o {out}: is a file; give a folder for the report")
    if out.is_dir() and any(out.iterdir()) and not (out / "index.html").is_file():
        raise ScalingError(f"-o {out}: the folder is not empty and holds no report; give a new or empty folder")
    df = data.copy()
    source = str(data.attrs.get("source", "table"))
    if "loss" not in df.columns and "ece" not in df.columns:
        raise ScalingError(f"{source}: the report needs a loss (or ece) column")
    # Build in a temporary folder beside the target and move it into place at the end: a failure half-way
    # leaves nothing behind, and an earlier report in the same folder is replaced whole.
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise ScalingError(f"-o {out}: cannot write ({exc.strerror or exc})") from None
    try:
        _build(df, source, fits, work, backtest_result, run_backtest, holdout, compute, n_bootstrap, seed, title)
        os.chmod(work, 0o755)
        if out.is_dir():
            shutil.rmtree(out)
        os.replace(work, out)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return out / "index.html"


def _build(df, source, fits, out: Path, backtest_result, run_backtest, holdout, compute, n_bootstrap, seed, title):
    """Every section the table supports, in reading order, written to ``out/index.html`` (figures beside it)."""
    figs = FigureFolder(out / "figures")
    sections: list[Section] = []

    problems = []
    if not fits:
        from scaling.analysis import fit as fit_law
        from scaling.fitting.table import default_law

        try:
            law = default_law(df)
            fits = [(law, fit_law(df, law=law, n_bootstrap=n_bootstrap, seed=seed))]
        except ScalingError as exc:  # the rest of the report is still worth having
            problems.append(f"no fit shown: the default law could not be fitted ({exc}); pass fit files to show")

    if "loss" in df.columns:
        sections.append(
            Section("Data", f"{len(df)} rows from {html.escape(source)}.", data_figures(df, figs), notes=problems)
        )

    sections.extend(_fit_section(df, name, fit, figs) for name, fit in fits)

    if {"N", "D", "loss"} <= set(df.columns) and varies(df, "N") and varies(df, "D"):
        sections.append(_planning_section(df, figs, compute, n_bootstrap, seed))

    if backtest_result is None and run_backtest:
        from scaling.analysis.backtest import backtest

        laws = [f.law_name for _, f in fits]
        try:
            backtest_result = backtest(df, laws, holdout, n_bootstrap=n_bootstrap, seed=seed)
        except ScalingError as exc:
            sections.append(Section("Backtest", notes=[f"not run: {exc}"]))
    if backtest_result is not None:
        sections.append(_backtest_section(backtest_result, figs))

    for name, fig in special_figures(df, figs):
        sections.append(Section(name, figures=[fig]))

    (out / "index.html").write_text(_page(title or f"Scaling report: {Path(source).name}", source, sections))


def _fit_section(df: pd.DataFrame, name: str, fit: Fit, figs: FigureFolder) -> Section:
    """One fit: its parameters with intervals, its quality, why intervals are missing, its warnings, its figures."""
    sec = Section(
        f"Fit: {name}",
        f"<code>{html.escape(fit.law.formula)}</code> &mdash; "
        f"{html.escape(fit.reference)}",
    )
    sec.tables.append((f"parameters ({fit.ci:.0%} bootstrap intervals)", fit.parameter_table()))
    quality = quality_table(fit)
    if len(quality):
        sec.tables.append(("fit quality", quality))
    if fit.interval_status not in (None, "no_bootstrap_draws"):
        sec.notes.append(f"no intervals: {describe_status(fit.interval_status)}")
    sec.notes.extend(f"{w.code} ({w.severity}): {w.message}" for w in fit.warnings)
    sec.figures.extend(fit_figures(df, name, fit, figs))
    if not sec.figures:
        sec.notes.append("the results table lacks this law's inputs, so there is nothing to plot against")
    return sec


def _backtest_section(result: BacktestResult, figs: FigureFolder) -> Section:
    """The laws ranked by held-out error, and their held-out forecasts against the measured values."""
    sec = Section(
        "Backtest",
        f"Each law fitted without the held-out rows ({html.escape(result.settings.get('holdout', ''))}: "
        f"{html.escape(str(result.settings.get('held_out', '')))}) and scored on them; ranked by "
        "held-out RMSE of log loss (Alabdulmohsin et al. 2022), not by in-sample fit.",
    )
    sec.tables.append(("laws ranked by extrapolation error", result.table.drop(columns=["formula"], errors="ignore")))
    fig = backtest_figure(result, figs)
    if fig:
        sec.figures.append(fig)
    return sec


def _planning_section(
    df: pd.DataFrame, figs: FigureFolder, compute: Sequence[float], n_bootstrap: int, seed: int
) -> Section:
    from scaling.analysis.optimal import compare

    C = training_compute(df)
    budgets = list(compute) or [float(C.max() * 10), float(C.max() * 100)]
    sec = Section(
        "Compute-optimal planning",
        "Chinchilla approaches 1 (envelope of training curves), 2 (isoFLOP "
        "parabolas) and 3 (parametric fit) on the same table, with bootstrap intervals.",
    )
    table, results = compare(df, budgets, n_bootstrap=n_bootstrap, seed=seed)
    shown = with_intervals(table, ["a", "b", "N_opt", "D_opt", "tokens_per_param"], number=format_value)
    shown = shown.drop(columns=["n_frontier_points", "bootstrap_failed_fraction", "warnings"])
    sec.tables.append(("allocation at the planned budgets ([lower, upper]: bootstrap interval)", shown))
    fitted = {k: r for k, r in results.items() if not isinstance(r, str)}
    for k, r in results.items():
        if isinstance(r, str):
            sec.notes.append(f"approach {k} not applicable: {r}")
        else:
            sec.notes.extend(f"approach {k}: {w}" for w in r.warnings)
    if 2 in fitted:
        sec.figures.append(isoflop_figure(fitted[2], figs))
    if fitted:
        sec.figures.append(frontier_figure(fitted, figs, budgets))
    return sec


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;
padding:0 1rem;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
.meta{color:#666;font-size:.9rem}figure{display:inline-block;margin:.6rem .6rem .6rem 0;max-width:540px;
vertical-align:top}figure img{max-width:100%;border:1px solid #e3e3e3}figcaption{font-size:.82rem;color:#555}
table{border-collapse:collapse;font-size:.82rem;margin:.6rem 0 1rem;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right;white-space:nowrap}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}.note{color:#8a5a00;font-size:.88rem}
nav a{margin-right:1rem}
"""


def _page(title: str, source: str, sections: list[Section]) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        (
            f"<p class='meta'>source {html.escape(source)} &middot; generated {now} by scaling "
            f"{html.escape(scaling.__version__)}</p>"
        ),
        "<nav>",
    ]
    parts += [f"<a href='#s{i}'>{html.escape(s.title)}</a>" for i, s in enumerate(sections)]
    parts.append("</nav>")
    for i, s in enumerate(sections):
        parts.append(f"<section id='s{i}'><h2>{html.escape(s.title)}</h2>")
        if s.intro:
            parts.append(f"<p>{s.intro}</p>")
        for caption, table in s.tables:
            parts.append(f"<h3>{html.escape(caption)}</h3>{_html_table(table)}")
        for note in s.notes:
            parts.append(f"<p class='note'>note: {html.escape(note)}</p>")
        for f in s.figures:
            parts.append(
                f"<figure><img alt='{html.escape(f.name)}' src='data:image/png;base64,{f.png_b64}'>"
                f"<figcaption>{html.escape(f.caption)}</figcaption></figure>"
            )
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _html_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(format_value(v))}</td>" for v in row) + "</tr>"
        for row in df.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


__all__ = ["Section", "build_report"]
