"""Muennighoff et al. 2023, "Scaling Data-Constrained Language Models" (arXiv 2305.16264), Eq. 5-6 and App. A.

A Chinchilla law evaluated at *effective* data D' and *effective* parameters N':

    L(N, D, U) = E + A / N'^alpha + B / D'^beta
    D' = U_D + U_D R*_D (1 - exp(-R_D / R*_D)),   U_D = min(U, D),         R_D = D / U_D - 1
    N' = U_N + U_N R*_N (1 - exp(-R_N / R*_N)),   U_N = min(N, N_opt(U_D)), R_N = N / U_N - 1

U is the number of unique training tokens, D the tokens seen (so D / U is the number of epochs) and N_opt(U_D)
the compute-optimal model size of the *base* Chinchilla law (same E, A, B, alpha, beta) at the compute for which
U_D tokens are optimal. R*_D (parameter ``R_D``) is the repetition "half-life": the marginal value of a repeated
token decays as exp(-R_D / R*_D), and no amount of repetition is worth more than (1 + R*_D) U fresh tokens.
R*_N (parameter ``R_N``) does the same for parameters beyond what U_D tokens can feed.

Published C4 fit (App. A; constants of the datablations README): E = exp(0.6254804), A = exp(6.255414),
B = exp(7.3049974), alpha = beta = 0.3526596, R*_D = 15.387756, R*_N = 5.309743 (GPT-2 tokenizer, nats/token).

The paper fits in two stages: the base constants on one-epoch runs, then R*_D, R*_N on repeated runs with the base
frozen (``LawFitter(law, fix={...base...})``). With unlimited unique data the law equals the base Chinchilla law at
the base's compute-optimal allocation and is never lower elsewhere, so the unconstrained compute optimum is the
Chinchilla closed form; under a unique-data budget the optimum has no closed form and
:func:`optimal_allocation` searches it (the paper's grid search, or a bounded 1-D minimisation).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq, minimize_scalar
from scipy.special import logsumexp

from scaling.errors import ScalingError
from scaling.laws.base import Law, Param, register
from scaling.laws.chinchilla import CHINCHILLA, chinchilla_optimal

# The published C4 constants, exactly as printed in the datablations README (logs of A, B, E).
MUENNIGHOFF_C4 = {
    "E": float(np.exp(0.6254804)),
    "A": float(np.exp(6.255414)),
    "B": float(np.exp(7.3049974)),
    "alpha": 0.3526596,
    "beta": 0.3526596,
    "R_D": 15.387756,
    "R_N": 5.309743,
}

BASE_PARAMS = ("E", "A", "B", "alpha", "beta")


def optimal_n_for_data(D, *, A, B, alpha, beta):
    """N_opt(D): the compute-optimal model size of the base law at the compute where D tokens are optimal.

    From Hoffmann Eq. 4 (N_opt = G (C/6)^a, D_opt = (C/6)^b / G): C/6 = (G D)^(1/b), so N_opt = G (G D)^(beta/alpha).
    Written exactly as the datablations README's ``D_to_N`` so the golden values agree to the last digit.
    """
    G = ((alpha * A) / (beta * B)) ** (1.0 / (alpha + beta))
    return (np.asarray(D, dtype=float) * G) ** (beta / alpha) * G


def _decayed(unique, repeats, half_life):
    """unique + unique * R* (1 - exp(-R / R*)), with the R* -> 0 limit (= unique) and R = 0 (= unique) handled."""
    with np.errstate(divide="ignore", invalid="ignore"):
        gained = half_life * -np.expm1(-repeats / half_life)  # -expm1 keeps precision when R << R*
    gained = np.where(repeats > 0, np.nan_to_num(gained, nan=0.0), 0.0)
    return unique + unique * gained


def effective_data(D, U, R_D):
    """D' = U_D + U_D R*_D (1 - exp(-R_D / R*_D)) with U_D = min(U, D), R_D = D/U_D - 1 (Muennighoff Eq. 5)."""
    D = np.asarray(D, dtype=float)
    U_D = np.minimum(np.asarray(U, dtype=float), D)
    repeats = np.maximum(D / U_D - 1.0, 0.0)
    return _decayed(U_D, repeats, R_D)


def effective_params(N, D, U, *, A, B, alpha, beta, R_N):
    """N' = U_N + U_N R*_N (1 - exp(-R_N / R*_N)) with U_N = min(N, N_opt(U_D)), R_N = N/U_N - 1 (Eq. 6)."""
    N = np.asarray(N, dtype=float)
    U_D = np.minimum(np.asarray(U, dtype=float), np.asarray(D, dtype=float))
    U_N = np.minimum(N, optimal_n_for_data(U_D, A=A, B=B, alpha=alpha, beta=beta))
    repeats = np.maximum(N / U_N - 1.0, 0.0)
    return _decayed(U_N, repeats, R_N)


def data_constrained_loss(N, D, U, *, E, A, B, alpha, beta, R_D, R_N):
    """L = E + A/N'^alpha + B/D'^beta."""
    Np = effective_params(N, D, U, A=A, B=B, alpha=alpha, beta=beta, R_N=R_N)
    Dp = effective_data(D, U, R_D)
    return E + A / Np**alpha + B / Dp**beta


def data_constrained_log_loss(N, D, U, *, E, A, B, alpha, beta, R_D, R_N):
    """log L as a logsumexp of the three terms (stable for any magnitude, as for Chinchilla)."""
    Np = effective_params(N, D, U, A=A, B=B, alpha=alpha, beta=beta, R_N=R_N)
    Dp = effective_data(D, U, R_D)
    Np, Dp = np.broadcast_arrays(Np, Dp)
    with np.errstate(divide="ignore"):
        terms = np.stack([np.log(A) - alpha * np.log(Np), np.log(B) - beta * np.log(Dp), np.full(Np.shape, np.log(E))])
    return logsumexp(terms, axis=0)


# ---------------------------------------------------------------------------------------------------------
# Questions the law answers: how many epochs are still worth it, and the allocation under a unique-data budget


def repeated_token_value(epochs, R_D: float, kind: str = "marginal"):
    """Worth of repeated tokens relative to fresh ones after ``epochs`` passes over the unique data.

    - ``marginal``: the last repeated token, dD'/dD = exp(-R_D / R*_D) with R_D = epochs - 1;
    - ``average``: all repeated tokens together, (D' - U) / (D - U) = R*_D (1 - exp(-R_D/R*_D)) / R_D.
    At epochs = 1 + R*_D the average is 1 - 1/e (the paper's reading of R*_D) and the marginal 1/e.
    """
    repeats = np.maximum(np.asarray(epochs, dtype=float) - 1.0, 0.0)
    if kind == "marginal":
        return np.exp(-repeats / R_D)
    if kind == "average":
        with np.errstate(divide="ignore", invalid="ignore"):
            avg = R_D * -np.expm1(-repeats / R_D) / repeats
        return np.where(repeats > 0, avg, 1.0)
    raise ScalingError(f"kind must be 'marginal' or 'average', not {kind!r}")


def epochs_worth(value: float, R_D: float, kind: str = "marginal") -> float:
    """The number of epochs at which repeated tokens are worth ``value`` (in (0, 1)) of fresh ones.

    Marginal worth has the closed form epochs = 1 - R*_D ln(value) (value = 1/2: 1 + R*_D ln 2, about 11.7 epochs
    for C4). The average worth (1 - exp(-x))/x = value (x = R_D/R*_D) is solved with Brent's method; at
    value = 1 - 1/e the answer is 1 + R*_D.
    """
    if not 0.0 < value < 1.0:
        raise ScalingError(f"value must be strictly between 0 and 1, not {value}")
    if not R_D > 0:
        raise ScalingError(f"R_D (R*_D) must be positive, not {R_D}")
    if kind == "marginal":
        return 1.0 - R_D * np.log(value)
    if kind == "average":
        # (1 - e^-x)/x falls from 1 (x -> 0) to 0 (x -> inf), so there is one root; bracket it generously.
        x = brentq(lambda x: -np.expm1(-x) / x - value, 1e-12, 2.0 / value + 10.0, xtol=1e-14, rtol=1e-15)
        return 1.0 + R_D * x
    raise ScalingError(f"kind must be 'marginal' or 'average', not {kind!r}")


@dataclass(frozen=True)
class ConstrainedOptimum:
    """A compute-optimal (N, D) under a unique-data budget U, with its predicted loss."""

    N: float
    D: float
    U: float
    loss: float

    @property
    def epochs(self) -> float:
        return self.D / min(self.U, self.D)


# The paper's grid (datablations README): 500 ratios i, D = D_base * i, N = N_base / i and the reverse.
PAPER_RATIOS = np.linspace(1.0001, 3.0, 500)


def optimal_allocation(
    params: Mapping[str, float], compute: float, unique: float, *, method: str = "paper-grid"
) -> ConstrainedOptimum:
    """Loss-minimising (N, D) with 6 N D = ``compute`` when only ``unique`` distinct tokens exist.

    ``paper-grid`` reproduces the paper: start at the base law's unconstrained optimum (N_base, D_base) and try
    D = D_base i, N = N_base / i and D = D_base / i, N = N_base i for 500 ratios i in [1.0001, 3] (a ratio of
    exactly 1 is not in the grid). ``bounded`` minimises the loss over log N on the compute line with Brent's
    bounded method (scipy), searching N_base / 1000 to N_base * 1000: the exact optimum when it lies inside.
    """
    C, U = float(compute), float(unique)
    if not (C > 0 and U > 0):
        raise ScalingError(f"compute and unique tokens must be positive (got compute={compute}, unique={unique})")
    N_base, D_base = (float(x) for x in chinchilla_optimal(params, C))
    p = {k: params[k] for k in DATA_CONSTRAINED.param_names}
    if method == "paper-grid":
        # Interleaved in the paper's loop order (i: forward, then reverse) so that argmin, which keeps the first
        # of equal minima, picks what the paper's strict "<" keeps.
        N = np.stack([N_base / PAPER_RATIOS, N_base * PAPER_RATIOS], axis=1).ravel()
        D = np.stack([D_base * PAPER_RATIOS, D_base / PAPER_RATIOS], axis=1).ravel()
        loss = data_constrained_loss(N, D, np.full_like(D, U), **p)
        best = int(np.argmin(loss))
        return ConstrainedOptimum(N=float(N[best]), D=float(D[best]), U=U, loss=float(loss[best]))
    if method == "bounded":

        def loss_at(log_n: float) -> float:
            n = np.exp(log_n)
            return float(data_constrained_loss(n, C / (6.0 * n), U, **p))

        lo, hi = np.log(N_base) - np.log(1e3), np.log(N_base) + np.log(1e3)
        res = minimize_scalar(loss_at, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
        n = float(np.exp(res.x))
        return ConstrainedOptimum(N=n, D=C / (6.0 * n), U=U, loss=float(res.fun))
    raise ScalingError(f"method must be 'paper-grid' or 'bounded', not {method!r}")


def _optimal_unconstrained(params: Mapping[str, float], compute):
    # Unlimited unique data: D' = D and, at the base optimum, N' = N; elsewhere N' <= N and D' <= D, so the
    # loss is never below the base law's and the base closed form is the optimum.
    return chinchilla_optimal(params, compute)


_BASE = {p.name: p for p in CHINCHILLA.params}
PAPER_R_GRID = (20.0 / 3.0, 40.0 / 3.0, 20.0)

DATA_CONSTRAINED = register(
    Law(
        name="data-constrained",
        formula="L = E + A/N'^alpha + B/D'^beta; D' = U_D + U_D R_D (1 - exp(-(D/U_D - 1)/R_D)), "
        "N' = U_N + U_N R_N (1 - exp(-(N/U_N - 1)/R_N)), U_D = min(U, D), U_N = min(N, N_opt(U_D))",
        reference="Muennighoff et al. 2023, Scaling Data-Constrained Language Models, arXiv:2305.16264 (Eq. 5-6, App. A)",
        inputs=("N", "D", "U"),
        params=(
            _BASE["E"],
            _BASE["A"],
            _BASE["B"],
            _BASE["alpha"],
            _BASE["beta"],
            # The paper's start grid, linspace(0, 20, 4) for both, optimised in natural units as in its notebook.
            # The 0 starts are left out: in the paper's code they give NaN (0/0 at R = 0) and never contributed.
            Param(
                "R_D",
                0.0,
                np.inf,
                PAPER_R_GRID,
                description="R*_D: repetitions at which repeated data is worth 1 - 1/e of fresh data on average",
            ),
            Param(
                "R_N",
                0.0,
                np.inf,
                PAPER_R_GRID,
                description="R*_N: the same decay constant for parameters beyond N_opt(U_D)",
            ),
        ),
        function=data_constrained_loss,
        log_function=data_constrained_log_loss,
        optimal=_optimal_unconstrained,
        derived={
            "epochs_half_value": lambda p: 1.0 + p["R_D"] * np.log(2.0),
            "max_data_multiple": lambda p: 1.0 + p["R_D"],
            "max_param_multiple": lambda p: 1.0 + p["R_N"],
        },
        min_distinct={"N": 2, "D": 2, "U": 2},
        notes="Inputs: N parameters, D tokens seen, U unique tokens (epochs = D/U). Fit R_D, R_N with the base "
        "frozen (--fix E=..,A=..,B=..,alpha=..,beta=..) from a one-epoch fit or a published law; "
        "epochs_half_value = epochs at which a repeated token is worth half a fresh one.",
    )
)
