"""``scaling backtest``, ``report`` and ``serve``, and ``scaling optimal RESULTS.csv --approach ...``.

Parsing and printing only: the work is in :mod:`scaling.analysis.backtest`, :mod:`scaling.analysis.optimal`, :mod:`scaling.report.html`
and :mod:`scaling.serve.app`. ``scaling optimal`` itself lives in :mod:`scaling.cli.fitting` (a fit file or a published
law); given a results table it hands over to :func:`optimal_from_results` here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

from scaling.cli import app
from scaling.cli.output import (
    Format,
    blank_line,
    emit,
    note,
    print_json,
    print_table,
    warn,
    with_intervals,
)
from scaling.errors import ScalingError

FormatOption = Annotated[Format, typer.Option("--format", "-f", help="table (for people), json or csv (for pipes).")]
MapOption = Annotated[
    list[str] | None,
    typer.Option("--map", "-m", help='Column mapping CANONICAL=FOREIGN, e.g. N="Model Size" (repeatable).'),
]
WhereOption = Annotated[str | None, typer.Option("--where", "-w", help='Row selection, e.g. "N > 1e4" (grammar: docs/cli.md).')]


def _read(results: str, map_: list[str] | None, where: str | None) -> pd.DataFrame:
    from scaling.results import parse_mapping, read_results

    return read_results(results, mapping=parse_mapping(map_ or []), where=where)


# ---------------------------------------------------------------------------------------------------------
# scaling optimal RESULTS.csv --approach 1|2|3|all


def parse_approaches(text: str) -> tuple[int, ...]:
    """``1``, ``2,3``, ``all`` -> approach numbers."""
    if text.strip().lower() == "all":
        return (1, 2, 3)
    out = []
    for part in text.split(","):
        part = part.strip()
        if part not in ("1", "2", "3"):
            raise ScalingError(
                f"--approach {text!r}: expected 1 (envelope), 2 (isoFLOP), 3 (parametric), a list such as 1,2, or all"
            )
        out.append(int(part))
    return tuple(dict.fromkeys(out))


def optimal_from_results(
    results: str,
    compute: list[float],
    approach: str = "all",
    *,
    ci: float | None = None,
    bootstrap: int = 200,
    seed: int = 0,
    map_: list[str] | None = None,
    where: str | None = None,
    ensemble: int | None = None,
    near_min: float | None = None,
    fmt: Format = Format.table,
) -> None:
    """Approaches 1-3 side by side from one results table, with bootstrap intervals (``docs/planning.md``)."""
    from scaling.analysis.ensemble import ensemble_plan
    from scaling.analysis.optimal import compare

    level = 0.95 if ci is None else ci
    if not 0 < level < 1:
        raise ScalingError(f"--ci {level:g}: must lie strictly between 0 and 1")
    if bootstrap < 0:
        raise ScalingError(f"--bootstrap {bootstrap}: must be 0 or more")
    if seed < 0:  # numpy's generators take only non-negative seeds
        raise ScalingError(f"--seed {seed}: must be 0 or more")
    approaches = parse_approaches(approach)
    bad = [c for c in compute if not (np.isfinite(c) and c > 6.0)]
    if bad:  # the same rule as optimal FIT --compute: C = 6 N D with N, D >= 1
        raise ScalingError(f"--compute {bad[0]:g}: must be a finite number of FLOPs above 6 (e.g. 5.76e23)")
    if ensemble is not None and 3 not in approaches:
        raise ScalingError("--ensemble needs approach 3 (the parametric fit predicts the members' losses)")
    df = _read(results, map_, where)
    if near_min is not None and 2 not in approaches:
        raise ScalingError("--near-min applies to approach 2 (isoFLOP profiles)")
    isoflop_options = {"near_min": near_min} if near_min is not None else None
    table, fitted = compare(
        df, compute, approaches=approaches, n_bootstrap=bootstrap, ci=level, seed=seed, isoflop_options=isoflop_options
    )
    verdicts = []
    if ensemble is not None:
        fit3 = fitted.get(3)
        if isinstance(fit3, str):
            raise ScalingError(f"--ensemble: approach 3 could not be fitted: {fit3}")
        verdicts = [ensemble_plan(df, fit3.fit, c, k=ensemble, ci=level) for c in compute]

    if fmt is Format.json:
        payload: dict[str, Any] = {"ci": level, "allocations": table}
        if verdicts:
            payload["ensembles"] = [
                {"compute": v.compute, "k": v.k, "verdict": v.verdict, "reason": v.reason, "options": v.table}
                for v in verdicts
            ]
        print_json(payload)
        return
    if fmt is Format.csv:
        emit(table, fmt)
    else:
        shown = with_intervals(table, ["a", "b", "N_opt", "D_opt", "tokens_per_param"])
        shown = shown.drop(columns=["warnings", "n_rows", "n_frontier_points", "bootstrap_failed_fraction"])
        print_table(
            shown,
            title=f"compute-optimal allocation from {results}: Chinchilla approaches side by side",
            caption=f"[lower, upper]: {level:.0%} bootstrap intervals ({bootstrap} resamples)",
        )
    for k, res in fitted.items():
        if isinstance(res, str):
            warn(f"approach {k}: not applicable: {res}")
        else:
            for w in res.warnings:
                warn(f"approach {k}: {w}")
    for v in verdicts:
        if fmt is Format.table:
            blank_line()
            print_table(v.table, title=f"one model or an ensemble of {v.k}? compute {v.compute:.3g} FLOPs")
        note(f"ensemble at {v.compute:.3g}: {v.verdict}: {v.reason}")


# ---------------------------------------------------------------------------------------------------------
# scaling optimal FIT... for hyperparameter laws (optimal learning rate / batch size)


def optimal_hyperparameters_command(
    names: list[str],
    fits: list[Any],
    *,
    compute: list[str] | None,
    N: list[str] | None,
    D: list[str] | None,
    at: dict[str, list[float]],
    ci: float | None,
    fmt: Format,
) -> None:
    """The optimum each hyperparameter fit predicts on the grid of --N, --D, --compute and --at values."""
    from scaling.cli.fitting import parse_values
    from scaling.analysis.hyperparameters import optimal_hyperparameters

    if ci is not None and not 0 < ci < 1:
        raise ScalingError(f"--ci {ci:g}: must lie strictly between 0 and 1, e.g. 0.9")
    given: dict[str, list[float]] = {}
    for column, option, values in (("N", "--N", N), ("D", "--D", D), ("C", "--compute", compute)):
        if values:
            given[column] = parse_values(values, option)
    for column, values in at.items():
        if column in given:
            raise ScalingError(f"--at {column}: {column} is given twice")
        given[column] = values
    size = int(np.prod([len(v) for v in given.values()])) if given else 0
    if size > 1_000_000:
        raise ScalingError(f"the grid has {size} points; at most 1000000")
    table = optimal_hyperparameters(fits, ci=ci, **given)
    outputs = [f.law.output for f in fits]
    drawn = [f for f in fits if len(f.draws)]
    if not drawn:
        note("no intervals: " + ("this fit carries" if len(fits) == 1 else "these fits carry") + " no bootstrap draws")
    caption = None
    if drawn:
        level = ci if ci is not None else drawn[0].ci
        caption = f"[lower, upper]: {level:.0%} interval from the bootstrap draws of " + ", ".join(
            f"{n} ({len(f.draws)})" for n, f in zip(names, fits) if len(f.draws))
    if "C" in table.columns and "C" not in given:
        note("C derived as 6ND for " + ", ".join(n for n, f in zip(names, fits) if "C" in f.law.inputs))
    if fmt is Format.table:
        table = with_intervals(table, outputs)
    laws = "; ".join(f"{n}: {f.law.formula}" for n, f in zip(names, fits))
    emit(table, fmt, title=f"optimal hyperparameters ({laws})", caption=caption)


def optimal_vocabulary_command(names: list[str], fits: list[Any], *, compute: list[str] | None, N: list[str],
                               at: dict[str, list[float]], ci: float | None, fmt: Format) -> None:
    """``scaling optimal tao2024-vocab --N 7e9 -C 7e21 --at d=4096``: the compute-optimal vocabulary size."""
    from scaling.cli.fitting import parse_values
    from scaling.laws.vocabulary import optimal_vocabulary_table

    if len(fits) > 1:
        raise ScalingError("one vocab fit at a time")
    if not compute:
        raise ScalingError("the optimal vocabulary needs --compute (training FLOPs) besides --N")
    if set(at) != {"d"}:
        raise ScalingError("the optimal vocabulary needs the embedding width: --at d=4096 (and no other --at)")
    if ci is not None and not 0 < ci < 1:
        raise ScalingError(f"--ci {ci:g}: must lie strictly between 0 and 1, e.g. 0.9")
    fit = fits[0]
    level = fit.ci if ci is None else ci
    draws = fit.draws.to_dict("records") if len(fit.draws) else []
    rows = optimal_vocabulary_table(fit.params, draws, parse_values(N, "--N"), parse_values(compute, "--compute"),
                                    at["d"], ci=level)
    table = pd.DataFrame(rows)
    if not draws:
        note("no intervals: this fit carries no bootstrap draws")
    if fmt is Format.table:
        table = with_intervals(table, ["V_opt"])
    emit(table, fmt, title=f"{names[0]} (vocab): compute-optimal vocabulary, dL_u/dV = 0 at D = C/(6(N + V d))",
         caption=f"[lower, upper]: {level:.0%} interval from {len(draws)} bootstrap draws" if draws else None)


# ---------------------------------------------------------------------------------------------------------
# scaling backtest


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
    from scaling.analysis.backtest import Holdout, backtest
    from scaling.fitting.fitfile import output_problem

    if bootstrap < 0:
        raise ScalingError(f"--bootstrap {bootstrap}: must be 0 or more")
    if seed < 0:  # numpy's generators take only non-negative seeds
        raise ScalingError(f"--seed {seed}: must be 0 or more")
    spec = Holdout.parse(holdout, tail=tail)
    laws = [p.strip() for item in (law or []) for p in item.split(",") if p.strip()]
    df = _read(results, map_, where)
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


# ---------------------------------------------------------------------------------------------------------
# scaling serve


@app.command("serve")
def serve_command(
    fits: Annotated[Path, typer.Option("--fits", help="Folder of fit files to serve (read-only).")] = Path("fits"),
    host: Annotated[str, typer.Option("--host", help="Address to listen on; loopback by default.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port (0 picks a free one).")] = 8000,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level: warning, info, debug.")] = "warning",
    workers: Annotated[int, typer.Option("--workers", help="Threads computing forecasts and allocations.")] = 2,
    queue: Annotated[int, typer.Option("--queue", help="Requests that may wait for a worker; more get 503.")] = 32,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to answer a forecast (wait included); 504 after.")] = 30.0,
) -> None:
    """Serve forecasts from the fits in a folder over HTTP (FastAPI; OpenAPI docs at /docs)."""
    from scaling.serve.app import LOOPBACK, FitStore, check_pool_options, serve

    # Checked before anything is printed, so a bad option is the one line on stderr.
    if not 0 <= port <= 65535:
        raise ScalingError(f"--port {port}: must be between 0 and 65535")
    levels = ("critical", "error", "warning", "info", "debug", "trace")  # uvicorn's LOG_LEVELS
    if log_level.lower() not in levels:
        raise ScalingError(f"--log-level {log_level!r}: expected one of {', '.join(levels)}")
    log_level = log_level.lower()
    check_pool_options(workers, queue, timeout)
    store = FitStore(fits)  # fails here, before uvicorn starts, if the folder is missing
    if host not in LOOPBACK:
        warn(f"listening on {host}: the API has no authentication; anyone who can reach this address can use it")
    note(
        f"serving {len(store.names())} fit(s) from {store.folder} at http://{host}:{port} (docs at /docs); "
        "read-only; Ctrl-C stops"
    )
    serve(fits, host=host, port=port, log_level=log_level, workers=workers, queue=queue, timeout=timeout)


# ---------------------------------------------------------------------------------------------------------
# scaling report


@app.command("report")
def report_command(
    results: Annotated[str, typer.Argument(help="Results table (CSV).", metavar="RESULTS.csv")],
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
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    title: Annotated[str | None, typer.Option("--title", help="Page title.")] = None,
    map_: MapOption = None,
    where: WhereOption = None,
) -> None:
    """A self-contained HTML report: data, fitted curves with extrapolation bands, residuals, isoFLOP profiles, backtest."""
    from scaling.analysis.backtest import Holdout, load_backtest
    from scaling.cli.fitting import parse_values
    from scaling.fitting.fitfile import load_fit
    from scaling.report.html import build_report

    if bootstrap < 0:
        raise ScalingError(f"--bootstrap {bootstrap}: must be 0 or more")
    if seed < 0:  # numpy's generators take only non-negative seeds
        raise ScalingError(f"--seed {seed}: must be 0 or more")
    Holdout.parse(holdout)
    budgets = parse_values(compute, "--compute") if compute else []
    loaded = [(Path(f).stem if f.endswith(".json") else f, load_fit(f)) for f in (fits or [])]
    saved = load_backtest(backtest_file) if backtest_file is not None else None
    df = _read(results, map_, where)
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
