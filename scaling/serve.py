"""The prediction service: a read-only HTTP API over a folder of fit files (FastAPI + uvicorn).

    scaling serve --fits fits/ --host 127.0.0.1 --port 8000      # then open http://127.0.0.1:8000/docs

Endpoints (all JSON; the OpenAPI schema is at ``/openapi.json``)::

    GET  /health                          liveness and the number of fits
    GET  /fits                            the fits in the folder (name, law, formula, points, ...)
    GET  /fits/{name}                     one fit: parameters, intervals, derived quantities, quality, data
    POST /fits/{name}/forecast            {"inputs": {"N": 7e10, "D": 1.4e12}, "ci": 0.9}
    POST /fits/{name}/forecast/batch      {"points": [{"N": ..., "D": ...}, ...], "ci": 0.9}   (<= 1000 points)
    POST /fits/{name}/optimal             {"compute": [5.76e23], "ci": 0.9}  (+ "at": {"U": 25e9})
    GET  /backtests, /backtests/{name}    backtest summaries saved with ``scaling backtest -o FOLDER/backtests/NAME.json``

The same library calls as the CLI and the notebook (``Fit.predict``, ``Fit.optimal``); this module only validates
and translates. Design rules:

- **Read-only**: no endpoint writes anything; fits are made with ``scaling fit`` and dropped into the folder.
- **Never reads outside the fits folder**: a fit name is one path component (letters, digits, ``._-``), and the
  resolved file (symlinks followed) must sit directly in the folder.
- **Every input validated** (pydantic): numbers must be finite, positive and below 1e40; ``ci`` in (0, 1); at most
  1000 points per batch and 1 MB per request body. Bad input gets a 4xx with a one-line ``detail``; an unknown fit a
  404. A :class:`~scaling.errors.ScalingError` from the library (a law without that input, no compute-optimal size)
  is a 422, and a prediction that is not a finite number at absurd inputs is a 422 too.
- **Loopback by default**; there is no authentication, so exposing it is the operator's explicit choice.
"""

import json
import math
import os
import re
import threading
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.exceptions import HTTPException as StarletteHTTPException

import scaling
from scaling.errors import ScalingError
from scaling.fitfile import load_fit

MAX_BATCH = 1000
MAX_BODY_BYTES = 1_000_000
MAX_VALUE = 1e40  # anything larger is not a model size, token count or FLOP budget anyone will plan
# Inputs are counts (parameters, tokens, FLOPs): below 1 they mean nothing, and laws evaluated there overflow.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
_NAME_RE = re.compile(NAME_PATTERN)

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


class Prediction(BaseModel):
    inputs: dict[str, float]
    point: float
    lower: float | None
    upper: float | None


class ForecastResponse(BaseModel):
    fit: str
    law: str
    output: str
    ci: float
    predictions: list[Prediction]


class Allocation(BaseModel):
    compute: float
    at: dict[str, float] = Field(default_factory=dict, description="the other inputs held (as requested)")
    N_opt: float
    D_opt: float
    loss: float
    tokens_per_param: float
    N_opt_lower: float | None = None
    N_opt_upper: float | None = None
    D_opt_lower: float | None = None
    D_opt_upper: float | None = None
    loss_lower: float | None = None
    loss_upper: float | None = None
    tokens_per_param_lower: float | None = None
    tokens_per_param_upper: float | None = None
    epochs: float | None = Field(None, description="D_opt / U, when U is held")
    epochs_lower: float | None = None
    epochs_upper: float | None = None


class OptimalResponse(BaseModel):
    fit: str
    law: str
    ci: float
    allocations: list[Allocation]


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


class Problem(BaseModel):
    detail: str


# ---------------------------------------------------------------------------------------------------------
# The fits folder


class FitStore:
    """Fit files in one folder, loaded on demand and cached until the file changes (mtime, size)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            raise ScalingError(f"--fits {folder}: no such folder")
        self._cache: dict[str, tuple[tuple[int, int], Any]] = {}
        self._lock = threading.Lock()

    def path_of(self, name: str, suffix: str = ".json", sub: str | None = None) -> Path | None:
        """The file for ``name``, or None when there is none *inside* the folder (the only files ever read)."""
        if not _NAME_RE.match(name) or name in (".", ".."):
            return None
        folder = self.folder / sub if sub else self.folder
        stem = name.removesuffix(suffix)
        path = (folder / f"{stem}{suffix}").resolve()
        if path.parent != folder.resolve() or not path.is_file():
            return None
        return path

    def names(self, sub: str | None = None) -> list[str]:
        folder = self.folder / sub if sub else self.folder
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*.json") if self.path_of(p.stem, sub=sub) is not None)

    def load(self, name: str):
        path = self.path_of(name)
        if path is None:
            raise KeyError(name)
        stat = path.stat()
        key = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            hit = self._cache.get(name)
            if hit and hit[0] == key:
                return hit[1]
        fit = load_fit(path)  # an explicit path: never the name lookup in ./fits or the package
        with self._lock:
            self._cache[name] = (key, fit)
        return fit


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
        "n_points": q.get("n_points"),
        "rmse_log": _num(q["rmse_log"]) if q.get("rmse_log") is not None else None,
        "converged": q.get("converged"),
        "n_draws": len(fit.draws),
    }


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and inf become null (JSON has neither), numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _num(value)
    if value is None or isinstance(value, str):
        return value
    return str(value)


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


def _forecast(store: FitStore, name: str, points: list[dict[str, float]], ci: float | None) -> dict:
    fit = _get(store, name)
    inputs = _check_inputs(fit, name, points)
    table = fit.predict(ci=ci, **inputs)
    bad = ~np.isfinite(table["point"].to_numpy(float))
    if bad.any():
        i = int(np.nonzero(bad)[0][0])
        shown = ", ".join(f"{c}={inputs[c][i]:g}" for c in fit.law.inputs)
        raise ScalingError(f"the prediction at {shown} is not a finite number: the inputs are outside the law's range")
    preds = [
        {
            "inputs": {c: float(r[c]) for c in fit.law.inputs},
            "point": float(r["point"]),
            "lower": _num(r["lower"]),
            "upper": _num(r["upper"]),
        }
        for r in table.to_dict("records")
    ]
    return {
        "fit": name,
        "law": fit.law_name,
        "output": fit.law.output,
        "ci": fit.ci if ci is None else ci,
        "predictions": preds,
    }


def _get(store: FitStore, name: str):
    try:
        return store.load(name)
    except KeyError:
        raise _NotFound(f"unknown fit {name!r}; GET /fits lists the {len(store.names())} available") from None
    except ScalingError as exc:
        raise ScalingError(f"fit {name!r} cannot be used: {exc}") from None


class _NotFound(Exception):
    pass


def _one_line(exc: RequestValidationError) -> str:
    """The first validation error as ``body.points[3].N: Input should be greater than 0``."""
    errors = exc.errors()
    if not errors:
        return "invalid request"
    e = errors[0]
    loc = ".".join(str(x) if not isinstance(x, int) else f"[{x}]" for x in e.get("loc", ())).replace(".[", "[")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{loc}: {e.get('msg', 'invalid')}{more}"


# ---------------------------------------------------------------------------------------------------------
# The app


def create_app(fits_dir: str | os.PathLike = "fits") -> FastAPI:
    """A FastAPI app serving the fit files in ``fits_dir`` (read-only). Run it with uvicorn or ``scaling serve``."""
    store = FitStore(fits_dir)
    app = FastAPI(
        title="scaling prediction service",
        version=scaling.__version__,
        description="Forecasts and compute-optimal allocations from fitted scaling laws (read-only).",
        # FastAPI's own limit: a larger body gets 413 before it is parsed (Starlette answers a too-large
        # Content-Length in plain text "Content Too Large", a too-long chunked body as JSON).
        max_body_size=MAX_BODY_BYTES,
    )
    app.state.store = store
    errors = {400: {"model": Problem}, 404: {"model": Problem}, 413: {"model": Problem}, 422: {"model": Problem}}
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
            examples=store.names(sub="backtests")[:3] or ["demo"],
        ),
    ]

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": _one_line(exc)}, status_code=422)

    @app.exception_handler(ScalingError)
    async def on_scaling_error(request: Request, exc: ScalingError):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException):
        # FastAPI answers a body it cannot decode with "There was an error parsing the body": say what to send.
        detail = str(exc.detail)
        if exc.status_code == 400 and "parsing the body" in detail:
            detail = "the request body is not valid JSON (send UTF-8 JSON with Content-Type: application/json)"
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(_NotFound)
    async def on_not_found(request: Request, exc: _NotFound):
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "fits": len(store.names()), "version": scaling.__version__}

    @app.get("/fits", response_model=FitList)
    def list_fits() -> dict:
        fits, unreadable = [], {}
        for name in store.names():
            try:
                fits.append(_summary(name, store.load(name)))
            except ScalingError as exc:
                unreadable[name] = str(exc)
        return {"fits": fits, "unreadable": unreadable}

    @app.get("/fits/{name}", response_model=FitDetail, responses=errors)
    def show_fit(name: Name) -> dict:
        fit = _get(store, name)
        return _clean(
            {
                **_summary(name, fit),
                "reference": str(fit.meta.get("reference") or fit.law.reference),
                "params": fit.params,
                "intervals": {k: list(v) for k, v in fit.intervals.items()},
                "derived": fit.derived,
                "ci": fit.ci,
                "quality": {k: v for k, v in (fit.quality or {}).items()},
                "data_summary": fit.data_summary,
                "notes": str(fit.meta.get("notes") or ""),
            }
        )

    @app.post("/fits/{name}/forecast", response_model=ForecastResponse, responses=errors)
    def forecast(name: Name, body: ForecastRequest) -> dict:
        return _forecast(store, name, [dict(body.inputs)], body.ci)

    @app.post("/fits/{name}/forecast/batch", response_model=ForecastResponse, responses=errors)
    def forecast_batch(name: Name, body: BatchRequest) -> dict:
        return _forecast(store, name, [dict(p) for p in body.points], body.ci)

    @app.post("/fits/{name}/optimal", response_model=OptimalResponse, responses=errors)
    def optimal(name: Name, body: OptimalRequest) -> dict:
        fit = _get(store, name)
        table = fit.optimal(np.array(body.compute, dtype=float), ci=body.ci, at=body.at)
        core = table[["N_opt", "D_opt", "loss", "tokens_per_param"]].to_numpy(float)
        if not np.isfinite(core).all():
            bad = float(table["compute"][~np.isfinite(core).all(axis=1)].iloc[0])
            raise ScalingError(f"no finite compute-optimal allocation at compute {bad:g}: outside the law's range")
        return {
            "fit": name,
            "law": fit.law_name,
            "ci": fit.ci if body.ci is None else body.ci,
            "allocations": [
                {**_clean({k: v for k, v in r.items() if k not in body.at}), "at": dict(body.at)}
                for r in table.to_dict("records")
            ],
        }

    @app.get("/backtests")
    def list_backtests() -> dict[str, list[str]]:
        return {"backtests": store.names(sub="backtests")}

    @app.get("/backtests/{name}", responses=errors)
    def show_backtest(name: BacktestName) -> dict[str, Any]:
        path = store.path_of(name, sub="backtests")
        if path is None:
            raise _NotFound(f"unknown backtest {name!r}; GET /backtests lists them")
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ScalingError(f"backtest {name!r} cannot be read: {exc}") from None
        if not isinstance(data, dict):
            raise ScalingError(f"backtest {name!r} is not a backtest summary (expected a JSON object)")
        return _clean(data)

    return app


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def serve(
    fits_dir: str | os.PathLike = "fits", host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning"
) -> None:
    """Run the service with uvicorn until interrupted (what ``scaling serve`` calls)."""
    import uvicorn

    if not (0 <= port <= 65535):
        raise ScalingError(f"--port {port}: must be between 0 and 65535")
    app = create_app(fits_dir)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


__all__ = ["LOOPBACK", "MAX_BATCH", "MAX_BODY_BYTES", "MAX_VALUE", "FitStore", "create_app", "serve"]
