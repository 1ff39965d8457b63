"""Gadre et al. 2024, "Language models scale reliably with over-training and on downstream tasks" (arXiv 2403.08540),
the law relating average top-1 error on downstream tasks to the validation loss.

    Err(L) = eps - k exp(-gamma L)

L is a model's loss on a held-out corpus (nats/token), Err its top-1 error averaged over a suite of downstream tasks
(the paper evaluates 46 tasks, 104 models from 0.011B to 6.9B parameters). eps is the error the law
tends to as L grows (near the chance error of the suite); as L falls the error falls exponentially, so a drop in loss
buys the most accuracy at low loss. The law chains a loss forecast into an error forecast: fit L(N, D) (e.g.
``chinchilla``) and this law on the same models, then feed the first's prediction to the second.

Errors in [0, 1] are compared on their own scale (``residual_space="linear"``): absolute error in points is what a
benchmark reports, and a log residual would blow up near 0. No constants are shipped: the paper's fits are
per training corpus and task suite (and were not available here to check); the scale depends on the suite and on
the corpus L is measured on.
"""

from __future__ import annotations

import numpy as np

from scaling.laws.base import Law, Param, register


def gadre_error(loss, *, eps, k, gamma):
    """Err = eps - k exp(-gamma L)."""
    return eps - k * np.exp(-gamma * loss)


GADRE_ERROR = register(
    Law(
        name="gadre-error",
        formula="Err = eps - k exp(-gamma L)",
        reference="Gadre et al. 2024, Language models scale reliably with over-training and on downstream tasks, "
        "arXiv:2403.08540",
        inputs=("loss",),
        output="error",
        params=(
            Param("eps", 0.0, 2.0, (0.6, 0.8, 0.95), description="error as the loss grows (near the chance error)"),
            # k spans decades: with gamma ~ 1 and L ~ 3-4 nats, k = (eps - Err) e^{gamma L} is ~10-100.
            Param("k", 0.0, np.inf, (0.1, 1.0, 10.0, 100.0, 1000.0), log_scale=True,
                  description="scale of the loss-dependent drop"),
            Param("gamma", 0.0, 20.0, (0.3, 1.0, 2.0, 4.0), description="rate of the exponential in the loss"),
        ),
        function=gadre_error,
        min_distinct={"loss": 3},
        notes="Input: validation loss (nats/token) of each model; output: its average top-1 error in [0, 1]. "
        "Fitted on linear residuals. Scale depends on the task suite and the corpus the loss is measured on.",
        residual_space="linear",
        kind="downstream",
    )
)
