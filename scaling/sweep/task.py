"""The task every sweep backend runs: the trainer as a subprocess, for one run.

:func:`execute_run` writes the run's config to a file, starts the trainer (``python trainers/train.py`` or
``accelerate launch trainers/train.py``) with ``--results PATH``, sends its output to a log file and returns the
exit status. The trainer appends its rows to the one results.csv under a file lock, so no backend ever handles
rows: the local pool (:mod:`scaling.sweep.local_backend`), Ray (:mod:`scaling.sweep.ray_backend`) and Slurm
(:mod:`scaling.sweep.slurm_backend`) only decide where and when this function runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scaling.errors import ScalingError


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
