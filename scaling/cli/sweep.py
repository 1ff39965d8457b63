"""``scaling sweep plan|run``: the runs a sweep file expands to, and training them into one results table.

The plan comes from :mod:`scaling.sweep.planner`, execution from :mod:`scaling.sweep.driver`; progress is printed
by :mod:`scaling.cli.progress`. Sweep-file format and examples: ``docs/sweeps.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from scaling.cli import app
from scaling.cli.options import BackendOption, FormatOption, WorkersOption
from scaling.cli.output import Format, emit, note, print_json
from scaling.cli.parsing import check_workers
from scaling.cli.progress import ProgressPrinter, duration_text, stop_on_sigterm
from scaling.errors import ScalingError

sweep_app = typer.Typer(help="Plan and run training sweeps described by a sweep file (configs/sweeps/*.yaml).",
                        no_args_is_help=True)
app.add_typer(sweep_app, name="sweep")

SweepFileArg = Annotated[Path, typer.Argument(help="Sweep file (YAML), e.g. configs/sweeps/demo.yaml.", metavar="FILE")]


@sweep_app.command("plan")
def plan_command(
    file: SweepFileArg,
    workers: WorkersOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Show the runs a sweep file expands to: ids, N, D, FLOPs and estimated time on this machine."""
    from scaling.sweep.planner import plan, short_count
    from scaling.sweep.timing import estimate_wall_seconds

    check_workers(workers)
    p = plan(file)
    k = workers or 2
    df = p.to_frame()
    wall = estimate_wall_seconds(p, k)
    total_flops = float(df["flops"].sum())
    summary = (f"{len(p)} runs, {total_flops:.3g} training FLOPs, about {duration_text(wall)} with {k} workers "
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

    check_workers(workers)
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



def _finish(report: Any, results: Path, logs: Path) -> None:
    note(f"{len(report.done)} trained, {len(report.skipped)} already finished, {len(report.failed)} failed, "
         f"{len(report.blocked)} not started; {duration_text(report.seconds)}; rows in {results}; logs in {logs}")
    if not report.ok:
        first, message = next(iter(report.failed.items())) if report.failed else (report.blocked[0], "a run it depends on failed")
        raise ScalingError(f"{len(report.failed)} run(s) failed and {len(report.blocked)} could not start; "
                           f"first: {first}: {message} (log: {logs / (first + '.log')})")
