"""Forecasts: closed-form optimum vs brute force and golden values (C1 in docs/laws.md, 'Acceptance tests'), numeric
optimum, predict() broadcasting and intervals, bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize_scalar

import scaling
from scaling.errors import ScalingError
from scaling.fitting.result import Fit
from scaling.fitting.forecast import numeric_optimal
from scaling.laws import get_law

CHIN = get_law("chinchilla")
TEX = {"E": 1.6934, "A": 406.4, "B": 410.7, "alpha": 0.3392, "beta": 0.2849}
ROUNDED = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
BESIROGLU = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def brute_force_n_opt(params, C):
    """Minimise L(N, C/(6N)) over log N with plain scipy (independent of the forecaster's code)."""
    f = lambda t: float(CHIN.predict(params, N=np.exp(t), D=C / (6 * np.exp(t))))
    res = minimize_scalar(f, bounds=(np.log(1.0), np.log(C / 6.0)), method="bounded", options={"xatol": 1e-12})
    return float(np.exp(res.x))


@pytest.mark.parametrize("C", [1e12, 1e18, 5.76e23])
def test_closed_form_optimum_matches_brute_force(C):
    fit = Fit(CHIN, TEX)
    out = fit.optimal(C)
    assert out["N_opt"][0] == pytest.approx(brute_force_n_opt(TEX, C), rel=1e-6)
    assert out["N_opt"][0] * out["D_opt"][0] * 6 == pytest.approx(C, rel=1e-12)


@pytest.mark.parametrize("C", [1e12, 1e18, 5.76e23])
def test_numeric_optimum_matches_closed_form(C):
    no_closed_form = dataclasses.replace(CHIN, optimal=None)
    n_opt, d_opt = numeric_optimal(no_closed_form, TEX, C)
    n_ref, d_ref = CHIN.optimal(TEX, C)
    assert n_opt == pytest.approx(float(n_ref), rel=1e-6)
    assert d_opt == pytest.approx(float(d_ref), rel=1e-6)


def test_golden_allocations_at_the_gopher_budget():
    """TeX constants -> 4.031e10; rounded -> 3.219e10 (rounding is not harmless); Besiroglu -> 7.225e10, D/N 18.39."""
    assert scaling.load_fit("chinchilla").optimal(5.76e23)["N_opt"][0] == pytest.approx(4.031e10, rel=1e-3)
    assert Fit(CHIN, ROUNDED).optimal(5.76e23)["N_opt"][0] == pytest.approx(3.219e10, rel=1e-3)
    out = scaling.load_fit("besiroglu2024").optimal(5.76e23)
    assert out["N_opt"][0] == pytest.approx(7.225e10, rel=1e-3)
    assert out["tokens_per_param"][0] == pytest.approx(18.39, abs=0.01)
    assert np.isnan(out["N_opt_conf_lower"][0])  # a published fit has no draws


def _fit_with_draws():
    N, D = np.meshgrid(np.geomspace(7e7, 1.6e10, 6), np.geomspace(5e9, 5e11, 6))
    df = pd.DataFrame({"N": N.ravel(), "D": D.ravel()})
    df["loss"] = CHIN.predict(BESIROGLU, N=df.N, D=df.D) * np.exp(np.random.default_rng(0).normal(0, 0.01, len(df)))
    return scaling.fit(df, law="chinchilla", n_bootstrap=20, n_refine=4)


@pytest.fixture(scope="module")
def fitted():
    return _fit_with_draws()


def test_predict_broadcasts_and_brackets_the_point(fitted):
    out = fitted.predict(N=[1e9, 7e10], D=1.4e12)
    assert list(out.columns) == ["N", "D", "point", "conf_lower", "conf_upper", "pred_lower", "pred_upper", "interval_status", "extrapolation", "extrap_decades", "extrap_distance", "warning"]
    assert len(out) == 2 and (out["D"] == 1.4e12).all()
    assert out["point"][0] == pytest.approx(float(CHIN.predict(fitted.params, N=1e9, D=1.4e12)), rel=1e-12)
    assert (out["conf_lower"] < out["conf_upper"]).all()
    assert ((out["conf_lower"] <= out["point"]) & (out["point"] <= out["conf_upper"])).all()
    # one new run scatters around the mean law: the prediction interval contains the confidence interval
    assert ((out["pred_lower"] < out["conf_lower"]) & (out["conf_upper"] < out["pred_upper"])).all()
    # Extrapolating further widens the band.
    far = fitted.predict(N=1e12, D=1e14)
    assert (far["conf_upper"] - far["conf_lower"])[0] > (out["conf_upper"] - out["conf_lower"])[0]
    wider = fitted.predict(ci=0.99, N=[1e9, 7e10], D=1.4e12)
    assert (wider["conf_upper"] - wider["conf_lower"] >= out["conf_upper"] - out["conf_lower"]).all()


def test_predict_grid_takes_the_cartesian_product(fitted):
    out = fitted.predict(grid=True, N=[1e9, 1e10, 1e11], D=[1e11, 1e12])
    assert len(out) == 6 and set(out["N"]) == {1e9, 1e10, 1e11}


def test_optimal_has_intervals_from_the_draws(fitted):
    out = fitted.optimal([1e21, 1e23])
    expected = ["compute"] + [f"{q}{s}" for q in ["N_opt", "D_opt", "loss", "tokens_per_param"]
                              for s in ["", "_conf_lower", "_conf_upper"]]
    expected += ["loss_pred_lower", "loss_pred_upper", "interval_status", "extrapolation", "extrap_decades",
                 "extrap_distance", "warning"]
    assert list(out.columns) == expected
    assert (out["N_opt_conf_lower"] <= out["N_opt"]).all() and (out["N_opt"] <= out["N_opt_conf_upper"]).all()
    assert out["N_opt"][1] > out["N_opt"][0]


def test_numeric_optimum_for_kaplan_nd_is_interior():
    out = scaling.load_fit("kaplan2020").optimal(1e21)
    n, d = out["N_opt"][0], out["D_opt"][0]
    law = get_law("kaplan-nd")
    p = scaling.load_fit("kaplan2020").params
    loss = lambda n_: float(law.predict(p, N=n_, D=1e21 / (6 * n_)))
    assert loss(n) < loss(n * 1.1) and loss(n) < loss(n / 1.1)
    assert n * d * 6 == pytest.approx(1e21)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda f: f.predict(N=1e9), "needs input"),
        (lambda f: f.predict(N=1e9, D=1e10, U=1e9), "unknown U"),
        (lambda f: f.predict(N=-1, D=1e10), "must be a positive"),
        (lambda f: f.predict(N=np.array([1e9, -1.0]), D=1e10), r"^input N: -1 must be a positive finite number$"),
        (lambda f: f.predict(N=1e9, D=np.float64("inf")), r"^input D: inf must be"),
        (lambda f: f.predict(N=[1, 2, 3], D=[1, 2]), "different lengths"),
        (lambda f: f.predict(ci=2, N=1e9, D=1e9), "ci 2"),
        (lambda f: f.optimal("lots"), "not a number"),
        (lambda f: f.optimal(-5), "compute -5: must be a finite number of FLOPs above 6"),
        (lambda f: f.optimal(5), "compute 5: must be a finite number of FLOPs above 6"),
    ],
)
def test_forecast_bad_input(fitted, call, message):
    with pytest.raises(ScalingError, match=message):
        call(fitted)


def test_optimal_needs_a_law_of_n_and_d():
    with pytest.raises(ScalingError, match="needs a law of N and D"):
        scaling.load_fit("kaplan2020-n").optimal(1e21)


def test_fit_to_frame_standard_errors_and_correlations():
    rng = np.random.default_rng(3)
    N, D = (a.ravel() for a in np.meshgrid(np.geomspace(1e6, 1e8, 5), np.geomspace(1e8, 1e10, 4)))
    loss = (1.8 + 400 / N**0.34 + 410 / D**0.28) * np.exp(rng.normal(0, 0.005, N.size))
    fit = scaling.fit(pd.DataFrame({"N": N, "D": D, "loss": loss}), law="chinchilla", n_bootstrap=40, fix={"E": 1.8})
    frame = fit.to_frame()
    assert list(frame.columns) == ["kind", "value", "stderr", "lower", "upper"]
    assert frame.loc["E", "kind"] == "fixed" and np.isnan(frame.loc["E", "stderr"])
    assert frame.loc["a", "kind"] == "derived"
    for name in ("A", "alpha", "a"):  # the standard deviation of the draws, derived quantities included
        assert frame.loc[name, "stderr"] > 0
    np.testing.assert_allclose(frame.loc["alpha", "stderr"], fit.draws["alpha"].std(ddof=1), rtol=1e-12)
    corr = fit.correlation()
    assert list(corr.index) == ["A", "B", "alpha", "beta"]  # free parameters only
    np.testing.assert_allclose(np.diag(corr), 1.0)
    assert corr.loc["A", "alpha"] > 0.9  # a power law's scale and exponent move together
    text = fit.summary()
    assert "[[Correlations]]" in text and "C(A, alpha)" in text and "(se)" in text
