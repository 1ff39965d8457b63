"""Broken neural scaling law with one break: Caballero et al. 2022, "Broken Neural Scaling Laws"
(arXiv 2210.14891, ICLR 2023).

    y = a + b x^-c0 (1 + (x/d1)^(1/f1))^(-c1 f1)

a is the limit the curve tends to (unimprovable loss), b the offset on log-log axes, c0 the log-log slope before the
break, c1 the change of slope at the break, so the slope after it is -(c0 + c1); d1 is where the break sits (in units
of x) and f1 its sharpness (smaller = sharper). Far from the break the reducible part is b x^-c0 before it and
b d1^(c1) x^-(c0+c1) after it. The default input is D (learning curves in tokens); re-target with ``bnsl:N``.

Fitting differs from the reference code on purpose: Caballero et al. minimise mean squared log(y + 1) errors after a
brute-force grid and polish with curve_fit (Levenberg-Marquardt); our fitter minimises log(y) residuals (like every
other law here) with L-BFGS-B from the best points of a multi-start grid. For a loss well above 0 both agree near the
optimum; log(y) weights points with small y more. A break the data have not reached yet is barely identifiable: on
the paper's noiseless simulation (break at x = 613) our fit recovers every parameter once the data reach the break
(the first ~550 points) and misses it from the first 390 or 405 (tests/test_laws.py, docs/laws.md).
"""

from __future__ import annotations

import numpy as np

from scaling.laws.base import Law, Param, register


def bnsl_loss(D, *, a, b, c0, c1, d1, f1):
    """y = a + b D^-c0 (1 + (D/d1)^(1/f1))^(-c1 f1)."""
    return np.exp(bnsl_log_loss(D, a=a, b=b, c0=c0, c1=c1, d1=d1, f1=f1))


def bnsl_log_loss(D, *, a, b, c0, c1, d1, f1):
    """log y = logaddexp(log a, log b - c0 log D - c1 f1 softplus(log(D/d1)/f1)).

    Written with softplus(z) = log(1 + e^z) because the direct (D/d1)^(1/f1) overflows for sharp breaks (f1 ~ 0.05
    and D/d1 ~ 1e6 give 1e120 and worse); in logs every term stays a modest number.
    """
    log_D = np.log(D)
    with np.errstate(divide="ignore"):
        reducible = np.log(b) - c0 * log_D - c1 * f1 * np.logaddexp(0.0, (log_D - np.log(d1)) / f1)
        return np.logaddexp(np.log(a), reducible)


# The reference code brute-forces a in [0, 2.5), b in [0, 1.9], c0 in [0, 0.2), c1 in [0, 8), d1 up to ~1.4e3 and
# f1 in [0, 0.2) (1.8M points), then polishes with curve_fit. Our fitter scores every grid point in one array call and
# refines the best few, so the grid is coarser per axis (24,320 points) but wider where it must be: d1 (the break)
# is in units of x, which can be 1e3 examples or 1e9 tokens, so it runs over half-decades from 1e1 to 1e10.
BNSL = register(
    Law(
        name="bnsl",
        formula="L = a + b D^-c0 (1 + (D/d1)^(1/f1))^(-c1 f1)",
        reference="Caballero et al. 2022, Broken Neural Scaling Laws, arXiv:2210.14891 (Eq. 1, one break)",
        inputs=("D",),
        params=(
            # a is not log-scale: a = 0 (no floor) must be reachable.
            Param("a", 0.0, np.inf, (0.0, 0.3, 1.0, 2.5), description="limit of the curve (unimprovable loss)"),
            Param(
                "b", 0.0, np.inf, (0.1, 1.0, 10.0, 100.0, 1000.0), log_scale=True, description="offset on log-log axes"
            ),
            Param("c0", 0.0, 5.0, (0.0, 0.1, 0.3, 0.8), description="log-log slope before the break"),
            Param("c1", 0.0, 20.0, (0.5, 1.5, 4.0, 10.0), description="change of slope at the break"),
            Param(
                "d1",
                0.0,
                np.inf,
                tuple(10.0 ** np.arange(1.0, 10.01, 0.5)),
                log_scale=True,
                description="location of the break, in units of the input",
            ),
            Param("f1", 0.0, 100.0, (0.03, 0.1, 0.3, 1.0), log_scale=True, description="sharpness (smaller = sharper)"),
        ),
        function=bnsl_loss,
        log_function=bnsl_log_loss,
        derived={"slope_after_break": lambda p: p["c0"] + p["c1"]},
        min_distinct={"D": 7},
        notes=(
            "Needs points on both sides of the break to locate it; extrapolating past an unseen break fails. c1 >= 0 "
            "(monotone curves); for a curve that turns up after the break widen it: bounds={'c1': (-5, 20)}."
        ),
    )
)
