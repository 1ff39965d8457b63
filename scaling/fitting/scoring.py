"""Scoring a fit on explicit rows: predictions joined to a table, and error measures on a test table.

For targets y_i and predictions p_i (i = 1..n), with ybar the mean target:

- R^2 = 1 - SUM (y - p)^2 / SUM (y - ybar)^2 (coefficient of determination; negative when worse than the mean);
- NMSE = mean (y - p)^2 / var(y) (mean squared error normalised by the targets' variance, = 1 - R^2);
- NMAE = mean |y - p| / mean |y - ybar| (mean absolute error normalised by the targets' mean absolute deviation);
- log-RMSE = sqrt(mean (log p - log y)^2) (the residual the log-space fits minimise; NaN when any y or p <= 0);
- mean relative error = mean |p - y| / |y| (NaN when any y = 0).

Normalising by the test targets' own spread makes NMSE and NMAE comparable across targets and units.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from scaling.errors import ScalingError
from scaling.fitting.result import Fit
from scaling.laws.formula import FormulaLaw, add_group_index
from scaling.results import canonicalize, validate_columns


def _inputs_table(fit: Fit, rows: pd.DataFrame, source: str) -> pd.DataFrame:
    """``rows`` with the law's inputs checked as finite numbers (positive for the catalogue's laws)."""
    law = fit.law
    if isinstance(law, FormulaLaw) and law.spec is not None and law.spec.per_group:
        rows = add_group_index(rows, law.spec, source=source)
    needed = list(law.inputs)
    positive = None if law.positive_inputs else set()
    return validate_columns(rows, needed, source=source, positive=positive)


def predict_rows(fit: Fit, rows: pd.DataFrame, *, mapping: Mapping[str, str] | None = None, ci: float | None = None,
                 source: str = "rows") -> pd.DataFrame:
    """The rows, as given, with ``prediction``, ``prediction_lower``/``prediction_upper`` (the confidence interval of
    the mean law), ``pred_lower``/``pred_upper`` (the prediction interval for one new run) and ``interval_status``
    appended (docs/fitting.md, "Which interval").

    ``mapping`` names the columns holding the law's inputs (``{"N": "params"}``); the rows keep their own names.
    """
    checked = _inputs_table(fit, canonicalize(rows, mapping, source=source), source)
    inputs = {c: checked[c].to_numpy(dtype=float) for c in fit.law.inputs}
    table = fit.predict(ci=ci, **inputs)
    out = rows.copy()
    for name, col in (("prediction", "point"), ("prediction_lower", "conf_lower"), ("prediction_upper", "conf_upper"),
                      ("pred_lower", "pred_lower"), ("pred_upper", "pred_upper"), ("interval_status", "interval_status")):
        if name in out.columns:
            raise ScalingError(f"{source}: already has a column {name!r}; rename it before predicting")
        out[name] = table[col].to_numpy()
    return out


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """R^2, NMSE, NMAE, log-RMSE and mean relative error of predictions ``p`` for targets ``y`` (module doc)."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    resid = y - p
    dev = y - y.mean()
    ss_tot = float(np.sum(dev**2))
    mad = float(np.mean(np.abs(dev)))
    with np.errstate(all="ignore"):
        log_rmse = float(np.sqrt(np.mean((np.log(p) - np.log(y)) ** 2))) if (y > 0).all() and (p > 0).all() else np.nan
        rel = float(np.mean(np.abs(resid) / np.abs(y))) if (y != 0).all() else np.nan
    return {
        "n": int(y.size),
        "r2": 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else np.nan,
        "nmse": float(np.mean(resid**2)) / (ss_tot / y.size) if ss_tot > 0 else np.nan,
        "nmae": float(np.mean(np.abs(resid))) / mad if mad > 0 else np.nan,
        "log_rmse": log_rmse,
        "mean_relative_error": rel,
    }


def evaluate(fit: Fit, rows: pd.DataFrame, *, target: str | None = None, mapping: Mapping[str, str] | None = None,
             source: str = "test") -> dict[str, float]:
    """Error measures of the fit's predictions on a test table holding the law's inputs and its output column."""
    target = target or fit.law.output
    checked = validate_columns(canonicalize(rows, mapping, source=source), [target], source=source, positive=set())
    predicted = predict_rows(fit, rows, mapping=mapping, source=source)
    p = predicted["prediction"].to_numpy(dtype=float)
    if not np.isfinite(p).all():
        bad = int(np.flatnonzero(~np.isfinite(p))[0])
        raise ScalingError(f"{source}: row {bad + 1}: the law's prediction is not a finite number there")
    out = {"target": target}
    out.update(metrics(checked[target].to_numpy(dtype=float), p))
    return out


__all__ = ["evaluate", "metrics", "predict_rows"]
