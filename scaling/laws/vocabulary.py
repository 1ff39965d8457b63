"""Tao et al. 2024, "Scaling Laws with Vocabulary: Larger Models Deserve Larger Vocabularies" (arXiv 2407.13623,
NeurIPS 2024), Approach 3: a loss law with the vocabulary parameters as a third resource.

    L_u(N, N_v, D) = -E + A1 / N^alpha1 + A2 / N_v^alpha2 + B / D^beta

N is the non-vocabulary parameters (the paper's N_nv), N_v = V d the vocabulary parameters (vocabulary size times
embedding width), D training tokens. L_u is the *unigram-normalised* loss: the loss minus the loss of a unigram model
of the same tokenizer (per token), so models with different vocabularies are comparable; it is negative, hence the
-E and the fit on linear residuals (``residual_space="linear"``, as the authors' Huber fit on L_u). The authors tie
alpha1 = beta (``--tie alpha1=beta``; the published fit ``tao2024-vocab`` records the tie).

Published constants (the authors' ``optimal_Nv_predict.py``, sail-sg/scaling-with-vocab) are in units of 1e6
parameters and 1e9 tokens; ``tao2024-vocab`` holds them converted to parameters and tokens (A1 x 1e6^alpha1,
A2 x 1e6^alpha2, B x 1e9^beta), so both give the same L_u.

The compute-optimal vocabulary for a given N and compute C solves dL_u/dV = 0 with D = C / (6 (N + V d))
(:func:`optimal_vocabulary`): a larger vocabulary lowers the A2 term but costs tokens at fixed compute.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.optimize import brentq

from scaling.errors import ScalingError
from scaling.fitting.bootstrap import percentile_interval
from scaling.laws.base import Law, Param, register

# The authors' Approach-3 fit (optimal_Nv_predict.py), units: N and N_v in 1e6 parameters, D in 1e9 tokens.
PUBLISHED_NORMALISED = {
    "E": 5.5327846803337435, "A1": 1.8313851559554126, "alpha1": 0.44660634152009615,
    "A2": 0.19584238398665638, "alpha2": 0.6707374679896795, "B": 2.1241123120064955, "beta": 0.44660634152009615,
}


def published_constants() -> dict[str, float]:
    """The authors' constants converted to parameters and tokens."""
    p = dict(PUBLISHED_NORMALISED)
    p["A1"] *= 1e6 ** p["alpha1"]
    p["A2"] *= 1e6 ** p["alpha2"]
    p["B"] *= 1e9 ** p["beta"]
    return p


def vocab_loss(N, N_v, D, *, E, A1, alpha1, A2, alpha2, B, beta):
    """L_u = -E + A1/N^alpha1 + A2/N_v^alpha2 + B/D^beta."""
    return -E + A1 / N**alpha1 + A2 / N_v**alpha2 + B / D**beta


def optimal_vocabulary(params: Mapping[str, float], N: float, compute: float, d: float) -> float:
    """Vocabulary size V minimising L_u at non-vocabulary parameters N, embedding width d and compute C, with the
    tokens D = C / (6 (N + V d)) that the compute buys (Tao et al. 2024, Approach 3: the root of dL_u/dV)."""
    A2, alpha2, B, beta = params["A2"], params["alpha2"], params["B"], params["beta"]
    if not (N > 0 and compute > 0 and d > 0):
        raise ScalingError("optimal_vocabulary: N, compute and d must be positive")

    def slope(log_v: float) -> float:  # dL_u/dV, times V (same sign, better scaled)
        V = np.exp(log_v)
        D = compute / (6.0 * (N + V * d))
        return -alpha2 * A2 * (V * d) ** -alpha2 + beta * B * D**-beta * V * d / (N + V * d)

    lo, hi = np.log(1.0), np.log(1e9)
    if not slope(lo) < 0 < slope(hi):
        raise ScalingError(f"optimal_vocabulary: no minimum for V in [1, 1e9] at N = {N:g}, C = {compute:g}, d = {d:g}")
    return float(np.exp(brentq(slope, lo, hi, xtol=1e-12, rtol=1e-14)))


def optimal_vocabulary_table(params: Mapping[str, float], draws: list[Mapping[str, float]], N, compute, d,
                             ci: float = 0.95) -> list[dict[str, float]]:
    """:func:`optimal_vocabulary` over the grid of ``N`` x ``compute`` x ``d``, with the percentile interval of the
    optimum over the bootstrap ``draws`` (NaN bounds without draws). Rows: N, C, d, V_opt, V_opt_lower,
    V_opt_upper, N_v_opt (= V_opt d) and D_opt (the tokens the compute buys at V_opt)."""
    rows = []
    for n, c, width in ((n, c, w) for n in np.atleast_1d(N) for c in np.atleast_1d(compute) for w in np.atleast_1d(d)):
        n, c, width = float(n), float(c), float(width)
        v = optimal_vocabulary(params, n, c, width)
        spread = []
        for p in draws:
            try:
                spread.append(optimal_vocabulary(p, n, c, width))
            except ScalingError:  # a draw without a minimum in range says nothing about the interval's width
                continue
        lo, hi = percentile_interval(spread, ci)
        rows.append({"N": n, "C": c, "d": width, "V_opt": v, "V_opt_lower": float(lo), "V_opt_upper": float(hi),
                     "N_v_opt": v * width, "D_opt": c / (6.0 * (n + v * width))})
    return rows


VOCAB = register(
    Law(
        name="vocab",
        formula="loss_u = -E + A1/N^alpha1 + A2/N_v^alpha2 + B/D^beta",
        reference="Tao et al. 2024, Scaling Laws with Vocabulary: Larger Models Deserve Larger Vocabularies, "
        "arXiv:2407.13623 (Approach 3)",
        inputs=("N", "N_v", "D"),
        output="loss_u",
        params=(
            Param("E", 0.0, np.inf, (1.0, 3.0, 6.0), log_scale=True,
                  description="minus the unigram-normalised loss of an ideal model"),
            Param("A1", 0.0, np.inf, (1e1, 1e3, 1e5), log_scale=True, description="non-vocabulary term scale"),
            Param("alpha1", 0.0, 3.0, (0.2, 0.45, 0.7), description="non-vocabulary exponent"),
            Param("A2", 0.0, np.inf, (1e1, 1e3, 1e5), log_scale=True, description="vocabulary term scale"),
            Param("alpha2", 0.0, 3.0, (0.3, 0.7), description="vocabulary exponent"),
            Param("B", 0.0, np.inf, (1e2, 1e4, 1e6), log_scale=True, description="data term scale"),
            Param("beta", 0.0, 3.0, (0.2, 0.45, 0.7), description="data exponent"),
        ),
        function=vocab_loss,
        min_distinct={"N": 2, "N_v": 2, "D": 2},
        notes="N: non-vocabulary parameters; N_v = V d vocabulary parameters; D tokens; loss_u: unigram-normalised "
        "loss (negative). Published: tao2024-vocab (alpha1 tied to beta). optimal_vocabulary(params, N, C, d) gives V.",
        residual_space="linear",
    )
)
