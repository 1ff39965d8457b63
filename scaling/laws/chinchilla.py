"""Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models" (arXiv 2203.15556), Eq. 2 and Eq. 4.

    L(N, D) = E + A / N^alpha + B / D^beta

E is the entropy of text, A/N^alpha the finite-capacity term and B/D^beta the finite-data term. Under C = 6 N D
the loss-minimising allocation has the closed form (Eq. 4)

    G = (alpha A / (beta B))^(1/(alpha+beta)),  N_opt = G (C/6)^a,  D_opt = G^-1 (C/6)^b,
    a = beta/(alpha+beta),  b = alpha/(alpha+beta)

(E does not move the optimum). The multi-start grid is Hoffmann's 4500-point grid (Approach 3):
alpha, beta in {0, 0.5, ..., 2}; log E in {-1, -0.5, ..., 1}; log A, log B in {0, 5, ..., 25}.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.special import logsumexp

from scaling.laws.base import Law, Param, register


def chinchilla_loss(N, D, *, E, A, B, alpha, beta):
    """L = E + A/N^alpha + B/D^beta."""
    return E + A / N**alpha + B / D**beta


def chinchilla_log_loss(N, D, *, E, A, B, alpha, beta):
    """log L as a logsumexp of (log A - alpha log N, log B - beta log D, log E): stable for any magnitude."""
    N, D = np.broadcast_arrays(np.asarray(N, float), np.asarray(D, float))
    with np.errstate(divide="ignore"):
        terms = np.stack(
            [np.log(A) - alpha * np.log(N), np.log(B) - beta * np.log(D), np.full(N.shape, np.log(E))]
        )
    return logsumexp(terms, axis=0)


def chinchilla_optimal(params: Mapping[str, float], compute):
    """Closed-form compute-optimal (N_opt, D_opt) under C = 6 N D (Hoffmann et al. 2022, Eq. 4)."""
    A, B, alpha, beta = params["A"], params["B"], params["alpha"], params["beta"]
    C = np.asarray(compute, dtype=float)
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    a = beta / (alpha + beta)
    b = alpha / (alpha + beta)
    return G * (C / 6.0) ** a, (C / 6.0) ** b / G


CHINCHILLA = register(
    Law(
        name="chinchilla",
        formula="L = E + A/N^alpha + B/D^beta",
        reference="Hoffmann et al. 2022, Training Compute-Optimal Large Language Models, arXiv:2203.15556 (Eq. 2, 4)",
        inputs=("N", "D"),
        params=(
            Param("E", 0.0, np.inf, tuple(np.exp(np.arange(-1.0, 1.01, 0.5))), log_scale=True,
                  description="irreducible loss (nats/token)"),
            Param("A", 0.0, np.inf, tuple(np.exp(np.arange(0.0, 26.0, 5.0))), log_scale=True,
                  description="capacity-term scale"),
            Param("B", 0.0, np.inf, tuple(np.exp(np.arange(0.0, 26.0, 5.0))), log_scale=True,
                  description="data-term scale"),
            Param("alpha", 0.0, 5.0, tuple(np.arange(0.0, 2.01, 0.5)), description="parameter exponent"),
            Param("beta", 0.0, 5.0, tuple(np.arange(0.0, 2.01, 0.5)), description="data exponent"),
        ),
        function=chinchilla_loss,
        log_function=chinchilla_log_loss,
        optimal=chinchilla_optimal,
        derived={
            "a": lambda p: p["beta"] / (p["alpha"] + p["beta"]),
            "b": lambda p: p["alpha"] / (p["alpha"] + p["beta"]),
        },
        min_distinct={"N": 2, "D": 2},
        notes="Scale constants (A, B, E) depend on tokenizer, data and N convention; exponents transfer.",
    )
)
