"""Backends beyond one CPU box: GPU slots, accelerate flags, the Hugging Face offline default, Slurm job arrays,
requeue and refused submissions (submitit's local executor and a fake sbatch), Ray resources and graceful cancel.

The training runs are the real trainer on tiny models (~1e3-1e4 parameters); no GPU is needed: the GPU slots are
checked in the environment of the real trainer processes (/proc/PID/environ), which is what CUDA reads.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytest.importorskip("torch", reason="sweeps run the trainer (pip install 'scaling[train]')")

from scaling.errors import ScalingError
from scaling.sweep.backends import make_backend
from scaling.sweep.driver import run_plan
from scaling.sweep.local_backend import gpu_slots
from scaling.sweep.planner import plan
from scaling.sweep.spec import parse_sweep
from scaling.sweep.task import _LIVE, _LIVE_LOCK, MachineRank, RunTask, run_environment, trainer_command

BASE = {"corpus": "english", "context": 32, "batch_size": 4, "eval_tokens": 1024, "eval_points": 0,
        "lr": 3e-3, "schedule": "wsd", "checkpoint_every": None}
SHAPES = [{"n_layer": 2, "d_model": 16}, {"n_layer": 2, "d_model": 32}]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def tiny(tmp: Path, shapes=SHAPES, tokens=(1024, 2048), base=None, **extra):
    data = {"name": "t", "base": {**BASE, **(base or {}), "out_dir": str(tmp / "runs")},
            "grid": {"model": shapes, "tokens": list(tokens)}, **extra}
    return parse_sweep(data, source="tiny")


def final_rows(results: Path) -> pd.DataFrame:
    df = pd.read_csv(results)
    return df[df["final"] == 1]


# ---------------------------------------------------------------------------------------------------------
# Launch flags and environment


def task(**kw) -> RunTask:
    return RunTask(run_id="r", config={"threads": 1}, results="/tmp/r.csv", log="/tmp/r.log", **kw)


def test_accelerate_gets_only_the_flags_the_sweep_file_sets(tmp_path):
    from scaling.sweep.spec import Launch

    bare = trainer_command(task(launcher="accelerate"), tmp_path / "c.yaml")
    assert bare[1:3] == ["-m", "accelerate.commands.launch"]
    for flag in ("--mixed_precision", "--num_processes", "--dynamo_backend", "--num_machines", "--multi_gpu"):
        assert flag not in bare  # the user's `accelerate config` decides them
    launch = Launch(launcher="accelerate", num_processes=2, mixed_precision="bf16", accelerate_args=["--main_process_port", "0"])
    cmd = trainer_command(RunTask.from_launch(launch, run_id="r", config={}, results="x", log="y"), tmp_path / "c.yaml")
    assert cmd[cmd.index("--num_processes") + 1] == "2" and cmd[cmd.index("--mixed_precision") + 1] == "bf16"
    from accelerate.commands.config.config_args import default_config_file

    # Without any accelerate config, --num_processes 2 alone starts ONE process: the sweep adds --multi_gpu then.
    assert ("--multi_gpu" in cmd) == (not Path(default_config_file).exists())
    with_file = trainer_command(task(launcher="accelerate", num_processes=8, accelerate_config="fsdp.yaml"), tmp_path / "c.yaml")
    assert with_file[with_file.index("--config_file") + 1] == "fsdp.yaml" and "--multi_gpu" not in with_file
    assert trainer_command(task(), tmp_path / "c.yaml")[0] == sys.executable  # plain python launcher
    # One node of a 2-machine run under Slurm: its rank and the first node's address (from submitit's job env).
    node = trainer_command(task(launcher="accelerate", num_processes=16, num_machines=2), tmp_path / "c.yaml",
                           MachineRank(num_machines=2, rank=1, main_ip="gpu-node-07"))
    joined = " ".join(node)
    assert "--num_machines 2 --machine_rank 1 --main_process_ip gpu-node-07 --main_process_port 29500" in joined
    assert joined.index("--num_processes 16") < joined.index(str(tmp_path / "c.yaml"))  # flags before the script


def test_multi_machine_runs_need_slurm(tmp_path):
    p = plan(tiny(tmp_path, shapes=SHAPES[:1], launch={"launcher": "accelerate", "num_machines": 2}))
    with pytest.raises(ScalingError, match="num_machines 2 needs --backend slurm"):
        make_backend("local", workers=1, folder=tmp_path, plan=p)


def test_hub_offline_is_a_default_not_a_rule(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    env = run_environment(task())
    assert env["HF_HUB_OFFLINE"] == env["HF_DATASETS_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the user allows the hub: the sweep does not take it back
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    env = run_environment(task(), {"CUDA_VISIBLE_DEVICES": "3"})
    assert env["HF_HUB_OFFLINE"] == env["HF_DATASETS_OFFLINE"] == "0" and env["CUDA_VISIBLE_DEVICES"] == "3"


# ---------------------------------------------------------------------------------------------------------
# Local backend: one CUDA_VISIBLE_DEVICES slot per worker


def test_gpu_slots_are_disjoint_and_must_fit(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    assert gpu_slots(2, 2) == [{"CUDA_VISIBLE_DEVICES": "0,1"}, {"CUDA_VISIBLE_DEVICES": "2,3"}]
    assert gpu_slots(3, 1) == [{"CUDA_VISIBLE_DEVICES": g} for g in "012"]
    assert gpu_slots(2, 0) == [{"CUDA_VISIBLE_DEVICES": ""}] * 2  # gpus: 0 hides them (CPU runs)
    assert gpu_slots(2, None) == [{}, {}]  # unset: the environment is left alone
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aa,GPU-bb")  # UUIDs are ids too
    assert gpu_slots(2, 1) == [{"CUDA_VISIBLE_DEVICES": "GPU-aa"}, {"CUDA_VISIBLE_DEVICES": "GPU-bb"}]
    with pytest.raises(ScalingError, match=r"2 GPU\(s\) per run x 2 worker\(s\) needs 4 GPUs, 2 visible"):
        gpu_slots(2, 2)


def test_local_workers_train_on_distinct_gpu_slots(tmp_path, monkeypatch):
    """Two runs at once with resources.gpus: 1 on a machine that declares GPUs 0 and 1: each real trainer
    process gets its own CUDA_VISIBLE_DEVICES (read from /proc/PID/environ while it trains). Without CUDA the
    trainer then runs on the CPU, so this needs no GPU."""
    if not Path("/proc/self/environ").exists():
        pytest.skip("needs /proc")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    p = plan(tiny(tmp_path, resources={"gpus": 1}))
    backend = make_backend("local", workers=2, folder=tmp_path, plan=p)
    seen: dict[int, str] = {}  # trainer pid -> its CUDA_VISIBLE_DEVICES
    overlaps: list[set[str]] = []  # the slots of the trainers alive at the same moment
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            with _LIVE_LOCK:
                pids = [proc.pid for proc in _LIVE]
            alive = {}
            for pid in pids:
                try:
                    env = dict(kv.split("=", 1) for kv in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in kv)
                except OSError:
                    continue
                alive[pid] = seen[pid] = env.get("CUDA_VISIBLE_DEVICES", "<unset>")
            if len(alive) > 1:
                overlaps.append(set(alive.values()))
                assert len(set(alive.values())) == len(alive)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        report = run_plan(p, backend, results=tmp_path / "results.csv", logs=tmp_path / "logs")
    finally:
        stop.set()
        watcher.join()
    assert report.ok and len(seen) == 2
    assert sorted(seen.values()) == ["0", "1"]  # one slot each, never the same device
    assert overlaps and all(s == {"0", "1"} for s in overlaps)  # they did run side by side
    logs = " ".join((tmp_path / "logs" / f"{r.run_id}.log").read_text() for r in p.runs)
    assert "CUDA_VISIBLE_DEVICES=0" in logs and "CUDA_VISIBLE_DEVICES=1" in logs


def test_cli_refuses_more_gpus_than_visible_in_one_line(tmp_path):
    sweep = tmp_path / "gpu.yaml"
    sweep.write_text(yaml.safe_dump({"name": "g", "base": {**BASE, "out_dir": str(tmp_path / "runs")},
                                     "grid": {"model": SHAPES[:1], "tokens": [1024]}, "resources": {"gpus": 1}}))
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="0")
    out = subprocess.run([sys.executable, "-m", "scaling", "sweep", "run", str(sweep), "--workers", "2",
                          "--results", str(tmp_path / "r.csv")], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: resources.gpus: 1 GPU(s) per run x 2 worker(s) needs 2 GPUs, 1 visible")
    assert not (tmp_path / "r.csv").exists()


# ---------------------------------------------------------------------------------------------------------
# Slurm through submitit


def test_slurm_runs_ready_together_go_in_one_array(tmp_path):
    """submitit's local executor: both runs of the first wave in one executor.batch(), both trained."""
    pytest.importorskip("submitit")
    p = plan(tiny(tmp_path, slurm={"cluster": "local", "timeout_min": 10}))
    backend = make_backend("slurm", workers=2, folder=tmp_path, plan=p)
    report = run_plan(p, backend, results=tmp_path / "results.csv", logs=tmp_path / "logs")
    assert report.ok and sorted(report.done) == sorted(r.run_id for r in p.runs)
    assert len(backend.arrays) == 1 and len(backend.arrays[0]) == 2
    assert sorted(final_rows(tmp_path / "results.csv")["run_id"].unique()) == sorted(r.run_id for r in p.runs)


def test_slurm_preemption_requeues_and_the_trainer_resumes(tmp_path):
    """Pre-empt a running job (the signal Slurm sends, to the job's process): submitit calls SlurmRun.checkpoint,
    the trainer saves a checkpoint on SIGTERM, the job is requeued and the trainer resumes from that step."""
    psutil = pytest.importorskip("psutil")
    pytest.importorskip("submitit")
    from scaling.sweep.slurm_backend import preemption_signal

    # 512 steps with a checkpoint every 32: long enough to be caught mid-way, cheap (2x16 model).
    p = plan(tiny(tmp_path, shapes=SHAPES[:1], tokens=[65536], base={"schedule": "cosine", "checkpoint_every": 32},
                  slurm={"cluster": "local", "timeout_min": 10}))
    run = p.runs[0]
    backend = make_backend("slurm", workers=1, folder=tmp_path, plan=p)
    out: dict = {}
    driver = threading.Thread(target=lambda: out.setdefault("report", run_plan(
        p, backend, results=tmp_path / "results.csv", logs=tmp_path / "logs")))
    driver.start()
    latest = tmp_path / "runs" / run.run_id / "latest"
    deadline = time.monotonic() + 300
    while not latest.exists() and driver.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)  # the trainer is in its loop (its SIGTERM handler installed) once it has checkpointed
    assert latest.exists() and backend.jobs, "the run finished or failed before it could be pre-empted"
    controller = psutil.Process(int(backend.jobs[0].job_id))  # the local executor's job id is its controller's pid
    job_process = controller.children()[0]
    job_process.send_signal(preemption_signal())
    driver.join(timeout=600)
    report = out["report"]
    assert report.ok and report.done == [run.run_id] and report.retried == []  # requeued by submitit, not retried
    log = (tmp_path / "logs" / f"{run.run_id}.log").read_text()
    assert log.count(f"run {run.run_id} on ") == 2  # two starts of the trainer in one job
    stopped = re.search(r"stopped after step (\d+)", log)  # the trainer's SIGTERM checkpoint ...
    assert stopped and f"resuming from step {stopped.group(1)} " in log  # ... is where the requeued job resumed
    assert len(backend.arrays) == 1
    rows = final_rows(tmp_path / "results.csv")
    assert list(rows["D"]) == [run.D]


def _span(log: Path) -> tuple[float, float]:
    """(start, end) of a run from its log: the header line's time and the file's last write."""
    stamp = re.search(r"^# (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) run ", log.read_text(), re.M).group(1)
    return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")), log.stat().st_mtime


def fake_sbatch(bin_dir: Path, fails: int) -> Path:
    """An sbatch that records every submission script and refuses the first ``fails`` of them, as a busy
    controller does; later ones are accepted (the jobs are never run: these tests only submit)."""
    bin_dir.mkdir()
    script = bin_dir / "sbatch"
    script.write_text(f"""#!/bin/sh
n=$(cat "{bin_dir}/count" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > "{bin_dir}/count"
cp "$1" "{bin_dir}/submission-$n.sh"
if [ $n -le {fails} ]; then
  echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation" >&2; exit 1
fi
echo "Submitted batch job 4242"
""")
    srun = bin_dir / "srun"  # submitit checks that srun exists (the jobs would run through it)
    srun.write_text("#!/bin/sh\nexit 1\n")
    for exe in (script, srun):
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def test_refused_submission_is_retried_as_one_array_with_the_run_resources(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    bin_dir = fake_sbatch(tmp_path / "bin", fails=1)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    p = plan(tiny(tmp_path, resources={"gpus": 1, "cpus": 8, "memory_gb": 16},
                  slurm={"slurm_partition": "gpu", "submit_backoff_s": 0, "timeout_min": 60}))
    backend = make_backend("slurm", workers=1, folder=tmp_path, plan=p)
    tasks = [RunTask.from_launch(p.sweep.launch, run_id=r.run_id, config=r.config, results=str(tmp_path / "r.csv"),
                                 log=str(tmp_path / "logs" / f"{r.run_id}.log")) for r in p.runs]
    jobs = backend.submit_jobs(tasks)
    assert [j.job_id for j in jobs] == ["4242_0", "4242_1"]  # one array of both runs
    assert len(backend.failed_submissions) == 1 and "Socket timed out" in backend.failed_submissions[0]
    text = (bin_dir / "submission-2.sh").read_text()
    for line in ("#SBATCH --array=0-1%1", "#SBATCH --gpus-per-node=1", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --mem=16GB", "#SBATCH --partition=gpu", "#SBATCH --signal=USR2@"):
        assert line in text, line


def test_a_submission_refused_every_time_fails_its_runs_not_the_sweep(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    bin_dir = fake_sbatch(tmp_path / "bin", fails=99)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    p = plan(tiny(tmp_path, slurm={"submit_attempts": 2, "submit_backoff_s": 0}))
    backend = make_backend("slurm", workers=None, folder=tmp_path, plan=p)
    report = run_plan(p, backend, results=tmp_path / "r.csv", logs=tmp_path / "logs", retries=1)
    assert sorted(report.failed) == sorted(r.run_id for r in p.runs) and not report.done
    assert sorted(report.retried) == sorted(r.run_id for r in p.runs)  # the driver tried each once more
    assert int((bin_dir / "count").read_text()) == 4  # 2 waves (first try, retry) x 2 attempts each
    message = next(iter(report.failed.values()))
    assert "submission failed 2 time(s)" in message and "Socket timed out" in message


# ---------------------------------------------------------------------------------------------------------
# Ray


@pytest.mark.slow
def test_ray_reserves_the_run_resources_and_cancels_gracefully(tmp_path):
    """A local Ray cluster with a custom resource: runs reserve num_cpus and {'trainer_slot': 1}; a sweep asking
    for a resource no node has is refused in one line; a cancelled run gets SIGTERM (it checkpoints, exit 3)."""
    ray = pytest.importorskip("ray")
    from scaling.sweep.ray_backend import RayBackend

    ray.init(num_cpus=2, resources={"trainer_slot": 1}, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        p = plan(tiny(tmp_path, resources={"cpus": 1, "custom": {"trainer_slot": 1}}))
        backend = make_backend("ray", workers=2, folder=tmp_path, plan=p)
        assert backend.options["resources"] == {"trainer_slot": 1} and backend.options["num_cpus"] == 1
        report = run_plan(p, backend, results=tmp_path / "results.csv", logs=tmp_path / "logs")
        assert report.ok and sorted(report.done) == sorted(r.run_id for r in p.runs)
        # One trainer_slot on the cluster: the two runs ran one after the other although there were 2 CPUs.
        spans = sorted(_span(tmp_path / "logs" / f"{r.run_id}.log") for r in p.runs)
        assert spans[1][0] >= spans[0][1] - 1.0  # the header time has whole seconds

        # Graceful cancel: a long run is cancelled after its first checkpoint; the trainer saves and exits 3.
        long = plan(tiny(tmp_path, shapes=SHAPES[:1], tokens=[262144], base={"schedule": "cosine", "checkpoint_every": 32}))
        backend = RayBackend(cpus_per_run=1, cancel_grace_s=120)
        rid = long.runs[0].run_id
        fut = backend.submit(RunTask.from_launch(long.sweep.launch, run_id=rid, config=long.runs[0].config,
                                                 results=str(tmp_path / "long.csv"), log=str(tmp_path / "logs" / "long.log"),
                                                 cwd=os.getcwd()))
        latest = tmp_path / "runs" / rid / "latest"
        deadline = time.monotonic() + 300
        while not latest.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        backend.cancel()
        with pytest.raises(Exception, match="Cancel"):  # Ray's TaskCancelledError
            fut.result(timeout=120)
        stopped = re.search(r"stopped after step (\d+)", (tmp_path / "logs" / "long.log").read_text())
        assert stopped, "the trainer was killed, not stopped by SIGTERM"
        assert int(re.sub(r"\D", "", latest.read_text())) == int(stopped.group(1))  # its checkpoint is the newest
    finally:
        ray.shutdown()
    # A local cluster started by the backend (2 CPUs, no GPU) cannot hold a run asking for a GPU: one line.
    gpu = plan(tiny(tmp_path, shapes=SHAPES[:1], resources={"gpus": 1}))
    with pytest.raises(ScalingError, match=r"no node of the cluster has the resources one run asks for \(CPU=1, GPU=1\)"):
        make_backend("ray", workers=2, folder=tmp_path, plan=gpu)
    assert not ray.is_initialized()
