"""The vocabulary law of Tao et al. 2024 (Approach 3) and its compute-optimal vocabulary.

The published constants are the authors' (optimal_Nv_predict.py in sail-sg/scaling-with-vocab), converted from
their units (1e6 parameters, 1e9 tokens); the optimal-vocabulary goldens are what the authors' own script prints
for the same inputs (its fsolve on dL_u/dV in their units), which our brentq in natural units must reproduce.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cli_helpers import assert_user_error, run
from scaling.errors import ScalingError
from scaling.fitting.estimate import LawFitter
from scaling.fitting.result import load_fit
from scaling.laws import get_law
from scaling.laws.vocabulary import PUBLISHED_NORMALISED, optimal_vocabulary, published_constants

TRUTH = published_constants()


def _authors_budget(N: float) -> float:
    """The authors' compute-optimal FLOPs for N non-vocabulary parameters (their Approach-1 fit, N = e^-2.4847 C^0.5)."""
    return (N / np.exp(-2.4846510161625193)) ** 2


def _table(noise: float, seed: int) -> pd.DataFrame:
    """4 model sizes x 5 vocabularies (4K-64K) x 3 token counts, L_u from the published law plus absolute noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for N, d in zip(np.geomspace(3e7, 3e9, 4), (512, 768, 1024, 2048)):
        for V in (4096, 8192, 16384, 32768, 65536):
            for D in np.geomspace(1e9, 1e11, 3):
                y = float(get_law("vocab").predict(TRUTH, N=N, N_v=V * d, D=D)) + rng.normal(0, noise)
                rows.append({"run_id": f"{N:.2g}-{V}", "N": N, "N_v": V * d, "D": D, "loss_u": y})
    return pd.DataFrame(rows)


def test_catalogue_entry_and_units_conversion():
    law = get_law("vocab")
    assert law.inputs == ("N", "N_v", "D") and law.output == "loss_u" and law.residual_space == "linear"
    assert "arXiv:2407.13623" in law.reference
    q = PUBLISHED_NORMALISED
    N, V, d, D = 1e9, 32000, 2048, 2e10
    theirs = -q["E"] + q["A1"] * (N / 1e6) ** -q["alpha1"] + q["A2"] * (V * d / 1e6) ** -q["alpha2"] \
        + q["B"] * (D / 1e9) ** -q["beta"]
    assert law.predict(TRUTH, N=N, N_v=V * d, D=D) == pytest.approx(theirs, rel=1e-13)
    assert theirs < 0  # unigram-normalised: below the unigram model's loss


def test_published_fit_file():
    f = load_fit("tao2024-vocab")
    assert f.law_name == "vocab" and f.meta["kind"] == "published" and f.tied == {"alpha1": "beta"}
    assert f.params == pytest.approx(TRUTH, rel=1e-15)
    assert "N_v" in f.meta["units"] and "arXiv:2407.13623" in f.meta["reference"]


@pytest.mark.parametrize("N, d, expected", [
    (302e6, 1024.0, 15758.777234309551),   # the authors' script, Approach 3
    (7e9, 4096.0, 59547.57555799588),
    (70e9, 8192.0, 217961.30490438698),     # the abstract: Llama2-70B "should have been at least 216K"
])
def test_optimal_vocabulary_matches_the_authors_script(N, d, expected):
    assert optimal_vocabulary(TRUTH, N, _authors_budget(N), d) == pytest.approx(expected, rel=1e-7)


def test_optimal_vocabulary_grows_with_compute_and_refuses_nonsense():
    N, d = 1e9, 2048.0
    budgets = _authors_budget(N) * np.array([0.25, 1.0, 4.0])  # under-, compute-optimally and over-trained
    v = [optimal_vocabulary(TRUTH, N, c, d) for c in budgets]
    assert v[0] < v[1] < v[2]
    with pytest.raises(ScalingError, match="must be positive"):
        optimal_vocabulary(TRUTH, N, -1.0, d)


@pytest.mark.parametrize("tie", [{"alpha1": "beta"}, {}])
def test_noiseless_recovery(tie):
    fit = LawFitter("vocab", n_bootstrap=0, tie=tie).fit(_table(0.0, 0))
    assert fit.quality.converged, fit.quality.message
    for name, value in TRUTH.items():
        assert fit.params[name] == pytest.approx(value, rel=1e-5), name


def test_noisy_recovery_with_intervals():
    """0.005 nats of noise on L_u: the tied exponent and the floor are pinned, alpha2 loosely (the vocabulary term is
    small next to the others), and its interval covers the truth."""
    fit = LawFitter("vocab", n_bootstrap=40, tie={"alpha1": "beta"}).fit(_table(0.005, 1))
    assert abs(fit.params["beta"] - TRUTH["beta"]) < 0.01 and abs(fit.params["E"] - TRUTH["E"]) < 0.02
    assert abs(fit.params["alpha2"] - TRUTH["alpha2"]) < 0.1
    lo, hi = fit.intervals["alpha2"]
    assert lo < TRUTH["alpha2"] < hi


def test_cli_fit_and_forecast(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _table(0.0, 0).to_csv("vocab.csv", index=False)
    code, out, err = run(capsys, "fit", "vocab.csv", "--law", "vocab", "--tie", "alpha1=beta", "-b", "10", "-f", "json")
    assert code == 0, err
    record = json.loads(out)
    assert record["saved"] == "fits/vocab-vocab.json" and record["params"]["alpha1"]["kind"] == "tied to beta"
    assert record["params"]["alpha2"]["value"] == pytest.approx(TRUTH["alpha2"], rel=1e-5)
    code, out, err = run(capsys, "forecast", "tao2024-vocab", "--N", "7e9", "--D", "1.4e11", "--at", "N_v=2.6e8",
                         "-f", "json")
    assert code == 0, err
    row = json.loads(out)[0]
    assert row["point"] == pytest.approx(float(get_law("vocab").predict(TRUTH, N=7e9, N_v=2.6e8, D=1.4e11)), rel=1e-12)
    assert row["point"] < 0


def test_cli_optimal_vocabulary(tmp_path, monkeypatch, capsys):
    """Published constants reproduce the authors' 7B answer; a fit with draws gives an interval around its optimum."""
    code, out, err = run(capsys, "optimal", "tao2024-vocab", "--N", "7e9", "-C", str(_authors_budget(7e9)),
                         "--at", "d=4096", "-f", "json")
    assert code == 0, err
    row = json.loads(out)[0]
    assert row["V_opt"] == pytest.approx(59547.57555799588, rel=1e-7) and row["V_opt_lower"] is None
    assert row["N_v_opt"] == pytest.approx(row["V_opt"] * 4096)
    monkeypatch.chdir(tmp_path)
    _table(0.005, 1).to_csv("vocab.csv", index=False)
    assert run(capsys, "fit", "vocab.csv", "--law", "vocab", "--tie", "alpha1=beta", "-b", "20")[0] == 0
    code, out, err = run(capsys, "optimal", "fits/vocab-vocab.json", "--N", "1e9", "-C", "1e21", "--at", "d=2048",
                         "-f", "json")
    assert code == 0, err
    row = json.loads(out)[0]
    assert row["V_opt_lower"] < row["V_opt"] < row["V_opt_upper"]
    truth = optimal_vocabulary(TRUTH, 1e9, 1e21, 2048.0)
    assert row["V_opt"] == pytest.approx(truth, rel=0.15)  # measured: 39789 vs 37579, interval [34872, 47754]
    assert_user_error(*run(capsys, "optimal", "fits/vocab-vocab.json", "--N", "1e9", "-C", "1e21"), "--at d=")
