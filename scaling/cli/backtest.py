"""``scaling backtest``: fit each law on the small end of a results table, predict the held-out large end and rank
the laws by extrapolation error (:mod:`scaling.analysis.backtest`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from scaling.cli import app
from scaling.cli.files import check_can_write, read_selected_results
from scaling.cli.options import BootstrapOption, FormatOption, MapOption, ResultsArgument, SeedOption, WhereOption
from scaling.cli.output import Format, emit, note, print_json, print_table
from scaling.cli.parsing import check_bootstrap_options, parse_names

if TYPE_CHECKING:  # pragma: no cover
    from scaling.analysis.backtest import BacktestResult

LawsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--law",
        "-l",
        help="Laws to compare, comma-separated or repeated (e.g. chinchilla,bnsl:D); default: picked from the columns.",
    ),
]
HoldoutOption = Annotated[
    str, typer.Option("--holdout", help="largest-N[:k] | largest-C[:f or k] | last-fraction[:f].")
]
TailOption = Annotated[
    float | None,
    typer.Option(
        "--tail",
        metavar="FRACTION",
        help="Score only the last FRACTION of each held-out curve (by tokens), e.g. --holdout largest-N --tail "
        "0.3 (GPT-3's protocol); the rest of those curves is used by neither side.",
    ),
]
PerCurveOption = Annotated[
    bool | None,
    typer.Option(
        "--per-curve/--pooled",
        help="Single-input laws: one fit per curve (per value of the other inputs) or one pooled fit; default: "
        "per curve for last-fraction, pooled for largest-N/largest-C.",
        show_default=False,
    ),
]
MinTokensOption = Annotated[float | None, typer.Option("--min-tokens", help="Drop checkpoints with D below this.")]
CurveFractionOption = Annotated[
    float | None,
    typer.Option("--curve-fraction", help="Fit only the last fraction of each training curve (by tokens)."),
]
AverageSeedsOption = Annotated[
    bool, typer.Option("--average-seeds", help="Average the seeds of one configuration before fitting.")
]
IntervalsOption = Annotated[
    str, typer.Option("--intervals", help="prediction (curve + run-to-run scatter) or band (curve only).")
]
OutputOption = Annotated[
    Path | None,
    typer.Option(
        "--output", "-o", help="Save the backtest as JSON (e.g. fits/backtests/NAME.json, which `scaling serve` shows)."
    ),
]


@app.command("backtest")
def backtest_command(
    results: ResultsArgument,
    law: LawsOption = None,
    holdout: HoldoutOption = "largest-N",
    tail: TailOption = None,
    per_curve: PerCurveOption = None,
    min_tokens: MinTokensOption = None,
    curve_fraction: CurveFractionOption = None,
    average_seeds: AverageSeedsOption = False,
    intervals: IntervalsOption = "prediction",
    bootstrap: BootstrapOption = 100,
    seed: SeedOption = 0,
    map_: MapOption = None,
    where: WhereOption = None,
    output: OutputOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Fit each law on the small end of the table, predict the held-out large end, rank laws by extrapolation error."""
    from scaling.analysis.backtest import backtest
    from scaling.analysis.holdout import Holdout

    check_bootstrap_options(bootstrap, seed)
    spec = Holdout.parse(holdout, tail=tail)
    df = read_selected_results(results, map_, where)
    if output is not None:
        check_can_write(output, results, what="backtest")  # before the backtest's fits, not after
    result = backtest(
        df,
        parse_names(law) or None,
        spec,
        min_tokens=min_tokens,
        curve_fraction=curve_fraction,
        average_seeds=average_seeds,
        intervals=intervals,
        n_bootstrap=bootstrap,
        seed=seed,
        per_curve=per_curve,
    )
    if output is not None:
        result.save(output)
    _print_backtest(result, results, fmt)
    if output is not None:
        note(f"saved {output}")


def _print_backtest(result: BacktestResult, results: str, fmt: Format) -> None:
    """The ranking of the laws; JSON adds the settings and the seed-to-seed noise floor."""
    table = result.table.drop(columns=["formula"])
    if fmt is Format.json:
        print_json({"settings": result.settings, "noise_floor": result.noise_floor, "table": table})
    elif fmt is Format.csv:
        emit(table, fmt)
    else:
        s = result.settings
        noise = f"; seed-to-seed noise (log loss) {result.noise_floor:.4g}" if np.isfinite(result.noise_floor) else ""
        print_table(
            table,
            title=f"backtest of {results}: held out {s['holdout']} ({s['held_out']})",
            caption=f"ranked by held-out RMSE of log loss; coverage = share of held-out points inside the "
            f"80%/95% {s['intervals']} intervals{noise}",
        )
