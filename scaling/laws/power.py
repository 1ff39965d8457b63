"""Single-input power laws, over any one column (N by default; ``power:D``, ``saturating:C`` re-target them).

    power        L = A x^-a          a pure power law: a straight line on log-log axes
    saturating   L = E + A x^-a      Hestness et al. 2017, "Deep Learning Scaling is Predictable, Empirically"
                                     (arXiv 1712.00409): eps(m) = alpha m^beta_g + gamma, here E = gamma,
                                     A = alpha, a = -beta_g

A is the scale (the loss at x = 1 for the pure law), a the exponent (Hestness saw 0.07-0.35 for data-size curves),
E the irreducible loss the curve flattens towards. The same form is Alabdulmohsin et al.'s M2 and the Geiger et al.
2019 finite-size fit eps_N = eps_inf + c N^-g.
"""

from __future__ import annotations

import numpy as np

from scaling.laws.base import Law, Param, register


def power_loss(N, *, A, a):
    """L = A N^-a."""
    return A * N ** (-a)


def power_log_loss(N, *, A, a):
    """log L = log A - a log N (exact, no overflow for any N)."""
    return np.log(A) - a * np.log(N)


def saturating_loss(N, *, E, A, a):
    """L = E + A N^-a."""
    return E + A * N ** (-a)


def saturating_log_loss(N, *, E, A, a):
    """log L = logaddexp(log E, log A - a log N): stable when A N^-a under- or overflows; E = 0 gives the pure law."""
    with np.errstate(divide="ignore"):
        return np.logaddexp(np.log(E), np.log(A) - a * np.log(N))


# A spans decades: A = L x^a, i.e. ~1 for small exponents and up to ~1e8 for a = 1 at x ~ 1e7.
_A_GRID = tuple(10.0 ** np.arange(-2.0, 9.0, 2.0))  # 1e-2 ... 1e8
_EXPONENT_GRID = (0.05, 0.15, 0.35, 0.7, 1.5)

POWER = register(
    Law(
        name="power",
        formula="L = A N^-a",
        reference="power law as in Kaplan et al. 2020, arXiv:2001.08361 and Hestness et al. 2017, arXiv:1712.00409",
        inputs=("N",),
        params=(
            Param("A", 0.0, np.inf, _A_GRID, log_scale=True, description="scale: the loss at x = 1"),
            Param("a", 0.0, 5.0, _EXPONENT_GRID, description="exponent (slope on log-log axes)"),
        ),
        function=power_loss,
        log_function=power_log_loss,
        min_distinct={"N": 2},
        notes="Single input; re-target with power:D, power:C. Linear in log space, so any start converges.",
    )
)

SATURATING = register(
    Law(
        name="saturating",
        formula="L = E + A N^-a",
        reference="Hestness et al. 2017, Deep Learning Scaling is Predictable, Empirically, arXiv:1712.00409",
        inputs=("N",),
        params=(
            # E is not log-scale: E = 0 (no floor) is a legitimate answer that a log parameter could never reach.
            Param("E", 0.0, np.inf, (0.0, 0.1, 0.5, 1.0, 2.0, 4.0), description="irreducible loss (the floor)"),
            Param("A", 0.0, np.inf, _A_GRID, log_scale=True, description="scale of the reducible part"),
            Param("a", 0.0, 5.0, _EXPONENT_GRID, description="exponent of the reducible part"),
        ),
        function=saturating_loss,
        log_function=saturating_log_loss,
        min_distinct={"N": 3},
        notes="Single input; re-target with saturating:D. The scale A is poorly identified when E is close to the data.",
    )
)
