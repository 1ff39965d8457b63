"""``scaling sweep plan|run`` and ``scaling demo``: parse options, call the library, print.

The plan comes from :mod:`scaling.sweep.planner`, execution from :mod:`scaling.sweep.driver`, the main job from
:mod:`scaling.demo`. Sweep-file format and examples: ``docs/sweeps.md``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from scaling.cli import app
from scaling.cli.options import FormatOption
from scaling.cli.output import Format, emit, note, print_json, warn
from scaling.errors import ScalingError

sweep_app = typer.Typer(help="Plan and run training sweeps described by a sweep file (configs/sweeps/*.yaml).",
                        no_args_is_help=True)
app.add_typer(sweep_app, name="sweep")

SweepFileArg = Annotated[Path, typer.Argument(help="Sweep file (YAML), e.g. configs/sweeps/demo.yaml.", metavar="FILE")]
WorkersOption = Annotated[
    int | None, typer.Option("--workers", "-k", help="Runs at once (local: pool size; default 2, one thread each).")
]
BackendOption = Annotated[str, typer.Option("--backend", help="local | ray | slurm.")]


def _check_workers(workers: int | None) -> None:
    if workers is not None and workers < 1:  # 0 must not quietly mean the default
        raise ScalingError(f"--workers {workers}: must be at least 1")


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


@sweep_app.command("plan")
def plan_command(
    file: SweepFileArg,
    workers: WorkersOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Show the runs a sweep file expands to: ids, N, D, FLOPs and estimated time on this machine."""
    from scaling.sweep.planner import plan, short_count
    from scaling.sweep.timing import estimate_wall_seconds

    _check_workers(workers)
    p = plan(file)
    k = workers or 2
    df = p.to_frame()
    wall = estimate_wall_seconds(p, k)
    total_flops = float(df["flops"].sum())
    summary = (f"{len(p)} runs, {total_flops:.3g} training FLOPs, about {_duration(wall)} with {k} workers "
               f"on this machine (estimate: {p.settings['throughput']})")
    if fmt is Format.json:
        runs = df.to_dict(orient="records")
        for row, run in zip(runs, p.runs):  # JSON gets lists and each run's full config (for tools)
            row["budgets"] = list(run.budgets)
            row["depends_on"] = list(run.depends_on)
            row["config"] = run.config
        print_json({"name": p.name, "runs": runs, "total_flops": total_flops, "estimated_seconds": wall, "workers": k,
                    "throughput_model": p.settings["throughput"]})
        return
    if fmt is Format.table:
        # People get the columns that say something: empty ones (no U, no transfer) and labels are left out.
        shown = df.drop(columns=["N_total", "name", "C"])
        shown["budgets"] = [",".join(short_count(float(b)) for b in bs.split()) for bs in shown["budgets"]]
        shown = shown[[c for c in shown.columns if shown[c].replace("", None).notna().any()]]
        emit(shown, fmt, title=f"sweep {p.name} ({file})", caption=summary)
    else:
        emit(df, fmt)
        note(summary)


@sweep_app.command("run")
def run_command(
    file: SweepFileArg,
    backend: BackendOption = "local",
    workers: WorkersOption = None,
    results: Annotated[Path, typer.Option("--results", "-r", help="Results table every run appends to.")] = Path("results.csv"),
    retries: Annotated[int, typer.Option("--retries", help="Times a failed run is tried again.")] = 1,
    gpus: Annotated[int | None, typer.Option("--gpus", min=0, help="GPUs per run, instead of the sweep file's "
                                             "resources.gpus (0: train on the CPU).")] = None,
) -> None:
    """Train every run of a sweep that is not finished yet; rows go to one results table."""
    from scaling.sweep.backends import make_backend
    from scaling.sweep.driver import check_results, logs_dir, run_plan
    from scaling.sweep.planner import plan

    _check_workers(workers)
    p = plan(file)
    if gpus is not None:  # the same sweep file on a laptop (--gpus 0) and on a GPU node
        p.sweep.resources.gpus = gpus
    check_results(results)  # a results file with another header fails here, before anything trains
    stop_on_sigterm()
    logs = logs_dir(p)
    be = make_backend(backend, workers=workers, folder=logs.parent, plan=p)
    printer = ProgressPrinter(p)
    try:
        report = run_plan(p, be, results=results, logs=logs, retries=retries, on_event=printer.event)
    finally:
        printer.close()
    _finish(report, results, logs)


def stop_on_sigterm() -> None:
    """SIGTERM (a scheduler, `kill`) stops a sweep like Ctrl-C: runs in flight checkpoint and stop."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _finish(report, results: Path, logs: Path) -> None:
    note(f"{len(report.done)} trained, {len(report.skipped)} already finished, {len(report.failed)} failed, "
         f"{len(report.blocked)} not started; {_duration(report.seconds)}; rows in {results}; logs in {logs}")
    if not report.ok:
        first, message = next(iter(report.failed.items())) if report.failed else (report.blocked[0], "a run it depends on failed")
        raise ScalingError(f"{len(report.failed)} run(s) failed and {len(report.blocked)} could not start; "
                           f"first: {first}: {message} (log: {logs / (first + '.log')})")


class ProgressPrinter:
    """Overall progress on stderr. On a terminal: a bar weighted by each run's estimated time with an ETA, and
    one line per finished run above it. Otherwise (a log file, CI): one plain line per event, flushed at once."""

    def __init__(self, plan) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True, highlight=False)
        self.total = len(plan.runs)
        self.counts = {"done": 0, "skip": 0, "running": 0, "fail": 0}
        self.t0 = time.monotonic()
        self.progress = None
        if self.console.is_terminal:
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                                     TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                     console=self.console)
            self.task = self.progress.add_task(self._status(), total=sum(r.est_seconds for r in plan.runs) or 1.0)
            self.progress.start()

    def _status(self) -> str:
        c = self.counts
        return f"runs {c['done'] + c['skip']}/{self.total} ({c['running']} running, {c['fail']} failed)"

    def _line(self, text: str, style: str | None = None) -> None:
        if self.progress is None:
            text = f"[{_duration(time.monotonic() - self.t0)}] {text} | {self._status()}"
        self.console.print(text, markup=False, style=style, soft_wrap=True)

    def event(self, kind: str, run, info: dict) -> None:
        label = f"{run.run_id} {run.config.get('name', '')}"
        finished = kind in ("skip", "done", "fail", "block")
        self.counts["running"] += {"start": 1, "done": -1, "retry": -1, "fail": -1}.get(kind, 0)
        self.counts["skip"] += kind == "skip"
        self.counts["done"] += kind == "done"
        self.counts["fail"] += kind in ("fail", "block")
        if kind == "start" and self.progress is None:
            self._line(f"start   {label} (estimated {_duration(run.est_seconds)})")
        elif kind == "done":
            cpu = info.get("cpu_seconds")
            self._line(f"done    {label} ({_duration(info.get('seconds', 0))}" + (f", {cpu:.0f} CPU-s)" if cpu else ")"))
        elif kind == "retry":
            self._line(f"retry   {label}: {info.get('message', '')}", style="yellow")
        elif kind == "fail":
            self._line(f"FAILED  {label}: {info.get('message', '')} (log: {info.get('log')})", style="red")
        elif kind == "block":
            self._line(f"blocked {label}: {info.get('because')} failed", style="red")
        if self.progress is not None:
            self.progress.update(self.task, description=self._status(), advance=run.est_seconds if finished else 0)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


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

    _check_workers(workers)
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
            "quality": result.fit.quality, "checks": result.checks,
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
