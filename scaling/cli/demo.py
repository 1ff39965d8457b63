"""``scaling demo``: the main job end to end (:mod:`scaling.demo`: train the demo sweep, fit chinchilla, forecast a
model 100x larger, write plots), and how its result prints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from scaling.cli import app
from scaling.cli.options import BackendOption, FormatOption, WorkersOption
from scaling.cli.output import Format, note, print_json, warn
from scaling.cli.parsing import check_workers
from scaling.cli.progress import ProgressPrinter, stop_on_sigterm


@app.command("demo")
def demo_command(
    quick: Annotated[bool, typer.Option("--quick", help="A tiny sweep (about a minute) instead of the full demo.")] = False,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for results.csv, the fit, plots, runs and logs.")] = Path("runs/demo"),
    backend: BackendOption = "local",
    workers: WorkersOption = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", "-b", help="Bootstrap resamples for the intervals.")] = 200,
    fmt: FormatOption = Format.table,
) -> None:
    """The main job: run configs/sweeps/demo.yaml, fit chinchilla, forecast a 100x larger model, write plots."""
    from scaling.demo import demo_sweep_file, run_demo

    check_workers(workers)
    sweep_file = demo_sweep_file(quick)
    note(f"sweep {sweep_file}; output in {out}/")
    if quick:
        note("--quick: a one-minute check of the whole pipeline; models this small do not meet the quality targets")
    stop_on_sigterm()
    printers: list[ProgressPrinter] = []

    def progress(p) -> Callable:
        printers.append(ProgressPrinter(p))
        return printers[-1].event

    try:
        result = run_demo(sweep_file, out=out, backend=backend, workers=workers, n_bootstrap=bootstrap,
                          on_event_factory=progress)
    finally:
        for printer in printers:
            printer.close()
    print_demo(result, fmt)
    if not result.report.ok:
        warn(f"{len(result.report.failed)} run(s) failed; the fit used the {len(result.data)} rows that exist")


def print_demo(result: Any, fmt: Format | str = "table") -> None:
    """Parameter table, fit quality with the two checks, the forecast and where the files are."""
    import numpy as np

    from scaling.cli.fit_output import print_fit
    from scaling.cli.output import blank_line, print_csv, print_fields, print_table
    from scaling.demo import FORECAST_FACTOR

    fmt = Format(fmt)
    sizes = sorted(result.data["N"].unique())
    if fmt is Format.json:
        print_json({
            "sweep": str(result.sweep_file), "runs": len(result.plan.runs), "points": len(result.data),
            "sizes": sizes, "params": result.fit.params, "intervals": result.fit.intervals,
            "quality": result.fit.quality.to_dict(), "checks": result.checks,
            "leave_largest_out": {k: v for k, v in result.holdout.items() if k != "table"} | {"table": result.holdout["table"]},
            "forecast": result.forecast, "fit_file": str(result.fit_path), "plots": [str(p) for p in result.plots],
            "seconds": result.seconds, "cpu_seconds_training": sum(result.report.cpu_seconds.values()),
        })
        return
    if fmt is Format.csv:
        print_csv(result.forecast)
        return
    print_fit(result.fit, Format.table, result.fit_path)
    blank_line()
    h = result.holdout
    per_size = result.data.groupby("N")["D"].nunique()
    span = (f"{len(sizes)} ({sizes[0]:.3g} to {sizes[-1]:.3g} non-embedding parameters, "
            f"{np.log10(sizes[-1] / sizes[0]):.2f} decades)")
    print_fields([
        ("sizes trained", span),
        ("budgets per size", str(per_size.min()) if per_size.min() == per_size.max() else f"{per_size.min()} to {per_size.max()}"),
        ("residual RMSE (log)", _check_text(result.checks["rmse_log"], "{:.4f}")),
        (f"leave-largest-out (N={h['N']:.3g})", _check_text(result.checks["leave_largest_out"], "{:.2%}")
         + f"; mean {h['mean_abs_rel_error']:.2%} over {len(h['table'])} points, fitted on {h['n_train']}"),
        ("  inside its 95% prediction interval", coverage_text(h)),
    ], title="is the fit believable?")
    blank_line()
    print_table(forecast_rows(result.forecast),
                title=f"forecast: a model {FORECAST_FACTOR:g}x larger than the largest trained")
    blank_line()
    note(f"plots: {', '.join(str(p) for p in result.plots)}")
    cpu = sum(result.report.cpu_seconds.values())
    note(f"demo finished in {result.seconds / 60:.1f} min ({len(result.report.done)} runs trained, "
         f"{len(result.report.skipped)} already done; the training runs used {cpu / 60:.1f} CPU-minutes)")


def coverage_text(holdout: dict[str, Any]) -> str:
    """The leave-largest-out coverage for people; says why when the backtest withheld its intervals (NaN)."""
    coverage = float(holdout["coverage_95"])
    if coverage == coverage:
        return f"{coverage:.0%} of the held-out points"
    return f"no intervals ({holdout.get('notes') or 'withheld'})"


def forecast_rows(forecast: Any) -> Any:
    """The demo's forecast rows as ``scaling forecast`` prints them: confidence and prediction intervals as
    ``[lower, upper]``, the extrapolation with its distance (JSON and CSV keep every column)."""
    from scaling.cli.forecast_output import interval_text

    return interval_text(forecast)


def _check_text(check: dict[str, Any], pattern: str) -> str:
    verdict = "meets" if check["ok"] else "MISSES"
    return f"{pattern.format(check['value'])} ({verdict} the target <= {pattern.format(check['target'])})"
