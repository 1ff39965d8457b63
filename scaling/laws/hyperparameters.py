"""Optimal learning rate and batch size as power laws of the scale of a run.

DeepSeek-AI (Bi et al.) 2024, "DeepSeek LLM: Scaling Open-Source Language Models with Longtermism" (arXiv 2401.02954),
Sec. 3: near-optimal hyperparameters from grid searches at small budgets, fitted against the compute budget

    lr_opt    = c C^alpha       published: c = 0.3118, alpha = -0.1250
    batch_opt = c C^alpha       published: c = 0.2920, alpha = 0.3271   (batch in tokens)

with C the training FLOPs (the paper counts C = M D, M = non-embedding FLOPs per token, attention included; 6 N D is
the usual stand-in).

Li et al. 2025, "Predictable Scale: Part I -- Optimal Hyperparameter Scaling Law in Large Language Model Pretraining"
("Step Law", arXiv 2503.04715): from about 3,700 runs, the optimal learning rate depends on model and data size, the
optimal batch size on data size only

    lr_opt    = c N^alpha D^beta    published: c = 1.79, alpha = -0.713, beta = 0.307
    batch_opt = c D^beta            published: c = 0.58, beta = 0.571            (batch in tokens)

N non-embedding parameters, D training tokens. Both are fitted in log space (log lr_opt is linear in log N, log D,
log C), so every start converges; the grids only matter when a parameter is fixed or tied. The laws' predictions
*are* the optima (``kind="hyperparameter"``): ``scaling optimal FIT --N ... --D ...`` answers them with intervals.

The rows to fit are one per (N, D) or C: the learning rate (batch size) whose loss was lowest in a grid search there
(or, as DeepSeek, the middle of the near-optimal band). :func:`scaling.analysis.hyperparameters.optimum_table` builds them
from a sweep of runs.
"""

from __future__ import annotations

import numpy as np

from scaling.laws.base import Law, Param, register

# The scale c spans decades (lr ~ 1e-3 at N = 1e9, D = 1e11 gives c ~ 1; a batch ~ 1e6 tokens at C = 1e21 gives
# c ~ 0.3): log-scale, with starts over 12 decades. Exponents are signed.
_SCALE_GRID = tuple(10.0 ** np.arange(-6.0, 7.0, 3.0))
_EXPONENT_GRID = (-1.0, -0.5, 0.0, 0.5, 1.0)


def _scale(description: str) -> Param:
    return Param("c", 0.0, np.inf, _SCALE_GRID, log_scale=True, description=description)


def _exponent(name: str, description: str) -> Param:
    return Param(name, -3.0, 3.0, _EXPONENT_GRID, description=description)


def power_of_compute(C, *, c, alpha):
    """y = c C^alpha."""
    return c * C**alpha


def log_power_of_compute(C, *, c, alpha):
    """log y = log c + alpha log C (exact for any C)."""
    return np.log(c) + alpha * np.log(C)


def steplaw_lr(N, D, *, c, alpha, beta):
    """lr_opt = c N^alpha D^beta."""
    return c * N**alpha * D**beta


def log_steplaw_lr(N, D, *, c, alpha, beta):
    return np.log(c) + alpha * np.log(N) + beta * np.log(D)


def steplaw_batch(D, *, c, beta):
    """batch_opt = c D^beta."""
    return c * D**beta


def log_steplaw_batch(D, *, c, beta):
    return np.log(c) + beta * np.log(D)


DEEPSEEK_REFERENCE = ("DeepSeek-AI 2024, DeepSeek LLM: Scaling Open-Source Language Models with Longtermism, "
                      "arXiv:2401.02954 (Sec. 3, scaling laws for hyperparameters)")
STEPLAW_REFERENCE = ("Li et al. 2025, Predictable Scale: Part I -- Optimal Hyperparameter Scaling Law in Large "
                     "Language Model Pretraining (Step Law), arXiv:2503.04715")

DEEPSEEK_LR = register(
    Law(
        name="deepseek-lr",
        formula="lr_opt = c C^alpha",
        reference=DEEPSEEK_REFERENCE,
        inputs=("C",),
        output="lr_opt",
        params=(_scale("learning rate at C = 1 FLOP"), _exponent("alpha", "compute exponent (published -0.125)")),
        function=power_of_compute,
        log_function=log_power_of_compute,
        min_distinct={"C": 2},
        notes="Published: c = 0.3118, alpha = -0.1250 (C in FLOPs). Rows: the optimal learning rate per budget.",
        kind="hyperparameter",
    )
)

DEEPSEEK_BATCH = register(
    Law(
        name="deepseek-batch",
        formula="batch_opt = c C^alpha",
        reference=DEEPSEEK_REFERENCE,
        inputs=("C",),
        output="batch_opt",
        params=(_scale("batch size (tokens) at C = 1 FLOP"), _exponent("alpha", "compute exponent (published 0.3271)")),
        function=power_of_compute,
        log_function=log_power_of_compute,
        min_distinct={"C": 2},
        notes="Published: c = 0.2920, alpha = 0.3271 (C in FLOPs, batch in tokens). Rows: the optimal batch per budget.",
        kind="hyperparameter",
    )
)

STEPLAW_LR = register(
    Law(
        name="steplaw-lr",
        formula="lr_opt = c N^alpha D^beta",
        reference=STEPLAW_REFERENCE,
        inputs=("N", "D"),
        output="lr_opt",
        params=(
            _scale("learning rate at N = D = 1"),
            _exponent("alpha", "model-size exponent (published -0.713)"),
            _exponent("beta", "data exponent (published 0.307)"),
        ),
        function=steplaw_lr,
        log_function=log_steplaw_lr,
        min_distinct={"N": 2, "D": 2},
        notes="Published: c = 1.79, alpha = -0.713, beta = 0.307 (N non-embedding parameters, D tokens).",
        kind="hyperparameter",
    )
)

STEPLAW_BATCH = register(
    Law(
        name="steplaw-batch",
        formula="batch_opt = c D^beta",
        reference=STEPLAW_REFERENCE,
        inputs=("D",),
        output="batch_opt",
        params=(_scale("batch size (tokens) at D = 1"), _exponent("beta", "data exponent (published 0.571)")),
        function=steplaw_batch,
        log_function=log_steplaw_batch,
        min_distinct={"D": 2},
        notes="Published: c = 0.58, beta = 0.571 (D tokens, batch in tokens); independent of N.",
        kind="hyperparameter",
    )
)
