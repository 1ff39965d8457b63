"""Downstream laws: Gadre et al. 2024's loss-to-error law and the two-step task forecast of Bhagia et al. 2024.

Recovery tests generate data from a law with known parameters, fit it with the real estimator and compare; the CLI
tests run ``scaling fit`` / ``scaling forecast`` in-process on a CSV written to a temporary folder.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cli_helpers import assert_user_error, run
from scaling.analysis.downstream import chain_forecast
from scaling.errors import ScalingError
from scaling.analysis import fit as scaling_fit
from scaling.fitting.estimate import LawFitter
from scaling.fitting.result import load_fit
from scaling.fitting.result import Fit
from scaling.laws import get_law

GADRE_TRUTH = {"eps": 0.85, "k": 10.0, "gamma": 1.2}
GADRE_LOSS = np.linspace(2.5, 5.0, 12)


def _gadre_table(noise: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    error = get_law("gadre-error").predict(GADRE_TRUTH, loss=GADRE_LOSS) + rng.normal(0.0, noise, GADRE_LOSS.size)
    return pd.DataFrame({"loss": GADRE_LOSS, "error": error})


def test_gadre_catalogue_entry():
    law = get_law("gadre-error")
    assert law.inputs == ("loss",) and law.output == "error"
    assert law.residual_space == "linear" and law.kind == "downstream"
    assert "arXiv:2403.08540" in law.reference and "exp(-gamma L)" in law.formula
    for p in law.params:
        assert all(p.lower <= g <= p.upper for g in p.grid), p.name
    # Err -> eps as L grows; Err falls as L falls (k, gamma > 0)
    err = law.predict(GADRE_TRUTH, loss=[2.0, 3.0, 50.0])
    assert err[0] < err[1] < err[2] and err[2] == pytest.approx(GADRE_TRUTH["eps"], abs=1e-12)


def test_gadre_noiseless_recovery():
    fit = LawFitter("gadre-error", n_bootstrap=0).fit(_gadre_table(0.0, 0))
    assert fit.quality.converged, fit.quality.message
    assert fit.quality.residual_space == "linear"
    for name, value in GADRE_TRUTH.items():
        assert fit.params[name] == pytest.approx(value, rel=1e-6), name


def test_gadre_noisy_recovery_and_interval_covers_truth():
    """0.5 error points of noise (a 17-task average over ~1e4 questions is about that noisy)."""
    fit = LawFitter("gadre-error", n_bootstrap=60, seed=1).fit(_gadre_table(0.005, 3))
    assert abs(fit.params["eps"] - GADRE_TRUTH["eps"]) < 0.02
    assert abs(fit.params["gamma"] - GADRE_TRUTH["gamma"]) < 0.15
    lo, hi = fit.intervals["gamma"]
    assert lo < GADRE_TRUTH["gamma"] < hi


def test_gadre_cli_fit_and_forecast(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _gadre_table(0.0, 0).to_csv("downstream.csv", index=False)
    code, out, err = run(capsys, "fit", "downstream.csv", "--law", "gadre-error", "-b", "20", "-f", "json")
    assert code == 0, err
    record = json.loads(out)
    assert record["law"] == "gadre-error" and record["saved"] == "fits/downstream-gadre-error.json"
    assert record["params"]["gamma"]["value"] == pytest.approx(GADRE_TRUTH["gamma"], rel=1e-5)
    code, out, err = run(capsys, "forecast", "fits/downstream-gadre-error.json", "--at", "loss=2.2", "-f", "json")
    assert code == 0, err
    row = json.loads(out)[0]
    expected = GADRE_TRUTH["eps"] - GADRE_TRUTH["k"] * np.exp(-GADRE_TRUTH["gamma"] * 2.2)
    assert row["point"] == pytest.approx(expected, rel=1e-5)
    # noiseless data: every bootstrap draw is the same exact fit, so the interval collapses and is withheld
    assert row["interval_status"] == "interval_collapsed"
    assert row["conf_lower"] is None and row["pred_upper"] is None


def test_gadre_cli_refuses_an_error_in_percent(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    table = _gadre_table(0.0, 0)
    table["error"] *= 100  # percent instead of a fraction: a unit mix-up, named with its line
    table.to_csv("pct.csv", index=False)
    assert_user_error(*run(capsys, "fit", "pct.csv", "--law", "gadre-error"), "pct.csv", "error", "[0, 1]")


# ---------------------------------------------------------------------------------------------------------------
# Two-step task forecast (Bhagia et al. 2024): task loss from (N, D), accuracy from task loss, chained

STEP1 = {"E": 0.7, "A": 150.0, "B": 800.0, "alpha": 0.3, "beta": 0.3}
STEP2 = {"a": 0.6, "k": -4.0, "L0": 1.6, "b": 0.25}
TARGET = {"N": 7e9, "D": 4e12}  # 5x the largest ladder model, 30x its tokens (the paper's 7B-4T target)


def _ladder(noise_loss: float, noise_acc: float, seed: int) -> pd.DataFrame:
    """5 sizes x 3 token multipliers (20, 40, 100 tokens/param) = 15 runs, 5 checkpoints each (75 rows)."""
    rng = np.random.default_rng(seed)
    rows = []
    for N in np.geomspace(1.9e8, 1.3e9, 5):
        for m in (1, 2, 5):
            for frac in (0.2, 0.4, 0.6, 0.8, 1.0):
                D = 20 * m * N * frac
                loss = float(get_law("task-loss").predict(STEP1, N=N, D=D)) * np.exp(rng.normal(0, noise_loss))
                acc = float(get_law("task-accuracy").predict(STEP2, task_loss=loss)) + rng.normal(0, noise_acc)
                rows.append({"run_id": f"{N:.2g}-{m}", "N": N, "D": D, "task_loss": loss, "accuracy": acc})
    return pd.DataFrame(rows)


def test_ladder_catalogue_entries():
    chained = get_law("downstream")
    assert chained.param_names == (*get_law("task-loss").param_names, *get_law("task-accuracy").param_names)
    assert chained.residual_space == "linear" and get_law("task-loss").residual_space == "log"
    assert all("arXiv:2412.04403" in get_law(n).reference for n in ("task-loss", "task-accuracy", "downstream"))
    x = {"N": np.array([2e8, 7e9]), "D": np.array([4e9, 4e12])}
    loss = get_law("task-loss").predict(STEP1, **x)
    np.testing.assert_allclose(get_law("downstream").predict({**STEP1, **STEP2}, **x),
                               get_law("task-accuracy").predict(STEP2, task_loss=loss), rtol=1e-14)
    # accuracy rises as the task loss falls (k < 0); b at high loss, a + b at low loss
    acc = get_law("task-accuracy").predict(STEP2, task_loss=[50.0, 1.0, -50.0])
    assert acc[0] == pytest.approx(0.25) and acc[2] == pytest.approx(0.85) and acc[0] < acc[1] < acc[2]


def test_two_step_noiseless_recovery():
    fit = scaling_fit(_ladder(0.0, 0.0, 0), law="downstream", n_bootstrap=0)
    assert fit.law_name == "downstream" and fit.quality.converged, fit.quality.message
    assert set(fit.quality.steps) == {"task-loss", "task-accuracy"}
    for name, value in {**STEP1, **STEP2}.items():
        assert fit.params[name] == pytest.approx(value, rel=1e-5), name
    assert fit.quality.rmse_log < 1e-8  # end-to-end accuracy residual from (N, D)


@pytest.fixture(scope="module")
def noisy_chain():
    """1% task-loss noise and 1 point of accuracy noise, 40 paired bootstrap draws over the 15 runs."""
    return scaling_fit(_ladder(0.01, 0.01, 1), law="downstream", n_bootstrap=40, seed=0)


def test_chained_forecast_is_close_with_intervals_on_both_steps(noisy_chain):
    fit = noisy_chain
    assert len(fit.draws) == 40 and list(fit.draws.columns) == list(get_law("downstream").param_names)
    assert fit.settings["calibrate"] == 0  # the chain keeps no rollout calibration, and says so
    out = chain_forecast(fit, **TARGET).iloc[0]
    truth_loss = float(get_law("task-loss").predict(STEP1, **TARGET))
    truth_acc = float(get_law("downstream").predict({**STEP1, **STEP2}, **TARGET))
    assert out["task_loss_lower"] < out["task_loss"] < out["task_loss_upper"]
    assert out["accuracy_lower"] < out["accuracy"] < out["accuracy_upper"]
    assert abs(out["task_loss"] - truth_loss) < 0.05 and abs(out["accuracy"] - truth_acc) < 0.05


def test_chained_interval_carries_step_one_uncertainty():
    """Accuracy exactly the sigmoid of each run's (noisy) task loss: every step-2 draw is the truth, so all the spread
    of the chained forecast comes from the step-1 draws pushed through it. Freezing step 1 at its point removes it."""
    fit = scaling_fit(_ladder(0.02, 0.0, 2), law="downstream", n_bootstrap=30, seed=0)
    chained = fit.predict(**TARGET).iloc[0]
    step1 = list(get_law("task-loss").param_names)
    frozen = Fit(fit.law, fit.params, draws=fit.draws.assign(**{p: fit.params[p] for p in step1}),
                 settings=fit.settings).predict(**TARGET).iloc[0]
    width = frozen["conf_upper"] - frozen["conf_lower"]
    assert np.isnan(width) or width < 1e-6  # no spread left: a collapsed interval is withheld (NaN)
    assert chained["conf_upper"] - chained["conf_lower"] > 0.01


def test_two_step_refuses_a_table_without_task_loss_and_foreign_parameters():
    with pytest.raises(ScalingError, match="needs a task_loss column"):
        scaling_fit(_ladder(0.0, 0.0, 0).drop(columns="task_loss"), law="downstream")
    with pytest.raises(ScalingError, match="has no parameter 'gamma'"):
        scaling_fit(_ladder(0.0, 0.0, 0), law="downstream", fix={"gamma": 1.0})
    fit = scaling_fit(_ladder(0.0, 0.0, 0), law="downstream", n_bootstrap=0, fix={"b": 0.25})
    assert fit.fixed == {"b": 0.25} and fit.params["k"] == pytest.approx(-4.0, rel=1e-5)


def test_cli_two_step_fit_forecast_and_round_trip(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _ladder(0.01, 0.01, 1).to_csv("ladder.csv", index=False)
    code, out, err = run(capsys, "fit", "ladder.csv", "--law", "downstream", "-b", "20", "-f", "json")
    assert code == 0, err
    record = json.loads(out)
    assert record["law"] == "downstream" and record["saved"] == "fits/ladder-downstream.json"
    assert set(record["quality"]["steps"]) == {"task-loss", "task-accuracy"}
    saved = load_fit("fits/ladder-downstream.json")
    assert saved.law.name == "downstream" and len(saved.draws) == 20
    code, out, err = run(capsys, "forecast", "fits/ladder-downstream.json", "--N", "7e9", "--D", "4e12", "-f", "json")
    assert code == 0, err
    row = json.loads(out)[0]
    expected = chain_forecast(saved, **TARGET).iloc[0]
    assert row["point"] == pytest.approx(expected["accuracy"], rel=1e-12)
    assert row["task_loss"] == pytest.approx(expected["task_loss"], rel=1e-12)
    assert row["task_loss_lower"] < row["task_loss"] < row["task_loss_upper"] and row["conf_lower"] < row["conf_upper"]
    code, out, err = run(capsys, "forecast", "fits/ladder-downstream.json", "--N", "7e9", "--D", "4e12")
    assert code == 0 and "task_loss" in out and "both steps" in out


@pytest.mark.parametrize("law, truth", [("task-loss", STEP1), ("task-accuracy", STEP2)])
def test_cli_each_step_alone(law, truth, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _ladder(0.0, 0.0, 0).to_csv("ladder.csv", index=False)
    code, out, err = run(capsys, "fit", "ladder.csv", "--law", law, "-b", "0", "-f", "json")
    assert code == 0, err
    for name, value in truth.items():
        assert json.loads(out)["params"][name]["value"] == pytest.approx(value, rel=1e-5), name


def test_cli_two_step_without_task_loss_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _ladder(0.0, 0.0, 0).drop(columns="task_loss").to_csv("ladder.csv", index=False)
    assert_user_error(*run(capsys, "fit", "ladder.csv", "--law", "downstream"), "ladder.csv", "task_loss")


def test_no_compute_optimal_allocation_for_accuracy_or_hyperparameter_laws(tmp_path, monkeypatch, capsys):
    """Minimising an accuracy under C = 6ND would pick the worst model: refused, with what to do instead."""
    chained = Fit(get_law("downstream"), {**STEP1, **STEP2}, settings={"law": "downstream"})
    with pytest.raises(ScalingError, match="predicts accuracy .downstream law., not a loss to minimise"):
        chained.optimal(1e21)
    monkeypatch.chdir(tmp_path)
    chained.save("chain.json")
    assert_user_error(*run(capsys, "optimal", "chain.json", "-C", "1e21"), "not a loss to minimise", "scaling forecast")
    with pytest.raises(ScalingError, match="--N 1e9 --D 1e11"):
        load_fit("steplaw2025-lr").optimal(1e21)


def test_law_columns_stay_out_of_the_trainer_header(tmp_path, monkeypatch, capsys):
    """The laws' columns (error, accuracy, lr_opt, ...) are mappable but never join the trainer's results header,
    whose order existing results files depend on."""
    from scaling.results import CANONICAL_COLUMNS, LAW_COLUMNS
    from scaling.train.record import HEADER

    assert not set(LAW_COLUMNS) & set(HEADER)
    assert HEADER[: len(CANONICAL_COLUMNS)] == list(CANONICAL_COLUMNS)
    monkeypatch.chdir(tmp_path)
    _gadre_table(0.0, 0).rename(columns={"error": "avg_top1_err", "loss": "c4_loss"}).to_csv("evals.csv", index=False)
    code, out, err = run(capsys, "fit", "evals.csv", "--law", "gadre-error", "--map", "error=avg_top1_err",
                         "--map", "loss=c4_loss", "-b", "0", "-f", "json")
    assert code == 0, err
    assert json.loads(out)["params"]["gamma"]["value"] == pytest.approx(GADRE_TRUTH["gamma"], rel=1e-5)


def test_two_step_tie_within_a_step_and_not_across():
    fit = scaling_fit(_ladder(0.0, 0.0, 0), law="downstream", n_bootstrap=0, tie={"beta": "alpha"})
    assert fit.tied == {"beta": "alpha"} and fit.params["beta"] == fit.params["alpha"]
    with pytest.raises(ScalingError, match="belong to different steps"):
        scaling_fit(_ladder(0.0, 0.0, 0), law="downstream", tie={"k": "alpha"})
