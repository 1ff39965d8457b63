"""The two-step downstream forecast of Bhagia et al. 2024 (arXiv 2412.04403): fit, chain, forecast with intervals.

Step 1 fits ``task-loss`` (task_loss = A/N^alpha + B/D^beta + E) on (N, D, task_loss); step 2 fits ``task-accuracy``
(accuracy = a/(1 + exp(-k (task_loss - L0))) + b) on (task_loss, accuracy), both from the same table. The result is
one :class:`~scaling.fitting.result.Fit` of the chained law ``downstream`` (accuracy as a function of N and D), so it
saves, loads, forecasts and serves like any fit.

Uncertainty through both steps: each step is bootstrapped over the same runs with the same seed, so resample i of
step 1 and resample i of step 2 draw the same runs; the chained fit's draw i is (step-1 draw i, step-2 draw i). A
forecast pushes every step-1 draw's task loss through its paired step-2 sigmoid, so its interval carries the
uncertainty of both fits and their correlation through shared runs. (If a resample fails in one step only, the
remaining draws are paired in order and the fit says so.)
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from scaling.errors import ScalingError
from scaling.fitting.bootstrap import percentile_interval
from scaling.fitting.result import Fit
from scaling.fitting.broadcast import predict_many
from scaling.fitting.quality import FitQuality
from scaling.laws import get_law
from scaling.results import validate_columns

STEP1, STEP2, CHAIN = "task-loss", "task-accuracy", "downstream"
COLUMNS = ("N", "D", "task_loss", "accuracy")


def _split(options: Mapping[str, Any] | None, step: str) -> dict[str, Any]:
    """The entries of ``fix``/``tie``/``bounds`` that name a parameter of ``step``."""
    law = get_law(step)
    return {k: v for k, v in (options or {}).items() if k in law.param_names}


def _check_names(options: Mapping[str, Any] | None, what: str) -> None:
    """Every name in ``fix``/``tie``/``bounds`` is a parameter of one of the steps; a tie stays within a step."""
    first = set(get_law(STEP1).param_names)
    for name in options or {}:
        if name not in first | set(get_law(STEP2).param_names):
            raise ScalingError(f"{what} {name}: law {CHAIN} has no parameter {name!r}; it has "
                               f"{', '.join(get_law(CHAIN).param_names)}")
    if what == "tie":
        for name, master in (options or {}).items():
            if (name in first) != (master in first):
                raise ScalingError(f"tie {name}={master}: the two parameters belong to different steps")


def fit_downstream(data: pd.DataFrame, *, source: str | None = None, fix: Mapping[str, float] | None = None,
                   tie: Mapping[str, str] | None = None, bounds: Mapping[str, tuple[float, float]] | None = None,
                   n_bootstrap: int = 200, ci: float = 0.95, seed: int = 0, group: str | None = "run_id",
                   **options: Any) -> Fit:
    """Fit both steps on ``data`` (columns N, D, task_loss, accuracy) and return the chained ``downstream`` fit.

    Other keyword arguments (``loss``, ``delta``, ``param_def``, ``n_refine``, ...) go to both steps'
    :class:`~scaling.fitting.estimate.LawFitter`. The chained fit's ``quality.steps`` holds each step's quality, and its
    ``rmse_log`` is the end-to-end RMSE of accuracy predicted from (N, D) (linear residuals).
    """
    from scaling.fitting.estimate import LawFitter

    t0 = time.perf_counter()
    source = source or str(data.attrs.get("source") or "table")
    for unsupported in ("fix_draws", "x", "calibrate"):  # calibrate: the chained fit keeps no rollout calibration
        if options.get(unsupported) is not None:
            raise ScalingError(f"{unsupported} does not apply to the two-step {CHAIN} fit")
        options.pop(unsupported, None)
    _check_names(fix, "fix")
    _check_names(tie, "tie")
    _check_names(bounds, "bounds")
    if "task_loss" not in data.columns:
        raise ScalingError(f"{source}: the two-step {CHAIN} fit needs a task_loss column (step 1 predicts it from N "
                           "and D; step 2 maps it to accuracy); LawFitter('downstream') fits accuracy from N, D in "
                           "one step instead")
    df = validate_columns(data, list(COLUMNS), source=source)
    steps = {}
    for step in (STEP1, STEP2):
        fitter = LawFitter(step, fix=_split(fix, step), tie=_split(tie, step),
                           bounds=_split(bounds, step), n_bootstrap=n_bootstrap, ci=ci, seed=seed,
                           group=group, calibrate=0, **options)  # no rollout cuts: the chain would drop them
        try:
            steps[step] = fitter.fit(df, source=source)
        except ScalingError as exc:
            raise ScalingError(f"step {1 if step == STEP1 else 2} ({step}): {exc}") from None
    return _chain(steps[STEP1], steps[STEP2], df, t0)


def _chain(first: Fit, second: Fit, df: pd.DataFrame, t0: float) -> Fit:
    law = get_law(CHAIN)
    params = {**first.params, **second.params}
    k = min(len(first.draws), len(second.draws))
    draws = pd.concat([first.draws.iloc[:k].reset_index(drop=True), second.draws.iloc[:k].reset_index(drop=True)],
                      axis=1)[list(law.param_names)]
    warnings_ = [f"step 1 ({STEP1}): {w}" for w in first.quality.warnings]
    warnings_ += [f"step 2 ({STEP2}): {w}" for w in second.quality.warnings]
    failed = [len(f.draws) < f.n_bootstrap for f in (first, second)]
    if any(failed) and k:
        warnings_.append("a bootstrap resample failed in one step: the remaining draws are paired in order, not "
                         "by resample (intervals are approximate)")
    predicted = law.predict(params, N=df["N"].to_numpy(), D=df["D"].to_numpy())
    q1, q2 = first.quality, second.quality
    quality = FitQuality(
        n_points=int(len(df)),
        n_params_free=(q1.n_params_free or 0) + (q2.n_params_free or 0),
        rmse_log=float(np.sqrt(np.mean((predicted - df["accuracy"].to_numpy()) ** 2))),
        residual_space="linear",
        objective=_or_nan(q1.objective) + _or_nan(q2.objective),
        converged=bool(q1.converged) and bool(q2.converged),
        message=f"step 1: {q1.message}; step 2: {q2.message}",
        at_bound=[*q1.at_bound, *q2.at_bound],
        bootstrap_failed_fraction=max(q1.bootstrap_failed_fraction or 0.0, q2.bootstrap_failed_fraction or 0.0)
        if first.n_bootstrap else None,
        warnings=warnings_,
        steps={STEP1: _step_quality(q1), STEP2: _step_quality(q2)},
        seconds=round(time.perf_counter() - t0, 3),
    )
    settings = {**{k: v for k, v in second.settings.items() if k not in ("law", "fix", "tie", "bounds")},
                "law": CHAIN, "fix": {**first.fixed, **second.fixed}, "tie": {**first.tied, **second.tied},
                "two_step": True, "steps": {STEP1: "N, D -> task_loss", STEP2: "task_loss -> accuracy"}}
    summary = dict(first.data_summary or {})
    summary["ranges"] = {**(first.data_summary or {}).get("ranges", {}), **(second.data_summary or {}).get("ranges", {})}
    fit = Fit(law=law, params=params, fixed={**first.fixed, **second.fixed}, tied={**first.tied, **second.tied},
              draws=draws, settings=settings, data_summary=summary, quality=quality)
    fit.recompute_intervals()
    return fit


def _step_quality(q: FitQuality) -> dict[str, Any]:
    """One step's quality as the chained fit's ``quality.steps`` holds it."""
    keys = ("n_points", "n_params_free", "rmse_log", "residual_space", "objective", "converged", "message")
    return {k: getattr(q, k) for k in keys}


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def chain_forecast(fit: Fit, ci: float | None = None, grid: bool = True, **inputs: Any) -> pd.DataFrame:
    """Task loss and accuracy at (N, D) from a chained ``downstream`` fit, each with its bootstrap interval.

    Columns: N, D, task_loss, task_loss_lower, task_loss_upper, accuracy, accuracy_lower, accuracy_upper (the
    cartesian product of the given N and D; ``grid=False`` pairs them like numpy broadcasting).
    """
    if fit.law.name != CHAIN:
        raise ScalingError(f"law {fit.law_name}: a chained forecast needs a {CHAIN} fit")
    table = fit.predict(ci=ci, grid=grid, **inputs).rename(  # the confidence interval of the chained law
        columns={"point": "accuracy", "conf_lower": "accuracy_lower", "conf_upper": "accuracy_upper"})
    step1 = get_law(STEP1)
    x = {c: table[c].to_numpy() for c in step1.inputs}
    loss = predict_many(step1, {k: np.array([fit.params[k]]) for k in step1.param_names}, x)[0]
    lower = upper = np.full(loss.shape, np.nan)
    if len(fit.draws) and fit.interval_status is None:
        level = fit.ci if ci is None else ci
        values = predict_many(step1, {k: fit.draws[k].to_numpy(float) for k in step1.param_names}, x)
        lower, upper = percentile_interval(values, level)
    out = table[["N", "D"]].copy()
    out["task_loss"], out["task_loss_lower"], out["task_loss_upper"] = loss, lower, upper
    for c in ("accuracy", "accuracy_lower", "accuracy_upper"):
        out[c] = table[c].to_numpy()
    return out


__all__ = ["chain_forecast", "fit_downstream"]
