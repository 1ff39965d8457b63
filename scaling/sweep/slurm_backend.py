"""Slurm through submitit: job arrays, requeue on timeout or pre-emption, submissions that retry.

- The runs that are ready together (a wave: every pretraining, grid and scratch run first, then the fine-tunes
  of each pretraining run when it has finished) go in one ``executor.batch()``: one ``sbatch --array`` whose
  ``slurm_array_parallelism`` caps how many run at once. The driver holds the fine-tunes back rather than
  submitting them with ``--dependency=afterok``: it also checks that the pretraining run wrote its final row
  and retries a failed one, neither of which Slurm can see.
- Each job runs :class:`SlurmRun`, a ``submitit.helpers.Checkpointable``. Before the time limit, or when the
  job is pre-empted, Slurm sends the pre-emption signal (USR2); submitit calls :meth:`SlurmRun.checkpoint`,
  which SIGTERMs the trainer (it saves a checkpoint at the end of its step and exits) and hands the same task
  back, so submitit requeues the job and the trainer resumes from its checkpoint.
- A submission that fails (sbatch refused: a busy controller, QOS limits) is tried ``submit_attempts`` times
  with a growing pause; if it still fails, its runs fail with the reason and the rest of the sweep goes on.

``cluster="local"``/``"debug"`` run submitit's local executors on this machine (laptops, tests): the same
submission, signals and requeue, without Slurm.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import shutil
import signal
import time
from typing import Any

import submitit
from submitit.core.job_environment import JobEnvironment

from scaling.errors import ScalingError
from scaling.sweep.task import MachineRank, RunOutcome, RunTask, execute_run, terminate_live


class SlurmRun(submitit.helpers.Checkpointable):
    """The job's callable: train one run; on timeout or pre-emption stop the trainer cleanly and requeue.

    ``grace_s``: how long the trainer may take to write its checkpoint after SIGTERM (Slurm's ``--signal``
    comes 90 s before the limit by default) before it is killed; the requeued job then resumes from the
    previous checkpoint.
    """

    def __init__(self, grace_s: float = 60.0):
        self.grace_s = grace_s

    def __call__(self, task: RunTask) -> RunOutcome:
        env = JobEnvironment()
        machine = None
        if (task.num_machines or 1) > 1:  # one task per node; accelerate's launcher joins them
            machine = MachineRank(task.num_machines, env.node, env.hostnames[0])
        return execute_run(task, machine=machine, ignore_signals=(preemption_signal(),))

    def checkpoint(self, task: RunTask) -> submitit.helpers.DelayedSubmission:
        terminate_live(wait_s=self.grace_s)  # the trainer's SIGTERM checkpoint, then resume on the requeue
        return super().checkpoint(task)


def preemption_signal() -> signal.Signals:
    """The signal submitit's job handler requeues on: USR2 unless SUBMITIT_PREEMPT_SIGNAL says otherwise (the
    rule of submitit's JobEnvironment, whose accessor is private)."""
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    return signal.Signals[name if name.startswith("SIG") else "SIG" + name]


class SubmissionError(RuntimeError):
    """sbatch (or the local executor) refused a submission every time it was tried."""


class SlurmBackend:
    """Job arrays through ``submitit.AutoExecutor``; ``cluster="slurm"`` needs sbatch, ``"local"``/``"debug"`` run here."""

    name = "slurm"

    def __init__(self, folder: str | os.PathLike, *, workers: int | None = None, cluster: str = "slurm",
                 parameters: dict[str, Any] | None = None, submit_attempts: int = 3, submit_backoff_s: float = 10.0,
                 grace_s: float = 60.0):
        if cluster not in ("slurm", "local", "debug"):
            raise ScalingError(f"--backend slurm: cluster must be slurm, local or debug, got {cluster!r}")
        if cluster == "slurm" and shutil.which("sbatch") is None:
            raise ScalingError("--backend slurm: sbatch not found on PATH (not on a Slurm login node?); "
                               "set slurm: {cluster: local} in the sweep file to run submitit's local executor")
        params = {"timeout_min": 24 * 60, "cpus_per_task": 1, "nodes": 1, "tasks_per_node": 1}
        params.update(parameters or {})
        try:
            self._executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
        except RuntimeError as exc:  # sbatch without srun: "Could not detect srun, are you indeed on a slurm cluster?"
            raise ScalingError(f"--backend slurm: {_first_line(exc)}") from None
        try:
            self._executor.update_parameters(**params)
        except (ValueError, TypeError) as exc:
            raise ScalingError(f"--backend slurm: bad submitit parameter: {str(exc).splitlines()[0]}") from None
        # Slurm queues jobs itself (slurm_array_parallelism caps an array); submitit's local executor starts
        # every job at once, so the driver caps it at K.
        self.slots = workers if cluster != "slurm" else None
        self.submit_attempts = max(1, submit_attempts)
        self.submit_backoff_s = submit_backoff_s
        self.grace_s = grace_s
        self._waiters = cf.ThreadPoolExecutor(max_workers=64, thread_name_prefix="submitit-wait")
        self.jobs: list[Any] = []
        self.arrays: list[list[str]] = []  # job ids of each submission (one array per wave)
        self.failed_submissions: list[str] = []  # the reason of every refused attempt

    def submit(self, task: RunTask) -> cf.Future:
        return self.submit_many([task])[0]

    def submit_many(self, tasks: list[RunTask]) -> list[cf.Future]:
        """One submission (a job array when there are several tasks); futures of the runs' outcomes. A submission
        refused every time gives futures that fail with :class:`SubmissionError` (the driver reports those runs
        as failed and goes on with the others)."""
        try:
            jobs = self.submit_jobs(tasks)
        except SubmissionError as exc:
            return [_failed(exc) for _ in tasks]
        return [self._waiters.submit(job.result) for job in jobs]

    def submit_jobs(self, tasks: list[RunTask]) -> list[Any]:
        """Submit without waiting: ``executor.batch()`` (one ``sbatch --array``), tried ``submit_attempts`` times
        with a growing pause; the submitit jobs, or :class:`SubmissionError` with sbatch's reason."""
        runner = SlurmRun(self.grace_s)
        for attempt in range(1, self.submit_attempts + 1):
            try:
                with self._executor.batch():
                    jobs = [self._executor.submit(runner, task) for task in tasks]
                break
            except Exception as exc:  # noqa: BLE001 -- sbatch's refusals come as several exception types
                reason = f"{type(exc).__name__}: {_first_line(exc)}"
                self.failed_submissions.append(reason)
                if attempt == self.submit_attempts:
                    raise SubmissionError(f"submission failed {attempt} time(s): {reason}") from None
                time.sleep(self.submit_backoff_s * attempt)
        self.jobs += jobs
        self.arrays.append([job.job_id for job in jobs])
        return jobs

    def cancel(self) -> None:
        for job in self.jobs:
            if not job.done():
                job.cancel(check=False)

    def close(self) -> None:
        self._waiters.shutdown(wait=True)


def _failed(exc: BaseException) -> cf.Future:
    fut: cf.Future = cf.Future()
    fut.set_exception(exc)
    return fut


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # sbatch's own message ("sbatch: error: ...") says why; submitit wraps it in several lines.
    for ln in lines:
        if "error" in ln.lower():
            return ln[:300]
    return lines[0][:300] if lines else ""
