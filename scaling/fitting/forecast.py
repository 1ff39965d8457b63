"""Forecasts from a fit: predictions with intervals and compute-optimal allocations.

Two kinds of interval, named in every output (docs/fitting.md, "Which interval"):

- confidence (``conf_lower``/``conf_upper``, and ``X_conf_lower``/``X_conf_upper`` in allocations): the spread of the
  fitted curve over the bootstrap draws (each a parameter set fitted to a resampled table): where the *mean* law
  lies;
- prediction (``pred_lower``/``pred_upper``, ``loss_pred_*``): where *one new run* at that point will land: the
  bootstrap curves plus the fit's residual noise, widened with the distance outside the fitted range by the fit's
  own rollout backtest (:mod:`scaling.fitting.conformal`). This is the one to plan a training run on.

Neither is shown as a number when it carries no information (:attr:`Fit.interval_status`; as many free parameters
as distinct points, most bootstrap resamples failed, a collapsed spread, no draws): the bounds are NaN and the
``interval_status`` column names the reason.

Compute-optimal allocation under C = 6 N D (:func:`compute_optimal`, what ``Fit.optimal`` returns): the law's
closed form (``Law.optimal``, e.g. Hoffmann et al. 2022, Eq. 4) when it has one, else a numeric 1-D minimisation of
the loss over log N with D = C/(6N) (Hoffmann's IsoFLOP view: along a fixed-compute line the loss has one minimum
in N).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from scaling.fitting.bootstrap import percentile_interval
from scaling.fitting.broadcast import predict_many
from scaling.fitting.diagnostics import COLLAPSE_REL_WIDTH
from scaling.errors import ScalingError
from scaling.laws.base import Law

if TYPE_CHECKING:  # pragma: no cover
    from scaling.fitting.result import Fit

def _broadcast_inputs(law: Law, inputs: Mapping[str, Any], grid: bool) -> dict[str, np.ndarray]:
    unknown = [k for k in inputs if k not in law.inputs]
    if unknown:
        raise ScalingError(f"law {law.name} has inputs {', '.join(law.inputs)}; got unknown {', '.join(unknown)}")
    missing = [c for c in law.inputs if c not in inputs]
    if missing:
        raise ScalingError(f"law {law.name} needs input(s) {', '.join(missing)} (e.g. {missing[0]}=1e9)")
    arrays = {}
    for c in law.inputs:
        try:
            a = np.atleast_1d(np.asarray(inputs[c], dtype=float)).ravel()
        except (TypeError, ValueError):
            raise ScalingError(f"input {c}: {str(inputs[c])[:60]!r} is not a number") from None
        if a.size == 0:
            raise ScalingError(f"input {c}: no values")
        ok = np.isfinite(a) & ((a > 0) | (not law.positive_inputs))  # formula laws may take inputs <= 0
        if not ok.all():
            bad = float(a[~ok][0])  # a plain float: "-1", not "np.float64(-1.0)"
            raise ScalingError(f"input {c}: {bad:g} must be a {'positive ' if law.positive_inputs else ''}finite number")
        arrays[c] = a
    if grid:
        combos = list(itertools.product(*(arrays[c] for c in law.inputs)))
        return {c: np.array([t[i] for t in combos]) for i, c in enumerate(law.inputs)}
    try:
        shaped = np.broadcast_arrays(*(arrays[c] for c in law.inputs))
    except ValueError:
        sizes = ", ".join(f"{c}: {arrays[c].size}" for c in law.inputs)
        raise ScalingError(f"inputs have different lengths ({sizes}); give equal lengths, scalars, or grid=True") from None
    return {c: np.array(a, dtype=float) for c, a in zip(law.inputs, shaped)}


def _draw_params(fit: Fit) -> dict[str, np.ndarray]:
    """The bootstrap draws as arrays; none when the fit's intervals are withheld (``Fit.interval_status``)."""
    if fit.interval_status is not None:
        return {}
    return {name: fit.draws[name].to_numpy(dtype=float) for name in fit.law.param_names} if len(fit.draws) else {}


def noise_scale(fit: Fit) -> float:
    """The fit's run-to-run noise in its residual space: in-sample RMSE times sqrt(n / (n - p)) (NaN without it)."""
    q = fit.quality
    n, p, rmse = q.n_points or 0, q.n_params_free or 0, q.rmse_log
    return float(rmse) * np.sqrt(n / (n - p)) if rmse is not None and n > p else np.nan


def _prediction_band(fit: Fit, centre: np.ndarray, draws_space: np.ndarray, ci: float, decades: np.ndarray,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """Prediction interval in the residual space: the hull of (a) the bootstrap curves plus Gaussian noise of the
    fit's residual scale and (b) the rollout-conformal interval centre +- q (1 + d / D0) (:mod:`scaling.fitting.conformal`).
    Returns lo, hi, status (``ok``, ``small_calibration``, ``uncalibrated`` or ``no_uncertainty_information``)."""
    from scaling.fitting.conformal import conformal_quantile, spread

    sigma = noise_scale(fit)
    if not np.isfinite(sigma) or sigma <= 0:
        nan = np.full(centre.shape, np.nan)
        return nan, nan, "no_uncertainty_information"
    base = draws_space if len(draws_space) else centre[None, :]
    reps = max(1, NOISY_ROWS // len(base))  # enough noisy copies for stable 2.5%/97.5% quantiles
    noisy = np.repeat(base, reps, axis=0) + rng.normal(0.0, sigma, (len(base) * reps, base.shape[1]))
    lo, hi = percentile_interval(noisy, ci)
    calibration = fit.quality.calibration
    q, small = conformal_quantile(calibration, ci)
    if not np.isfinite(q):
        return lo, hi, "uncalibrated"
    half = q * spread(decades, float(calibration.get("d0", 1.0)))
    return np.minimum(lo, centre - half), np.maximum(hi, centre + half), "small_calibration" if small else "ok"


# Prediction bands hold (at least NOISY_ROWS) x points values at once; points beyond MAX_VALUES_AT_ONCE / rows are
# forecast in chunks, so memory stays bounded (a 1e6-point grid needed 30 GB at once and died in a MemoryError).
NOISY_ROWS = 4000
MAX_VALUES_AT_ONCE = 2**24  # 128 MB per float64 array


def predict(fit: Fit, ci: float | None = None, grid: bool = False, **inputs: Any) -> pd.DataFrame:
    """Predicted output at the given inputs with both kinds of interval, and how far each point extrapolates.

    Columns: inputs..., point, conf_lower, conf_upper (confidence interval of the mean law: the bootstrap band),
    pred_lower, pred_upper (prediction interval for one new run: band + residual noise, widened by the rollout
    calibration with the distance outside the fitted range), interval_status (``ok`` or a code: why the intervals are
    withheld or how they are limited), extrapolation, extrap_decades, extrap_distance, warning
    (``extrapolating_far`` or ""). Inputs broadcast like numpy; ``grid=True`` takes their cartesian product.
    """
    from scaling.fitting import extrapolation

    ci = fit.ci if ci is None else _check_ci(ci)
    x = _broadcast_inputs(fit.law, inputs, grid)
    n_points = len(next(iter(x.values()))) if x else 1
    step = max(1, MAX_VALUES_AT_ONCE // max(len(fit.draws) + 1, NOISY_ROWS))
    if n_points > step:  # each point's forecast is independent of the others: chunks give the same columns
        chunks = [predict(fit, ci, **{k: v[i : i + step] for k, v in x.items()}) for i in range(0, n_points, step)]
        return pd.concat(chunks, ignore_index=True)
    law = fit.law
    log = law.residual_space == "log"
    centre = predict_many(law, {k: np.array([v]) for k, v in fit.params.items()}, x, log=log)[0]
    point = np.exp(centre) if log else centre
    status = fit.interval_status
    draws = _draw_params(fit)
    n = len(point)
    nan = np.full(n, np.nan)
    conf_lo = conf_hi = pred_lo = pred_hi = nan
    where = extrapolation.describe(fit, x)
    row_status = np.full(n, status or "ok", dtype=object)
    if draws:
        in_space = predict_many(law, draws, x, log=log)
        in_space = np.where(np.isfinite(in_space), in_space, np.nan)
        conf_lo, conf_hi = percentile_interval(in_space, ci)
        rng = np.random.default_rng(fit.seed)
        decades = np.nan_to_num(where["extrap_decades"].to_numpy(float), nan=0.0)
        pred_lo, pred_hi, pred_status = _prediction_band(fit, centre, in_space, ci, decades, rng)
        row_status[:] = pred_status
        collapsed = ~(conf_hi - conf_lo > COLLAPSE_REL_WIDTH * np.maximum(np.abs(centre), 1e-300))
        row_status[collapsed] = "interval_collapsed"
        withheld = collapsed | (pred_status == "no_uncertainty_information")
        conf_lo, conf_hi = np.where(collapsed, np.nan, conf_lo), np.where(collapsed, np.nan, conf_hi)
        pred_lo, pred_hi = np.where(withheld, np.nan, pred_lo), np.where(withheld, np.nan, pred_hi)
        if log:
            conf_lo, conf_hi, pred_lo, pred_hi = (np.exp(v) for v in (conf_lo, conf_hi, pred_lo, pred_hi))
    out = pd.DataFrame(x)
    out["point"] = point
    out["conf_lower"], out["conf_upper"] = conf_lo, conf_hi
    out["pred_lower"], out["pred_upper"] = pred_lo, pred_hi
    out["interval_status"] = row_status
    for col in where.columns:
        out[col] = where[col].to_numpy()
    return out


def _check_ci(ci: Any) -> float:
    try:
        ci = float(ci)
    except (TypeError, ValueError):
        raise ScalingError(f"ci {ci!r}: must be a number between 0 and 1") from None
    if not 0 < ci < 1:
        raise ScalingError(f"ci {ci!r}: must be between 0 and 1 (e.g. 0.95)")
    return ci


def numeric_optimal(
    law: Law, params: Mapping[str, float], compute: float, at: Mapping[str, float] | None = None
) -> tuple[float, float]:
    """argmin over N of L(N, C/(6N), **at) by a log-spaced scan then a bounded 1-D refinement (scipy).

    ``at`` holds the law's other inputs, e.g. ``{"U": 25e9}`` unique tokens for the data-constrained law.
    Returns (nan, nan) when the minimum sits at the edge of the feasible range (N or D below 1): the law then
    has no interior compute-optimal size at this compute.
    """
    at = dict(at or {})
    log_c6 = np.log(compute / 6.0)
    log_n = np.linspace(0.0, log_c6, 801)
    p = {k: np.array([v]) for k, v in params.items()}
    held = {k: np.full(log_n.shape, float(v)) for k, v in at.items()}
    values = predict_many(law, p, {"N": np.exp(log_n), "D": np.exp(log_c6 - log_n), **held}, log=True)[0]
    if not np.isfinite(values).any():
        return np.nan, np.nan
    i = int(np.nanargmin(np.where(np.isfinite(values), values, np.inf)))
    if i == 0 or i == len(log_n) - 1:
        return np.nan, np.nan

    def f(t: float) -> float:
        v = float(law.log_predict(params, N=np.exp(t), D=np.exp(log_c6 - t), **at))
        return v if np.isfinite(v) else np.inf

    res = minimize_scalar(f, bounds=(log_n[i - 1], log_n[i + 1]), method="bounded", options={"xatol": 1e-10})
    n_opt = float(np.exp(res.x))
    return n_opt, float(compute / (6.0 * n_opt))


def _allocation(
    law: Law, params: Mapping[str, float], compute: np.ndarray, at: Mapping[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    if law.optimal is not None and not at:
        n_opt, d_opt = law.optimal(params, compute)
        return np.broadcast_to(np.asarray(n_opt, float), compute.shape), np.broadcast_to(np.asarray(d_opt, float), compute.shape)
    pairs = [numeric_optimal(law, params, float(c), at) for c in compute]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def compute_optimal(fit: Fit, compute: Any, ci: float | None = None, at: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Compute-optimal N, D, loss and tokens per parameter at each compute (FLOPs, C = 6 N D), with intervals.

    ``at`` holds the law's inputs other than N and D, e.g. ``{"U": 25e9}``: the optimum when only 25e9 unique
    tokens exist (Muennighoff et al. 2023), found numerically along C = 6 N D for the point and every draw.
    Without it a law with a closed-form optimum uses that (data-constrained: unlimited unique data).

    Columns: compute, the ``at`` inputs, N_opt, D_opt, loss, tokens_per_param (and ``epochs`` = D_opt / U when U is
    given), each with ``*_conf_lower`` / ``*_conf_upper`` (confidence interval from the bootstrap draws; NaN when
    withheld), then ``loss_pred_lower`` / ``loss_pred_upper`` (prediction interval for one run at the allocation),
    interval_status, extrapolation, extrap_decades, extrap_distance and warning as in :func:`predict`.
    (:meth:`Fit.optimal` is this function; "optimal" alone names other things in the package: Chinchilla's three
    approaches in :mod:`scaling.analysis.optimal`, optimal hyperparameters.)
    """
    law = fit.law
    ci = fit.ci if ci is None else _check_ci(ci)
    at = _check_allocation_inputs(fit, at)
    C = _budgets(compute)
    step = max(1, MAX_VALUES_AT_ONCE // (5 * (len(fit.draws) + 1)))
    if C.size > step:  # bounded memory, as in predict: 1e5 budgets x 4000 draws stacked 13 GB at once
        return pd.concat([compute_optimal(fit, C[i : i + step], ci, at) for i in range(0, C.size, step)],
                         ignore_index=True)
    point = _allocation_quantities(law, fit.params, C, at)
    if np.isnan(point[0]).any():
        bad = C[np.isnan(point[0])][0]
        raise ScalingError(
            f"law {fit.law_name}: no interior compute-optimal model size at compute {bad:.3g} (the loss keeps falling "
            f"towards N or D = 1 along C = 6ND); the fitted parameters may be outside the law's sensible range"
        )
    names = ["N_opt", "D_opt", "loss", "tokens_per_param"] + (["epochs"] if "U" in at else [])
    out = pd.DataFrame({"compute": C, **{k: float(v) for k, v in at.items()}})
    if _draw_params(fit):
        stacked = np.stack([_allocation_quantities(law, row, C, at)
                            for row in fit.draws[list(law.param_names)].to_dict("records")])
        lower, upper = percentile_interval(stacked, ci)
    else:
        lower = upper = np.full(point.shape, np.nan)
    for k, name in enumerate(names):
        out[name] = point[k]
        out[f"{name}_conf_lower"] = lower[k]
        out[f"{name}_conf_upper"] = upper[k]
    # One new run at the planned allocation: the prediction interval of its loss, and how far it extrapolates.
    held = {k: np.full(C.shape, float(v)) for k, v in at.items()}
    if "U" in law.inputs and "U" not in at:
        held["U"] = point[1]  # unlimited unique data: every token fresh
    run = predict(fit, ci=ci, N=point[0], D=point[1], **held)
    out["loss_pred_lower"], out["loss_pred_upper"] = run["pred_lower"].to_numpy(), run["pred_upper"].to_numpy()
    for col in ("interval_status", "extrapolation", "extrap_decades", "extrap_distance", "warning"):
        out[col] = run[col].to_numpy()
    return out


def _check_allocation_inputs(fit: Fit, at: Mapping[str, float] | None) -> dict[str, float]:
    """The law must be a loss of N and D; ``at`` must give exactly its other inputs (or none, for a law with a
    closed-form optimum over unlimited data), each a positive number. Returns ``at`` with string keys."""
    law = fit.law
    if law.kind != "loss":  # an accuracy is maximised, not minimised; a hyperparameter law predicts the optimum itself
        raise ScalingError(
            f"law {fit.law_name} predicts {law.output} ({law.kind} law), not a loss to minimise under C = 6ND: "
            + ("use scaling forecast (or the two-step fit's task-loss step)" if law.kind == "downstream"
               else "give its inputs, e.g. scaling optimal FIT --N 1e9 --D 1e11")
        )
    if not {"N", "D"} <= set(law.inputs):
        raise ScalingError(
            f"law {fit.law_name} has inputs {', '.join(law.inputs)}: a compute-optimal allocation needs a law of N and D"
        )
    at = {str(k): v for k, v in (at or {}).items()}
    others = [c for c in law.inputs if c not in ("N", "D")]
    unknown = [k for k in at if k not in others]
    if unknown:
        raise ScalingError(
            f"law {fit.law_name}: {unknown[0]} is not one of its other inputs ({', '.join(others) or 'none besides N and D'})"
        )
    missing = [c for c in others if c not in at]
    if missing and (law.optimal is None or at):
        raise ScalingError(f"law {fit.law_name}: the allocation needs {', '.join(missing)} (e.g. --at {missing[0]}=1e10)")
    for k, v in at.items():
        if not (isinstance(v, (int, float, np.floating)) and np.isfinite(v) and v > 0):
            shown = format(float(v), "g") if isinstance(v, (int, float, np.number)) else repr(v)[:60]
            raise ScalingError(f"{k}={shown}: must be a positive number")
    return at


def _budgets(compute: Any) -> np.ndarray:
    """Compute budgets as a 1-d array of FLOPs, each above 6 (C = 6 N D needs N, D >= 1)."""
    try:
        C = np.atleast_1d(np.asarray(compute, dtype=float)).ravel()
    except (TypeError, ValueError):
        raise ScalingError(f"compute {str(compute)[:60]}: not a number") from None
    if C.size == 0:
        raise ScalingError("compute: give at least one budget in FLOPs (e.g. 5.76e23)")
    bad = C[~(np.isfinite(C) & (C > 6.0))]
    if bad.size:  # anything up to 6 FLOPs has no allocation at all
        raise ScalingError(f"compute {float(bad[0]):g}: must be a finite number of FLOPs above 6 (e.g. 5.76e23)")
    return C


def _allocation_quantities(law: Law, params: Mapping[str, float], C: np.ndarray,
                           at: Mapping[str, float]) -> np.ndarray:
    """Rows N_opt, D_opt, loss, tokens per parameter (and epochs when U is given) at each budget, for one
    parameter set (the point estimate or one bootstrap draw)."""
    n_opt, d_opt = _allocation(law, params, C, at)
    with np.errstate(all="ignore"):
        n, d = np.nan_to_num(n_opt, nan=1.0), np.nan_to_num(d_opt, nan=1.0)
        # without U, unlimited unique data: every token is fresh (U = D)
        held = at if at or "U" not in law.inputs else {"U": d}
        loss = np.where(np.isfinite(n_opt), law.predict(params, N=n, D=d, **held), np.nan)
    rows = [n_opt, d_opt, loss, d_opt / n_opt]
    if "U" in at:
        rows.append(d_opt / np.minimum(at["U"], d_opt))  # epochs over the unique data
    return np.stack(rows)


__all__ = ["compute_optimal", "noise_scale", "numeric_optimal", "predict"]
