"""Every error the prediction service answers, as an RFC 9457 problem: ``application/problem+json``.

    {"type": "/problems/unknown-fit", "title": "Unknown fit", "status": 404,
     "detail": "unknown fit 'nope'; GET /fits lists the 3 available", "instance": "/fits/nope/forecast"}

``type`` is a URI reference naming the kind of problem (``GET /problems/{slug}`` describes it; plain HTTP errors
such as 405 use ``about:blank``), ``detail`` is one line about this occurrence, ``instance`` the request path.
Nothing else (no traceback, no file path outside the fits folder) is ever in the body.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from scaling.errors import ScalingError

MEDIA_TYPE = "application/problem+json"

# slug: (status, title, what it means and what to do) -- docs/serve.md shows the same table
PROBLEMS: dict[str, tuple[int, str, str]] = {
    "invalid-request": (422, "Invalid request", "A field is missing, of the wrong type or out of range."),
    "invalid-json": (400, "Body is not JSON", "Send UTF-8 JSON with Content-Type: application/json."),
    "cannot-answer": (422, "No answer at these inputs", "The law cannot answer this request (an input it does "
                      "not have, no finite prediction or no compute-optimal size at these inputs)."),
    "too-costly": (422, "Request over the work limit", "The request needs more law evaluations than one request "
                   "may use; split it into smaller requests."),
    "unknown-fit": (404, "Unknown fit", "No fit of that name in the fits folder; GET /fits lists them."),
    "unknown-backtest": (404, "Unknown backtest", "No backtest of that name; GET /backtests lists them."),
    "unusable-fit": (422, "Fit file cannot be used", "The file is in the folder but cannot be used (not a fit "
                     "file, invalid, non-finite or out-of-bounds numbers, a link outside the folder); GET /fits "
                     "lists it under unreadable with the reason."),
    "unusable-backtest": (422, "Backtest file cannot be used", "The file is not a readable backtest summary."),
    "body-too-large": (413, "Request body too large", "The request body is over the size limit."),
    "read-timeout": (408, "Request body too slow", "The request body did not arrive within the read timeout."),
    "busy": (503, "Service busy", "Every compute worker is busy and the queue is full; retry after the number of "
             "seconds in the Retry-After header."),
    "timeout": (504, "Computation timed out", "The answer took longer than the service's timeout; send a "
                "smaller request or retry later."),
    "internal-error": (500, "Internal error", "A bug in the service; the server log has the details."),
}


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(..., description="URI reference naming the kind of problem (GET /problems/{slug} explains it)")
    title: str = Field(..., description="short summary of the kind of problem")
    status: int = Field(..., description="the HTTP status code")
    detail: str = Field(..., description="one line about this occurrence")
    instance: str = Field(..., description="the request path")


class ProblemError(Exception):
    """Raise in an endpoint to answer with the problem ``slug`` (see :data:`PROBLEMS`)."""

    def __init__(self, slug: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.slug, self.detail, self.headers = slug, " ".join(str(detail).split()), headers


def problem_body(status: int, detail: str, instance: str, slug: str | None = None) -> dict[str, Any]:
    if slug is not None:
        status, title, _ = PROBLEMS[slug]
        kind = f"/problems/{slug}"
    else:
        kind, title = "about:blank", _phrase(status)
    return {"type": kind, "title": title, "status": status, "detail": " ".join(str(detail).split()),
            "instance": instance}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_response(
    request: Request, status: int, detail: str, slug: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = problem_body(status, detail, request.url.path, slug)
    return JSONResponse(body, status_code=body["status"], headers=headers, media_type=MEDIA_TYPE)


async def refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    """A problem response sent straight from ASGI middleware, before the app (BodyLimit's 413)."""
    slug = {413: "body-too-large", 408: "read-timeout"}.get(status)
    body = problem_body(status, detail, scope.get("path", ""), slug)
    await JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers={"Connection": "close"})(
        scope, receive, send
    )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry of a route: each status documented as problem+json with the :class:`Problem` schema."""
    ref = {"$ref": "#/components/schemas/Problem"}
    return {s: {"description": _phrase(s), "content": {MEDIA_TYPE: {"schema": ref}}} for s in statuses}


def one_line(exc: RequestValidationError) -> str:
    """The first validation error as ``body.points[3].N: Input should be greater than 0``."""
    errors = exc.errors()
    if not errors:
        return "invalid request"
    e = errors[0]
    loc = ".".join(str(x) if not isinstance(x, int) else f"[{x}]" for x in e.get("loc", ())).replace(".[", "[")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{loc}: {e.get('msg', 'invalid')}{more}"


def install(app: FastAPI) -> None:
    """Exception handlers that answer every error as a problem, and ``GET /problems/{slug}``."""
    log = logging.getLogger("scaling.serve.app")

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError):
        return problem_response(request, 422, one_line(exc), "invalid-request")

    @app.exception_handler(ScalingError)
    async def on_scaling_error(request: Request, exc: ScalingError):
        return problem_response(request, 422, str(exc), "cannot-answer")

    @app.exception_handler(ProblemError)
    async def on_problem(request: Request, exc: ProblemError):
        return problem_response(request, 0, exc.detail, exc.slug, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException):
        detail, slug = str(exc.detail), {413: "body-too-large", 408: "read-timeout"}.get(exc.status_code)
        # FastAPI answers a body it cannot decode with "There was an error parsing the body": say what to send.
        if exc.status_code == 400 and "parsing the body" in detail:
            detail = "the request body is not valid JSON (send UTF-8 JSON with Content-Type: application/json)"
            slug = "invalid-json"
        return problem_response(request, exc.status_code, detail, slug, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return problem_response(request, 500, f"internal error ({type(exc).__name__})", "internal-error")

    @app.get("/problems/{slug}", response_model=Problem, responses=problem_responses(404))
    async def describe_problem(slug: str, request: Request) -> Any:
        if slug not in PROBLEMS:
            return problem_response(request, 404, f"no problem type {slug!r}; they are {', '.join(PROBLEMS)}")
        status, title, text = PROBLEMS[slug]
        return {"type": f"/problems/{slug}", "title": title, "status": status, "detail": text,
                "instance": request.url.path}


__all__ = ["MEDIA_TYPE", "PROBLEMS", "Problem", "ProblemError", "install", "problem_response", "problem_responses",
           "refuse"]
