"""Running sweeps for real: the trainer in subprocesses on the local pool, Ray and submitit; resume; failures.

The sweeps here are tiny (models of ~1e4 parameters, a few thousand tokens) so that process start-up dominates;
every run is a real training run of the real trainer on the shipped English corpus.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytest.importorskip("torch", reason="sweeps run the trainer (pip install 'scaling[train]')")

from scaling.errors import ScalingError
from scaling.sweep.backends import make_backend
from scaling.sweep.driver import run_plan
from scaling.sweep.local_backend import LocalBackend
from scaling.sweep.planner import plan
from scaling.sweep.ray_backend import RayBackend
from scaling.sweep.spec import parse_sweep

BASE = {"corpus": "english", "context": 32, "batch_size": 4, "eval_tokens": 1024, "eval_points": 0,
        "lr": 3e-3, "schedule": "wsd", "checkpoint_every": None}
SHAPES = [{"n_layer": 2, "d_model": 16}, {"n_layer": 2, "d_model": 32}]


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def tiny(tmp: Path, shapes=SHAPES, **extra):
    data = {"name": "t", "base": {**BASE, "out_dir": str(tmp / "runs")}, "grid": {"model": shapes, "tokens": [1024, 2048]},
            **extra}
    return parse_sweep(data, source="tiny")


class Recording(LocalBackend):
    """The real local backend; remembers which runs it was asked to start."""

    def __init__(self, workers=2):
        super().__init__(workers)
        self.submitted = []

    def submit(self, task):
        self.submitted.append(task.run_id)
        return super().submit(task)


def final_rows(results: Path) -> pd.DataFrame:
    df = pd.read_csv(results)
    return df[df["final"] == 1]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A two-run sweep trained once through the local backend (shared by the tests below)."""
    tmp = tmp_path_factory.mktemp("sweep")
    p = plan(tiny(tmp))
    backend = Recording(2)
    report = run_plan(p, backend, results=tmp / "results.csv", logs=tmp / "logs")
    return tmp, p, report, backend


def test_local_backend_trains_every_run_into_one_results_file(finished):
    tmp, p, report, backend = finished
    assert report.ok and sorted(report.done) == sorted(r.run_id for r in p.runs)
    assert sorted(backend.submitted) == sorted(report.done)
    final = final_rows(tmp / "results.csv")
    for run in p.runs:
        rows = final[final["run_id"] == run.run_id]
        # One final row per budget (the WSD branch and the main run), with the planned N and D.
        assert sorted(rows["D"]) == list(run.budgets)
        assert (rows["N"] == run.N).all()
        assert rows["loss"].between(0.5, 6.0).all()
        assert (tmp / "logs" / f"{run.run_id}.log").exists()


def test_resume_runs_only_what_is_missing(finished):
    tmp, p, _, _ = finished
    before = pd.read_csv(tmp / "results.csv")
    # The same sweep with a third size: a half-finished sweep from the point of view of this plan.
    bigger = plan(tiny(tmp, shapes=SHAPES + [{"n_layer": 2, "d_model": 24}]))
    new = [r.run_id for r in bigger.runs if r.run_id not in {q.run_id for q in p.runs}]
    assert len(new) == 1
    backend = Recording(2)
    report = run_plan(bigger, backend, results=tmp / "results.csv", logs=tmp / "logs")
    assert report.ok
    assert backend.submitted == new and report.done == new
    assert sorted(report.skipped) == sorted(r.run_id for r in p.runs)
    after = pd.read_csv(tmp / "results.csv")
    old = after[after["run_id"].isin(report.skipped)]
    assert len(old) == len(before)  # no duplicate rows for finished runs
    # Nothing left: a third call starts nothing.
    again = Recording(2)
    report = run_plan(bigger, again, results=tmp / "results.csv", logs=tmp / "logs")
    assert again.submitted == [] and len(report.skipped) == len(bigger)


def test_a_failing_run_is_retried_once_and_blocks_its_fine_tunes(tmp_path):
    # A source corpus too small for a held-out split: planning accepts it, the trainer refuses it at run time.
    small = tmp_path / "small.txt"
    small.write_text("too small\n")
    sweep = parse_sweep({
        "name": "t", "base": {**BASE, "schedule": "cosine", "out_dir": str(tmp_path / "runs")},
        "grid": {"model": SHAPES[:1]},
        "transfer": {"pretrain": {str(small): [1024]},
                     "pairs": [{"source": str(small), "target": "english", "finetune_tokens": [1024]}]},
    }, source="t")
    p = plan(sweep)
    pre = next(r for r in p.runs if r.role == "pretrain")
    fine = next(r for r in p.runs if r.role == "finetune")
    scratch = next(r for r in p.runs if r.role == "scratch")
    backend = Recording(2)
    report = run_plan(p, backend, results=tmp_path / "results.csv", logs=tmp_path / "logs")
    assert not report.ok
    assert backend.submitted.count(pre.run_id) == 2 and report.retried == [pre.run_id]
    assert list(report.failed) == [pre.run_id]
    assert report.failed[pre.run_id].startswith("error:") and "small.txt" in report.failed[pre.run_id]
    assert report.blocked == [fine.run_id] and fine.run_id not in backend.submitted
    assert report.done == [scratch.run_id]  # independent runs still train


def test_cli_sweep_run_end_to_end_and_failure_exit(tmp_path):
    """The real console entry point: a one-run sweep trains; a sweep with an unknown axis writes nothing."""
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"name": "c", "base": {**BASE, "out_dir": str(tmp_path / "runs")},
                                    "grid": {"model": SHAPES[:1], "tokens": [1024, 2048]}}))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    out = subprocess.run([sys.executable, "-m", "scaling", "sweep", "run", str(good), "--results", str(tmp_path / "r.csv")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, check=False)
    assert out.returncode == 0, out.stderr
    assert "1 trained" in out.stderr and len(final_rows(tmp_path / "r.csv")) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "c", "base": BASE, "grid": {"model": SHAPES, "tokenz": [1024]}}))
    out = subprocess.run([sys.executable, "-m", "scaling", "sweep", "run", str(bad), "--results", str(tmp_path / "x.csv")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, check=False)
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1 and "tokenz" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "x.csv").exists()


@pytest.mark.slow
def test_ray_local_cluster_runs_a_tiny_sweep(tmp_path):
    ray = pytest.importorskip("ray")
    p = plan(tiny(tmp_path))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        backend = RayBackend(workers=2)
        report = run_plan(p, backend, results=tmp_path / "results.csv", logs=tmp_path / "logs")
    finally:
        ray.shutdown()
    assert report.ok and sorted(report.done) == sorted(r.run_id for r in p.runs)
    final = final_rows(tmp_path / "results.csv")
    assert sorted(final["run_id"].unique()) == sorted(r.run_id for r in p.runs)


@pytest.mark.slow
def test_accelerate_launcher_with_two_processes(tmp_path):
    """launch: {launcher: accelerate, num_processes: 2}: two gloo processes train one run (D counted over both)."""
    p = plan(tiny(tmp_path, shapes=SHAPES[:1], launch={"launcher": "accelerate", "num_processes": 2}))
    report = run_plan(p, LocalBackend(1), results=tmp_path / "results.csv", logs=tmp_path / "logs")
    assert report.ok
    log = (tmp_path / "logs" / f"{p.runs[0].run_id}.log").read_text()
    assert "2 process(es)" in log
    assert sorted(final_rows(tmp_path / "results.csv")["D"]) == list(p.runs[0].budgets)


# ---------------------------------------------------------------------------------------------------------
# Backends that are unknown, not installed or not reachable: one line, before anything runs


def test_unknown_backend(tmp_path):
    p = plan(tiny(tmp_path, shapes=SHAPES[:1]))
    with pytest.raises(ScalingError, match="unknown backend 'kubernetes'; choose one of local, ray, slurm"):
        make_backend("kubernetes", workers=2, folder=tmp_path, plan=p)


def test_backend_not_installed(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees when ray is not installed
    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(ScalingError, match="ray is not installed"):
        RayBackend(workers=2)
    p = plan(tiny(tmp_path, shapes=SHAPES[:1], slurm={"cluster": "local"}))
    with pytest.raises(ScalingError, match="submitit is not installed"):
        make_backend("slurm", workers=1, folder=tmp_path, plan=p)


def test_backend_not_reachable(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    pytest.importorskip("submitit")
    with pytest.raises(ScalingError, match="no Ray cluster reachable at 127.0.0.1:1"):
        RayBackend(workers=2, address="127.0.0.1:1")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    p = plan(tiny(tmp_path, shapes=SHAPES[:1]))
    with pytest.raises(ScalingError, match="sbatch not found"):
        make_backend("slurm", workers=1, folder=tmp_path, plan=p)


def test_demo_pipeline_fits_checks_forecasts_and_plots(tmp_path, capsys):
    """The main job's machinery on a tiny sweep: train, fit chinchilla, leave-largest-out, forecast, PNGs."""
    from scaling.cli.demo import print_demo
    from scaling.demo import run_demo

    sweep_file = tmp_path / "mini.yaml"
    sweep_file.write_text(yaml.safe_dump({"name": "mini", "base": BASE, "grid": {
        "model": [*SHAPES, {"n_layer": 2, "d_model": 24}], "tokens": [1024, 2048, 4096]}}))
    result = run_demo(sweep_file, out=tmp_path / "demo", workers=2, n_bootstrap=10)
    assert result.report.ok and len(result.data) == 9  # 3 sizes x 3 budgets, one final row each
    assert result.fit.law.name == "chinchilla" and (tmp_path / "demo" / "fit-chinchilla.json").exists()
    assert result.checks["rmse_log"]["value"] == pytest.approx(result.fit.quality.rmse_log)
    h = result.holdout
    assert h["N"] == result.data["N"].max() and len(h["table"]) == 3 and h["n_train"] == 6
    assert h["max_abs_rel_error"] == pytest.approx(float(h["table"]["rel_error"].abs().max()))
    assert result.forecast["N"].iloc[0] == pytest.approx(100 * result.data["N"].max())
    for png in result.plots:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    print_demo(result, "table")
    out = capsys.readouterr().out
    assert "RMSE (log)" in out and "leave-largest-out" in out and "forecast" in out
