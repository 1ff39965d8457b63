"""How a running sweep reports on stderr (``scaling sweep run``, ``scaling demo``): a progress bar on a terminal,
one plain line per event in a log, and SIGTERM stopping it like Ctrl-C."""

from __future__ import annotations

import time
from typing import Any


def duration_text(seconds: float) -> str:
    """``1h02m``, ``3m05s``, ``42s``."""
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def stop_on_sigterm() -> None:
    """SIGTERM (a scheduler, `kill`) stops a sweep like Ctrl-C: runs in flight checkpoint and stop."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


class ProgressPrinter:
    """Overall progress on stderr. On a terminal: a bar weighted by each run's estimated time with an ETA, and
    one line per finished run above it. Otherwise (a log file, CI): one plain line per event, flushed at once."""

    def __init__(self, plan: Any) -> None:
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
            text = f"[{duration_text(time.monotonic() - self.t0)}] {text} | {self._status()}"
        self.console.print(text, markup=False, style=style, soft_wrap=True)

    def event(self, kind: str, run: Any, info: dict) -> None:
        label = f"{run.run_id} {run.config.get('name', '')}"
        finished = kind in ("skip", "done", "fail", "block")
        self.counts["running"] += {"start": 1, "done": -1, "retry": -1, "fail": -1}.get(kind, 0)
        self.counts["skip"] += kind == "skip"
        self.counts["done"] += kind == "done"
        self.counts["fail"] += kind in ("fail", "block")
        if kind == "start" and self.progress is None:
            self._line(f"start   {label} (estimated {duration_text(run.est_seconds)})")
        elif kind == "done":
            cpu = info.get("cpu_seconds")
            self._line(f"done    {label} ({duration_text(info.get('seconds', 0))}" + (f", {cpu:.0f} CPU-s)" if cpu else ")"))
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
