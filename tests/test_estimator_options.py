"""Estimator options (issue 11): variable projection starts (``method="varpro"``) and the asymmetric
(lower-envelope) loss (``asymmetry``), through the API and the real CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cli_helpers import assert_user_error, run
from scaling.errors import ScalingError
from scaling.fitting.estimate import LawFitter
from scaling.fitting.objective import Objective, ParamSpace, law_arrays
from scaling.laws import get_law
from scaling.fitting.varpro import POINTS_PER_EXPONENT, varpro_starts

CHIN = get_law("chinchilla")
TRUTH = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def table(noise: float = 0.01, seed: int = 0, envelope: bool = False, n: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    N, D = np.meshgrid(np.geomspace(7e7, 1.6e10, n), np.geomspace(5e9, 5e11, n))
    N, D = N.ravel(), D.ravel()
    loss = CHIN.predict(TRUTH, N=N, D=D)
    e = rng.normal(0.0, noise, loss.size)
    loss = loss * np.exp(np.abs(e) + rng.normal(0.0, 0.002, loss.size) if envelope else e)
    return pd.DataFrame({"N": N, "D": D, "loss": loss})


def test_varpro_starts_lie_near_the_optimum_and_reach_the_grid_optimum():
    df = table(seed=1)
    grid_fit = LawFitter("chinchilla", n_bootstrap=0).fit(df)
    varpro_fit = LawFitter("chinchilla", n_bootstrap=0, method="varpro").fit(df)
    assert varpro_fit.quality.converged
    assert varpro_fit.quality.n_starts == POINTS_PER_EXPONENT**2
    assert varpro_fit.settings["method"] == "varpro"
    assert varpro_fit.quality.objective <= grid_fit.quality.objective * (1 + 1e-9)
    for k, v in grid_fit.params.items():
        assert varpro_fit.params[k] == pytest.approx(v, rel=1e-5)
    # the starts themselves: the best one is within a few percent of the optimum (the grid's is many times above)
    space = ParamSpace(CHIN, None, None, None)
    inputs, log_y = law_arrays(CHIN, df)
    obj = Objective(space, inputs, log_y, loss="huber", delta=1e-3)
    best_varpro = obj.values(varpro_starts(obj)).min()
    best_grid = obj.values(space.grid()).min()
    assert best_varpro < 1.1 * grid_fit.quality.objective < best_grid


def test_varpro_recovers_a_noiseless_single_input_law_and_honours_fix():
    law = get_law("saturating")
    N = np.geomspace(1e6, 1e10, 12)
    df = pd.DataFrame({"N": N, "loss": law.predict({"E": 1.7, "A": 80.0, "a": 0.3}, N=N)})
    fit = LawFitter("saturating", n_bootstrap=0, method="varpro").fit(df)
    assert fit.params == pytest.approx({"E": 1.7, "A": 80.0, "a": 0.3}, rel=1e-4)
    fixed = LawFitter("chinchilla", n_bootstrap=0, method="varpro", fix={"E": 1.8172, "beta": 0.3658}).fit(
        table(noise=0.0))
    assert fixed.params["E"] == 1.8172 and fixed.params["beta"] == 0.3658
    assert fixed.params["alpha"] == pytest.approx(0.3478, rel=1e-5)
    tied_grid = LawFitter("chinchilla", n_bootstrap=0, tie={"beta": "alpha"}).fit(table(seed=5, n=6))
    tied = LawFitter("chinchilla", n_bootstrap=0, method="varpro", tie={"beta": "alpha"}).fit(table(seed=5, n=6))
    assert tied.quality.n_starts == POINTS_PER_EXPONENT  # one free exponent: a 1-D exponent grid
    assert tied.params["beta"] == tied.params["alpha"]
    assert tied.quality.objective <= tied_grid.quality.objective * (1 + 1e-9)
    with pytest.raises(ScalingError, match="A is tied"):
        LawFitter("chinchilla", n_bootstrap=0, method="varpro", tie={"B": "A"}).fit(table(n=4))


def test_asymmetric_loss_fits_the_lower_envelope():
    df = table(noise=0.03, seed=2, envelope=True)  # every point at or above the law
    sym = LawFitter("chinchilla", n_bootstrap=0).fit(df)
    low = LawFitter("chinchilla", n_bootstrap=0, asymmetry=10.0).fit(df)
    assert low.settings["asymmetry"] == 10.0 and low.quality.converged
    inputs = {"N": df.N.to_numpy(), "D": df.D.to_numpy()}
    above_sym = np.mean(CHIN.predict(sym.params, **inputs) > df.loss)
    above_low = np.mean(CHIN.predict(low.params, **inputs) > df.loss)
    assert above_low < 0.2 < above_sym  # the symmetric fit runs through the middle of the cloud
    truth = CHIN.predict(TRUTH, **inputs)
    assert np.abs(np.log(CHIN.predict(low.params, **inputs) / truth)).mean() < \
        0.5 * np.abs(np.log(CHIN.predict(sym.params, **inputs) / truth)).mean()


@pytest.mark.parametrize("loss", ["huber", "least_squares"])
def test_asymmetric_gradient_matches_finite_differences(loss):
    df = table(seed=3, n=5)
    space = ParamSpace(CHIN, None, None, None)
    inputs, log_y = law_arrays(CHIN, df)
    obj = Objective(space, inputs, log_y, loss=loss, delta=1e-3, asymmetry=7.0)
    x = space.theta_of(TRUTH) + np.array([0.01, -0.02, 0.03, 0.004, -0.003])
    _, grad = obj.value_and_grad(x)
    numeric = np.empty_like(x)
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = 1e-6
        numeric[j] = (obj.value(x + e) - obj.value(x - e)) / 2e-6
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-8 * np.abs(numeric).max())


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "simplex"}, "method 'simplex'"),
    ({"asymmetry": 0.0}, "asymmetry 0.0"),
    ({"asymmetry": 5.0, "loss": "huber_likelihood"}, "huber_likelihood"),
])
def test_bad_options_are_one_clear_error(kwargs, message):
    with pytest.raises(ScalingError, match=message):
        LawFitter("chinchilla", n_bootstrap=0, **kwargs).fit(table(n=4))


def test_varpro_on_a_law_without_linear_parameters_says_so():
    with pytest.raises(ScalingError, match="kaplan-nd has no linear parameters"):
        LawFitter("kaplan-nd", n_bootstrap=0, method="varpro").fit(table(n=4))


def test_cli_fit_with_varpro_and_asymmetry_records_them(tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    table(noise=0.01, seed=4, n=6).to_csv(csv, index=False)
    out = tmp_path / "fit.json"
    code, stdout, err = run(capsys, "fit", str(csv), "--law", "chinchilla", "--method", "varpro",
                            "--asymmetry", "3", "--bootstrap", "0", "-o", str(out), "--format", "json")
    assert code == 0, err
    settings = json.loads(out.read_text())["settings"]
    assert settings["method"] == "varpro" and settings["asymmetry"] == 3.0
    assert_user_error(*run(capsys, "fit", str(csv), "--method", "nnls", "-o", str(tmp_path / "x.json")), "--method")
    assert_user_error(*run(capsys, "fit", str(csv), "--asymmetry", "-1", "-o", str(tmp_path / "x.json")),
                      "--asymmetry")
    assert not (tmp_path / "x.json").exists()
