"""Training a plan: which runs go to the backend when, retries, and what is already finished.

:func:`run_plan` submits runs whose dependencies are met (a fine-tune waits for its pretraining run) in waves
(the runs that are ready together go to the backend together: one job array on Slurm), skips runs already
finished in results.csv, retries a failed run once, and reports each event (the CLI draws its progress bar from
them). It orders submissions; placement and parallelism belong to the backend (:mod:`scaling.sweep.backends`).
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from scaling.sweep.planner import Plan, PlannedRun
from scaling.sweep.task import RunOutcome, RunTask
from scaling.sweep.timing import submission_order

EventHandler = Callable[[str, PlannedRun, dict], None]


def finished_run_ids(results: str | os.PathLike) -> set[str]:
    """Run ids that are finished in ``results``: the trainer's rule (``scaling.train.record.is_finished``), a
    final row of the main branch (branch 0; a WSD run writes it after all of its cooldown branches)."""
    path = Path(results)
    if not path.exists() or path.stat().st_size == 0:
        return set()
    try:
        df = pd.read_csv(path, usecols=lambda c: c in ("run_id", "final", "branch"), dtype=str)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, ValueError):
        return set()
    if "run_id" not in df.columns or "final" not in df.columns:
        return set()
    done = df["final"].str.strip() == "1"
    if "branch" in df.columns:
        done &= df["branch"].fillna("0").str.strip().isin(["0", ""])
    return set(df.loc[done, "run_id"].dropna().str.strip())


def logs_dir(plan: Plan) -> Path:
    """Where run logs go: ``<out_dir>/logs`` of the plan's runs (next to their checkpoints)."""
    return Path(plan.runs[0].config.get("out_dir") or "runs") / "logs"


def check_results(results: str | os.PathLike) -> None:
    """Fail before anything trains when ``results`` cannot take the trainer's rows (other header, not writable)."""
    from scaling.results import check_writable
    from scaling.train.record import HEADER

    check_writable(results, HEADER)


@dataclass
class SweepReport:
    total: int
    skipped: list[str] = field(default_factory=list)  # already finished before this call
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # run_id -> last line of its log
    blocked: list[str] = field(default_factory=list)  # never started: a dependency failed
    retried: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # run_id -> CPU time of its successful attempt

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked


def run_plan(
    plan: Plan,
    backend: Any,
    *,
    results: str | os.PathLike,
    logs: str | os.PathLike,
    retries: int = 1,
    on_event: EventHandler | None = None,
) -> SweepReport:
    """Train every unfinished run of ``plan`` on ``backend``; rows go to ``results``.

    ``on_event(kind, run, info)`` is called with kind in {"skip", "start", "done", "retry", "fail", "block"}
    (the CLI draws its progress bar from it).
    """
    started = time.monotonic()
    sweep = _SweepInFlight(plan, backend, Path(results).resolve(), Path(logs).resolve(), retries,
                           on_event or (lambda kind, run, info: None))
    try:
        while sweep.pending or sweep.running:
            sweep.submit(sweep.ready_wave())
            if not sweep.running:  # nothing can start: dependencies outside the plan that never finished
                sweep.block_unreachable()
                break
            done, _ = cf.wait(list(sweep.running), return_when=cf.FIRST_COMPLETED)
            for fut in done:
                sweep.settle(fut)
    except BaseException:  # Ctrl-C, SIGTERM: stop the runs in flight (they checkpoint and resume next time)
        backend.cancel()
        raise
    finally:
        backend.close()
    sweep.report.seconds = time.monotonic() - started
    return sweep.report


class _SweepInFlight:
    """The state of one :func:`run_plan` call: runs waiting, runs on the backend, attempts, the report."""

    def __init__(self, plan: Plan, backend: Any, results: Path, logs: Path, retries: int, note: EventHandler):
        self.plan, self.backend, self.results, self.logs = plan, backend, results, logs
        self.retries, self.note = retries, note
        self.runs = plan.by_id()
        finished = finished_run_ids(results)
        self.report = SweepReport(total=len(plan.runs))
        self.pending: dict[str, PlannedRun] = {}  # in submission order
        for run in submission_order(plan.runs):
            if run.run_id in finished:
                self.report.skipped.append(run.run_id)
                note("skip", run, {})
            else:
                self.pending[run.run_id] = run
        self.complete = set(self.report.skipped)
        self.attempts: dict[str, int] = {}
        self.running: dict[cf.Future, str] = {}

    def ready_wave(self) -> list[PlannedRun]:
        """The pending runs whose dependencies are complete, as many as the backend has free slots for."""
        slots = self.backend.slots
        wave: list[PlannedRun] = []
        for rid, run in list(self.pending.items()):
            if slots is not None and len(self.running) + len(wave) >= slots:
                break
            if all(dep in self.complete for dep in run.depends_on):
                wave.append(self.pending.pop(rid))
        return wave

    def submit(self, wave: list[PlannedRun]) -> None:
        """Runs that are ready together go to the backend together (one job array on Slurm)."""
        if not wave:
            return
        tasks = [self._task(run) for run in wave]
        many = getattr(self.backend, "submit_many", None)
        futures = many(tasks) if many is not None else [self.backend.submit(task) for task in tasks]
        for run, fut in zip(wave, futures):
            self.attempts[run.run_id] = self.attempts.get(run.run_id, 0) + 1
            self.running[fut] = run.run_id
            self.note("start", run, {"attempt": self.attempts[run.run_id]})

    def _task(self, run: PlannedRun) -> RunTask:
        return RunTask.from_launch(self.plan.sweep.launch, run_id=run.run_id, config=run.config,
                                   results=str(self.results), log=str(self.logs / f"{run.run_id}.log"), cwd=os.getcwd())

    def settle(self, fut: cf.Future) -> None:
        """A finished attempt: done (exit 0 and its final row written), retried first in the next wave, or failed."""
        rid = self.running.pop(fut)
        run = self.runs[rid]
        try:
            outcome = fut.result()
        except Exception as exc:  # noqa: BLE001 -- any backend error (worker died, job cancelled) is a failed attempt
            outcome = RunOutcome(rid, -1, 0.0, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        # A zero exit status is not enough: the run must have written its final row(s).
        ok = outcome.returncode == 0 and rid in finished_run_ids(self.results)
        if ok:
            self.complete.add(rid)
            self.report.done.append(rid)
            self.report.cpu_seconds[rid] = outcome.cpu_seconds
            self.note("done", run, {"seconds": outcome.seconds, "cpu_seconds": outcome.cpu_seconds})
        elif self.attempts[rid] <= self.retries:
            self.report.retried.append(rid)
            self.note("retry", run, {"message": outcome.message, "returncode": outcome.returncode})
            self.pending = {rid: run, **self.pending}  # first in the next wave
        else:
            message = outcome.message or f"exit status {outcome.returncode}"
            if outcome.returncode == 0:
                message = f"exited 0 but wrote no final row to {self.results} ({message})"
            self.report.failed[rid] = message
            self.note("fail", run, {"message": message, "log": str(self.logs / f'{rid}.log')})
            self._block_dependents(rid)

    def _block_dependents(self, failed_id: str) -> None:
        for rid, run in list(self.pending.items()):
            if failed_id in run.depends_on:
                self.pending.pop(rid)
                self.report.blocked.append(rid)
                self.note("block", run, {"because": failed_id})
                self._block_dependents(rid)

    def block_unreachable(self) -> None:
        """Nothing runs and nothing can start: every pending run waits on a dependency that will never finish."""
        for rid, run in list(self.pending.items()):
            self.pending.pop(rid)
            self.report.blocked.append(rid)
            self.note("block", run, {"because": ", ".join(d for d in run.depends_on if d not in self.complete)})
