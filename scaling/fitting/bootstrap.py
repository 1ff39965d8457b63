"""The bootstrap: one seeded resampling loop, one way to draw resampling units, one percentile interval.

Every uncertainty in this package is a nonparametric bootstrap (Efron & Tibshirani 1993): the estimate is
recomputed on resamples of the data drawn with replacement, and its equal-tailed percentile interval is read off
the draws. The law fitter's draws (:mod:`scaling.fitting.draws`), Chinchilla's three approaches
(:mod:`scaling.analysis.allocation`), transfer and repetition analyses and every forecast read their intervals here,
so one seed gives one sequence of resamples and a failed resample means the same thing everywhere.

- :func:`run_bootstrap` runs the loop: ``one(rng, i)`` computes resample ``i`` from the shared generator and
  returns None when that resample cannot be estimated (too few distinct points, no optimum, ...); the failures are
  counted, not hidden, because a large failed share makes the surviving draws a biased sample
  (:data:`scaling.fitting.diagnostics.BOOTSTRAP_FAIL_MAX`).
- :func:`resample_units` draws whole units (runs, isoFLOP groups, rows) with replacement, optionally m out of n or
  within strata.
- :func:`percentile_interval` is the interval, with one NaN policy: non-finite draws (a failed point of a curve, an
  overflow) are ignored; where no finite draw is left the bounds are NaN.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class BootstrapRun(Generic[T]):
    """What a bootstrap loop produced: the successful resamples' results, in resample order, and how many failed."""

    draws: list[T] = field(default_factory=list)
    n_resamples: int = 0
    n_failed: int = 0

    @property
    def failed_fraction(self) -> float:
        """Share of the resamples that could not be estimated (0.0 when there were none)."""
        return self.n_failed / self.n_resamples if self.n_resamples else 0.0


def run_bootstrap(one: Callable[[np.random.Generator, int], T | None], n_resamples: int,
                  seed: int | None) -> BootstrapRun[T]:
    """Call ``one(rng, i)`` for i = 0 .. n_resamples - 1 with one generator seeded by ``seed``.

    Resamples run in order on the same generator, so a seed fixes every draw. The index ``i`` pairs resample ``i``
    with row ``i`` of an earlier stage's draws in two-stage bootstraps (a frozen parameter's draws, a from-scratch
    fit's draws). ``one`` returns None for a resample it cannot estimate; that counts as a failure. An exception is
    not a failure: it propagates, because it signals bad input or a bug that no other resample escapes.
    """
    rng = np.random.default_rng(seed)
    draws: list[T] = []
    for i in range(n_resamples):
        result = one(rng, i)
        if result is not None:
            draws.append(result)
    return BootstrapRun(draws=draws, n_resamples=n_resamples, n_failed=n_resamples - len(draws))


def resample_units(rng: np.random.Generator, n_units: int, *, size: int | None = None,
                   strata: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Indices of units (runs, groups or rows, numbered 0 .. n_units - 1) drawn with replacement.

    ``size`` draws that many instead of ``n_units`` (the m-out-of-n bootstrap on large tables). ``strata`` (arrays
    of unit indices) resamples within each stratum, each keeping its own count, so every stratum (an isoFLOP budget,
    a per-group parameter's runs) stays represented; ``size`` does not apply then.
    """
    if strata is not None:
        if not strata:
            return np.empty(0, dtype=np.int64)
        return np.concatenate([np.asarray(units)[rng.integers(0, len(units), len(units))] for units in strata])
    return rng.integers(0, n_units, n_units if size is None else size)


def percentile_interval(draws: Any, level: float, axis: int = 0) -> tuple[Any, Any]:
    """The equal-tailed percentile interval of ``draws`` at ``level`` (0.95: the 2.5% and 97.5% quantiles).

    Non-finite draws are ignored; where no finite draw is left (or there are no draws) both bounds are NaN. A 1-d
    sample gives two floats; an array gives two arrays, the quantiles taken along ``axis`` (draws x points ->
    one bound per point).
    """
    values = np.asarray(draws, dtype=float)
    q = [(1 - level) / 2, (1 + level) / 2]
    if values.ndim == 0:
        values = values.reshape(1)
    finite = np.isfinite(values)
    if values.shape[axis] == 0 or not finite.any():
        shape = np.delete(np.array(values.shape), axis % values.ndim)
        lower, upper = np.full(tuple(shape), np.nan), np.full(tuple(shape), np.nan)
    elif finite.all():
        lower, upper = np.quantile(values, q, axis=axis)
    else:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN by design
            lower, upper = np.nanquantile(np.where(finite, values, np.nan), q, axis=axis)
    if np.ndim(lower) == 0:
        return float(lower), float(upper)
    return lower, upper


__all__ = ["BootstrapRun", "percentile_interval", "resample_units", "run_bootstrap"]
