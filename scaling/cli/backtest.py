"""``scaling backtest``: fit each law on the small end of a results table, predict the held-out large end and rank
the laws by extrapolation error (:mod:`scaling.analysis.backtest`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from scaling.cli import app
from scaling.cli.files import read_table
from scaling.cli.options import FormatOption, MapOption, WhereOption
from scaling.cli.output import Format, emit, note, print_json, print_table
from scaling.errors import ScalingError


@app.command("backtest")
def backtest_command(
    results: Annotated[str, typer.Argument(help="Results table (CSV).", metavar="RESULTS.csv")],
    law: Annotated[
        list[str] | None,
        typer.Option(
            "--law",
            "-l",
            help="Laws to compare, comma-separated or repeated (e.g. chinchilla,bnsl:D); default: picked from the columns.",
        ),
    ] = None,
    holdout: Annotated[
        str, typer.Option("--holdout", help="largest-N[:k] | largest-C[:f or k] | last-fraction[:f].")
    ] = "largest-N",
    tail: Annotated[
        float | None,
        typer.Option(
            "--tail",
            metavar="FRACTION",
            help="Score only the last FRACTION of each held-out curve (by tokens), e.g. --holdout largest-N --tail "
            "0.3 (GPT-3's protocol); the rest of those curves is used by neither side.",
        ),
    ] = None,
    per_curve: Annotated[
        bool | None,
        typer.Option(
            "--per-curve/--pooled",
            help="Single-input laws: one fit per curve (per value of the other inputs) or one pooled fit; default: "
            "per curve for last-fraction, pooled for largest-N/largest-C.",
            show_default=False,
        ),
    ] = None,
    min_tokens: Annotated[
        float | None, typer.Option("--min-tokens", help="Drop checkpoints with D below this.")
    ] = None,
    curve_fraction: Annotated[
        float | None,
        typer.Option("--curve-fraction", help="Fit only the last fraction of each training curve (by tokens)."),
    ] = None,
    average_seeds: Annotated[
        bool, typer.Option("--average-seeds", help="Average the seeds of one configuration before fitting.")
    ] = False,
    intervals: Annotated[
        str, typer.Option("--intervals", help="prediction (curve + run-to-run scatter) or band (curve only).")
    ] = "prediction",
    bootstrap: Annotated[int, typer.Option("--bootstrap", "-b", help="Bootstrap resamples per fit (intervals).")] = 100,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    map_: MapOption = None,
    where: WhereOption = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Save the backtest as JSON (e.g. fits/backtests/NAME.json, which `scaling serve` shows).",
        ),
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Fit each law on the small end of the table, predict the held-out large end, rank laws by extrapolation error."""
    from scaling.analysis.backtest import backtest
    from scaling.analysis.holdout import Holdout
    from scaling.fitting.fitfile import output_problem

    if bootstrap < 0:
        raise ScalingError(f"--bootstrap {bootstrap}: must be 0 or more")
    if seed < 0:  # numpy's generators take only non-negative seeds
        raise ScalingError(f"--seed {seed}: must be 0 or more")
    spec = Holdout.parse(holdout, tail=tail)
    laws = [p.strip() for item in (law or []) for p in item.split(",") if p.strip()]
    df = read_table(results, map_, where)
    if output is not None and (problem := output_problem(output, example="backtest.json")):
        raise ScalingError(f"-o {output}: {problem}")  # before the backtest's fits, not after
    if output is not None and output.exists() and output.resolve() == Path(results).resolve():
        raise ScalingError(f"-o {output}: is the input table; give the backtest another name such as backtest.json")
    result = backtest(
        df,
        laws or None,
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
    if output is not None:
        note(f"saved {output}")
