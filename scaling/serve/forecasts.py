"""``POST /fits/{name}/forecast`` and ``/forecast/batch``: a fit's predictions with both intervals, the
extrapolation distance and each prediction's own warnings; for a transfer fit also the effective data (D_E,
multiplier, f_T) that ``scaling forecast`` prints.

The numbers are :meth:`Fit.predict`'s; this module checks the inputs against the law (names, and the range:
at least 1 for a law of counts, any finite number for a formula law that takes them), bounds the work
(:func:`scaling.serve.limits.check_work`) and translates the table into the response body.
"""

import math
from typing import Any

import numpy as np
from fastapi import APIRouter

from scaling.errors import ScalingError
from scaling.fitting.result import Fit
from scaling.fitting.diagnostics import describe_status, warnings_to_dicts
from scaling.fitting.extrapolation import far_message
from scaling.laws.transfer import effective_data_columns
from scaling.serve.fits import fit_name_parameter, fit_named
from scaling.serve.limits import ComputePool, check_work, run_in_pool
from scaling.serve.problems import problem_responses
from scaling.serve.schema import BatchRequest, ForecastRequest, ForecastResponse, check_input_range
from scaling.serve.store import FitStore


def _num(value: Any) -> float | None:
    v = float(value)
    return v if math.isfinite(v) else None


def _check_inputs(fit: Fit, name: str, points: list[dict[str, float]], batch: bool) -> dict[str, np.ndarray]:
    law = fit.law
    for i, p in enumerate(points):  # the range first: a field out of range is an invalid request, as in the schema
        check_input_range(law, p, f"body.points[{i}]" if batch else "body.inputs")
    for i, p in enumerate(points):
        where = f"points[{i}]: " if len(points) > 1 else ""
        unknown = sorted(set(p) - set(law.inputs))
        if unknown:
            raise ScalingError(
                f"{where}fit {name} ({law.formula}) has no input {unknown[0]!r}; its inputs are {', '.join(law.inputs)}"
            )
        missing = [c for c in law.inputs if c not in p]
        if missing:
            raise ScalingError(f"{where}fit {name} ({law.formula}) needs {', '.join(missing)}")
    return {c: np.array([p[c] for p in points], dtype=float) for c in law.inputs}


def forecast_response(
    store: FitStore, name: str, points: list[dict[str, float]], ci: float | None, batch: bool = False
) -> dict:
    """The response body for ``points`` (one, or a ``batch``) forecast by the fit ``name``."""
    fit = fit_named(store, name)
    inputs = _check_inputs(fit, name, points, batch)
    check_work(fit, name, len(points), "points")
    table = fit.predict(ci=ci, **inputs)
    bad = ~np.isfinite(table["point"].to_numpy(float))
    if bad.any():
        i = int(np.nonzero(bad)[0][0])
        shown = ", ".join(f"{c}={inputs[c][i]:g}" for c in fit.law.inputs)
        raise ScalingError(f"the prediction at {shown} is not a finite number: the inputs are outside the law's range")
    worth = effective_data_columns(table).to_dict("records") if fit.law.name == "transfer" else [None] * len(table)
    preds = [
        {
            "inputs": {c: float(r[c]) for c in fit.law.inputs},
            "point": float(r["point"]),
            **{k: _num(r[k]) for k in ("conf_lower", "conf_upper", "pred_lower", "pred_upper")},
            "interval_status": str(r["interval_status"]),
            "extrapolation": {"label": str(r["extrapolation"]), "decades": _num(r["extrap_decades"]),
                              "distance": _num(r["extrap_distance"])},
            "warnings": _row_warnings(r),
            "effective_data": None if w is None else {k: _num(v) for k, v in w.items()},
        }
        for r, w in zip(table.to_dict("records"), worth)
    ]
    return {
        "fit": name,
        "law": fit.law_name,
        "output": fit.law.output,
        "ci": fit.ci if ci is None else ci,
        "predictions": preds,
        "fit_warnings": warnings_to_dicts(fit.warnings),
    }


def _row_warnings(row: dict[str, Any]) -> list[dict[str, str]]:
    """A forecast row's own warnings: far extrapolation, withheld intervals."""
    out = []
    if row["warning"] == "extrapolating_far":
        out.append({"code": "extrapolating_far", "severity": "warning", "message": far_message(float(row["extrap_decades"]))})
    status = str(row["interval_status"])
    if status not in ("ok", "small_calibration", "uncalibrated"):
        out.append({"code": "interval_withheld", "severity": "warning", "message": describe_status(status)})
    return out


def routes(store: FitStore, pool: ComputePool) -> APIRouter:
    """The two forecast endpoints over ``store``, computed on ``pool``."""
    router = APIRouter()
    Name = fit_name_parameter(store)
    computes = problem_responses(400, 404, 408, 413, 422, 500, 503, 504)

    @router.post("/fits/{name}/forecast", response_model=ForecastResponse, responses=computes)
    async def forecast(name: Name, body: ForecastRequest) -> dict:
        return await run_in_pool(pool, forecast_response, store, name, [dict(body.inputs)], body.ci)

    @router.post("/fits/{name}/forecast/batch", response_model=ForecastResponse, responses=computes)
    async def forecast_batch(name: Name, body: BatchRequest) -> dict:
        return await run_in_pool(pool, forecast_response, store, name, [dict(p) for p in body.points], body.ci, True)

    return router


__all__ = ["forecast_response", "routes"]
