"""Running a plan: the trainer as a subprocess per run, on a local pool, a Ray cluster or Slurm (submitit).

Every backend runs the same task, :func:`execute_run`: write the run's config to a file, start the trainer
(``python trainers/train.py`` or ``accelerate launch trainers/train.py``) with ``--results PATH``, send its output
to a log file, return the exit status. The trainer appends its rows to the one results.csv under a file lock,
so the backends never handle rows. A backend only turns a task into a ``concurrent.futures.Future``:

- :class:`LocalBackend`: a pool of K threads, each waiting on one trainer subprocess (K single-thread runs side
  by side use 2 CPU cores better than one two-thread run; CPU-BUDGET.md).
- :class:`RayBackend`: one Ray task per run with ``num_cpus=1`` on an existing cluster (``address="auto"``) or a
  local one started with K CPUs; Ray does the placement.
- :class:`SlurmBackend`: one submitit job per run (``AutoExecutor``; ``cluster="local"``/``"debug"`` run
  submitit's local executors, which is what the tests and laptops use).

:func:`run_plan` submits runs whose dependencies are met (a fine-tune waits for its pretraining run), skips runs
already finished in results.csv, retries a failed run once, and shows overall progress. It orders submissions;
placement and parallelism belong to the pool, Ray or Slurm.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scaling.errors import ScalingError
from scaling.sweep import Plan, PlannedRun, finished_run_ids, submission_order

BACKENDS = ("local", "ray", "slurm")


# ---------------------------------------------------------------------------------------------------------
# The task every backend runs


@dataclass(frozen=True)
class RunTask:
    """Everything a worker needs to train one run (picklable: it travels to Ray workers and Slurm jobs)."""

    run_id: str
    config: dict[str, Any]
    results: str  # absolute path of results.csv (on a shared filesystem for multi-machine backends)
    log: str  # absolute path of the run's log file
    launcher: str = "python"  # "python" | "accelerate"
    num_processes: int = 1
    accelerate_args: tuple[str, ...] = ()
    cwd: str = "."


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    returncode: int
    seconds: float  # wall time
    message: str  # the last line of the trainer's output: its one-line error when it failed
    cpu_seconds: float = 0.0  # user + system CPU time of the trainer process(es): the cost on an idle machine


def trainer_script() -> Path:
    """trainers/train.py of this checkout (the package is installed editable next to it)."""
    path = Path(__file__).resolve().parents[1] / "trainers" / "train.py"
    if not path.exists():
        raise ScalingError(f"trainer entry point {path} not found: install the package editable from its checkout (pip install -e .)")
    return path


def trainer_command(task: RunTask, config_file: Path) -> list[str]:
    script = str(trainer_script())
    args = [script, "--config", str(config_file), "--results", task.results]
    if task.launcher == "accelerate":
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1",
                  "--num_processes", str(task.num_processes), "--mixed_precision", "no", "--dynamo_backend", "no"]
        if task.num_processes > 1:
            # `--cpu --num_processes 2` silently starts ONE process (CPU-BUDGET.md); --multi_gpu starts them (gloo).
            launch.append("--multi_gpu")
        return launch + list(task.accelerate_args) + args
    return [sys.executable] + args


# Trainer processes started by execute_run in this process, so that a cancelled sweep can stop them.
_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()


def terminate_live() -> None:
    """SIGTERM every trainer this process started; the trainer saves a checkpoint and exits, so a re-run resumes."""
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()


def execute_run(task: RunTask) -> RunOutcome:
    """Train one run in a subprocess; its output goes to ``task.log``. Never raises for a failed run."""
    start = time.monotonic()
    log = Path(task.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix=f"{task.run_id}-", dir=log.parent, delete=False) as fh:
        yaml.safe_dump(task.config, fh, sort_keys=False)
        config_file = Path(fh.name)
    threads = str(task.config.get("threads") or 1)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, PYTHONUNBUFFERED="1")
    cpu = 0.0
    try:
        with open(log, "a") as out:
            out.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} run {task.run_id} on {os.uname().nodename}\n")
            out.flush()
            proc = subprocess.Popen(trainer_command(task, config_file), stdout=out, stderr=subprocess.STDOUT,
                                    cwd=task.cwd, env=env)
            with _LIVE_LOCK:
                _LIVE.add(proc)
            try:
                # wait4 gives this child's own CPU time (getrusage(RUSAGE_CHILDREN) would mix in the other
                # workers' runs); an accelerate launcher's CPU time includes the processes it started.
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                cpu = usage.ru_utime + usage.ru_stime
            except ChildProcessError:  # already reaped elsewhere
                proc.wait()
            except BaseException:  # interrupted: do not leave the trainer running
                proc.terminate()
                proc.wait()
                raise
            finally:
                with _LIVE_LOCK:
                    _LIVE.discard(proc)
        code = proc.returncode
    except OSError as exc:  # the interpreter or accelerate could not start
        code, note = 127, f"could not start the trainer: {exc}"
        with open(log, "a") as out:
            out.write(note + "\n")
    finally:
        config_file.unlink(missing_ok=True)
    return RunOutcome(task.run_id, code, time.monotonic() - start, _last_line(log), cpu)


def _last_line(path: Path, limit: int = 20_000) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - limit))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    # Progress bars rewrite their line with carriage returns; the message is the last real line.
    lines = [ln.split("\r")[-1].strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    return lines[-1][:300] if lines else ""


# ---------------------------------------------------------------------------------------------------------
# Backends: a task in, a Future out


class LocalBackend:
    """K worker threads, each running one trainer subprocess at a time."""

    name = "local"

    def __init__(self, workers: int = 2):
        if workers < 1:
            raise ScalingError(f"--workers must be at least 1, got {workers}")
        self.slots = workers
        self._pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sweep")

    def submit(self, task: RunTask) -> cf.Future:
        return self._pool.submit(execute_run, task)

    def cancel(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        terminate_live()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class RayBackend:
    """One Ray task per run (num_cpus=1), on an existing cluster or a local one with ``workers`` CPUs."""

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None, **init_kwargs: Any):
        try:
            import ray
        except ImportError:
            raise ScalingError("--backend ray: ray is not installed (pip install 'scaling[sweep]' or pip install ray)") from None
        self._ray = ray
        self._started = False
        quiet = {"log_to_driver": False, "logging_level": "ERROR", "include_dashboard": False}
        if address and address not in ("auto", "local"):
            _probe(address)  # ray.init retries an unreachable address for minutes; fail in seconds instead
        if not ray.is_initialized():
            try:
                if address:
                    ray.init(address=address, **{**quiet, **init_kwargs})
                else:
                    try:  # an existing cluster on this machine (started with `ray start --head`) or RAY_ADDRESS
                        ray.init(address="auto", **{**quiet, **init_kwargs})
                    except (ConnectionError, RuntimeError, ValueError):
                        ray.init(num_cpus=workers or os.cpu_count() or 1, **{**quiet, **init_kwargs})
            except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
                where = address or "a local cluster"
                raise ScalingError(f"--backend ray: cannot reach {where}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
            self._started = True
        self.slots = None  # Ray places tasks by their num_cpus
        self._remote = ray.remote(num_cpus=1, max_retries=0)(execute_run)
        self._refs: list[Any] = []

    def submit(self, task: RunTask) -> cf.Future:
        ref = self._remote.remote(task)
        self._refs.append(ref)
        return ref.future()

    def cancel(self) -> None:
        for ref in self._refs:
            self._ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()


def _probe(address: str, timeout: float = 5.0) -> None:
    """Raise a one-line error unless something listens at a Ray address (``host:port`` or ``ray://host:port``)."""
    import socket

    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ScalingError(f"--backend ray: address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ScalingError(f"--backend ray: no Ray cluster reachable at {address} ({exc.strerror or type(exc).__name__})") from None


class SlurmBackend:
    """One submitit job per run; ``cluster="slurm"`` needs sbatch, ``"local"``/``"debug"`` run on this machine."""

    name = "slurm"

    def __init__(self, folder: str | os.PathLike, *, workers: int | None = None, cluster: str = "slurm",
                 parameters: dict[str, Any] | None = None):
        try:
            import submitit
        except ImportError:
            raise ScalingError("--backend slurm: submitit is not installed (pip install 'scaling[sweep]' or pip install submitit)") from None
        if cluster not in ("slurm", "local", "debug"):
            raise ScalingError(f"--backend slurm: cluster must be slurm, local or debug, got {cluster!r}")
        if cluster == "slurm" and shutil.which("sbatch") is None:
            raise ScalingError("--backend slurm: sbatch not found on PATH (not on a Slurm login node?); "
                               "set slurm: {cluster: local} in the sweep file to run submitit's local executor")
        params = {"timeout_min": 24 * 60, "cpus_per_task": 1, "nodes": 1, "tasks_per_node": 1}
        params.update(parameters or {})
        self._executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
        try:
            self._executor.update_parameters(**params)
        except (ValueError, TypeError) as exc:
            raise ScalingError(f"--backend slurm: bad submitit parameter: {str(exc).splitlines()[0]}") from None
        # Slurm queues jobs itself; submitit's local executor starts every job at once, so cap it at K.
        self.slots = workers if cluster != "slurm" else None
        self._waiters = cf.ThreadPoolExecutor(max_workers=64, thread_name_prefix="submitit-wait")
        self.jobs: list[Any] = []

    def submit(self, task: RunTask) -> cf.Future:
        job = self._executor.submit(execute_run, task)
        self.jobs.append(job)
        return self._waiters.submit(job.result)

    def cancel(self) -> None:
        for job in self.jobs:
            if not job.done():
                job.cancel(check=False)

    def close(self) -> None:
        self._waiters.shutdown(wait=True)


def logs_dir(plan: Plan) -> Path:
    """Where run logs go: ``<out_dir>/logs`` of the plan's runs (next to their checkpoints)."""
    return Path(plan.runs[0].config.get("out_dir") or "runs") / "logs"


def check_results(results: str | os.PathLike) -> None:
    """Fail before anything trains when ``results`` cannot take the trainer's rows (other header, not writable)."""
    from scaling.results import check_writable
    from scaling.train.record import HEADER

    check_writable(results, HEADER)


def make_backend(name: str, *, workers: int | None, folder: Path, plan: Plan) -> Any:
    """The backend called ``name``, or one clear line when it is unknown, not installed or not reachable."""
    sweep = plan.sweep
    if name == "local":
        return LocalBackend(workers or 2)
    if name == "ray":
        kwargs = dict(sweep.ray)
        return RayBackend(workers, kwargs.pop("address", None), **kwargs)
    if name == "slurm":
        params = dict(sweep.slurm)
        cluster = params.pop("cluster", "slurm")
        return SlurmBackend(folder / "submitit", workers=workers or 2, cluster=cluster, parameters=params)
    raise ScalingError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


# ---------------------------------------------------------------------------------------------------------
# The driver


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
    on_event: Callable[[str, PlannedRun, dict], None] | None = None,
) -> SweepReport:
    """Train every unfinished run of ``plan`` on ``backend``; rows go to ``results``.

    ``on_event(kind, run, info)`` is called with kind in {"skip", "start", "done", "retry", "fail", "block"}
    (the CLI draws its progress bar from it).
    """
    results = Path(results).resolve()
    logs = Path(logs).resolve()
    started = time.monotonic()
    note = on_event or (lambda kind, run, info: None)
    runs = plan.by_id()
    finished = finished_run_ids(results)
    report = SweepReport(total=len(plan.runs))
    pending: dict[str, PlannedRun] = {}
    for run in submission_order(plan.runs):
        if run.run_id in finished:
            report.skipped.append(run.run_id)
            note("skip", run, {})
        else:
            pending[run.run_id] = run
    complete = set(report.skipped)
    attempts: dict[str, int] = {}
    running: dict[cf.Future, str] = {}

    def task_for(run: PlannedRun) -> RunTask:
        launch = plan.sweep.launch
        return RunTask(run_id=run.run_id, config=run.config, results=str(results), log=str(logs / f"{run.run_id}.log"),
                       launcher=launch.launcher, num_processes=launch.num_processes,
                       accelerate_args=tuple(launch.accelerate_args), cwd=os.getcwd())

    def submit(run: PlannedRun) -> None:
        attempts[run.run_id] = attempts.get(run.run_id, 0) + 1
        running[backend.submit(task_for(run))] = run.run_id
        note("start", run, {"attempt": attempts[run.run_id]})

    def block_dependents(failed_id: str) -> None:
        for rid, run in list(pending.items()):
            if failed_id in run.depends_on:
                pending.pop(rid)
                report.blocked.append(rid)
                note("block", run, {"because": failed_id})
                block_dependents(rid)

    try:
        while pending or running:
            slots = backend.slots
            for rid, run in list(pending.items()):
                if slots is not None and len(running) >= slots:
                    break
                if all(dep in complete for dep in run.depends_on):
                    pending.pop(rid)
                    submit(run)
            if not running:  # nothing can start: dependencies outside the plan that never finished
                for rid, run in list(pending.items()):
                    pending.pop(rid)
                    report.blocked.append(rid)
                    note("block", run, {"because": ", ".join(d for d in run.depends_on if d not in complete)})
                break
            done, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
            for fut in done:
                rid = running.pop(fut)
                run = runs[rid]
                try:
                    outcome = fut.result()
                except Exception as exc:  # noqa: BLE001 -- any backend error (worker died, job cancelled) is a failed attempt
                    outcome = RunOutcome(rid, -1, 0.0, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                # A zero exit status is not enough: the run must have written its final row(s).
                ok = outcome.returncode == 0 and rid in finished_run_ids(results)
                if ok:
                    complete.add(rid)
                    report.done.append(rid)
                    report.cpu_seconds[rid] = outcome.cpu_seconds
                    note("done", run, {"seconds": outcome.seconds, "cpu_seconds": outcome.cpu_seconds})
                elif attempts[rid] <= retries:
                    report.retried.append(rid)
                    note("retry", run, {"message": outcome.message, "returncode": outcome.returncode})
                    submit(run)
                else:
                    message = outcome.message or f"exit status {outcome.returncode}"
                    if outcome.returncode == 0:
                        message = f"exited 0 but wrote no final row to {results} ({message})"
                    report.failed[rid] = message
                    note("fail", run, {"message": message, "log": str(logs / f'{rid}.log')})
                    block_dependents(rid)
    except BaseException:  # Ctrl-C, SIGTERM: stop the runs in flight (they checkpoint and resume next time)
        backend.cancel()
        raise
    finally:
        backend.close()
    report.seconds = time.monotonic() - started
    return report
