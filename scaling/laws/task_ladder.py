"""Task scaling laws by the two-step method of Bhagia et al. 2024, "Establishing Task Scaling Laws via
Compute-Efficient Model Ladders" (arXiv 2412.04403), the method Llama 3 used for its benchmark forecasts
(Dubey et al. 2024, "The Llama 3 Herd of Models", arXiv 2407.21783, scaling-law section).

Step 1, a task loss from model and data size (the loss of the correct answer on the task, e.g. bits per byte):

    L(N, D) = A / N^alpha + B / D^beta + E                                  (``task-loss``)

Step 2, the task accuracy from the task loss, a sigmoid:

    Acc(L) = a / (1 + exp(-k (L - L0))) + b                                 (``task-accuracy``)

b is the accuracy the sigmoid tends to at high loss (about chance), a + b at low loss; L0 is the midpoint and k the
steepness (negative: accuracy rises as the loss falls; with a >= 0 the sign is not ambiguous). Chained:

    Acc(N, D) = a / (1 + exp(-k (A / N^alpha + B / D^beta + E - L0))) + b     (``downstream``)

``scaling.fit(table, law="downstream")`` fits the two steps separately from one table with columns N, D,
task_loss, accuracy, as the paper does, and joins them into one fit of the chained law whose bootstrap draws pair a
step-1 draw with a step-2 draw: forecasts from (N, D) then carry the uncertainty of both steps
(:mod:`scaling.analysis.downstream`). ``LawFitter("downstream")`` instead fits the chained form in one step on accuracy alone,
the single-step baseline the paper compares against.

Accuracies are fitted on linear residuals (absolute points, as the paper reports its errors); the task loss in log
space like any loss. No constants ship: they are per task and per ladder.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit  # the logistic 1/(1 + e^-x), without overflow warnings for large |x|

from scaling.laws.base import Law, Param, register
from scaling.laws.chinchilla import CHINCHILLA

REFERENCE = ("Bhagia et al. 2024, Establishing Task Scaling Laws via Compute-Efficient Model Ladders, arXiv:2412.04403 "
             "(two-step prediction); used by Dubey et al. 2024, The Llama 3 Herd of Models, arXiv:2407.21783")


def task_accuracy(task_loss, *, a, k, L0, b):
    """Acc = a / (1 + exp(-k (L - L0))) + b."""
    return a * expit(k * (task_loss - L0)) + b


def chained_accuracy(N, D, *, E, A, B, alpha, beta, a, k, L0, b):
    """Acc(N, D): the task-loss law fed into the sigmoid."""
    return task_accuracy(E + A / N**alpha + B / D**beta, a=a, k=k, L0=L0, b=b)


def _sigmoid_params(a: tuple, k: tuple, L0: tuple, b: tuple) -> tuple[Param, ...]:
    return (
        Param("a", 0.0, 2.0, a, description="accuracy span of the sigmoid (max - min)"),
        Param("k", -200.0, 200.0, k, description="steepness; negative when accuracy rises as the loss falls"),
        Param("L0", -50.0, 50.0, L0, description="task loss at the sigmoid's midpoint"),
        Param("b", -1.0, 1.0, b, description="accuracy at high task loss (about chance)"),
    )


TASK_LOSS = register(
    Law(
        name="task-loss",
        formula="task_loss = A/N^alpha + B/D^beta + E",
        reference=REFERENCE + " (step 1)",
        inputs=("N", "D"),
        output="task_loss",
        params=CHINCHILLA.params,
        function=CHINCHILLA.function,
        log_function=CHINCHILLA.log_function,
        min_distinct={"N": 2, "D": 2},
        notes="Step 1 of the two-step task forecast: the loss of the correct answers (nats or bits per byte) of one "
        "task, fitted in log space with the Chinchilla grid.",
    )
)

TASK_ACCURACY = register(
    Law(
        name="task-accuracy",
        formula="accuracy = a/(1 + exp(-k (task_loss - L0))) + b",
        reference=REFERENCE + " (step 2)",
        inputs=("task_loss",),
        output="accuracy",
        params=_sigmoid_params(a=(0.3, 0.6, 1.0), k=(-20.0, -5.0, -1.0, 1.0), L0=(0.5, 1.0, 2.0, 4.0),
                               b=(0.0, 0.25, 0.5)),
        function=task_accuracy,
        min_distinct={"task_loss": 4},
        notes="Step 2 of the two-step task forecast: accuracy in [0, 1] as a sigmoid of the task loss; fitted on "
        "linear residuals, on every checkpoint of the ladder models in the paper.",
        residual_space="linear",
        kind="downstream",
    )
)

# The chained law's one-step grid is smaller than the product of the two steps' (4500 x 144 starts): it is the
# baseline, and the two-step fit (scaling.analysis.downstream) starts from each step's own grid instead.
DOWNSTREAM = register(
    Law(
        name="downstream",
        formula="accuracy = a/(1 + exp(-k (A/N^alpha + B/D^beta + E - L0))) + b",
        reference=REFERENCE + " (steps 1 and 2 chained)",
        inputs=("N", "D"),
        output="accuracy",
        params=(
            Param("E", 0.0, np.inf, (np.exp(-1.0), 1.0, np.e), log_scale=True, description="task-loss floor"),
            Param("A", 0.0, np.inf, tuple(np.exp(np.arange(0.0, 26.0, 5.0))), log_scale=True,
                  description="task-loss capacity-term scale"),
            Param("B", 0.0, np.inf, tuple(np.exp(np.arange(0.0, 26.0, 5.0))), log_scale=True,
                  description="task-loss data-term scale"),
            Param("alpha", 0.0, 5.0, (0.25, 0.5, 1.0), description="task-loss parameter exponent"),
            Param("beta", 0.0, 5.0, (0.25, 0.5, 1.0), description="task-loss data exponent"),
            *_sigmoid_params(a=(0.3, 0.7), k=(-10.0, -2.0), L0=(0.5, 1.5, 3.0), b=(0.0, 0.25)),
        ),
        function=chained_accuracy,
        min_distinct={"N": 2, "D": 2},
        notes="scaling.fit(table, law='downstream') fits task-loss on (N, D, task_loss) and task-accuracy on "
        "(task_loss, accuracy), then chains them with paired bootstrap draws; LawFitter fits this form in one step.",
        residual_space="linear",
        kind="downstream",
    )
)
