"""The prediction service: a read-only HTTP API over a folder of fit files (FastAPI + uvicorn).

    scaling serve --fits fits/ --host 127.0.0.1 --port 8000      # then open http://127.0.0.1:8000/docs

Endpoints (JSON; errors are ``application/problem+json``; the OpenAPI schema is at ``/openapi.json``)::

    GET  /health                          liveness and the number of fits
    GET  /fits                            the fits in the folder (name, law, formula, points, ...)
    GET  /fits/{name}                     one fit: parameters, intervals, derived quantities, quality, data
    POST /fits/{name}/forecast            {"inputs": {"N": 7e10, "D": 1.4e12}, "ci": 0.9}
    POST /fits/{name}/forecast/batch      {"points": [{"N": ..., "D": ...}, ...], "ci": 0.9}   (<= 1000 points)
    POST /fits/{name}/optimal             {"compute": [5.76e23], "ci": 0.9}  (+ "at": {"U": 25e9})
    GET  /backtests, /backtests/{name}    backtest summaries saved with ``scaling backtest -o FOLDER/backtests/NAME.json``
    GET  /problems/{slug}                 what an error's ``type`` means

The same library calls as the CLI and the notebook (``Fit.predict``, ``Fit.optimal``); this module only validates
and translates. Design rules:

- **Read-only**: no endpoint writes anything; fits are made with ``scaling fit`` and dropped into the folder.
- **Never reads outside the fits folder**, and one bad entry costs only itself (:mod:`scaling.serve.store`): names are
  one path component, every path is resolved and must sit directly in the folder, links out of it and loops are
  refused, and a fit whose numbers are not finite or outside the law's bounds is listed as unreadable.
- **Every input validated** (pydantic): numbers must be finite, positive and below 1e40; ``ci`` in (0, 1); at most
  1000 points per batch and 1 MB per request body, and at most :data:`MAX_EVALUATIONS` law evaluations
  (:data:`MAX_NUMERIC_OPTIMA` numeric optima) per request.
- **Every error is an RFC 9457 problem** (``application/problem+json``, :mod:`scaling.serve.problems`): bad input
  a 4xx with a one-line ``detail``, an unknown fit a 404, a fit file that cannot be used a 422.
- **Stays responsive** (:mod:`scaling.serve.limits`): forecasts and allocations run on a bounded pool (503 with
  Retry-After when its queue is full, 504 past the timeout); ``/health`` is async and never waits for it; uvicorn
  closes connections whose headers or body do not arrive in time.
- **Loopback by default**; there is no authentication, so exposing it is the operator's explicit choice.
"""

import contextlib
import math
import os
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

import scaling
from scaling.fitting.diagnostics import describe_status, warnings_to_dicts
from scaling.errors import ScalingError
from scaling.serve.store import BACKTESTS, NAME_PATTERN, FitStore
from scaling.serve.limits import BodyLimit, ComputePool, Overloaded, TimedOut, h11_with_header_timeout
from scaling.serve.problems import ProblemError, install, problem_responses, refuse
from scaling.fitting.extrapolation import far_message
from scaling.fitting.fitfile import to_jsonable
from scaling.laws.transfer import effective_data_columns

MAX_BATCH = 1000
MAX_BODY_BYTES = 1_000_000
MAX_VALUE = 1e40  # anything larger is not a model size, token count or FLOP budget anyone will plan
# Inputs are counts (parameters, tokens, FLOPs): below 1 they mean nothing, and laws evaluated there overflow.
# Work bounds per request (measured on a 2-core machine: 1e6 vectorised law evaluations ~0.13 s, one numeric
# optimum ~2.7 ms), so no single request can hold a compute worker for long:
MAX_EVALUATIONS = 5_000_000  # law evaluations: points x (draws + 1); ~0.7 s
MAX_NUMERIC_OPTIMA = 2_000  # numeric optimisations (a law without a closed form, or "at"): budgets x (draws + 1)
DRAW_OVERHEAD = 500  # the closed-form optimum costs ~70 us of Python per draw, about 500 evaluations' worth
# Connection and queue limits (uvicorn and the compute pool; docs/serve.md says what each does)
HEADER_TIMEOUT_S = 10.0  # request line and headers must arrive within this (slowloris)
READ_TIMEOUT_S = 30.0  # the request body must arrive within this
KEEP_ALIVE_S = 5  # an idle kept-alive connection is closed after this
MAX_HEADER_BYTES = 16 * 1024  # h11's limit on the request line plus headers (431/400 beyond)
COMPUTE_WORKERS = 2
COMPUTE_QUEUE = 32
COMPUTE_TIMEOUT_S = 30.0

Value = Annotated[float, Field(ge=1, le=MAX_VALUE, allow_inf_nan=False, strict=True)]
Compute = Annotated[float, Field(gt=6, le=MAX_VALUE, allow_inf_nan=False, strict=True)]  # C = 6ND, N, D >= 1
Level = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False, strict=True)]
InputName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")]


# ---------------------------------------------------------------------------------------------------------
# Request and response bodies (they are the OpenAPI schema)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ForecastRequest(_Strict):
    inputs: dict[InputName, Value] = Field(
        ..., description='the law\'s inputs, e.g. {"N": 7e10, "D": 1.4e12}', examples=[{"N": 7e10, "D": 1.4e12}]
    )
    ci: Level | None = Field(None, description="interval level; default: the level the fit was made with")


class BatchRequest(_Strict):
    points: list[dict[InputName, Value]] = Field(..., min_length=1, max_length=MAX_BATCH)
    ci: Level | None = None


class OptimalRequest(_Strict):
    compute: list[Compute] = Field(
        ..., min_length=1, max_length=MAX_BATCH, description="training FLOPs (C = 6ND)", examples=[[5.76e23]]
    )
    at: dict[InputName, Value] = Field(
        default_factory=dict,
        description='the law\'s other inputs, e.g. {"U": 25e9}: the optimum with only 25e9 unique tokens',
    )
    ci: Level | None = None


class Warning_(BaseModel):
    code: str = Field(description="stable identifier, e.g. not_converged, extrapolating_far")
    severity: str = Field(description="info, warning or error")
    message: str


class Extrapolation(BaseModel):
    label: str = Field(description="inside, near, far or unknown")
    decades: float | None = Field(description="decades outside the fitted N, D, C range (0 inside)")
    distance: float | None = Field(description="Mahalanobis distance of log10 inputs from the fitted data")


class Prediction(BaseModel):
    inputs: dict[str, float]
    point: float
    conf_lower: float | None = Field(description="confidence interval of the mean law (bootstrap); null if withheld")
    conf_upper: float | None
    pred_lower: float | None = Field(description="prediction interval for one new run (plan on this); null if withheld")
    pred_upper: float | None
    interval_status: str = Field(description="ok, small_calibration, uncalibrated, or why the intervals are null")
    extrapolation: Extrapolation
    warnings: list[Warning_] = Field(default_factory=list, description="this forecast's own warnings")
    effective_data: dict[str, float | None] | None = Field(
        None, description="transfer fits: D_E = D_F + D_T, multiplier = D_E/D_F and f_T = D_T/D_E, each with _lower/"
        "_upper from D_T's confidence interval (as `scaling forecast` prints them); null for other laws")


class ForecastResponse(BaseModel):
    fit: str
    law: str
    output: str
    ci: float
    predictions: list[Prediction]
    fit_warnings: list[Warning_] = Field(default_factory=list, description="the fit's warnings (from its fit file)")


class OptimalAllocation(BaseModel):
    compute: float
    at: dict[str, float] = Field(default_factory=dict, description="the other inputs held (as requested)")
    N_opt: float
    D_opt: float
    loss: float
    tokens_per_param: float
    N_opt_conf_lower: float | None = None
    N_opt_conf_upper: float | None = None
    D_opt_conf_lower: float | None = None
    D_opt_conf_upper: float | None = None
    loss_conf_lower: float | None = None
    loss_conf_upper: float | None = None
    loss_pred_lower: float | None = Field(None, description="prediction interval of one run's loss at the allocation")
    loss_pred_upper: float | None = None
    tokens_per_param_conf_lower: float | None = None
    tokens_per_param_conf_upper: float | None = None
    epochs: float | None = Field(None, description="D_opt / U, when U is held")
    epochs_conf_lower: float | None = None
    epochs_conf_upper: float | None = None
    interval_status: str = "ok"
    extrapolation: str = "unknown"
    extrap_decades: float | None = None
    extrap_distance: float | None = None
    warning: str = ""


class OptimalResponse(BaseModel):
    fit: str
    law: str
    ci: float
    allocations: list[OptimalAllocation]


class FitSummary(BaseModel):
    name: str
    law: str
    formula: str
    inputs: list[str]
    output: str
    kind: str
    n_points: int | None
    rmse_log: float | None
    converged: bool | None
    convergence: str = Field("unknown", description="converged, stalled, not_converged (or not_fitted: published)")
    interval_status: str = Field("ok", description="ok, or why this fit's intervals are withheld")
    n_draws: int


class FitList(BaseModel):
    fits: list[FitSummary]
    unreadable: dict[str, str] = Field(default_factory=dict, description="files that are not valid fit files, with why")


class FitDetail(FitSummary):
    reference: str
    params: dict[str, float]
    intervals: dict[str, list[float | None]]
    derived: dict[str, float | None]
    ci: float
    quality: dict[str, Any]
    data_summary: dict[str, Any] | None
    notes: str


# ---------------------------------------------------------------------------------------------------------
# Translating library answers


def _num(value: Any) -> float | None:
    v = float(value)
    return v if math.isfinite(v) else None


def _summary(name: str, fit) -> dict:
    q = fit.quality or {}
    return {
        "name": name,
        "law": fit.law_name,
        "formula": fit.law.formula,
        "inputs": list(fit.law.inputs),
        "output": fit.law.output,
        "kind": str(fit.meta.get("kind", "fitted")),
        # quality is free-form in a fit file: a value of the wrong type is shown as null, never a 500
        "n_points": _typed(q.get("n_points"), int),
        "rmse_log": _num(q["rmse_log"]) if _typed(q.get("rmse_log"), (int, float)) is not None else None,
        "converged": _typed(q.get("converged"), bool),
        "convergence": fit.convergence,
        "interval_status": fit.interval_status or "ok",
        "n_draws": len(fit.draws),
    }


def _typed(value: Any, kind: type | tuple[type, ...]) -> Any:
    if isinstance(value, bool) and kind is not bool:
        return None  # JSON true is not a count
    return value if isinstance(value, kind) else None


def _check_inputs(fit, name: str, points: list[dict[str, float]]) -> dict[str, np.ndarray]:
    law = fit.law
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


def _check_work(fit, name: str, n: int, what: str, numeric: bool = False, overhead: int = 0) -> None:
    """Refuse a request that would hold a compute worker too long: ``n`` points or budgets x the fit's draws."""
    draws = len(fit.draws) + 1  # the point estimate too
    work, limit = (n + overhead) * draws, MAX_NUMERIC_OPTIMA if numeric else MAX_EVALUATIONS
    if work > limit:
        unit = "numeric optimisations" if numeric else "law evaluations"
        most = max(0, limit // draws - overhead)
        raise ProblemError(
            "too-costly",
            f"{n} {what} x {draws} draws of fit {name!r} (the point estimate included) is about {work:.3g} {unit}, "
            f"over the limit of {limit:.3g} per request; send at most {most} {what} per request",
        )


def _forecast(store: FitStore, name: str, points: list[dict[str, float]], ci: float | None) -> dict:
    fit = _get(store, name)
    inputs = _check_inputs(fit, name, points)
    _check_work(fit, name, len(points), "points")
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


def _get(store: FitStore, name: str):
    try:
        return store.load(name)
    except KeyError:
        raise ProblemError("unknown-fit", f"unknown fit {name!r}; GET /fits lists the {len(store.names())} available") from None
    except ScalingError as exc:
        raise ProblemError("unusable-fit", f"fit {name!r} cannot be used: {exc}") from None


def _detail(store: FitStore, name: str) -> dict:
    fit = _get(store, name)
    return to_jsonable(
        {
            **_summary(name, fit),
            "reference": str(fit.meta.get("reference") or fit.law.reference),
            "params": fit.params,
            "intervals": {k: list(v) for k, v in fit.intervals.items()},
            "derived": fit.derived,
            "ci": fit.ci,
            "quality": {str(k): v for k, v in (fit.quality or {}).items()},
            "data_summary": fit.data_summary,
            "notes": str(fit.meta.get("notes") or ""),
        }
    )


def _optimal(store: FitStore, name: str, compute: list[float], at: dict[str, float], ci: float | None) -> dict:
    fit = _get(store, name)
    numeric = fit.law.optimal is None or bool(at)
    _check_work(fit, name, len(compute), "compute budgets", numeric, 0 if numeric else DRAW_OVERHEAD)
    table = fit.optimal(np.array(compute, dtype=float), ci=ci, at=at)
    core = table[["N_opt", "D_opt", "loss", "tokens_per_param"]].to_numpy(float)
    if not np.isfinite(core).all():
        bad = float(table["compute"][~np.isfinite(core).all(axis=1)].iloc[0])
        raise ScalingError(f"no finite compute-optimal allocation at compute {bad:g}: outside the law's range")
    return {
        "fit": name,
        "law": fit.law_name,
        "ci": fit.ci if ci is None else ci,
        "allocations": [
            {**to_jsonable({k: v for k, v in r.items() if k not in at}), "at": dict(at)} for r in table.to_dict("records")
        ],
    }


# ---------------------------------------------------------------------------------------------------------
# The app


def create_app(
    fits_dir: str | os.PathLike = "fits",
    *,
    workers: int = COMPUTE_WORKERS,
    queue: int = COMPUTE_QUEUE,
    timeout: float = COMPUTE_TIMEOUT_S,
    read_timeout: float = READ_TIMEOUT_S,
) -> FastAPI:
    """A FastAPI app serving the fit files in ``fits_dir`` (read-only). Run it with uvicorn or ``scaling serve``.

    Forecasts and allocations run on ``workers`` threads with at most ``queue`` more waiting (503 beyond) and an
    answer within ``timeout`` s (504 beyond); a request body must arrive within ``read_timeout`` s (408).
    """
    store = FitStore(fits_dir)
    pool = ComputePool(workers=workers, queue=queue, timeout=timeout)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        pool.shutdown()

    app = FastAPI(
        title="scaling prediction service",
        version=scaling.__version__,
        description="Forecasts and compute-optimal allocations from fitted scaling laws (read-only). Every error "
        "is an RFC 9457 problem (application/problem+json).",
        lifespan=lifespan,
    )
    app.state.store, app.state.pool = store, pool
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES, read_timeout=read_timeout, refuse=refuse)
    install(app)
    reads = problem_responses(404, 422, 500)
    computes = problem_responses(400, 404, 408, 413, 422, 500, 503, 504)
    # The schema's example names are the files present at start-up, so generated clients (and fuzzers) reach
    # real fits rather than only 404s.
    Name = Annotated[
        str,
        PathParam(
            pattern=NAME_PATTERN,
            description="file name in the fits folder, without .json",
            examples=store.names()[:3] or ["chinchilla"],
        ),
    ]
    BacktestName = Annotated[
        str,
        PathParam(
            pattern=NAME_PATTERN,
            description="file name in FITS/backtests/",
            examples=store.names(sub=BACKTESTS)[:3] or ["demo"],
        ),
    ]

    async def in_pool(fn, *args):
        try:
            return await pool.run(fn, *args)
        except Overloaded as exc:
            raise ProblemError("busy", str(exc), {"Retry-After": str(exc.retry_after)}) from None
        except TimedOut as exc:
            raise ProblemError("timeout", str(exc)) from None

    # async, so it runs on the event loop and never waits for a thread: it answers while every worker is busy
    @app.get("/health", responses=problem_responses(500))
    async def health() -> dict[str, Any]:
        return {"status": "ok", "fits": len(store.names()), "version": scaling.__version__}

    @app.get("/fits", response_model=FitList, responses=problem_responses(500))
    def list_fits() -> dict:
        fits, unreadable = [], {}
        for name, entry in store.entries().items():
            try:
                if isinstance(entry, ScalingError):
                    raise entry
                fits.append(_summary(name, store.load(name)))
            except ScalingError as exc:
                unreadable[name] = str(exc)
            except KeyError:
                continue  # removed since the listing
        return {"fits": fits, "unreadable": unreadable}

    @app.get("/fits/{name}", response_model=FitDetail, responses=reads)
    def show_fit(name: Name) -> dict:
        return _detail(store, name)

    @app.post("/fits/{name}/forecast", response_model=ForecastResponse, responses=computes)
    async def forecast(name: Name, body: ForecastRequest) -> dict:
        return await in_pool(_forecast, store, name, [dict(body.inputs)], body.ci)

    @app.post("/fits/{name}/forecast/batch", response_model=ForecastResponse, responses=computes)
    async def forecast_batch(name: Name, body: BatchRequest) -> dict:
        return await in_pool(_forecast, store, name, [dict(p) for p in body.points], body.ci)

    @app.post("/fits/{name}/optimal", response_model=OptimalResponse, responses=computes)
    async def optimal(name: Name, body: OptimalRequest) -> dict:
        return await in_pool(_optimal, store, name, list(body.compute), dict(body.at), body.ci)

    @app.get("/backtests", responses=problem_responses(500))
    def list_backtests() -> dict[str, list[str]]:
        return {"backtests": store.names(sub=BACKTESTS)}

    @app.get("/backtests/{name}", responses=reads)
    def show_backtest(name: BacktestName) -> dict[str, Any]:
        try:
            return to_jsonable(store.read_backtest(name))
        except KeyError:
            raise ProblemError("unknown-backtest", f"unknown backtest {name!r}; GET /backtests lists them") from None
        except ScalingError as exc:
            raise ProblemError("unusable-backtest", f"backtest {name!r} cannot be read: {exc}") from None

    return app


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def server_config(
    app: FastAPI,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "warning",
    header_timeout: float = HEADER_TIMEOUT_S,
):
    """The uvicorn configuration ``scaling serve`` runs ``app`` with: the header timeout, keep-alive and
    header-size limits of docs/serve.md (tests start the same configuration)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=h11_with_header_timeout(header_timeout),  # uvicorn has no header timeout of its own
        timeout_keep_alive=KEEP_ALIVE_S,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        timeout_graceful_shutdown=5,
    )


def check_pool_options(workers: int, queue: int, timeout: float) -> None:
    """``--workers`` >= 1, ``--queue`` >= 0, ``--timeout`` a positive number of seconds (ScalingError otherwise)."""
    for option, value, low in (("--workers", workers, 1), ("--queue", queue, 0)):
        if value < low:
            raise ScalingError(f"{option} {value}: must be {low} or more")
    if not (math.isfinite(timeout) and timeout > 0):
        raise ScalingError(f"--timeout {timeout}: must be a positive number of seconds")


def serve(
    fits_dir: str | os.PathLike = "fits",
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "warning",
    *,
    workers: int = COMPUTE_WORKERS,
    queue: int = COMPUTE_QUEUE,
    timeout: float = COMPUTE_TIMEOUT_S,
) -> None:
    """Run the service with uvicorn until interrupted (what ``scaling serve`` calls)."""
    import uvicorn

    if not (0 <= port <= 65535):
        raise ScalingError(f"--port {port}: must be between 0 and 65535")
    check_pool_options(workers, queue, timeout)
    app = create_app(fits_dir, workers=workers, queue=queue, timeout=timeout)
    uvicorn.Server(server_config(app, host, port, log_level)).run()


__all__ = ["LOOPBACK", "MAX_BATCH", "MAX_BODY_BYTES", "MAX_VALUE", "FitStore", "create_app", "serve", "server_config"]
