"""Multi-start: from many starting points to the fit's optimum (and the other local optima the bootstrap reuses).

The objective of a scaling law has several basins (an irreducible loss E that trades off against the scale
constants; exponents that swap roles), so one local search is not enough. Hoffmann et al. 2022 (App. D.2) start
L-BFGS-B from every point of a 4500-point grid and keep the best. Here:

1. every start is scored in broadcast blocks (one call of the law for the whole grid), on a seeded subsample of
   SCREEN_ROWS rows for large tables;
2. only the best ``n_refine`` starts are refined by L-BFGS-B at screening tolerances;
3. the distinct local optima (apart in parameters *and* in objective) are kept, best first; on a subsample the best
   two are refined again on every row;
4. the best is polished with tight tolerances until a restart stops gaining (and by Gauss-Newton for least squares).

Where the starts come from (``method``): ``"grid"`` = the law's multi-start grid (Hoffmann's 4500 points for
chinchilla); ``"varpro"`` = a fine grid of the exponents with the linear parameters solved by NNLS at each
(:mod:`scaling.fitting.varpro`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
from scipy.optimize import OptimizeResult

from scaling.fitting.objective import Objective
from scaling.fitting.optimise import gauss_newton_polish, lbfgsb
from scaling.fitting.varpro import varpro_starts

METHODS = ("grid", "varpro")
# Time. On tables larger than SCREEN_ROWS the grid starts are scored and screened on a seeded random subsample of
# SCREEN_ROWS rows (which locates the basins as well: its optimum lies within ~1/sqrt(10^4) of the full one), and
# only the best distinct screened optima are refined and polished on every row. Without it a 1e6-row fit spends
# ~10 minutes screening 32 starts at 0.1-0.2 s per gradient. Tables up to SCREEN_ROWS rows are fitted as before.
SCREEN_ROWS = 10_000
SCREEN_SEED = 0


class Multistart(NamedTuple):
    """The winner (a SciPy result with ``restart_gain`` and ``n_starts`` set; None when no start had a finite
    objective), how many starts were refined, and the other distinct local optima (best first)."""

    best: OptimizeResult | None
    n_refined: int
    other_optima: list[np.ndarray]


def multistart(obj: Objective, grid: np.ndarray, *, n_refine: int, screen: Mapping[str, Any],
               polish: Mapping[str, Any], method: str = "grid") -> Multistart:
    """Score every start, refine the best ``n_refine`` with L-BFGS-B (options ``screen``), polish the winner
    (options ``polish``). See the module docstring for the steps."""
    n = obj.log_y.size
    sampled = n > SCREEN_ROWS
    if sampled:
        index = np.sort(np.random.default_rng(SCREEN_SEED).choice(n, SCREEN_ROWS, replace=False))
        screen_obj = obj.subset(index)
    else:
        screen_obj = obj
    if method == "varpro":
        grid_used = varpro_starts(screen_obj, obj.asymmetry)
    else:
        grid_used = grid
    distinct, n_refined = _screen(screen_obj, grid_used, n_refine, screen)
    if distinct and sampled:  # the subsample's objective is not the full one: refine its best optima on every row
        full = [lbfgsb(obj, r.x, screen, order=2) for r in distinct[:2]]
        full = sorted((r for r in full if np.isfinite(r.fun)), key=lambda r: r.fun)
        distinct = full + distinct[2:] if full else []
    if not distinct:
        return Multistart(None, n_refined, [])
    best = _polish(obj, distinct[0], polish)
    best.n_starts = len(grid_used)
    others: list[np.ndarray] = []
    for r in distinct[1:]:
        if all(np.max(np.abs(r.x - o)) > 1e-2 for o in [best.x, *others]):
            others.append(r.x)
    return Multistart(best, n_refined, others)


def _screen(obj: Objective, grid: np.ndarray, n_refine: int,
            options: Mapping[str, Any]) -> tuple[list[OptimizeResult], int]:
    """The distinct local optima reached from the best ``n_refine`` starts (best first), and how many were run."""
    values = obj.values(grid)
    finite = np.flatnonzero(np.isfinite(values))
    if finite.size == 0:
        return [], 0
    order = finite[np.argsort(values[finite], kind="stable")][:n_refine]
    results = []
    for i in order:
        res = lbfgsb(obj, obj.start(grid[i]), options, order=2)
        if np.isfinite(res.fun):
            results.append(res)
    results.sort(key=lambda r: r.fun)
    # Distinct local optima: apart in theta AND in objective. Runs that slid along a flat direction (e.g. log E
    # anywhere below -20 once E -> 0) end far apart in theta at the same objective; they are one optimum, and
    # counting them as several made every bootstrap resample refit the same far basin several times.
    distinct: list[OptimizeResult] = []
    for r in results:
        if all(np.max(np.abs(r.x - o.x)) > 1e-2 and abs(r.fun - o.fun) > 1e-6 * abs(o.fun) for o in distinct):
            distinct.append(r)
    return distinct, len(order)


def _polish(obj: Objective, best: OptimizeResult, options: Mapping[str, Any]) -> OptimizeResult:
    """Tight L-BFGS-B restarts until one stops gaining (a fresh L-BFGS memory gains the last digits in a few
    iterations); the last relative gain is one of the convergence measures (``restart_gain``)."""
    nit = best.nit
    gain = np.inf
    for _ in range(5):
        polished = lbfgsb(obj, best.x, options, order=4)
        if not np.isfinite(polished.fun):
            break
        gain = max(0.0, (best.fun - polished.fun) / max(abs(best.fun), 1e-300))
        if polished.fun <= best.fun:
            nit += polished.nit
            polished.status = polished.status if polished.status == 1 else best.status
            best = polished
        if gain <= 1e-12:
            break
    if obj.loss == "least_squares" and obj.asymmetry == 1.0:
        best = gauss_newton_polish(obj, best)
    best.nit = nit
    best.restart_gain = gain
    return best


__all__ = ["METHODS", "SCREEN_ROWS", "SCREEN_SEED", "Multistart", "multistart"]
