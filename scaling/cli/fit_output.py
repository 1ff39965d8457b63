"""How a fit prints: its parameter table with intervals (``Fit.parameter_table``), the fit-quality fields and
warnings, as a table for people, or the fit's JSON record (``Fit.to_record``, which the HTTP service serves too) or
CSV for pipes; and the results of laws fitted through an analysis of runs (transfer, repetition), which print their
intermediate tables too."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from scaling.cli.output import Format, blank_line, note, print_csv, print_fields, print_json, print_table, warn
from scaling.values import format_number, with_intervals
from scaling.fitting.diagnostics import describe_status
from scaling.fitting.quality import FitQuality

if TYPE_CHECKING:  # pragma: no cover
    from scaling.analysis.repetition import RepetitionAnalysis
    from scaling.analysis.transfer import TransferAnalysis
    from scaling.fitting.result import Fit


def print_fit_tables(result: Fit, *, title: str | None = None, quality: bool = True) -> None:
    """Parameter table with its interval caption, then (``quality``) the fit-quality fields."""
    status = result.interval_status
    if status is None:
        caption = f"lower/upper: {result.ci:.0%} confidence interval from {len(result.draws)} bootstrap draws"
    elif status == "no_bootstrap_draws":
        caption = "no intervals (--bootstrap 0)"
    else:
        caption = f"no intervals: {describe_status(status)}"
    print_table(result.parameter_table(), title=title or f"{result.law_name}: {result.law.formula}", caption=caption)
    if quality:
        blank_line()
        print_fields(quality_fields(result.quality), title="fit quality")


def warn_quality(result: Fit, fmt: Format) -> None:
    """Convergence and fit warnings on stderr (the table format prints them in the quality fields)."""
    if fmt is not Format.table:  # JSON carries these in "quality", the table prints them; CSV users get stderr
        for w in result.warnings:
            warn(f"{w.code}: {w.message}")
    elif result.quality.converged is False:
        warn(f"the fit did NOT converge ({result.convergence}; see fit quality above)")
    status = result.interval_status
    if status is not None and status != "no_bootstrap_draws":
        warn(f"no intervals: {describe_status(status)}")


def print_fit(
    result: Fit,
    fmt: Format,
    saved: Path,
    sections: list[tuple[str, str, pd.DataFrame]] = (),
    warnings_: list[str] = (),
) -> None:
    """The fit in ``fmt``; ``sections`` (key, title, table) follow it in the table format and are extra keys of
    the JSON record (CSV stays the parameter table); ``warnings_`` go to stderr after it."""
    if fmt is Format.json:
        print_json({**result.to_record(), "saved": str(saved), **{key: df for key, _, df in sections}})
    elif fmt is Format.csv:
        print_csv(result.parameter_table())
    else:
        print_fit_tables(result)
        for _, title, df in sections:
            blank_line()
            print_table(df, title=title)
    warn_quality(result, fmt)
    for message in warnings_:
        warn(message)
    note(f"saved {saved}")


def quality_fields(quality: FitQuality) -> list[tuple[str, Any]]:
    failed = quality.bootstrap_failed_fraction
    status = quality.convergence or ("converged" if quality.converged else "not_converged")
    return [
        ("points", quality.n_points),
        ("free parameters", quality.n_params_free),
        ("RMSE of log residuals", quality.rmse_log),
        ("objective", quality.objective),
        ("convergence", quality.message or status),
        ("at a bound", list(quality.at_bound)),
        ("bootstrap failed", "-" if failed is None else f"{float(failed):.1%}"),
        ("seconds", quality.seconds),
        ("warnings", [f"{w.code} ({w.severity}): {w.message}" for w in quality.warnings]),
    ]


def print_transfer_analysis(a: TransferAnalysis, out_path: Path, fmt: Format) -> None:
    """A transfer analysis (scaling.analysis.transfer): the from-scratch fit, the per-run table, the transfer fit."""
    runs = a.runs[
        ["N", "D_F", "loss", "D_E", "D_E_interp", "D_T", "D_T_lower", "D_T_upper", "f_T", "multiplier", "class"]
    ]
    counts = ", ".join(f"{c} {n}" for c, n in a.counts.items())
    if fmt is Format.json:
        print_json(
            {
                **a.fit.to_record(),
                "saved": str(out_path),
                "scratch": a.scratch_fit.to_record(),
                "counts": a.counts,
                "runs": runs,
            }
        )
    elif fmt is Format.csv:
        print_csv(runs)
    else:
        print_fit_tables(
            a.scratch_fit,
            title=f"from-scratch fit on the target, {a.scratch_fit.law_name}: {a.scratch_fit.law.formula}",
            quality=False,
        )
        print_fields(quality_fields(a.scratch_fit.quality)[:5], title="from-scratch fit quality")
        blank_line()
        print_table(
            with_intervals(runs, ["D_T"]),
            title=f"fine-tuned runs (runs per class: {counts})",
            caption="D_E: from-scratch data reaching the run's loss; D_T = D_E - D_F [interval from the from-scratch "
            "fit's draws]; f_T = D_T/D_E; multiplier = D_E/D_F; D_E_interp: interpolated between measured "
            "from-scratch runs (cross-check). Only 'ok' runs enter the transfer fit.",
        )
        blank_line()
        print_fit_tables(a.fit, title=f"transfer fit on the {a.counts.get('ok', 0)} ok runs: {a.fit.law.formula}")
    warn_quality(a.scratch_fit, fmt)
    warn_quality(a.fit, fmt)
    left_out = len(a.runs) - a.counts.get("ok", 0)
    if left_out:
        note(f"skipped {left_out} of {len(a.runs)} fine-tuned runs in the transfer fit: {counts}")
    note(f"saved {out_path}")


def print_repetition_analysis(a: RepetitionAnalysis, out_path: Path, fmt: Format) -> None:
    """A repetition analysis (scaling.analysis.repetition): the baseline fit, N_eff per run, the regions and their
    edge fits."""
    from scaling.laws.repetition import PUBLISHED_BOUNDARIES

    edges = a.edges_table()
    runs = a.runs[
        ["N", "repeat_fraction", "repeat_count", "loss", "N_eff", "N_eff_lower", "N_eff_upper", "m", "lost"]
        + ["extrapolated", "N_eff_interp"]
    ]
    if fmt is Format.json:
        print_json(
            {**a.baseline.to_record(), "saved": str(out_path), "runs": runs, "regions": a.regions, "edges": edges}
        )
    elif fmt is Format.csv:
        print_csv(runs)
    else:
        print_fit_tables(a.baseline, title=f"unique-data baseline, {a.baseline.law_name}: {a.baseline.law.formula}")
        blank_line()
        print_table(
            with_intervals(runs, ["N_eff"]),
            title="runs with repeated data",
            caption="N_eff: unique-data model size with the same loss [interval from the baseline's draws]; "
            "m = N_eff/N; lost = 1 - m; extrapolated: N_eff outside the baseline's sizes; N_eff_interp: the same "
            "read off the measured unique-data runs (blank outside their losses)",
        )
        blank_line()
        regions = a.regions.copy()
        for edge, sign in (("left", "<="), ("right", ">=")):
            regions[edge] = [
                (sign if o else "") + format_number(v) for v, o in zip(regions[edge], regions[f"{edge}_open"])
            ]
        print_table(
            regions.drop(columns=["left_open", "right_open"]),
            title="poor-performance regions: repeat counts losing >= half the worst fraction of parameters",
            caption="<= / >=: the edge reaches the end of the measured repeat counts (only a bound)",
        )
        blank_line()
        published = ", ".join(f"{e} {p['k']:.2g} N^{p['alpha']:g}" for e, p in PUBLISHED_BOUNDARIES.items())
        if len(edges):
            print_table(
                with_intervals(edges, ["k", "alpha"]),
                title="region edges across sizes: E = k N^alpha",
                caption=f"published (Hernandez et al. 2022): {published}",
            )
    warn_quality(a.baseline, fmt)
    if not len(edges):
        note("no edge fit E = k N^alpha: it needs a closed edge at 2 or more sizes")
    note(f"saved {out_path}")
