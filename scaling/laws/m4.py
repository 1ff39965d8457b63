"""M4 learning-curve law: Alabdulmohsin, Neyshabur and Zhai 2022, "Revisiting Neural Scaling Laws in Language and
Vision" (NeurIPS 2022, arXiv 2209.06640).

    (L - eps_inf) / (eps_0 - L)^alpha = beta D^c          (c < 0, alpha >= 0)

L is the loss (or error) after D examples/tokens, eps_inf the loss the curve tends to, eps_0 the loss of a random
guess (the ceiling the curve starts from), beta and c the scale and exponent of the power law that the transformed
loss follows, and alpha how strongly the curve bends away from a plain power law near eps_0. alpha = 0 is the
saturating law L = eps_inf + beta D^c (their M2). The paper found M4 extrapolates best across image classification,
translation, language modelling and BIG-bench.

The law is implicit: the prediction solves w = f (b - w)^alpha for w = L - eps_inf in (0, b), with f = beta D^c and
b = eps_0 - eps_inf. We solve it in s = logit(w / b), where it reads

    h(s) = log sigmoid(s) - alpha log sigmoid(-s) - log(f b^(alpha-1)) = 0,

h increasing in s, so the root is unique and a bracket is known in closed form (see ``_bracket``). The official code
fits M4 by alternating least squares and gradient steps on (eps_inf, eps_0); here it is fitted like every other law
(log residuals, multi-start, L-BFGS-B), so beta < 1 needs no rescaling of D.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, log_expit

from scaling.laws.base import Law, Param, register

_LOG2 = np.log(2.0)


def _bracket(k: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[s_lo, s_hi] with h(s_lo) < 0 < h(s_hi), where h(s) = log sigmoid(s) - alpha log sigmoid(-s) - k.

    For s <= 0: log sigmoid(s) <= s and -log sigmoid(-s) <= log 2, so h(s) <= s + alpha log 2 - k.
    For s >= 0: log sigmoid(s) >= -log 2 and -log sigmoid(-s) >= s, so h(s) >= alpha s - log 2 - k; and, when k < 0,
    log sigmoid(s) >= -e^-s gives h(s) > 0 for s > -log(-k). Beyond s = 40 (w = b to double precision) we stop:
    with alpha = 0 and f >= b there is no root, and the prediction is the ceiling eps_0.
    """
    s_lo = np.minimum(0.0, k - alpha * _LOG2) - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        by_alpha = np.where(alpha > 0, (k + _LOG2) / alpha, np.inf)
        by_k = np.where(k < 0, -np.log(-k), np.inf)
    s_hi = np.minimum(np.maximum(0.0, np.minimum(by_alpha, by_k)) + 1.0, 40.0)
    return s_lo, np.maximum(s_hi, s_lo + 1.0)


def _solve(k: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The root s of h(s) = log sigmoid(s) - alpha log sigmoid(-s) - k, elementwise.

    Hand-written safeguarded Newton rather than scipy.optimize.elementwise.find_root (vectorised Chandrupatla):
    the fitter calls the law thousands of times on small arrays (a 21-row finite-difference stencil per gradient),
    and find_root's per-call overhead (~5 ms) made an M4 fit 30x slower than this loop (~0.2 ms). h is increasing
    with h' = sigmoid(-s) + alpha sigmoid(s) > 0 and one-signed curvature (alpha - 1) sigmoid(s) sigmoid(-s), so
    Newton converges quadratically; steps that leave the bracket are replaced by bisection.
    """
    lo, hi = _bracket(k, alpha)
    # Initial guess from the two tails: w << b gives s ~ k, w -> b gives s ~ k/alpha.
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(k < 0, k, np.where(alpha > 0, k / alpha, hi))
    s = np.clip(s, lo, hi)
    for _ in range(100):
        h = log_expit(s) - alpha * log_expit(-s) - k
        lo = np.where(h < 0, s, lo)
        hi = np.where(h > 0, s, hi)
        step = h / (expit(-s) + alpha * expit(s))
        new = s - step
        new = np.where((new > lo) & (new < hi), new, 0.5 * (lo + hi))
        done = np.abs(new - s) <= 1e-15 * (1.0 + np.abs(s))
        s = new
        if done.all():
            break
    # alpha = 0 and f >= b: no root below the cap; the loss sits at the ceiling eps_0.
    return np.where(log_expit(hi) - alpha * log_expit(-hi) - k < 0, hi, s)


def m4_log_loss(D, *, beta, c, alpha, eps_inf, eps_0):
    """log L for M4: solve h(s) = 0 for s = logit((L - eps_inf)/(eps_0 - eps_inf)), then
    log L = logaddexp(log eps_inf, log b + log sigmoid(s))."""
    D, beta, c, alpha, eps_inf, eps_0 = np.broadcast_arrays(
        *(np.asarray(v, dtype=float) for v in (D, beta, c, alpha, eps_inf, eps_0))
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        log_b = np.log(eps_0 - eps_inf)
        k = np.log(beta) + c * np.log(D) + (alpha - 1.0) * log_b  # log(f b^(alpha - 1))
    ok = np.isfinite(k) & np.isfinite(log_b) & np.isfinite(alpha) & (alpha >= 0)
    s = np.full(k.shape, np.nan)
    if ok.any():
        s[ok] = _solve(k[ok], alpha[ok])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.logaddexp(np.log(eps_inf), log_b + log_expit(s))


def m4_loss(D, *, beta, c, alpha, eps_inf, eps_0):
    """L solving (L - eps_inf) / (eps_0 - L)^alpha = beta D^c."""
    return np.exp(m4_log_loss(D, beta=beta, c=c, alpha=alpha, eps_inf=eps_inf, eps_0=eps_0))


M4 = register(
    Law(
        name="m4",
        formula="(L - eps_inf)/(eps_0 - L)^alpha = beta D^c",
        reference=(
            "Alabdulmohsin, Neyshabur, Zhai 2022, Revisiting Neural Scaling Laws in Language and Vision, "
            "arXiv:2209.06640 (estimator M4)"
        ),
        inputs=("D",),
        params=(
            # beta D^c ~ 0.1-1 over the data: beta ~ D^-c spans decades.
            Param(
                "beta",
                0.0,
                np.inf,
                tuple(10.0 ** np.arange(-1.0, 6.1, 1.0)),
                log_scale=True,
                description="scale of the transformed power law",
            ),
            Param("c", -5.0, 0.0, (-0.1, -0.3, -0.6, -1.0), description="exponent (negative)"),
            Param("alpha", 0.0, 10.0, (0.0, 0.3, 0.7, 1.5), description="bend near the ceiling (0 = plain M2)"),
            Param("eps_inf", 0.0, np.inf, (0.0, 0.1, 0.5, 1.5), description="loss the curve tends to"),
            Param("eps_0", 0.0, np.inf, (1.0, 3.0, 6.0, 11.0), description="random-guess loss (the ceiling)"),
        ),
        function=m4_loss,
        log_function=m4_log_loss,
        min_distinct={"D": 6},
        notes=(
            "Predictions lie between eps_inf and eps_0; a point at or above eps_0 cannot be fitted. Fix eps_0 to "
            "the random-guess loss (ln V nats for a V-token vocabulary, 1 - 1/classes for error) when it is known."
        ),
    )
)
