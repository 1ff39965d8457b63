"""Muennighoff et al. 2023 data-constrained law: golden values, effective data, allocation (DC1-DC3 in
docs/laws.md, 'Acceptance tests')."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from scaling.errors import ScalingError
from scaling.fitting.estimate import LawFitter
from scaling.laws import get_law
from scaling.laws.chinchilla import chinchilla_optimal
from scaling.laws.data_constrained import (
    MUENNIGHOFF_C4,
    effective_data,
    epochs_worth,
    optimal_allocation,
    optimal_n_for_data,
    repeated_token_value,
)

LAW = get_law("data-constrained")
P = MUENNIGHOFF_C4


def test_readme_golden_values_to_1e12():
    # datablations README, Figure 1 (right)
    assert abs(float(LAW.predict(P, N=6.34e9, D=242e9, U=25e9)) - 2.2256440889984477) < 1e-12
    assert abs(float(LAW.predict(P, N=8.67e9, D=178e9, U=25e9)) - 2.2269634075087867) < 1e-12
    # the stable log form agrees
    logs = LAW.log_predict(P, N=np.array([6.34e9, 8.67e9]), D=np.array([242e9, 178e9]), U=25e9)
    np.testing.assert_allclose(np.exp(logs), [2.2256440889984477, 2.2269634075087867], rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "epochs, ratio, tol", [(2, 1.968, 1e-3), (4, 3.726, 1e-3), (16, 10.58, 5e-3), (40, 15.17, 5e-3), (100, 16.36, 5e-3)]
)
def test_effective_data_table(epochs, ratio, tol):
    # acceptance test DC2: D'/U after a number of epochs, R*_D = 15.387756 (printed to 3-4 digits)
    got = float(effective_data(epochs * 1e9, 1e9, P["R_D"])) / 1e9
    assert got == pytest.approx(ratio, abs=tol)


def test_effective_data_limits():
    R = P["R_D"]
    assert float(effective_data(1e12 * 1e9, 1e9, R)) / 1e9 == pytest.approx(1 + R, rel=1e-12)  # D' -> U (1 + R*)
    assert float(effective_data(1.1, 1.0, R)) / 1.1 == pytest.approx(0.99970, abs=1e-5)  # D' ~ D for R << R*
    # one epoch or less: every token is fresh, D' = D
    assert float(effective_data(5e8, 1e9, R)) == 5e8
    assert float(effective_data(1e9, 1e9, R)) == 1e9
    # a vanishing R* means repeats are worth nothing
    assert float(effective_data(4e9, 1e9, 1e-300)) == pytest.approx(1e9)


def test_unlimited_unique_data_is_chinchilla_at_the_optimum():
    chin = get_law("chinchilla")
    base = {k: P[k] for k in chin.param_names}
    N, D = (float(x) for x in chinchilla_optimal(base, 1e21))
    assert float(optimal_n_for_data(D, A=P["A"], B=P["B"], alpha=P["alpha"], beta=P["beta"])) == pytest.approx(
        N, rel=1e-12
    )
    assert float(LAW.predict(P, N=N, D=D, U=10 * D)) == pytest.approx(float(chin.predict(base, N=N, D=D)), rel=1e-12)
    # off the optimum, excess parameters are discounted: never below the plain law
    assert float(LAW.predict(P, N=10 * N, D=D, U=10 * D)) > float(chin.predict(base, N=10 * N, D=D))


def test_allocation_under_unique_budget_reproduces_the_paper():
    # acceptance test DC1 (the authors' README): C = 1e22, U = 25e9 -> 2.37337e11 tokens (9.4935 epochs),
    # 7.02236e9 params (4 significant digits)
    a = optimal_allocation(P, 1e22, 25e9)
    assert float(f"{a.D:.4g}") == float(f"{2.37337e11:.4g}")
    assert float(f"{a.N:.4g}") == float(f"{7.02236e9:.4g}")
    assert float(f"{a.epochs:.4g}") == float(f"{9.4935:.4g}")
    assert 6 * a.N * a.D == pytest.approx(1e22, rel=1e-12)
    # the bounded 1-D search finds the same optimum (up to the grid's 0.4% ratio step) and no higher loss
    b = optimal_allocation(P, 1e22, 25e9, method="bounded")
    assert b.loss <= a.loss + 1e-12
    assert b.N == pytest.approx(a.N, rel=4e-3)


def test_allocation_with_ample_data_is_the_chinchilla_optimum():
    b = optimal_allocation(P, 1e21, 1e15, method="bounded")
    N, _D = chinchilla_optimal(P, 1e21)
    assert b.N == pytest.approx(float(N), rel=1e-4)
    assert LAW.optimal is not None and LAW.optimal(P, 1e21)[0] == pytest.approx(float(N))


def test_how_many_epochs_are_worth_it():
    R = P["R_D"]
    half = epochs_worth(0.5, R)
    assert half == pytest.approx(1 + R * math.log(2), rel=1e-12)  # about 11.67 epochs on C4
    assert float(repeated_token_value(half, R)) == pytest.approx(0.5, rel=1e-12)
    # the paper's reading of R*_D: after 1 + R*_D epochs repeated tokens are worth 1 - 1/e on average
    assert epochs_worth(1 - 1 / math.e, R, kind="average") == pytest.approx(1 + R, rel=1e-9)
    e = epochs_worth(0.5, R, kind="average")
    assert float(repeated_token_value(e, R, kind="average")) == pytest.approx(0.5, rel=1e-9)
    assert float(repeated_token_value(1.0, R, kind="average")) == 1.0
    # derived quantities reported with every fit
    assert LAW.derived["epochs_half_value"](P) == pytest.approx(half)
    assert LAW.derived["max_data_multiple"](P) == pytest.approx(1 + R)


@pytest.mark.parametrize("value", [0.0, 1.0, 1.5, -0.1])
def test_epochs_worth_rejects_values_outside_0_1(value):
    with pytest.raises(ScalingError, match="between 0 and 1"):
        epochs_worth(value, 15.0)


def test_allocation_rejects_bad_budgets():
    with pytest.raises(ScalingError, match="positive"):
        optimal_allocation(P, 1e22, 0.0)
    with pytest.raises(ScalingError, match="method"):
        optimal_allocation(P, 1e22, 1e9, method="newton")


# ---------------------------------------------------------------------------------------------------------
# R* recovery with the base frozen (acceptance test DC3)


BASE = {k: P[k] for k in ("E", "A", "B", "alpha", "beta")}


def _grid() -> pd.DataFrame:
    g = np.array(list(itertools.product([1e6, 3e6, 1e7], [1, 2, 4, 8, 16, 32, 64], [3e5, 1e6, 3e6, 1e7])))
    df = pd.DataFrame({"U": g[:, 0], "D": g[:, 0] * g[:, 1], "N": g[:, 2]})
    return df.assign(loss=LAW.predict(P, N=df["N"], D=df["D"], U=df["U"]))


def test_r_star_recovery_noiseless():
    fit = LawFitter(LAW, fix=BASE, n_bootstrap=0, loss="least_squares").fit(_grid())
    assert fit.params["R_D"] == pytest.approx(P["R_D"], rel=1e-6)
    assert fit.params["R_N"] == pytest.approx(P["R_N"], rel=1e-6)


def _r_star_errors(seeds: range, n_refine: int) -> np.ndarray:
    clean, errors = _grid(), []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for seed in seeds:
            noisy = clean.assign(
                loss=clean["loss"] * np.exp(0.01 * np.random.default_rng(seed).standard_normal(len(clean)))
            )
            fit = LawFitter(LAW, fix=BASE, n_bootstrap=0, loss="least_squares", n_refine=n_refine).fit(noisy)
            errors.append((abs(fit.params["R_D"] / P["R_D"] - 1), abs(fit.params["R_N"] / P["R_N"] - 1)))
    return np.quantile(np.array(errors), 0.9, axis=0)


def test_r_star_recovery_with_1_percent_noise():
    # p90 relative error R*_D <= 6%, R*_N <= 4% (measured 5.5% and 3.1% over these 100 seeds; refining the best
    # grid start only gives the same optima as refining all 9 here)
    p90 = _r_star_errors(range(100), n_refine=1)
    assert p90[0] <= 0.06 and p90[1] <= 0.04


@pytest.mark.slow
def test_r_star_recovery_with_1_percent_noise_full_seeds():
    p90 = _r_star_errors(range(200), n_refine=9)
    assert p90[0] <= 0.06 and p90[1] <= 0.04


def test_published_fit_file():
    from scaling.fitting.result import load_fit

    fit = load_fit("muennighoff2023")
    assert fit.law.name == "data-constrained" and fit.meta["kind"] == "published"
    table = fit.predict(N=[6.34e9, 8.67e9], D=[242e9, 178e9], U=25e9)
    np.testing.assert_allclose(table["point"], [2.2256440889984477, 2.2269634075087867], rtol=0, atol=1e-12)
    assert fit.derived["epochs_half_value"] == pytest.approx(1 + 15.387756 * np.log(2))
