"""What the user sees and sends while a run trains: the progress bar (main process) and SIGTERM handling."""

from __future__ import annotations

import signal
import time


class Progress:
    """A rich progress bar with tokens/s, MFU and ETA (main process only; refreshed at most 4 times a second)."""

    def __init__(self, console, steps: int, start: int, flops_per_token: float, peak: float | None, batch_tokens: int):
        self.console = console
        self.flops_per_token, self.peak = flops_per_token, peak
        self.last = 0.0
        self.bar = None
        if console is None:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = self.bar.add_task("train", total=steps, completed=start, speed="")

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.last = 0.0
            self.bar.__exit__(*exc)

    def finish(self, step: int, tokens: int, seconds: float) -> None:
        self.last = 0.0
        self.update(step, tokens, seconds)

    def update(self, step: int | None, tokens: int, seconds: float) -> None:
        if self.bar is None:
            return
        now = time.perf_counter()
        if now - self.last < 0.25:
            return
        self.last = now
        rate = tokens / seconds if seconds > 0 else 0.0
        mfu = f" MFU {100 * self.flops_per_token * rate / self.peak:.0f}%" if self.peak else ""
        kwargs = {"speed": f"{rate:,.0f} tok/s{mfu}"}
        if step is not None:
            kwargs["completed"] = step
        self.bar.update(self.task, **kwargs)


def install_sigterm(trainer):
    """SIGTERM (a scheduler's pre-emption) -> checkpoint at the next step and stop; a re-run resumes."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        trainer.stop_requested = True

    return signal.signal(signal.SIGTERM, handler)


def restore_sigterm(old) -> None:
    import threading

    if old is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, old)
