"""The issue-5 studies: their sweep files plan within budget, and each pipeline runs end to end at toy scale.

configs/sweeps/{transfer,epochs,repetition,calibration}.yaml are the real studies (docs/studies.md); the *-tiny.yaml files are
the same designs at toy scale. Here the toy sweeps are trained for real (torch + transformers on the shipped
English corpus and the Python standard library) and the results go through `scaling fit` exactly as a user's
would. The fast tests train the plan's runs in this process (the trainer's own `train`, in the plan's order:
pretraining before its fine-tunes), which is `scaling sweep run` minus a process start-up per run; the slow ones
go through the `scaling sweep run` console command itself.

The numbers of toy runs mean nothing; the tests assert what the pipeline must produce from them (the classes, the
fits and their files, the refusals), not values.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("torch", reason="the studies train models (pip install 'scaling[train]')")

from scaling.errors import ScalingError
from scaling.sweep.planner import plan
from scaling.sweep.spec import parse_sweep
from scaling.sweep.timing import estimate_wall_seconds
from scaling.train import train
from cli_helpers import invoke

SWEEPS = Path(__file__).resolve().parents[1] / "configs" / "sweeps"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def train_plan(sweep_file: Path, folder: Path) -> Path:
    """Train every run of a sweep file in this process, in the plan's order; the results table's path."""
    p = plan(sweep_file, overrides={"out_dir": str(folder / "runs")})
    results = folder / "results.csv"
    for run in p.runs:  # roles are sorted pretrain, ..., finetune: a fine-tune's source is finished before it
        outcome = train(run.config, results)
        assert outcome.finished, run.run_id
    return results


# ---------------------------------------------------------------------------------------------------------
# The real study files: they plan, they have the runs their analysis needs, and they fit the CPU budget


def test_transfer_study_plan():
    p = plan(SWEEPS / "transfer.yaml")
    df = p.to_frame()
    assert set(df["role"]) == {"pretrain", "finetune", "scratch"}
    assert estimate_wall_seconds(p, 2) < 3600
    pre = {r.run_id: r for r in p.runs if r.role == "pretrain"}
    for run in p.runs:
        if run.role == "finetune":
            assert run.config["corpus"] == "python" and run.depends_on[0] in pre
            source = pre[run.depends_on[0]]
            assert source.N == run.N and source.config["corpus"] == "english"
            assert source.config["seed"] == run.config["seed"]  # each seed fine-tunes its own pretraining
            # every fine-tuned size has its from-scratch baseline on the target, reaching well beyond D_F
            scratch = [
                r for r in p.runs if r.role == "scratch" and r.N == run.N and r.config["seed"] == run.config["seed"]
            ]
            assert len(scratch) == 1 and scratch[0].config["corpus"] == "python"
            assert max(scratch[0].budgets) >= 10 * max(run.budgets)
            assert set(run.budgets) <= set(scratch[0].budgets)
            assert len(run.budgets) >= 4  # several fine-tuning budgets D_F
    assert {r.config["tokenizer"] for r in p.runs} == {"bytes"}  # one vocabulary across corpora
    assert len({r.config["seed"] for r in p.runs}) >= 3  # D_T is very sensitive to loss noise at small D_F


def test_epochs_study_plan():
    p = plan(SWEEPS / "epochs.yaml")
    assert estimate_wall_seconds(p, 2) < 3600
    df = pd.DataFrame([{"N": r.N, "D": r.D, "U": r.config["unique_tokens"]} for r in p.runs])
    # U = D / epochs is rounded to whole batches by the sweep, so the epochs are nominal to within 10%
    df["epochs"] = [min((1, 4, 16, 64), key=lambda e: abs(math.log(d / u / e))) for d, u in zip(df["D"], df["U"])]
    assert ((df["D"] / df["U"] / df["epochs"] - 1).abs() < 0.1).all()
    assert set(df["epochs"]) == {1, 4, 16, 64}
    # the one-epoch grid (stage 1, the chinchilla base) covers every size and budget
    one = df[df["epochs"] == 1]
    assert len(one) == df["N"].nunique() * df["D"].nunique() and df["N"].nunique() >= 3


def test_repetition_study_plan():
    p = plan(SWEEPS / "repetition.yaml")
    assert estimate_wall_seconds(p, 2) < 3600
    df = pd.DataFrame(
        [
            {
                "N": r.N,
                "D": r.D,
                "f": r.config["repeat_fraction"],
                "k": r.config["repeat_count"],
                "seed": r.config["seed"],
            }
            for r in p.runs
        ]
    )
    assert df["D"].nunique() == 1  # one token budget for every run (the analysis refuses several)
    seeds = df["seed"].nunique()
    assert seeds >= 3  # effects of a few hundredths of a nat are below one seed's noise
    base = df[df["f"] == 0]
    # one unique-data baseline per size and seed (at f = 0 the repeat count means nothing)
    assert len(base) == df["N"].nunique() * seeds and df["N"].nunique() >= 4 and set(base["k"]) == {1}
    assert len(df[df["f"] > 0].groupby(["N", "f", "k", "seed"])) == len(df) - len(base)


def test_calibration_study_plan():
    p = plan(SWEEPS / "calibration.yaml")
    assert estimate_wall_seconds(p, 2) < 3600
    df = pd.DataFrame([{"N": r.N, "D": r.D, "seed": r.config["seed"], "lr": r.lr} for r in p.runs])
    # enough sizes for a 3-parameter ECE(N) fit, over 2 decades, each with several seeds
    assert df["N"].nunique() >= 5 and df["N"].max() / df["N"].min() > 100
    assert (df.groupby("N")["seed"].nunique() >= 3).all()
    assert df["D"].nunique() == 1  # calibration at equal data
    # no base lr: every size gets Kaplan's rule (Eq. D.1), which falls with N
    assert df.groupby("N")["lr"].first().is_monotonic_decreasing
    assert p.runs[0].config["eval_tokens"] >= 2e5  # finite-sample ECE floor well under the differences sought


def test_plan_refuses_a_branch_inside_the_warmup(tmp_path):
    """The trainer's schedule checks run at plan time: nothing trains and then fails."""
    sweep = parse_sweep(
        {
            "name": "w",
            "base": {
                "schedule": "wsd",
                "warmup": 0.05,
                "context": 64,
                "batch_size": 8,
                "out_dir": str(tmp_path),
            },
            "grid": {
                "model": [{"n_layer": 1, "d_model": 16}],
                "tokens": [2048, 131072],
            },
        },
        source="w.yaml",
    )
    with pytest.raises(ScalingError, match=r"w.yaml: run .*branch budget 2048: .*inside the warmup"):
        plan(sweep)


# ---------------------------------------------------------------------------------------------------------
# The pipelines at toy scale


def test_transfer_pipeline_end_to_end(tmp_path):
    """Pretrain on English -> fine-tune on Python -> Python from scratch -> scaling fit --law transfer -> forecast."""
    results = train_plan(SWEEPS / "transfer-tiny.yaml", tmp_path)
    rows = pd.read_csv(results)
    final = rows[rows["final"] == 1]
    tuned = final[final["source"].notna()]
    assert set(final["target"]) == {
        "english",
        "python",
    }  # the pretraining runs are scored on English
    assert len(tuned) == 6 and set(tuned["D_pretrain"]) == {65536} and set(tuned["source"]) == {"english"}

    # The sweep's own table, as it is: the pretraining rows are left out without a --where.
    code, out, err = invoke(
        "fit",
        "results.csv",
        "--law",
        "transfer",
        "--bootstrap",
        "20",
        "--group",
        "",
        "-f",
        "json",
        cwd=tmp_path,
    )
    assert code == 0, err
    rec = json.loads(out)
    assert sum(rec["counts"].values()) == 6
    runs = pd.DataFrame(rec["runs"])
    assert len(runs) == 6 and set(runs["N"]) == set(tuned["N"])
    ok = runs[runs["class"] == "ok"]
    assert len(ok) >= 3, rec["counts"]  # enough clean runs to fit three constants
    assert (ok["D_E"] > ok["D_F"]).all() and (ok["D_T"] > 0).all()
    assert ((ok["f_T"] > 0) & (ok["f_T"] < 1)).all()
    for name in ("k", "alpha", "beta"):
        assert math.isfinite(rec["params"][name]["value"])
    assert rec["scratch"]["law"] == "kaplan-nd" and rec["scratch"]["quality"]["n_points"] == 14
    assert (tmp_path / "fits" / "results-transfer.json").exists()

    code, out, err = invoke(
        "forecast",
        "fits/results-transfer.json",
        "--N",
        "1e5",
        "--at",
        "D_F=1e4",
        "-f",
        "json",
        cwd=tmp_path,
    )
    assert code == 0, err
    assert "multiplier" in out and "f_T" in out


def test_repetition_and_calibration_pipelines_end_to_end(tmp_path):
    """f = 0 baselines + repeated runs -> scaling fit --law repetition; the baselines' ECE -> --law calibration."""
    train_plan(SWEEPS / "repetition-tiny.yaml", tmp_path)
    code, out, err = invoke(
        "fit",
        "results.csv",
        "--law",
        "repetition",
        "--fix",
        "L_inf=0",
        "--bootstrap",
        "20",
        "-f",
        "json",
        cwd=tmp_path,
    )
    assert code == 0, err
    rec = json.loads(out)
    runs = pd.DataFrame(rec["runs"])
    assert len(runs) == 8 and set(runs["repeat_fraction"]) == {0.5} and set(runs["repeat_count"]) == {4, 64}
    assert (runs["N_eff"] > 0).all() and (abs(runs["m"] + runs["lost"] - 1) < 1e-9).all()
    assert {r["N"] for r in rec["regions"]} <= set(runs["N"])
    assert (tmp_path / "fits" / "results-repetition.json").exists()

    code, out, err = invoke(
        "fit",
        "results.csv",
        "--law",
        "calibration",
        "--where",
        "repeat_fraction == 0",
        "--bootstrap",
        "20",
        "-f",
        "json",
        cwd=tmp_path,
    )
    assert code == 0, err
    rec = json.loads(out)
    assert len(rec["floor"]) == 4  # the finite-sample floor beside the fit, one row per size
    assert all(0 < row["floor"] < 0.05 for row in rec["floor"])  # 8192 predictions: about 0.014
    assert all(math.isfinite(rec["params"][n]["value"]) for n in ("ECE_inf", "a", "b"))


@pytest.mark.slow
def test_data_constrained_pipeline_end_to_end(tmp_path):
    """D x epochs -> chinchilla on the one-epoch runs -> data-constrained with that base frozen (about 30 s)."""
    train_plan(SWEEPS / "epochs-tiny.yaml", tmp_path)
    code, out, err = invoke(
        "fit",
        "results.csv",
        "--law",
        "chinchilla",
        "--where",
        "final == 1 and epochs <= 1.01",
        "--bootstrap",
        "20",
        "-f",
        "json",
        cwd=tmp_path,
    )
    assert code == 0, err
    base = json.loads(out)
    assert base["quality"]["n_points"] == 9
    fix = [a for n in ("E", "A", "B", "alpha", "beta") for a in ("--fix", f"{n}={base['params'][n]['value']!r}")]
    code, out, err = invoke(
        "fit",
        "results.csv",
        "--law",
        "data-constrained",
        "--where",
        "final == 1",
        *fix,
        "--bootstrap",
        "20",
        "-f",
        "json",
        cwd=tmp_path,
    )
    assert code == 0, err
    rec = json.loads(out)
    assert rec["quality"]["n_points"] == 27
    assert {n for n, p in rec["params"].items() if p["kind"] == "free"} == {
        "R_D",
        "R_N",
    }
    assert rec["params"]["R_D"]["value"] > 0 and rec["params"]["R_N"]["value"] > 0
    code, out, err = invoke(
        "forecast",
        "fits/results-data-constrained.json",
        "--N",
        "3e4",
        "--D",
        "3e4",
        "--at",
        "U=3e3",
        cwd=tmp_path,
    )
    assert code == 0, err


@pytest.mark.slow
def test_transfer_study_through_the_console_commands(tmp_path):
    """As a user runs it: `scaling sweep run transfer-tiny.yaml`, then `scaling fit --law transfer` (about 1-2 min)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    run = [sys.executable, "-m", "scaling"]
    out = subprocess.run(
        [
            *run,
            "sweep",
            "run",
            str(SWEEPS / "transfer-tiny.yaml"),
            "--results",
            "r.csv",
        ],
        cwd=tmp_path,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "6 trained" in out.stderr
    out = subprocess.run(
        [*run, "fit", "r.csv", "--law", "transfer", "--bootstrap", "20", "--group", ""],
        cwd=tmp_path,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "transfer fit on the" in out.stdout and (tmp_path / "fits" / "r-transfer.json").exists()


def test_a_stage_one_base_with_E_at_zero_can_be_frozen():
    """A one-epoch chinchilla fit may drive E to 0 (toy runs do); stage 2 must accept that base with --fix E=0."""
    import numpy as np

    from scaling.fitting.estimate import LawFitter
    from scaling.laws import get_law
    from scaling.laws.data_constrained import data_constrained_loss

    base = {"E": 0.0, "A": 13.0, "B": 80.0, "alpha": 0.29, "beta": 0.34}
    N, D, e = np.meshgrid([4e3, 1.6e4, 3.3e4], [8e3, 1.6e4, 3.3e4], [1, 4, 16])
    N, D, e = N.ravel(), D.ravel(), e.ravel()
    loss = data_constrained_loss(N, D, D / e, **base, R_D=5.0, R_N=3.0)
    table = pd.DataFrame({"N": N, "D": D, "U": D / e, "loss": loss})
    fit = LawFitter(get_law("data-constrained"), fix=base, n_bootstrap=0).fit(table)
    assert fit.params["R_D"] == pytest.approx(5.0, rel=1e-3) and fit.params["R_N"] == pytest.approx(3.0, rel=1e-3)
    with pytest.raises(ScalingError, match="positive scale constant"):
        LawFitter(get_law("data-constrained"), fix={**base, "E": -0.1}, n_bootstrap=0).fit(table)
