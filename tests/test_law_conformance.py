"""Law conformance: every registered law passes the same checks (the idea of scikit-learn's ``check_estimator``).

The laws are discovered from the registry at collection time, so a new law is checked the moment its module
registers it; nothing here lists law names. For each law:

- its starting grid lies within its bounds (and is positive for log-scale parameters); it names its paper;
- ``log_function``, where the law has one, equals log(function);
- evaluating a vector of points equals evaluating them one by one;
- a closed-form compute-optimal allocation, where the law has one, equals the numeric optimum;
- fitting synthetic data drawn from the law with the real fitter reaches an objective at least as low as the true
  parameters' and predicts the noiseless law within 2% in the fitted range;
- the fit survives a fit-file round trip with identical predictions.

A "true" parameter set is taken from the law's own starting grid (the first combination, in grid order around the
middle of each grid, whose predictions are finite and of the right sign on the test inputs), so no law needs a
hand-written truth. Inputs are drawn log-uniformly over a typical range per input column.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

import scaling
from scaling.fitting.estimate import LawFitter
from scaling.fitting.objective import huber
from scaling.fitting.forecast import numeric_optimal
from scaling.laws import get_law, law_names
from scaling.results import POSITIVE_COLUMNS, UNIT_INTERVAL_COLUMNS

# Typical ranges of the input columns the catalogue uses; an input not listed here gets FALLBACK_RANGE.
INPUT_RANGES = {
    "N": (1e6, 1e9),
    "N_total": (1e6, 1e9),
    "D": (1e8, 1e11),
    "C": (1e17, 1e21),
    "U": (1e8, 1e10),
    "D_F": (1e6, 1e9),
    "loss": (2.0, 5.0),
    "L": (2.0, 5.0),
}
FALLBACK_RANGE = (1e1, 1e4)
N_POINTS = 60

LAWS = law_names()


def _inputs(law, n: int = N_POINTS, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name in law.inputs:
        lo, hi = INPUT_RANGES.get(name, FALLBACK_RANGE)
        out[name] = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    return out


def _middle_first(grid: tuple[float, ...]) -> list[float]:
    """Grid values ordered from the middle outwards: the middle of a starting grid is the law's typical value."""
    values = sorted(grid)
    mid = (len(values) - 1) / 2
    return [v for _, v in sorted(((abs(i - mid), v) for i, v in enumerate(values)), key=lambda t: t[0])]


def _truth(law) -> dict[str, float]:
    x = _inputs(law)
    orders = [_middle_first(p.grid) for p in law.params]
    for combo in itertools.islice(itertools.product(*orders), 5000):
        params = dict(zip(law.param_names, combo))
        with np.errstate(all="ignore"):
            y = law.predict(params, **x)
        ok = np.isfinite(y).all() and (law.residual_space == "linear" or (y > 0).all())
        if law.output in POSITIVE_COLUMNS:
            ok = ok and (y > 0).all()
        if law.output in UNIT_INTERVAL_COLUMNS:  # noise is added on top: keep clear of the edges
            ok = ok and (y > 0.05).all() and (y < 0.95).all()
        if ok and np.ptp(y) > 1e-3 * np.abs(y).mean():  # the inputs must move the output, or nothing is identifiable
            return params
    pytest.fail(f"law {law.name}: no combination of its starting grid gives finite, varying predictions on "
                f"typical inputs {sorted(x)}; widen its grid or add the input's range to INPUT_RANGES")


def _synthetic(law, params: dict[str, float], noise: float = 0.005, seed: int = 1) -> tuple[pd.DataFrame, np.ndarray]:
    x = _inputs(law, seed=seed)
    clean = law.predict(params, **x)
    rng = np.random.default_rng(seed)
    if law.residual_space == "log":
        observed = clean * np.exp(rng.normal(0.0, noise, clean.size))
    else:
        observed = clean + rng.normal(0.0, noise * np.abs(clean).mean(), clean.size)
    df = pd.DataFrame({**x, law.output: observed})
    df["run_id"] = [f"r{i}" for i in range(len(df))]
    return df, clean


def _residuals(law, params, df) -> np.ndarray:
    pred = law.predict(params, **{c: df[c].to_numpy() for c in law.inputs})
    y = df[law.output].to_numpy()
    return np.log(pred) - np.log(y) if law.residual_space == "log" else pred - y


@pytest.mark.parametrize("name", LAWS)
def test_grid_within_bounds_and_paper_named(name):
    law = get_law(name)
    assert law.reference.strip(), f"{name}: no paper"
    assert "=" in law.formula, f"{name}: formula {law.formula!r} names no output"
    assert law.inputs and law.params
    for p in law.params:
        assert p.lower <= p.upper, (name, p.name)
        assert all(p.lower <= g <= p.upper for g in p.grid), f"{name}.{p.name}: a start lies outside its bounds"
        if p.log_scale:
            assert all(g > 0 for g in p.grid), f"{name}.{p.name}: log-scale starts must be positive"


@pytest.mark.parametrize("name", LAWS)
def test_log_form_equals_function_and_vectorised_equals_pointwise(name):
    law = get_law(name)
    params = _truth(law)
    x = _inputs(law, n=12)
    y = law.predict(params, **x)
    pointwise = np.array([float(np.squeeze(law.predict(params, **{k: v[i] for k, v in x.items()})))
                          for i in range(12)])
    np.testing.assert_allclose(y, pointwise, rtol=1e-12, err_msg=f"{name}: vectorised != pointwise")
    if law.log_function is not None:
        np.testing.assert_allclose(law.log_predict(params, **x), np.log(y), rtol=1e-10, atol=1e-12,
                                   err_msg=f"{name}: log_function != log(function)")
    for derived, fn in law.derived.items():
        value = fn(params)
        assert np.isfinite(value) or np.isnan(value), f"{name}: derived {derived} = {value}"


@pytest.mark.parametrize("name", [n for n in LAWS if get_law(n).optimal is not None])
def test_closed_form_optimum_equals_numeric(name):
    law = get_law(name)
    params = _truth(law)
    at = {c: 1e30 for c in law.inputs if c not in ("N", "D")}  # other inputs far out of the way (U: unlimited data)
    for compute in (1e18, 1e20, 1e22):
        n_num, d_num = numeric_optimal(law, params, compute, at=at)
        n_cf, d_cf = (float(np.squeeze(v)) for v in law.optimal(params, np.array([compute])))
        np.testing.assert_allclose([n_cf, d_cf], [n_num, d_num], rtol=1e-4, err_msg=f"{name} at C={compute:g}")
        np.testing.assert_allclose(6 * n_cf * d_cf, compute, rtol=1e-9)


@pytest.fixture(scope="module")
def fitted():
    """One fit per law on synthetic data from its truth (cached: the fit is the expensive step)."""
    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            law = get_law(name)
            params = _truth(law)
            df, clean = _synthetic(law, params)
            fit = LawFitter(law, n_bootstrap=0, group="run_id").fit(df, source="synthetic")
            cache[name] = (law, params, df, clean, fit)
        return cache[name]

    return get


@pytest.mark.parametrize("name", LAWS)
def test_fit_recovers_synthetic_truth(name, fitted):
    law, truth, df, clean, fit = fitted(name)
    delta = 1e-3
    if law.residual_space == "linear":  # the fitter's Huber threshold is on the target's own scale there
        delta = fit.settings.get("delta", delta) if isinstance(fit.settings, dict) else delta
    at_fit = huber(_residuals(law, fit.params, df), delta).sum()
    at_truth = huber(_residuals(law, truth, df), delta).sum()
    assert at_fit <= at_truth * (1 + 1e-6) + 1e-12, f"{name}: optimiser stopped above the true parameters' objective"
    pred = law.predict(fit.params, **{c: df[c].to_numpy() for c in law.inputs})
    scale = np.abs(clean) if law.residual_space == "log" else np.abs(clean).mean()
    worst = float(np.max(np.abs(pred - clean) / scale))
    assert worst < 0.02, f"{name}: in-range predictions off the noiseless law by up to {worst:.1%}"


@pytest.mark.parametrize("name", LAWS)
def test_fit_file_round_trip(name, fitted, tmp_path):
    law, _, df, _, fit = fitted(name)
    path = fit.save(tmp_path / f"{name}.json")
    loaded = scaling.load_fit(path)
    assert loaded.law.name == law.name and loaded.law.inputs == law.inputs
    for p in law.param_names:
        assert loaded.params[p] == pytest.approx(fit.params[p], rel=1e-12)
    x = _inputs(law, n=8, seed=5)
    np.testing.assert_allclose(loaded.predict(**x)["point"], fit.predict(**x)["point"], rtol=1e-12)
