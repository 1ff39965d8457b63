"""Hernandez et al. 2022, "Scaling Laws and Interpretability of Learning from Repeated Data" (arXiv 2205.10487).

The paper measures the damage of repeated data as an *effective model size*: a model of N parameters trained on a
token budget in which a fraction f of tokens repeats a small subset E times reaches the test loss of a smaller
model, N_eff, trained on unique data with the same budget. The baseline is the law registered here, fitted on the
unique-data runs (f = 0) at that token budget:

    L_u(N) = L_inf + (N_c / N)^a_N

(Kaplan's L(N) with an irreducible term; fix ``L_inf=0`` for the pure power law.) Inverting it gives

    N_eff = N_c (L - L_inf)^(-1/a_N),   m = N_eff / N,   fraction of parameters lost = 1 - m

and, per model size, the *poor-performance region*: the repeat counts E whose loss of parameters is at least
half the worst one. The paper fits both edges of that region as E = k N^alpha (right edge k = 5.1e7,
alpha = -0.50; left edge k = 4.2e6, alpha = -0.56: at N = 8e8 the region is E in [43, 1803]). The multi-run
procedure is :func:`scaling.analysis.repetition.analyze_repetition`; this module holds the formulas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scaling.errors import ScalingError
from scaling.laws.base import Law, Param, register

# Published region boundaries E = k N^alpha (Hernandez et al. 2022, Sec. 3).
PUBLISHED_BOUNDARIES = {"left": {"k": 4.2e6, "alpha": -0.56}, "right": {"k": 5.1e7, "alpha": -0.50}}


def unique_data_loss(N, *, L_inf, N_c, a_N):
    """L_u(N) = L_inf + (N_c/N)^a_N."""
    return L_inf + (N_c / np.asarray(N, dtype=float)) ** a_N


def effective_params(loss, *, L_inf, N_c, a_N):
    """N_eff = N_c (L - L_inf)^(-1/a_N): the unique-data model size with the same loss; +inf if L <= L_inf."""
    excess = np.asarray(loss, dtype=float) - L_inf
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(excess > 0, N_c * np.where(excess > 0, excess, 1.0) ** (-1.0 / a_N), np.inf)


def size_multiplier(loss, N, *, L_inf, N_c, a_N):
    """m = N_eff / N; 1 - m is the fraction of parameters "lost" to repetition."""
    return effective_params(loss, L_inf=L_inf, N_c=N_c, a_N=a_N) / np.asarray(N, dtype=float)


def power_boundary(N, *, k, alpha):
    """E = k N^alpha, the form of both edges of the poor-performance region."""
    return k * np.asarray(N, dtype=float) ** alpha


@dataclass(frozen=True)
class Region:
    """Repeat counts with at least ``level`` times the worst degradation, for one model size.

    ``left``/``right`` are the crossings, linearly interpolated in ln E between the neighbouring measured repeat
    counts; ``left_open``/``right_open`` say the band reaches the end of the measured range (the true edge is
    beyond it, so that edge is only a bound). ``peak_E`` is the measured repeat count of the worst degradation.
    """

    left: float
    right: float
    peak_E: float
    peak_degradation: float
    left_open: bool
    right_open: bool


def poor_performance_region(repeats, degradation, level: float = 0.5) -> Region:
    """The band of repeat counts E where ``degradation`` (1 - m) >= ``level`` x its maximum.

    The band is the contiguous run of points around the maximum that stay above the threshold; each edge is where
    the degradation curve crosses the threshold, by linear interpolation in ln E between the last point inside and
    the first outside (docs/laws.md, 'Acceptance tests', R3: +-0.2% on a smooth curve sampled at 400 points, against
    +-1.5% for the nearest grid point).
    """
    E = np.asarray(repeats, dtype=float)
    d = np.asarray(degradation, dtype=float)
    if E.ndim != 1 or E.shape != d.shape or len(E) < 2:
        raise ScalingError("poor-performance region: need at least 2 (repeat count, degradation) pairs of equal length")
    if not (np.all(np.isfinite(E)) and np.all(E > 0) and np.all(np.isfinite(d))):
        raise ScalingError("poor-performance region: repeat counts must be positive and degradations finite")
    order = np.argsort(E)
    E, d = E[order], d[order]
    if len(np.unique(E)) != len(E):
        raise ScalingError("poor-performance region: repeat counts must be distinct (average seeds first)")
    peak = int(np.argmax(d))
    if d[peak] <= 0:
        raise ScalingError("poor-performance region: no repeat count degrades the model (all 1 - m <= 0)")
    threshold = level * d[peak]
    x = np.log(E)

    def crossing(inside: int, outside: int) -> float:
        # ln E where the straight line between the two points meets the threshold
        t = (d[inside] - threshold) / (d[inside] - d[outside])
        return float(np.exp(x[inside] + t * (x[outside] - x[inside])))

    lo = peak
    while lo > 0 and d[lo - 1] >= threshold:
        lo -= 1
    hi = peak
    while hi < len(E) - 1 and d[hi + 1] >= threshold:
        hi += 1
    left = crossing(lo, lo - 1) if lo > 0 else float(E[0])
    right = crossing(hi, hi + 1) if hi < len(E) - 1 else float(E[-1])
    return Region(
        left=left,
        right=right,
        peak_E=float(E[peak]),
        peak_degradation=float(d[peak]),
        left_open=lo == 0,
        right_open=hi == len(E) - 1,
    )


# The edge law E = k N^alpha, fitted to the per-size edges by scaling.analysis.repetition (not in the catalogue: it is a
# step of the repetition analysis, not a law of loss).
BOUNDARY = Law(
    name="repetition-boundary",
    formula="E = k N^alpha",
    reference="Hernandez et al. 2022, Scaling Laws and Interpretability of Learning from Repeated Data, arXiv:2205.10487",
    inputs=("N",),
    params=(
        Param("k", 0.0, np.inf, tuple(np.exp(np.arange(0.0, 21.0, 5.0))), log_scale=True, description="scale"),
        Param("alpha", -3.0, 3.0, (-1.0, -0.5, 0.0, 0.5), description="exponent"),
    ),
    function=power_boundary,
    output="E",
    min_distinct={"N": 2},
)

REPETITION = register(
    Law(
        name="repetition",
        formula="L_u = L_inf + (N_c/N)^a_N",
        reference="Hernandez et al. 2022, Scaling Laws and Interpretability of Learning from Repeated Data, "
        "arXiv:2205.10487 (effective model size of runs with repeated data)",
        inputs=("N",),
        params=(
            Param("L_inf", 0.0, np.inf, (0.0, 0.5, 1.0), description="irreducible loss (fix at 0 for Kaplan's L(N))"),
            Param(
                "N_c",
                0.0,
                np.inf,
                tuple(10.0 ** np.arange(4.0, 16.0, 3.0)),
                log_scale=True,
                description="scale (non-embedding parameters)",
            ),
            Param("a_N", 0.0, 3.0, (0.05, 0.1, 0.3, 0.7), description="parameter exponent"),
        ),
        function=unique_data_loss,
        min_distinct={"N": 3},
        notes="Fit on the unique-data runs (repeated_fraction = 0) at ONE token budget; then "
        "N_eff = N_c (L - L_inf)^(-1/a_N) maps a run with repeated data to its effective size "
        "(scaling.analysis.repetition.analyze_repetition does the whole procedure).",
        analysis="repetition",
    )
)
