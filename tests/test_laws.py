"""The law catalogue: power, saturating, Kaplan 2020, BNSL (and M4). Acceptance tests of LAWS.md 1.5, 7.1-7.5.

Closed forms are checked against the published numbers; recovery tests generate data from a law with known
parameters, fit it with the real estimator (scaling.estimate.LawFitter) and compare. Tolerances are LAWS.md's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scaling.errors import ScalingError
from scaling.laws import get_law, law_names
from scaling.laws.kaplan import (
    KAPLAN_L_ND,
    PF_DAY,
    c_min,
    compute_efficient_frontier,
    critical_batch,
    data_needed_to_avoid_overfitting,
    kaplan_learning_rate,
    n_nonembedding,
    overfitting_penalty,
    predicted_alpha_c_min,
    s_min,
)

# ---------------------------------------------------------------------------------------------------------------
# Catalogue


def test_catalogue_names_and_docs():
    names = set(law_names())
    assert {"power", "saturating", "kaplan-n", "kaplan-d", "kaplan-nd", "kaplan-c", "bnsl"} <= names
    for name in ("power", "saturating", "kaplan-n", "kaplan-d", "kaplan-nd", "kaplan-c", "bnsl"):
        law = get_law(name)
        assert law.formula.startswith("L = ")
        assert "arXiv" in law.reference or "power law" in law.reference
        for p in law.params:
            assert p.grid and all(p.lower <= g <= p.upper for g in p.grid), (name, p.name)
            if p.log_scale:
                assert all(g > 0 for g in p.grid), (name, p.name)


def test_default_inputs_and_retargeting():
    assert get_law("power").inputs == ("N",)
    assert get_law("saturating").inputs == ("N",)
    assert get_law("bnsl").inputs == ("D",)
    law = get_law("saturating:D")
    assert law.inputs == ("D",) and law.formula == "L = E + A D^-a"
    p = {"E": 1.5, "A": 40.0, "a": 0.3}
    np.testing.assert_allclose(law.predict(p, D=[1e3, 1e6]), 1.5 + 40.0 * np.array([1e3, 1e6]) ** -0.3, rtol=1e-14)
    with pytest.raises(ScalingError, match="needs input"):
        law.predict(p, N=[1e3])
    with pytest.raises(ScalingError, match="only single-input"):
        get_law("kaplan-nd:D")


@pytest.mark.parametrize(
    "name, params, inputs",
    [
        ("power", {"A": 30.0, "a": 0.2}, {"N": [1e3, 1e6, 1e9]}),
        ("saturating", {"E": 1.7, "A": 400.0, "a": 0.34}, {"N": [1e3, 1e6, 1e9]}),
        ("saturating", {"E": 0.0, "A": 400.0, "a": 0.34}, {"N": [1e3, 1e6, 1e9]}),
        ("kaplan-n", {"alpha_N": 0.076, "N_c": 8.8e13}, {"N": [1e4, 1e9]}),
        ("kaplan-d", {"alpha_D": 0.095, "D_c": 5.4e13}, {"D": [1e5, 1e12]}),
        ("kaplan-c", {"alpha_C": 0.057, "C_c": 1.6e7 * PF_DAY}, {"C": [1e12, 1e24]}),
        ("kaplan-nd", KAPLAN_L_ND, {"N": [1e4, 1e6, 1e9], "D": [1e5, 1e9, 1e12]}),
        ("bnsl", {"a": 0.4, "b": 2.3, "c0": 0.05, "c1": 5.7, "d1": 612.0, "f1": 0.06}, {"D": [1.0, 300.0, 612.0, 4e3]}),
    ],
)
def test_log_function_matches_function(name, params, inputs):
    law = get_law(name)
    np.testing.assert_allclose(law.log_predict(params, **inputs), np.log(law.predict(params, **inputs)), rtol=1e-12)


def test_kaplan_formulas_by_hand():
    """Eq. 1.1, 1.2, 1.5 written out directly (LAWS.md 1.1) at the published constants."""
    N, D = np.array([1e4, 5e6, 1e9]), np.array([1e5, 1e8, 1e11])
    np.testing.assert_allclose(get_law("kaplan-n").predict({"alpha_N": 0.076, "N_c": 8.8e13}, N=N),
                               (8.8e13 / N) ** 0.076, rtol=1e-14)
    np.testing.assert_allclose(get_law("kaplan-d").predict({"alpha_D": 0.095, "D_c": 5.4e13}, D=D),
                               (5.4e13 / D) ** 0.095, rtol=1e-14)
    expected = ((6.4e13 / N) ** (0.076 / 0.103) + 1.8e13 / D) ** 0.103
    np.testing.assert_allclose(get_law("kaplan-nd").predict(KAPLAN_L_ND, N=N, D=D), expected, rtol=1e-13)


def test_kaplan_nd_log_is_stable_where_the_direct_form_overflows():
    # (N_c/N)^(alpha_N/alpha_D) = (1e13)^(2/0.01) = 1e2600: inf in float64, a modest number in logs.
    p = {"alpha_N": 2.0, "alpha_D": 0.01, "N_c": 1e17, "D_c": 1e10}
    log_l = get_law("kaplan-nd").log_predict(p, N=1e4, D=1e6)
    assert np.isfinite(log_l)
    np.testing.assert_allclose(log_l, 2.0 * np.log(1e13), rtol=1e-12)


def test_bnsl_segments():
    """Far below the break the slope is -c0, far above it -(c0 + c1) (Caballero et al. 2022)."""
    law = get_law("bnsl")
    p = {"a": 0.0, "b": 2.0, "c0": 0.1, "c1": 0.7, "d1": 1e4, "f1": 0.1}

    def slope(x):
        lo, hi = law.log_predict(p, D=x), law.log_predict(p, D=x * 1.01)
        return (hi - lo) / np.log(1.01)

    assert slope(10.0) == pytest.approx(-0.1, abs=1e-6)
    assert slope(1e8) == pytest.approx(-0.8, abs=1e-6)
    # Sharp break (f1 = 0.01) far past it: the direct (x/d1)^(1/f1) = 1e400 overflows, the law does not.
    sharp = dict(p, f1=0.01)
    assert np.isfinite(law.log_predict(sharp, D=1e8))


# ---------------------------------------------------------------------------------------------------------------
# Kaplan closed forms (LAWS.md 1.5 items 1-3 and 6; K1, K2, K5)


def test_K1_nonembedding_count():
    assert n_nonembedding(12, 768) == 84_934_656 == 12 * 12 * 768**2
    assert n_nonembedding(2, 64, d_attn=32, d_ff=128) == 2 * 64 * 2 * (2 * 32 + 128)


def test_K2_critical_batch_halves_steps_and_compute():
    L = np.array([2.0, 3.0, 4.5])
    B = critical_batch(L)
    np.testing.assert_allclose(s_min(1000.0, B, L), 500.0, rtol=1e-15)
    np.testing.assert_allclose(c_min(1e20, B, L), 0.5e20, rtol=1e-15)
    assert critical_batch(3.0) == pytest.approx(1.123e6, rel=5e-4)
    assert critical_batch(3.0, B_star=2e8) == pytest.approx(1.069e6, rel=5e-4)
    # B_crit doubles for every ~13% decrease in loss: (1 - 2**-0.21)
    assert critical_batch(3.0 * 2**-0.21) / critical_batch(3.0) == pytest.approx(2.0, rel=1e-12)


def test_predicted_compute_exponent():
    assert predicted_alpha_c_min() == pytest.approx(0.05199, abs=1e-5)


@pytest.mark.parametrize("N, expected", [(1e4, 0.0215), (1e6, 0.0213), (1e8, 0.0211), (1e9, 0.0210)])
def test_K5_overfitting_threshold(N, expected):
    D = data_needed_to_avoid_overfitting(N)
    assert D == pytest.approx(5e3 * N**0.74)
    assert overfitting_penalty(N, D) == pytest.approx(expected, abs=5e-4)


def test_overfitting_penalty_monotone_and_exact_inverse():
    D = np.logspace(5, 12, 50)
    dl = overfitting_penalty(1e6, D)
    assert np.all(np.diff(dl) < 0) and np.all(dl > 0)
    # An 8x larger model needs ~8^0.74 = 4.66x more data for the same penalty (Eq. 4.3).
    ratio = data_needed_to_avoid_overfitting(8e6, penalty=0.02) / data_needed_to_avoid_overfitting(1e6, penalty=0.02)
    assert ratio == pytest.approx(8 ** (0.076 / 0.103), rel=1e-12)
    for N in (1e4, 1e7):
        assert overfitting_penalty(N, data_needed_to_avoid_overfitting(N, penalty=0.01)) == pytest.approx(0.01, rel=1e-10)
    with pytest.raises(ScalingError):
        data_needed_to_avoid_overfitting(1e6, penalty=0.0)


def test_kaplan_learning_rate():
    assert kaplan_learning_rate(1e4) == pytest.approx(1.95e-3, abs=1e-5)
    assert kaplan_learning_rate(1e6) == pytest.approx(1.31e-3, abs=1e-5)
    assert kaplan_learning_rate(5e6) == pytest.approx(1.09e-3, abs=1e-5)
    assert isinstance(kaplan_learning_rate(100_000), float)
    np.testing.assert_allclose(kaplan_learning_rate(np.array([1e4, 1e6])), [0.003239 - 0.0001395 * np.log(1e4),
                                                                           0.003239 - 0.0001395 * np.log(1e6)])
    for bad in (0, -5.0, float("nan"), 1e11):
        with pytest.raises(ScalingError):
            kaplan_learning_rate(bad)


def test_compute_efficient_frontier_table6():
    f = compute_efficient_frontier(1.0)  # 1 PF-day
    assert f["N"] == pytest.approx(1.3e9) and f["B"] == pytest.approx(2.0e6)
    assert f["S_min"] == pytest.approx(5.4e3) and f["D"] == pytest.approx(2.0e10)
    g = compute_efficient_frontier(10.0)
    assert g["N"] / f["N"] == pytest.approx(10**0.73)
    assert g["D"] / f["D"] == pytest.approx(10**0.27)
