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

The same library calls as the CLI and the notebook (``Fit.predict``, ``Fit.optimal``); the service only validates
and translates. This module assembles the app (middleware, problem handlers, ``/health``) and runs it; each
resource's endpoints live in their own module: :mod:`~scaling.serve.fits`, :mod:`~scaling.serve.forecasts`,
:mod:`~scaling.serve.allocations` (``/optimal``), :mod:`~scaling.serve.backtests`, with the request and response
bodies in :mod:`~scaling.serve.schema`. Design rules:

- **Read-only**: no endpoint writes anything; fits are made with ``scaling fit`` and dropped into the folder.
- **Never reads outside the fits folder**, and one bad entry costs only itself (:mod:`scaling.serve.store`): names are
  one path component, every path is resolved and must sit directly in the folder, links out of it and loops are
  refused, and a fit whose numbers are not finite or outside the law's bounds is listed as unreadable.
- **Every input validated** (pydantic): numbers must be finite and within +-1e40 (the inputs of a law of counts
  at least 1, checked with the fit in hand); ``ci`` in (0, 1); at most 1000 points per batch and 1 MB per request
  body, and at most :data:`~scaling.serve.limits.MAX_EVALUATIONS` law evaluations
  (:data:`~scaling.serve.limits.MAX_NUMERIC_OPTIMA` numeric optima) per request.
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
from typing import Any

from fastapi import FastAPI

import scaling
from scaling.errors import ScalingError
from scaling.serve import allocations, backtests, fits, forecasts
from scaling.serve.limits import BodyLimit, ComputePool, h11_with_header_timeout
from scaling.serve.problems import install, problem_responses, refuse
from scaling.serve.store import FitStore

MAX_BODY_BYTES = 1_000_000
# Connection and queue limits (uvicorn and the compute pool; docs/serve.md says what each does)
HEADER_TIMEOUT_S = 10.0  # request line and headers must arrive within this (slowloris)
READ_TIMEOUT_S = 30.0  # the request body must arrive within this
KEEP_ALIVE_S = 5  # an idle kept-alive connection is closed after this
MAX_HEADER_BYTES = 16 * 1024  # h11's limit on the request line plus headers (431/400 beyond)
COMPUTE_WORKERS = 2
COMPUTE_QUEUE = 32
COMPUTE_TIMEOUT_S = 30.0


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

    # async, so it runs on the event loop and never waits for a thread: it answers while every worker is busy
    @app.get("/health", responses=problem_responses(500))
    async def health() -> dict[str, Any]:
        return {"status": "ok", "fits": len(store.names()), "version": scaling.__version__}

    app.include_router(fits.routes(store))
    app.include_router(forecasts.routes(store, pool))
    app.include_router(allocations.routes(store, pool))
    app.include_router(backtests.routes(store))
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


__all__ = ["LOOPBACK", "MAX_BODY_BYTES", "check_pool_options", "create_app", "serve", "server_config"]
