"""Kaplan et al. 2020, "Scaling Laws for Neural Language Models" (arXiv 2001.08361): laws and closed-form helpers.

Laws (registered on import; N = non-embedding parameters, D = tokens, C = training FLOPs, L in nats/token):

    kaplan-n   L(N)    = (N_c/N)^alpha_N                                  Eq. 1.1  (alpha_N=0.076, N_c=8.8e13)
    kaplan-d   L(D)    = (D_c/D)^alpha_D                                  Eq. 1.2  (alpha_D=0.095, D_c=5.4e13)
    kaplan-nd  L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D      Eq. 1.5  (Table 2: alpha_N=0.076,
                                                                                    alpha_D=0.103, N_c=6.4e13, D_c=1.8e13)
    kaplan-c   L(C)    = (C_c/C)^alpha_C                                  Eq. 1.3  (alpha_C=0.057, C_c=1.6e7 PF-days)

N_c, D_c, C_c are the scales at which the loss would reach 1 nat/token; the exponents say how fast the loss falls with
each resource. Kaplan warns the scale constants depend on tokenizer and data and "do not have a fundamental meaning";
the exponents are the transferable part. Note the two alpha_D values: 0.095 belongs to L(D), 0.103 to the joint fit.
Our C column is in FLOPs, so a kaplan-c fit gives C_c in FLOPs (Kaplan quotes PF-days; multiply by PF_DAY).

The helpers below are the paper's closed forms (Eqs. 1.4, 1.8, 4.2-4.4, 5.4-5.5, D.1, Table 6), as plain functions.
"""

from __future__ import annotations

import numpy as np

from scaling.errors import ScalingError
from scaling.laws.base import Law, Param, register

PF_DAY = 8.64e19
"""FLOPs in one petaflop/s-day (1e15 * 24 * 3600), Kaplan's compute unit."""

# Published constants, kept with their equation so nobody mixes the L(D) and the joint-fit alpha_D.
KAPLAN_L_N = {"alpha_N": 0.076, "N_c": 8.8e13}  # Eq. 1.1
KAPLAN_L_D = {"alpha_D": 0.095, "D_c": 5.4e13}  # Eq. 1.2
KAPLAN_L_ND = {"alpha_N": 0.076, "alpha_D": 0.103, "N_c": 6.4e13, "D_c": 1.8e13}  # Eq. 1.5, Table 2
KAPLAN_L_C = {"alpha_C": 0.057, "C_c": 1.6e7 * PF_DAY}  # Eq. 1.3, C_c converted from PF-days to FLOPs


# ----------------------------------------------------------------------------------------------------------------
# Closed-form helpers
# ----------------------------------------------------------------------------------------------------------------


def kaplan_learning_rate(N):
    """Kaplan's learning-rate rule of thumb (Eq. D.1): LR(N) = 0.003239 - 0.0001395 ln N.

    N is the non-embedding parameter count; the log is taken as natural (the paper does not say). Gives 1.95e-3 at
    N = 1e4, 1.31e-3 at 1e6, 1.09e-3 at 5e6 -- a starting point for a tiny-model sweep, not a tuned value. The rule
    turns non-positive beyond N ~ 1.2e10, where it was never meant to be used.
    """
    N_arr = np.asarray(N, dtype=float)
    if not np.all(np.isfinite(N_arr)) or np.any(N_arr <= 0):
        raise ScalingError(f"kaplan_learning_rate: N must be a positive parameter count, got {N!r}")
    lr = 0.003239 - 0.0001395 * np.log(N_arr)
    if np.any(lr <= 0):
        raise ScalingError(
            f"kaplan_learning_rate: Eq. D.1 gives a non-positive learning rate at N={N!r} (valid below ~1.2e10)"
        )
    return float(lr) if lr.ndim == 0 else lr


def n_nonembedding(n_layer: int, d_model: int, d_attn: int | None = None, d_ff: int | None = None) -> int:
    """Kaplan's non-embedding parameter count (Table 1): N = 2 d_model n_layer (2 d_attn + d_ff).

    With the usual d_attn = d_model and d_ff = 4 d_model this is 12 n_layer d_model^2. Biases and LayerNorm are
    ignored, as in the paper; count the tensors yourself if you need the exact number.
    """
    d_attn = d_model if d_attn is None else d_attn
    d_ff = 4 * d_model if d_ff is None else d_ff
    return 2 * d_model * n_layer * (2 * d_attn + d_ff)


def critical_batch(L, B_star: float = 2.1e8, alpha_B: float = 0.21):
    """Critical batch size in tokens (Eq. 1.4 / 5.3): B_crit(L) = B_star / L^(1/alpha_B).

    B_star = 2.1e8 tokens is Table 5 (Eq. 1.4 rounds it to 2e8). B_crit depends on the loss only, and doubles for
    every ~13% fall in loss.
    """
    return B_star / np.asarray(L, dtype=float) ** (1.0 / alpha_B)


def s_min(S, B, L, B_star: float = 2.1e8, alpha_B: float = 0.21):
    """Minimum number of steps to reach loss L (Eq. 5.4): S_min = S / (1 + B_crit(L)/B), B in tokens."""
    return np.asarray(S, dtype=float) / (1.0 + critical_batch(L, B_star, alpha_B) / np.asarray(B, dtype=float))


def c_min(C, B, L, B_star: float = 2.1e8, alpha_B: float = 0.21):
    """Minimum compute to reach loss L (Eq. 5.5): C_min = C / (1 + B/B_crit(L)), B in tokens."""
    return np.asarray(C, dtype=float) / (1.0 + np.asarray(B, dtype=float) / critical_batch(L, B_star, alpha_B))


def predicted_alpha_c_min(alpha_S: float = 0.76, alpha_B: float = 0.21, alpha_N: float = 0.076) -> float:
    """Predicted compute exponent (Eq. 1.8 / B.7): alpha_C^min = 1 / (1/alpha_S + 1/alpha_B + 1/alpha_N) = 0.05199."""
    return 1.0 / (1.0 / alpha_S + 1.0 / alpha_B + 1.0 / alpha_N)


def overfitting_penalty(
    N,
    D,
    alpha_N: float = KAPLAN_L_ND["alpha_N"],
    alpha_D: float = KAPLAN_L_ND["alpha_D"],
    N_c: float = KAPLAN_L_ND["N_c"],
    D_c: float = KAPLAN_L_ND["D_c"],
):
    """Relative loss penalty from finite data (Eq. 4.2): dL = L(N, D)/L(N, inf) - 1
    = (1 + (N/N_c)^(alpha_N/alpha_D) D_c/D)^alpha_D - 1, with the joint-fit (Table 2) constants by default.

    It depends on N and D only through N^(alpha_N/alpha_D)/D ~ N^0.74/D.
    """
    N = np.asarray(N, dtype=float)
    D = np.asarray(D, dtype=float)
    return (1.0 + (N / N_c) ** (alpha_N / alpha_D) * D_c / D) ** alpha_D - 1.0


def data_needed_to_avoid_overfitting(N, penalty: float | None = None):
    """Tokens needed so that finite data costs less than the ~0.02 seed-to-seed noise (Eq. 4.4): D >= 5e3 N^0.74.

    With ``penalty`` given (e.g. 0.01), instead solve Eq. 4.2 exactly for the D at which
    overfitting_penalty(N, D) == penalty, with the Table 2 constants.
    """
    N = np.asarray(N, dtype=float)
    if penalty is None:
        return 5e3 * N**0.74
    if not penalty > 0:
        raise ScalingError(f"data_needed_to_avoid_overfitting: penalty must be > 0, got {penalty}")
    c = KAPLAN_L_ND
    return c["D_c"] * (N / c["N_c"]) ** (c["alpha_N"] / c["alpha_D"]) / ((1.0 + penalty) ** (1.0 / c["alpha_D"]) - 1.0)


# Table 6: compute-efficient frontier X_opt = X_e * C_min^p_X with C_min in PF-days.
KAPLAN_TABLE6 = {
    "N": (1.3e9, 0.73),  # non-embedding parameters
    "B": (2.0e6, 0.24),  # batch size, tokens
    "S_min": (5.4e3, 0.03),  # steps
    "D": (2.0e10, 0.27),  # tokens (single epoch)
}


def compute_efficient_frontier(C_min_pf_days) -> dict[str, np.ndarray]:
    """Kaplan's compute-efficient allocation (Table 6): X_opt = X_e C_min^p_X, C_min in PF-days (FLOPs / PF_DAY).

    Returns N (non-embedding params, p=0.73), B (tokens/batch, p=0.24), S_min (steps, p=0.03) and D (tokens,
    p=0.27). These are Kaplan's allocations, which Hoffmann et al. 2022 found to over-size models.
    """
    C = np.asarray(C_min_pf_days, dtype=float)
    return {name: X_e * C**p for name, (X_e, p) in KAPLAN_TABLE6.items()}


# ----------------------------------------------------------------------------------------------------------------
# Laws
# ----------------------------------------------------------------------------------------------------------------


def kaplan_n_loss(N, *, alpha_N, N_c):
    """L(N) = (N_c/N)^alpha_N (Eq. 1.1)."""
    return (N_c / N) ** alpha_N


def kaplan_n_log_loss(N, *, alpha_N, N_c):
    return alpha_N * (np.log(N_c) - np.log(N))


def kaplan_d_loss(D, *, alpha_D, D_c):
    """L(D) = (D_c/D)^alpha_D (Eq. 1.2)."""
    return (D_c / D) ** alpha_D


def kaplan_d_log_loss(D, *, alpha_D, D_c):
    return alpha_D * (np.log(D_c) - np.log(D))


def kaplan_c_loss(C, *, alpha_C, C_c):
    """L(C) = (C_c/C)^alpha_C (Eq. 1.3)."""
    return (C_c / C) ** alpha_C


def kaplan_c_log_loss(C, *, alpha_C, C_c):
    return alpha_C * (np.log(C_c) - np.log(C))


def kaplan_nd_loss(N, D, *, alpha_N, alpha_D, N_c, D_c):
    """L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D (Eq. 1.5)."""
    return np.exp(kaplan_nd_log_loss(N, D, alpha_N=alpha_N, alpha_D=alpha_D, N_c=N_c, D_c=D_c))


def kaplan_nd_log_loss(N, D, *, alpha_N, alpha_D, N_c, D_c):
    """log L = alpha_D * logaddexp((alpha_N/alpha_D) log(N_c/N), log(D_c/D)).

    The direct form overflows: (N_c/N)^(alpha_N/alpha_D) with N_c ~ 1e13 and a fitter trying large exponent ratios
    exceeds 1e308; in logs both terms are modest numbers.
    """
    with np.errstate(divide="ignore"):
        log_n_term = (alpha_N / alpha_D) * (np.log(N_c) - np.log(N))
        log_d_term = np.log(D_c) - np.log(D)
    return alpha_D * np.logaddexp(log_n_term, log_d_term)


def _exponent(name: str, grid: tuple[float, ...], description: str, lower: float = 0.0) -> Param:
    return Param(name, lower, 5.0, grid, description=description)


# Scale grids span decades: published values (~1e13) sit in the middle, CPU-scale fits (tiny models, byte tokens,
# larger exponents) land far lower, e.g. N_c ~ 1e9 for L = 3 at N = 1e5 with alpha_N = 0.1.
_SCALE_GRID = tuple(10.0 ** np.arange(6.0, 19.0, 2.0))  # 1e6 ... 1e18
_EXPONENT_GRID = (0.03, 0.08, 0.2, 0.5)

KAPLAN_N = register(
    Law(
        name="kaplan-n",
        formula="L = (N_c/N)^alpha_N",
        reference="Kaplan et al. 2020, Scaling Laws for Neural Language Models, arXiv:2001.08361 (Eq. 1.1)",
        inputs=("N",),
        params=(
            _exponent("alpha_N", _EXPONENT_GRID, "parameter exponent (published 0.076)"),
            Param(
                "N_c",
                0.0,
                np.inf,
                _SCALE_GRID,
                log_scale=True,
                description="non-embedding params at which L = 1 nat (published 8.8e13)",
            ),
        ),
        function=kaplan_n_loss,
        log_function=kaplan_n_log_loss,
        min_distinct={"N": 2},
        notes="N = non-embedding parameters; converged models trained on ample data. N_c depends on the tokenizer.",
    )
)

KAPLAN_D = register(
    Law(
        name="kaplan-d",
        formula="L = (D_c/D)^alpha_D",
        reference="Kaplan et al. 2020, Scaling Laws for Neural Language Models, arXiv:2001.08361 (Eq. 1.2)",
        inputs=("D",),
        params=(
            _exponent("alpha_D", _EXPONENT_GRID, "data exponent (published 0.095)"),
            Param(
                "D_c",
                0.0,
                np.inf,
                _SCALE_GRID,
                log_scale=True,
                description="tokens at which L = 1 nat (published 5.4e13)",
            ),
        ),
        function=kaplan_d_loss,
        log_function=kaplan_d_log_loss,
        min_distinct={"D": 2},
        notes="D = training tokens, a large model early-stopped. D_c depends on the tokenizer.",
    )
)

KAPLAN_C = register(
    Law(
        name="kaplan-c",
        formula="L = (C_c/C)^alpha_C",
        reference="Kaplan et al. 2020, Scaling Laws for Neural Language Models, arXiv:2001.08361 (Eq. 1.3)",
        inputs=("C",),
        params=(
            _exponent("alpha_C", _EXPONENT_GRID, "compute exponent (published 0.057 at fixed batch)"),
            Param(
                "C_c",
                0.0,
                np.inf,
                tuple(10.0 ** np.arange(10.0, 31.0, 4.0)),
                log_scale=True,
                description="FLOPs at which L = 1 nat (published 1.6e7 PF-days = 1.4e27 FLOPs)",
            ),
        ),
        function=kaplan_c_loss,
        log_function=kaplan_c_log_loss,
        min_distinct={"C": 2},
        notes="C = training FLOPs (6ND by default), so C_c comes out in FLOPs; Kaplan quotes PF-days (/8.64e19).",
    )
)

KAPLAN_ND = register(
    Law(
        name="kaplan-nd",
        formula="L = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D",
        reference="Kaplan et al. 2020, Scaling Laws for Neural Language Models, arXiv:2001.08361 (Eq. 1.5, Table 2)",
        inputs=("N", "D"),
        params=(
            _exponent("alpha_N", _EXPONENT_GRID, "parameter exponent (Table 2: 0.076)"),
            # alpha_D divides alpha_N: keep it off zero.
            _exponent("alpha_D", _EXPONENT_GRID, "data exponent (Table 2: 0.103)", lower=1e-4),
            Param("N_c", 0.0, np.inf, _SCALE_GRID, log_scale=True, description="parameter scale (Table 2: 6.4e13)"),
            Param("D_c", 0.0, np.inf, _SCALE_GRID, log_scale=True, description="token scale (Table 2: 1.8e13)"),
        ),
        function=kaplan_nd_loss,
        log_function=kaplan_nd_log_loss,
        # The compute-optimal frontier of Eq. 1.5 has no closed form; the forecaster finds it numerically.
        optimal=None,
        derived={
            # D must grow as N^(alpha_N/alpha_D) to hold the overfitting penalty fixed (Eq. 4.3; ~0.74).
            "alpha_N_over_alpha_D": lambda p: p["alpha_N"] / p["alpha_D"],
        },
        min_distinct={"N": 2, "D": 2},
        notes="N = non-embedding parameters, D = tokens, early-stopped runs. Fit is poor for very small D (~2e7).",
    )
)
