"""Prediction intervals calibrated on the fit's own rollout backtest (split-conformal, scaled by extrapolation distance).

The bootstrap measures how much the fitted curve moves when the runs are resampled; it knows nothing of how wrong
the law's *shape* is, and a misspecified law that misses a larger model by 10% can carry a +-0.1% band. What does
know is the data itself: fit on the smaller sizes, predict the next size up, and look at the out-of-sample errors.

Method (docs/fitting.md). Along the fit's size axis (N when the law has it, else its one input), the distinct values
are split into up to ``n_cuts`` blocks from the top, each with at least half of the values below it; cut k fits the
law on every row below block k (point estimate only, no bootstrap, a reduced multi-start) and predicts the rows of
block k. Each predicted row i gives

    e_i = |residual_i|           (log space: |log y_i - log yhat_i|; linear for a linear-space law)
    d_i = decades outside the cut's training range (N, D, C; scaling.fitting.extrapolation)
    s_i = the cut fit's residual scale (stored for reference; not part of the score)

and the nonconformity score r_i = e_i / rho(d_i) with the spread function rho(d) = 1 + d / D0, D0 = 1 decade: the
out-of-sample error, allowed to grow linearly with the distance extrapolated (it doubles one decade out). For a
level 1 - a its conformal quantile q = the ceil((n + 1)(1 - a))-th smallest score (split conformal prediction: Vovk,
Gammerman and Shafer 2005, "Algorithmic Learning in a Random World"; with a locally weighted spread function as in
Lei, G'Sell, Rinaldo, Tibshirani and Wasserman 2018, "Distribution-Free Predictive Inference for Regression", JASA
113:1094) gives the interval yhat(x) +- q (1 + d(x) / D0) at a forecast point x, in the residual space. The scores
are not divided by the residual scale: the cut fits' scales differ (a cut without the outlying large runs has a
tenth of the full fit's), and the errors themselves are the quantity of interest. The prediction interval shown is the
hull of that and the bootstrap-plus-noise interval, so it is never narrower than the parameter uncertainty alone.
When n is too small for the corrected rank (ceil((n+1)(1-a)) > n) the largest score is used and the row's
``interval_status`` says ``small_calibration``: below the finite-sample guarantee, and said so.

Exchangeability is an assumption here: rollout cuts extrapolate over the gaps between the fit's own sizes, while a
forecast may go farther; the linear growth with distance is what carries the error rate from one to the other, and
``benchmarks/interval_coverage.py`` measures whether it holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from scaling.errors import ScalingError
from scaling.fitting.extrapolation import decades_outside, fitted_ranges, input_moments

if TYPE_CHECKING:  # pragma: no cover
    from scaling.fitting.result import Fit
    from scaling.laws.base import Law

D0 = 1.0  # decades over which the spread function doubles: rho = 1 + d / D0
CUT_REFINE = 8  # multi-start refinements per cut fit (the full fit uses LawFitter.n_refine)


def axis_of(inputs: tuple[str, ...]) -> str:
    """The size axis along which rollout cuts are made: N when the law has it, else its first input."""
    return "N" if "N" in inputs else inputs[0]


def _cut_blocks(values: np.ndarray, n_cuts: int, min_train: int) -> list[tuple[float, float]]:
    """(first, last) axis values of each held-out block, top block first; below each block at least ``min_train``
    values and at least half of them: a cut fitted on far fewer sizes than the full fit misses by more than the full
    fit will (on 8-size synthetic ladders, cuts on 2-3 sizes made the 95% intervals cover 100% instead of ~95%)."""
    distinct = np.unique(values)
    m = len(distinct)
    min_train = max(min_train, math.ceil(m / 2))
    block = max(1, int(round(m / 10)))  # a ladder of <= 14 sizes: one size per cut; a dense table: ~10% of them
    out = []
    for k in range(n_cuts):
        hi_i = m - k * block
        lo_i = hi_i - block
        if lo_i < min_train:
            break
        out.append((float(distinct[lo_i]), float(distinct[hi_i - 1])))
    return out


def rollout_errors(df: pd.DataFrame, law: Law, fit_cut: Callable[[pd.DataFrame], Fit], n_cuts: int,
                   n_free: int) -> dict[str, Any] | None:
    """Fit on the rows below each of ``n_cuts`` blocks of the size axis and predict the block (see module doc).

    ``fit_cut`` fits the law to a cut's training rows (the caller's fitter as a point fit: no bootstrap, no
    calibration of its own, CUT_REFINE starts); it is passed in so that this module does not depend on the fitter
    that calls it. Returns the calibration record stored in ``fit.quality.calibration`` (None when no cut could
    be fitted).
    """
    axis = axis_of(law.inputs)
    values = df[axis].to_numpy(dtype=float)
    errors, decades, sigmas, cuts = [], [], [], []
    min_train = max(2, int(law.min_distinct.get(axis, 2)))
    for first, last in _cut_blocks(values, n_cuts, min_train):
        train, test = df[values < first], df[(values >= first) & (values <= last)]
        if len(train.drop_duplicates(list(law.inputs))) <= n_free:
            continue  # an interpolating cut fit predicts nothing about errors
        try:
            cut = fit_cut(train)
        except (ScalingError, ValueError, ArithmeticError, np.linalg.LinAlgError):
            continue  # a cut the law cannot be fitted to says nothing about its errors; the others still do
        q = cut.quality
        n, p = q.n_points, q.n_params_free
        sigma = float(q.rmse_log) * math.sqrt(n / (n - p)) if n > p else math.nan
        x = {c: test[c].to_numpy(float) for c in law.inputs}
        pred = np.asarray(law.log_predict(cut.params, **x) if law.residual_space == "log" else law.predict(cut.params, **x), float)
        y = test[law.output].to_numpy(float)
        obs = np.log(y) if law.residual_space == "log" else y
        ok = np.isfinite(pred) & np.isfinite(obs)
        if not ok.any() or not math.isfinite(sigma):
            continue
        summary = {"ranges": {c: {"min": float(train[c].min()), "max": float(train[c].max())} for c in law.inputs},
                   "input_moments": input_moments(train, list(law.inputs))}
        d = decades_outside({c: v[ok] for c, v in x.items()}, fitted_ranges(summary, list(law.inputs)))
        errors.extend(np.abs(pred[ok] - obs[ok]).tolist())
        decades.extend(d.tolist())
        sigmas.extend([sigma] * int(ok.sum()))
        cuts.append({"train_below": first, "block": [first, last], "n_train": len(train), "n_test": int(ok.sum())})
    if not errors:
        return None
    return {"method": "rollout split-conformal, scaled by decades of extrapolation", "axis": axis, "cuts": cuts,
            "abs_error": errors, "decades": decades, "sigma": sigmas, "d0": D0}


def spread(decades: np.ndarray, d0: float = D0) -> np.ndarray:
    """rho(d) = 1 + d / D0: the spread function of the locally weighted conformal score."""
    return 1.0 + np.asarray(decades, float) / d0


def conformal_quantile(calibration: Mapping[str, Any] | None, level: float) -> tuple[float, bool]:
    """(q, small): the conformal quantile of the scores e / rho at ``level``, and whether the sample was too small
    for the finite-sample rank (then the largest score is used). q = nan without a calibration."""
    if not calibration or not calibration.get("abs_error"):
        return math.nan, False
    e = np.asarray(calibration["abs_error"], float)
    rho = spread(np.asarray(calibration["decades"], float), float(calibration.get("d0", D0)))
    scores = np.sort(e / rho)
    n = scores.size
    rank = math.ceil((n + 1) * level)
    if rank > n:
        return float(scores[-1]), True
    return float(scores[rank - 1]), False


__all__ = ["D0", "axis_of", "conformal_quantile", "rollout_errors", "spread"]
