"""``scaling report``: a self-contained HTML report of a results table and its fits (:mod:`scaling.report.html`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scaling.cli import app
from scaling.cli.files import read_selected_results
from scaling.cli.options import MapOption, ResultsArgument, SeedOption, WhereOption
from scaling.cli.output import note
from scaling.cli.parsing import check_bootstrap_options, parse_values


@app.command("report")
def report_command(
    results: ResultsArgument,
    fits: Annotated[
        list[str] | None,
        typer.Argument(
            help="Fit files or published names to show (default: fit the default law).", metavar="[FITS]..."
        ),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for index.html and figures/ (replaced if it holds a report).")
    ] = Path("report"),
    backtest_file: Annotated[
        Path | None,
        typer.Option("--backtest", help="Show this saved backtest (scaling backtest -o) instead of running one."),
    ] = None,
    no_backtest: Annotated[bool, typer.Option("--no-backtest", help="Leave the backtest out.")] = False,
    holdout: Annotated[
        str, typer.Option("--holdout", help="Hold-out scheme of the backtest the report runs.")
    ] = "largest-N",
    compute: Annotated[
        list[str] | None,
        typer.Option(
            "--compute",
            "-C",
            help="Budgets for the compute-optimal table (default 10x and 100x the largest in the table).",
        ),
    ] = None,
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", "-b", help="Bootstrap resamples for fits made by the report.")
    ] = 50,
    seed: SeedOption = 0,
    title: Annotated[str | None, typer.Option("--title", help="Page title.")] = None,
    map_: MapOption = None,
    where: WhereOption = None,
) -> None:
    """A self-contained HTML report: data, fitted curves with extrapolation bands, residuals, isoFLOP profiles, backtest."""
    from scaling.analysis.backtest import load_backtest
    from scaling.analysis.holdout import Holdout
    from scaling.fitting.result import load_fit
    from scaling.report.html import build_report

    check_bootstrap_options(bootstrap, seed)
    Holdout.parse(holdout)
    budgets = parse_values(compute, "--compute") if compute else []
    loaded = [(Path(f).stem if f.endswith(".json") else f, load_fit(f)) for f in (fits or [])]
    saved = load_backtest(backtest_file) if backtest_file is not None else None
    df = read_selected_results(results, map_, where)
    path = build_report(
        df,
        loaded,
        output,
        backtest_result=saved,
        run_backtest=not no_backtest,
        holdout=holdout,
        compute=budgets,
        n_bootstrap=bootstrap,
        seed=seed,
        title=title,
    )
    note(f"wrote {path} (figures as PNG and SVG in {path.parent / 'figures'})")
