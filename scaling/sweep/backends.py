"""Running a plan: the trainer as a subprocess per run, on a local pool, a Ray cluster or Slurm (submitit).

Every backend runs the same task, :func:`execute_run`: write the run's config to a file, start the trainer
(``python trainers/train.py`` or ``accelerate launch trainers/train.py``) with ``--results PATH``, send its output
to a log file, return the exit status. The trainer appends its rows to the one results.csv under a file lock,
so the backends never handle rows. A backend only turns tasks into ``concurrent.futures.Future`` objects:

- :class:`LocalBackend`: a pool of K threads, each waiting on one trainer subprocess (K single-thread runs side
  by side use 2 CPU cores better than one two-thread run; measured, docs/sweeps.md). With ``resources.gpus`` each worker
  owns its own ``CUDA_VISIBLE_DEVICES`` slot.
- :class:`scaling.sweep.ray_backend.RayBackend`: one Ray task per run reserving the run's ``resources`` (num_gpus, num_cpus, memory,
  custom resources; ``runtime_env``) on an existing cluster (``address="auto"``) or a local one with K CPUs.
- :class:`scaling.sweep.slurm_backend.SlurmBackend`: submitit job arrays, requeued on timeout or pre-emption.

:func:`run_plan` submits runs whose dependencies are met (a fine-tune waits for its pretraining run) in waves
(the runs that are ready together go to the backend together: one job array on Slurm), skips runs already
finished in results.csv, retries a failed run once, and shows overall progress. It orders submissions;
placement and parallelism belong to the pool, Ray or Slurm.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import queue
import signal
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
from scaling.sweep.spec import Plan, PlannedRun, finished_run_ids, submission_order

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
    num_processes: int | None = None  # None: the accelerate config decides (so do the three below)
    num_machines: int | None = None
    mixed_precision: str | None = None
    accelerate_config: str | None = None
    accelerate_args: tuple[str, ...] = ()
    cwd: str = "."

    @classmethod
    def from_launch(cls, launch: Any, **fields: Any) -> RunTask:
        """A task started as the sweep file's ``launch:`` section says."""
        return cls(launcher=launch.launcher, num_processes=launch.num_processes, num_machines=launch.num_machines,
                   mixed_precision=launch.mixed_precision, accelerate_config=launch.config_file,
                   accelerate_args=tuple(launch.accelerate_args), **fields)


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    returncode: int
    seconds: float  # wall time
    message: str  # the last line of the trainer's output: its one-line error when it failed
    cpu_seconds: float = 0.0  # user + system CPU time of the trainer process(es): the cost on an idle machine


def trainer_script() -> Path:
    """trainers/train.py of this checkout (the package is installed editable next to it)."""
    path = Path(__file__).resolve().parents[2] / "trainers" / "train.py"
    if not path.exists():
        raise ScalingError(f"trainer entry point {path} not found: install the package editable from its checkout (pip install -e .)")
    return path


def trainer_command(task: RunTask, config_file: Path, machine: MachineRank | None = None) -> list[str]:
    """The trainer's command line. ``accelerate launch`` gets only the flags the sweep file sets, so the user's
    ``accelerate config`` (DDP, FSDP, DeepSpeed, precision, dynamo) is not overridden."""
    script = str(trainer_script())
    args = [script, "--config", str(config_file), "--results", task.results]
    if task.launcher != "accelerate":
        return [sys.executable] + args
    launch = [sys.executable, "-m", "accelerate.commands.launch"]
    if task.accelerate_config:
        launch += ["--config_file", task.accelerate_config]
    if task.num_processes is not None:
        launch += ["--num_processes", str(task.num_processes)]
        if task.num_processes > 1 and not task.accelerate_config and not _default_accelerate_config().exists():
            # With no accelerate config at all, `--num_processes 2` alone (or with --cpu) silently starts ONE
            # process (measured; docs/sweeps.md); --multi_gpu starts them (gloo on CPU). A config says it itself.
            launch.append("--multi_gpu")
    if task.mixed_precision is not None:
        launch += ["--mixed_precision", task.mixed_precision]
    if machine is not None:
        launch += ["--num_machines", str(machine.num_machines), "--machine_rank", str(machine.rank),
                   "--main_process_ip", machine.main_ip, "--main_process_port", str(machine.port)]
    elif task.num_machines is not None:
        launch += ["--num_machines", str(task.num_machines)]
    return launch + list(task.accelerate_args) + args


@dataclass(frozen=True)
class MachineRank:
    """Where one machine of a multi-machine run stands (filled in by the Slurm job on each node)."""

    num_machines: int
    rank: int
    main_ip: str
    port: int = 29500


def _default_accelerate_config() -> Path:
    """The file `accelerate config` writes (honours HF_HOME and ACCELERATE_CONFIG_FILE... as accelerate does)."""
    from accelerate.commands.config.config_args import default_config_file

    return Path(default_config_file)


def run_environment(task: RunTask, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The trainer's environment: this process's, with one torch thread count, and offline Hugging Face hubs
    unless the user's environment says otherwise (HF_HUB_OFFLINE=0 lets ``hf:NAME`` corpora download; a cached
    dataset loads either way)."""
    threads = str(task.config.get("threads") or 1)
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, PYTHONUNBUFFERED="1")
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.setdefault(name, "1")  # the project's rule: nothing needs the network unless the user asks for it
    env.update(extra or {})
    return env


# Trainer processes started by execute_run in this process, so that a cancelled sweep can stop them.
_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()


def terminate_live(wait_s: float = 0.0) -> None:
    """SIGTERM every trainer this process started; the trainer saves a checkpoint and exits, so a re-run resumes.
    With ``wait_s``, wait that long for them to finish their checkpoint, then kill what is left."""
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + wait_s
    for proc in procs if wait_s > 0 else ():
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def execute_run(task: RunTask, env: dict[str, str] | None = None, machine: MachineRank | None = None,
                ignore_signals: tuple[int, ...] = ()) -> RunOutcome:
    """Train one run in a subprocess; its output goes to ``task.log``. Never raises for a failed run.

    ``env`` is added to the trainer's environment (a GPU slot); ``ignore_signals`` are ignored by the trainer
    (Slurm sends its pre-emption signal to every process of a job; only the job's own handler should act on it).
    """
    start = time.monotonic()
    log = Path(task.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix=f"{task.run_id}-", dir=log.parent, delete=False) as fh:
        yaml.safe_dump(task.config, fh, sort_keys=False)
        config_file = Path(fh.name)
    full_env = run_environment(task, env)
    cpu = 0.0
    try:
        with open(log, "a") as out:
            gpus = f"; CUDA_VISIBLE_DEVICES={full_env['CUDA_VISIBLE_DEVICES']}" if "CUDA_VISIBLE_DEVICES" in full_env else ""
            out.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} run {task.run_id} on {os.uname().nodename}{gpus}\n")
            out.flush()
            ignore = (lambda: [signal.signal(s, signal.SIG_IGN) for s in ignore_signals]) if ignore_signals else None
            proc = subprocess.Popen(trainer_command(task, config_file, machine), stdout=out, stderr=subprocess.STDOUT,
                                    cwd=task.cwd, env=full_env, preexec_fn=ignore)
            with _LIVE_LOCK:
                _LIVE.add(proc)
            try:
                cpu = _wait(proc)
            except BaseException:  # interrupted (Ctrl-C, a Ray cancel, a Slurm requeue): stop the trainer cleanly
                proc.terminate()  # SIGTERM: the trainer checkpoints at the end of its step and exits 3
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


def _wait(proc: subprocess.Popen, poll_s: float = 0.2) -> float:
    """Wait for the trainer; returns its CPU seconds. Polls rather than blocking in wait4, so that an exception
    raised into this thread (Ray's graceful cancel) or a signal handler (submitit's requeue) runs at once."""
    while True:
        try:
            # wait4 gives this child's own CPU time (getrusage(RUSAGE_CHILDREN) would mix in the other
            # workers' runs); an accelerate launcher's CPU time includes the processes it started.
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:  # already reaped elsewhere (a requeue handler waited for it)
            proc.wait()
            return 0.0
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        time.sleep(poll_s)


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
    """K worker threads, each running one trainer subprocess at a time.

    With ``gpus_per_run`` each worker owns a slot of that many GPUs (``CUDA_VISIBLE_DEVICES``) for all of its
    runs, so K runs never share a device; ``gpus_per_run=0`` hides the GPUs (CPU runs); None leaves the
    environment as it is.
    """

    name = "local"

    def __init__(self, workers: int = 2, gpus_per_run: int | None = None):
        if workers < 1:
            raise ScalingError(f"--workers must be at least 1, got {workers}")
        self.slots = workers
        self._pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sweep")
        self._free: queue.SimpleQueue[dict[str, str]] = queue.SimpleQueue()
        for slot in gpu_slots(workers, gpus_per_run):
            self._free.put(slot)

    def submit(self, task: RunTask) -> cf.Future:
        return self._pool.submit(self._run, task)

    def _run(self, task: RunTask) -> RunOutcome:
        # At most K tasks run at once and there are K slots, so a free one is always there.
        slot = self._free.get()
        try:
            return execute_run(task, env=slot)
        finally:
            self._free.put(slot)

    def cancel(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        terminate_live()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def visible_gpus() -> list[str]:
    """The GPUs this process may use: the ids in CUDA_VISIBLE_DEVICES when it is set (indices or UUIDs),
    otherwise every device torch counts."""
    declared = os.environ.get("CUDA_VISIBLE_DEVICES")
    if declared is not None:
        return [d.strip() for d in declared.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch
    except ImportError:
        return []
    return [str(i) for i in range(torch.cuda.device_count())]


def gpu_slots(workers: int, gpus_per_run: int | None) -> list[dict[str, str]]:
    """One environment per worker: its own ``CUDA_VISIBLE_DEVICES`` (disjoint groups of ``gpus_per_run``)."""
    if gpus_per_run is None:
        return [{} for _ in range(workers)]
    if gpus_per_run == 0:
        return [{"CUDA_VISIBLE_DEVICES": ""} for _ in range(workers)]
    gpus = visible_gpus()
    need = workers * gpus_per_run
    if need > len(gpus):
        seen = f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r}" if "CUDA_VISIBLE_DEVICES" in os.environ else "torch sees"
        raise ScalingError(f"resources.gpus: {gpus_per_run} GPU(s) per run x {workers} worker(s) needs {need} GPUs, "
                           f"{len(gpus)} visible ({seen}); lower --workers, or --gpus 0 to train on the CPU")
    return [{"CUDA_VISIBLE_DEVICES": ",".join(gpus[w * gpus_per_run:(w + 1) * gpus_per_run])} for w in range(workers)]


def __getattr__(name: str) -> Any:
    # The Ray and Slurm backends live in their own modules (scaling.sweep.ray_backend, scaling.sweep.slurm_backend, which
    # import ray and submitit); kept importable from here.
    if name == "SlurmBackend":
        return _slurm_backend_class()
    if name == "RayBackend":
        from scaling.sweep.ray_backend import RayBackend

        return RayBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _slurm_backend_class() -> type:
    try:
        import submitit  # noqa: F401 -- checked first: scaling.sweep.slurm_backend may already be imported
        from scaling.sweep.slurm_backend import SlurmBackend
    except ImportError:
        raise ScalingError("--backend slurm: submitit is not installed (pip install 'scaling[sweep]' or pip install submitit)") from None
    return SlurmBackend


def logs_dir(plan: Plan) -> Path:
    """Where run logs go: ``<out_dir>/logs`` of the plan's runs (next to their checkpoints)."""
    return Path(plan.runs[0].config.get("out_dir") or "runs") / "logs"


def check_results(results: str | os.PathLike) -> None:
    """Fail before anything trains when ``results`` cannot take the trainer's rows (other header, not writable)."""
    from scaling.results import check_writable
    from scaling.train.record import HEADER

    check_writable(results, HEADER)


def cpus_per_run(sweep: Any) -> int:
    """CPUs one run reserves: ``resources.cpus``, or torch threads x processes."""
    return sweep.resources.cpus or sweep.launch.threads * (sweep.launch.num_processes or 1)


def make_backend(name: str, *, workers: int | None, folder: Path, plan: Plan) -> Any:
    """The backend called ``name``, or one clear line when it is unknown, not installed or not reachable."""
    sweep = plan.sweep
    res = sweep.resources
    if (sweep.launch.num_machines or 1) > 1 and name != "slurm":
        raise ScalingError(f"{sweep.source}: launch.num_machines {sweep.launch.num_machines} needs --backend slurm "
                           "(elsewhere, run `accelerate launch` on each machine yourself: docs/sweeps.md)")
    if name == "local":
        return LocalBackend(workers or 2, gpus_per_run=res.gpus)
    if name == "ray":
        kwargs = dict(sweep.ray)
        from scaling.sweep.ray_backend import RayBackend

        return RayBackend(workers, kwargs.pop("address", None), cpus_per_run=cpus_per_run(sweep),
                          gpus_per_run=res.gpus or 0, memory_gb=res.memory_gb, custom=res.custom, **kwargs)
    if name == "slurm":
        params = dict(sweep.slurm)
        cluster = params.pop("cluster", "slurm")
        attempts = int(params.pop("submit_attempts", 3))
        backoff = float(params.pop("submit_backoff_s", 10.0))
        # The run's resources in submitit's generic names; the slurm: section overrides them (more specific).
        params = {"cpus_per_task": cpus_per_run(sweep), **({"gpus_per_node": res.gpus} if res.gpus else {}),
                  **({"mem_gb": res.memory_gb} if res.memory_gb else {}),
                  **({"nodes": sweep.launch.num_machines} if sweep.launch.num_machines else {}), **params}
        if workers and "slurm_array_parallelism" not in params:
            params["slurm_array_parallelism"] = workers
        return _slurm_backend_class()(folder / "submitit", workers=workers or 2, cluster=cluster, parameters=params,
                                      submit_attempts=attempts, submit_backoff_s=backoff)
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
        return RunTask.from_launch(plan.sweep.launch, run_id=run.run_id, config=run.config, results=str(results),
                                   log=str(logs / f"{run.run_id}.log"), cwd=os.getcwd())

    def submit(wave: list[PlannedRun]) -> None:
        """Runs that are ready together go to the backend together (one job array on Slurm)."""
        if not wave:
            return
        tasks = [task_for(run) for run in wave]
        many = getattr(backend, "submit_many", None)
        futures = many(tasks) if many is not None else [backend.submit(task) for task in tasks]
        for run, fut in zip(wave, futures):
            attempts[run.run_id] = attempts.get(run.run_id, 0) + 1
            running[fut] = run.run_id
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
            wave: list[PlannedRun] = []
            for rid, run in list(pending.items()):
                if slots is not None and len(running) + len(wave) >= slots:
                    break
                if all(dep in complete for dep in run.depends_on):
                    wave.append(pending.pop(rid))
            submit(wave)
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
                    pending = {rid: run, **pending}  # first in the next wave
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
