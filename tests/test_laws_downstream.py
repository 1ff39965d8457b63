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
from scaling.estimate import LawFitter
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
    assert fit.quality["converged"], fit.quality["message"]
    assert fit.quality["residual_space"] == "linear"
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
    assert row["lower"] <= row["point"] <= row["upper"]


def test_gadre_cli_refuses_an_error_in_percent(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    table = _gadre_table(0.0, 0)
    table["error"] *= 100  # percent instead of a fraction: a unit mix-up, named with its line
    table.to_csv("pct.csv", index=False)
    assert_user_error(*run(capsys, "fit", "pct.csv", "--law", "gadre-error"), "pct.csv", "error", "[0, 1]")
