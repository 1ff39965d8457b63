"""Hernandez et al. 2021 transfer law: identities, inversion, classification (LAWS.md 3.6 items 1, 2, 4)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logit

from scaling.laws import get_law
from scaling.laws.kaplan import KAPLAN_L_ND, kaplan_n_loss, kaplan_nd_loss
from scaling.laws.transfer import (
    HIGH_DATA,
    NEGATIVE,
    OK,
    SATURATED,
    EXTRAPOLATED,
    classify_runs,
    data_for_infinite_performance,
    data_multiplier,
    effective_data,
    transfer_fraction,
)

LAW = get_law("transfer")
TEXT_TO_PYTHON = {"k": 1.9e4, "alpha": 0.18, "beta": 0.38}
KP = KAPLAN_L_ND


def test_logit_of_transfer_fraction_is_log_ratio():
    # D_T/D_F from 1e-3 to 1e3 (beyond that 1 - f itself cannot be represented to 1e-12)
    D_F = np.logspace(3, 9, 13)
    D_T = D_F * np.logspace(-3, 3, 13)[::-1]
    f = transfer_fraction(D_F, D_T)
    np.testing.assert_allclose(logit(f), np.log(D_T / D_F), rtol=0, atol=1e-12)


def test_published_law_figure_1_example():
    # a 40M-parameter model fine-tuned on 3e5 characters: the Table-1 law gives about 470x effective data (LAWS.md 3.2)
    D_T = float(LAW.predict(TEXT_TO_PYTHON, D_F=3e5, N=4e7))
    assert float(data_multiplier(3e5, D_T)) == pytest.approx(470, rel=0.02)
    np.testing.assert_allclose(LAW.log_predict(TEXT_TO_PYTHON, D_F=3e5, N=4e7), np.log(D_T), rtol=1e-12)


def test_inversion_round_trip():
    N, D = np.meshgrid(np.logspace(4, np.log10(5e6), 9), np.logspace(4, 8, 9))
    L = kaplan_nd_loss(N, D, **KP)
    np.testing.assert_allclose(effective_data(N, L, **KP), D, rtol=1e-9)


def test_inversion_is_infinite_at_or_below_the_infinite_data_loss():
    N = np.array([1e4, 1e6, 5e6])
    L_inf = kaplan_n_loss(N, alpha_N=KP["alpha_N"], N_c=KP["N_c"])
    assert np.all(np.isinf(effective_data(N, L_inf, **KP)))
    assert np.all(np.isinf(effective_data(N, L_inf * 0.99, **KP)))
    assert np.all(np.isfinite(effective_data(N, L_inf * 1.0001, **KP)))


def test_data_for_infinite_performance_is_the_99_percent_point():
    N = np.logspace(4, 9, 6)
    D_N = data_for_infinite_performance(N, **KP)
    L_inf = kaplan_n_loss(N, alpha_N=KP["alpha_N"], N_c=KP["N_c"])
    np.testing.assert_allclose(kaplan_nd_loss(N, D_N, **KP), L_inf / 0.99, rtol=1e-12)


def test_classification_edge_cases():
    N = np.full(5, 1e6)
    D_F = np.array([1e4, 1e4, 1e4, 1e4, 5e7])
    L_inf = float(kaplan_n_loss(1e6, alpha_N=KP["alpha_N"], N_c=KP["N_c"]))
    loss = np.array([
        L_inf * 0.999,                                   # below anything from-scratch training reaches
        float(kaplan_nd_loss(1e6, 1e4, **KP)) * 1.001,   # worse than from scratch on the same D_F: negative
        float(kaplan_nd_loss(1e6, 1e5, **KP)),           # D_E = 1e5: fine
        float(kaplan_nd_loss(1e6, 1e8, **KP)),           # D_E = 1e8: beyond the measured from-scratch range
        float(kaplan_nd_loss(1e6, 3e8, **KP)),           # D_F = 5e7 > 0.1 D(N) = 3e7: outside the low-data regime
    ])
    D_E, D_T, cls = classify_runs(N, D_F, loss, KP, D_measured_max=3e7)
    assert list(cls) == [SATURATED, NEGATIVE, OK, EXTRAPOLATED, HIGH_DATA]
    assert np.isinf(D_E[0])
    assert D_T[1] < 0
    assert D_T[2] == pytest.approx(1e5 - 1e4, rel=1e-9)
    assert 0.1 * float(data_for_infinite_performance(1e6, **KP)) < 5e7
