"""The bootstrap draws of a law fit (``Fit.draws``): runs resampled with replacement, each resample refitted.

A resample is the full data with integer weights (how often each row's run was drawn; rows are the units when
there is no ``group`` column), drawn by the shared loop of :mod:`scaling.fitting.bootstrap`. Refitting 200
resamples from scratch would cost 200 multi-starts; instead each resample is refitted

- from the full-data optimum by BFGS with the full-data inverse Hessian as its first curvature model (a resample's
  optimum is close by), or by L-BFGS-B when that leaves the bounds;
- and from up to ``n_starts`` other local optima of the multi-start, for a resample whose best basin differs. Such a
  start is refined only when the resample's objective there is within a factor 2 of the best found so far (basin
  optima move little under resampling; this saves most of the cost).

A resample that keeps fewer rows than free parameters, or fewer distinct values of an input than the law needs,
cannot be fitted and counts as failed (``quality.bootstrap_failed_fraction``).

Large tables: with more than BOOTSTRAP_UNITS resampling units each resample draws m = BOOTSTRAP_UNITS units with
replacement instead of n and is refitted on those rows only; its deviation from the full-data optimum is scaled by
sqrt(m/n) (the m-out-of-n bootstrap, Bickel, Goetze & van Zwet 1997, consistent for smooth sqrt(n)-estimators such
as these M-estimators). Refitting every resample on all rows cost ~34 s a resample at 1e6 rows (~2 hours for the
default 200); this keeps a resample at the cost of ~2e4 rows. Strata (units resampled within each value of a
column, so per-group parameters stay identified) keep the full resample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import OptimizeResult

from scaling.fitting.bootstrap import BootstrapRun, resample_units, run_bootstrap
from scaling.fitting.objective import Objective, ParamSpace
from scaling.fitting.optimise import bfgs_warm, lbfgsb
from scaling.fitting.table import min_distinct

BOOTSTRAP_UNITS = 20_000


@dataclass(frozen=True)
class Resampling:
    """How the rows are resampled: ``codes[i]`` is row i's unit (its run), ``strata`` the units of each stratum
    (None: one pool), ``m_units`` the units drawn per resample (n, or BOOTSTRAP_UNITS of them on large tables)."""

    codes: np.ndarray
    n_units: int
    strata: list[np.ndarray] | None
    m_units: int

    @classmethod
    def of(cls, df: pd.DataFrame, group: str | None, strata: str | None) -> Resampling:
        if group is not None:
            codes, uniques = pd.factorize(df[group])  # NaN -> -1: such rows become units of their own
            missing = codes < 0
            codes[missing] = len(uniques) + np.arange(int(missing.sum()))
            n_units = len(uniques) + int(missing.sum())
        else:
            codes, n_units = np.arange(len(df)), len(df)
        by_stratum = _unit_strata(df, strata, codes, n_units)
        m_units = min(n_units, BOOTSTRAP_UNITS) if by_stratum is None else n_units
        return cls(codes, n_units, by_stratum, m_units)

    def weights(self, rng: np.random.Generator) -> np.ndarray:
        """One resample: each row's weight, the number of times its unit was drawn."""
        picked = resample_units(rng, self.n_units, size=self.m_units, strata=self.strata)
        return np.bincount(picked, minlength=self.n_units)[self.codes].astype(float)


def _unit_strata(df: pd.DataFrame, strata: str | None, codes: np.ndarray, n_units: int) -> list[np.ndarray] | None:
    """The resampling units of each value of the ``strata`` column (a unit belongs to the stratum of its first
    row), or None without strata."""
    if not strata or strata not in df.columns:
        return None
    first = pd.Series(df[strata].to_numpy()).groupby(codes).first().reindex(range(n_units))
    return [np.flatnonzero((first == value).to_numpy()) for value in pd.unique(first.dropna())]


def _warm_inverse_hessian(hessian: np.ndarray | None, scale: float) -> np.ndarray | None:
    """The full-data inverse Hessian as BFGS's first curvature model (times ``scale`` = n/m for an m-unit
    resample, whose objective is ~m/n of the full one); None unless it is positive definite."""
    if hessian is None:
        return None
    try:
        hess_inv = np.linalg.inv(hessian)
    except np.linalg.LinAlgError:
        return None
    hess_inv = 0.5 * (hess_inv + hess_inv.T)
    try:
        if np.any(np.linalg.eigvalsh(hess_inv) <= 0):
            return None
    except np.linalg.LinAlgError:
        return None
    return hess_inv * scale if scale != 1.0 else hess_inv


def _refit(sub: Objective, optimum: np.ndarray, hess_inv: np.ndarray | None, alternatives: Sequence[np.ndarray],
           options: Mapping[str, Any]) -> OptimizeResult | None:
    """The resample's optimum from the full-data optimum and the other local optima (None when none is finite)."""
    lo, hi = sub.lower_upper()
    best = None
    if hess_inv is not None:
        res = bfgs_warm(sub, optimum, hess_inv)
        if res is not None and np.isfinite(res.fun) and np.all(res.x >= lo) and np.all(res.x <= hi):
            best = res
    if best is None:
        res = lbfgsb(sub, optimum, options, order=2)
        best = res if np.isfinite(res.fun) else None
    for x0 in alternatives:
        f0 = sub.value(x0)
        if best is not None and not f0 < 2.0 * best.fun:
            continue
        res = lbfgsb(sub, x0, options, order=2)
        if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
            best = res
    return best


@dataclass(frozen=True)
class ParameterDraws:
    """The draws (one row per successful resample, one column per parameter of the law, natural units), the loop's
    account of failures, and the units per resample when the m-out-of-n bootstrap was used (else None)."""

    draws: pd.DataFrame
    run: BootstrapRun
    units_per_resample: int | None


def bootstrap_draws(obj: Objective, df: pd.DataFrame, optimum: np.ndarray, hessian: np.ndarray | None,
                    other_optima: Sequence[np.ndarray], *, n_resamples: int, seed: int | None, group: str | None,
                    strata: str | None = None, spaces: Sequence[ParamSpace] = (), n_starts: int = 2,
                    options: Mapping[str, Any]) -> ParameterDraws:
    """Resample ``df`` (the rows of ``obj``) ``n_resamples`` times and refit each from ``optimum`` (the full-data
    optimiser vector, with its ``hessian``) and from up to ``n_starts`` of ``other_optima``.

    ``spaces`` are the parameter spaces of successive resamples, cycled: resample i holds the frozen parameters at
    the values of ``spaces[i % len(spaces)]`` (a stage-1 fit's draws); empty: ``obj.space`` throughout.
    """
    space = obj.space
    law = space.law
    columns = list(law.param_names)
    if not n_resamples:
        return ParameterDraws(pd.DataFrame(columns=columns, dtype=float), BootstrapRun(), None)
    units = Resampling.of(df, group, strata)
    shrink = np.sqrt(units.m_units / units.n_units)
    subsampled = units.m_units < units.n_units
    hess_inv = _warm_inverse_hessian(hessian, units.n_units / units.m_units if subsampled else 1.0)
    distinct = [(df[col].to_numpy(), k) for col, k in min_distinct(law).items() if col in df.columns]
    alternatives = list(other_optima[:n_starts])
    p = space.size

    def one(rng: np.random.Generator, i: int) -> list[float] | None:
        weights = units.weights(rng)
        used = weights > 0
        if used.sum() < p or any(np.unique(v[used]).size < k for v, k in distinct):
            return None
        sub_space = spaces[i % len(spaces)] if spaces else space
        rows = np.flatnonzero(used) if subsampled else slice(None)
        best = _refit(obj.resampled(weights[rows], rows, sub_space), optimum, hess_inv, alternatives, options)
        if best is None:
            return None
        theta = best.x[:p]
        if shrink < 1.0:  # m-out-of-n: the deviation of an m-unit resample, scaled to n units
            theta = optimum[:p] + shrink * (theta - optimum[:p])
        natural = sub_space.natural(theta[None, :])
        return [float(natural[c][0]) for c in columns]

    run = run_bootstrap(one, n_resamples, seed)
    draws = pd.DataFrame(run.draws, columns=columns, dtype=float)
    return ParameterDraws(draws, run, units.m_units if subsampled else None)


__all__ = ["BOOTSTRAP_UNITS", "ParameterDraws", "Resampling", "bootstrap_draws"]
