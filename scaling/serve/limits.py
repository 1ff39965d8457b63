"""What keeps the prediction service answering under load and slow or hostile clients.

- :func:`check_work`: a request is refused (422 ``too-costly``) when its points or budgets times the fit's bootstrap
  draws would hold a compute worker for long: at most :data:`MAX_EVALUATIONS` law evaluations or
  :data:`MAX_NUMERIC_OPTIMA` numeric optima per request.
- :class:`ComputePool`: forecasts and allocations run on a few threads with a bounded queue. A request that finds
  the queue full is refused at once (503 with ``Retry-After``); one that waits and runs longer than the timeout gets
  a 504. Without it FastAPI runs sync endpoints on anyio's 40-thread pool, and 48 concurrent heavy requests held
  every thread (and ``/health``) for 55 s. ``/health`` and the error paths never touch the pool.
- :class:`BodyLimit`: a request body over the size limit gets a 413, one that does not arrive within the read
  timeout a 408, both as problem+json (Starlette's own limiter answers plain text).
- :func:`h11_with_header_timeout`: uvicorn's h11 protocol with a header timeout. uvicorn 0.54's only timeout is
  ``timeout_keep_alive``, armed *between* requests and cancelled by the first byte, so a client that trickles a
  request line one byte a second holds a connection forever (slowloris); this closes it.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import h11
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scaling.serve.problems import ProblemError

if TYPE_CHECKING:
    from scaling.fitting.result import Fit

T = TypeVar("T")

# Work bounds per request (measured on a 2-core machine: 1e6 vectorised law evaluations ~0.13 s, one numeric
# optimum ~2.7 ms), so no single request can hold a compute worker for long:
MAX_EVALUATIONS = 5_000_000  # law evaluations: points x (draws + 1); ~0.7 s
MAX_NUMERIC_OPTIMA = 2_000  # numeric optimisations (a law without a closed form, or "at"): budgets x (draws + 1)
DRAW_OVERHEAD = 500  # the closed-form optimum costs ~70 us of Python per draw, about 500 evaluations' worth


def check_work(fit: Fit, name: str, n: int, what: str, numeric: bool = False, overhead: int = 0) -> None:
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


class Overloaded(Exception):
    """Every worker is busy and the queue is full."""

    def __init__(self, retry_after: int):
        super().__init__(f"the service is busy (queue full); retry in {retry_after} s")
        self.retry_after = retry_after


class TimedOut(Exception):
    """A job waited and ran longer than the pool's timeout."""


class ComputePool:
    """``workers`` threads for heavy requests, at most ``queue`` more waiting, each answered within ``timeout`` s.

    A timed-out job that has not started is cancelled; one already running finishes in the background (Python
    threads cannot be stopped) and keeps its slot until then, which is why per-request work is bounded too.
    """

    def __init__(self, workers: int = 2, queue: int = 32, timeout: float = 30.0):
        if workers < 1 or queue < 0 or not timeout > 0:
            raise ValueError("workers >= 1, queue >= 0 and timeout > 0")
        self.workers, self.queue, self.timeout = workers, queue, timeout
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scaling-compute")
        self._slots = threading.BoundedSemaphore(workers + queue)
        self._lock = threading.Lock()
        self._in_flight = 0
        self._mean_s = 0.1  # running mean of job durations, for Retry-After

    def _run_timed(self, fn: Callable[..., T], args: tuple) -> T:
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            with self._lock:
                self._mean_s = 0.8 * self._mean_s + 0.2 * (time.perf_counter() - t0)

    def _release(self, _future: Any) -> None:
        with self._lock:
            self._in_flight -= 1
        self._slots.release()

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue ahead divided among the workers, at the mean job time."""
        with self._lock:
            estimate = self._mean_s * max(self._in_flight, 1) / self.workers
        return min(60, max(1, math.ceil(estimate)))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a worker thread; :class:`Overloaded` at once if full, :class:`TimedOut` after timeout."""
        if not self._slots.acquire(blocking=False):
            raise Overloaded(self.retry_after())
        with self._lock:
            self._in_flight += 1
        try:
            future = self._executor.submit(self._run_timed, fn, args)
        except BaseException:
            self._release(None)
            raise
        future.add_done_callback(self._release)  # runs when the job ends or is cancelled, whatever the request did
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except asyncio.TimeoutError:
            future.cancel()  # only succeeds while still queued
            raise TimedOut(f"no answer within {self.timeout:g} s (queue wait included); try a smaller request") from None

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


async def run_in_pool(pool: ComputePool, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on ``pool``, its refusals answered as problems: 503 ``busy`` with Retry-After, 504 ``timeout``."""
    try:
        return await pool.run(fn, *args)
    except Overloaded as exc:
        raise ProblemError("busy", str(exc), {"Retry-After": str(exc.retry_after)}) from None
    except TimedOut as exc:
        raise ProblemError("timeout", str(exc)) from None


class BodyLimit:
    """Pure ASGI middleware: a body over ``max_bytes`` is a 413, one slower than ``read_timeout`` s a 408.

    A declared Content-Length over the limit is refused before the app runs, through ``refuse(scope, receive,
    send, status, detail)``; a chunked body is counted as it arrives and stopped with an HTTPException that the
    app's handler turns into problem+json like any other.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        read_timeout: float,
        refuse: Callable[[Scope, Receive, Send, int, str], Awaitable[None]],
    ):
        self.app, self.max_bytes, self.read_timeout, self.refuse = app, max_bytes, read_timeout, refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"the request body is over {self.max_bytes} bytes"
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self.refuse(scope, receive, send, 413, too_large)
            return
        deadline = asyncio.get_running_loop().time() + self.read_timeout
        received, complete = 0, False

        async def limited_receive() -> Message:
            nonlocal received, complete
            if complete:
                return await receive()  # after the body: waiting for a disconnect, which may take any time
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), max(remaining, 0.001))
            except asyncio.TimeoutError:
                raise HTTPException(
                    408, f"the request body did not arrive within {self.read_timeout:g} s", {"Connection": "close"}
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, too_large)
                complete = not message.get("more_body", False)
            return message

        await self.app(scope, limited_receive, send)


def h11_with_header_timeout(seconds: float) -> type:
    """uvicorn's h11 protocol class, closing any connection whose request headers are not complete within
    ``seconds`` of the connection opening or of the previous response (pass it as ``uvicorn.run(http=...)``)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class H11WithHeaderTimeout(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._header_timer: asyncio.TimerHandle | None = None
            self._arm_header_timer()

        def _arm_header_timer(self) -> None:
            if getattr(self, "_header_timer", None) is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(seconds, self._header_timeout)

        def _header_timeout(self) -> None:
            self._header_timer = None
            # IDLE: the client has not finished a request line and headers since the timer was armed
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._header_timer is not None and self.conn.their_state is not h11.IDLE:
                self._header_timer.cancel()
                self._header_timer = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_header_timer()  # the next request on a kept-alive connection gets the same deadline

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            super().connection_lost(exc)

    return H11WithHeaderTimeout


__all__ = ["MAX_EVALUATIONS", "MAX_NUMERIC_OPTIMA", "BodyLimit", "ComputePool", "Overloaded", "TimedOut", "check_work",
           "h11_with_header_timeout", "run_in_pool"]
