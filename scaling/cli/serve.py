"""``scaling serve``: forecasts from the fits in a folder over HTTP (:mod:`scaling.serve.app`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scaling.cli import app
from scaling.cli.output import note, warn
from scaling.errors import ScalingError


@app.command("serve")
def serve_command(
    fits: Annotated[Path, typer.Option("--fits", help="Folder of fit files to serve (read-only).")] = Path("fits"),
    host: Annotated[str, typer.Option("--host", help="Address to listen on; loopback by default.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port (0 picks a free one).")] = 8000,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level: warning, info, debug.")] = "warning",
    workers: Annotated[int, typer.Option("--workers", help="Threads computing forecasts and allocations.")] = 2,
    queue: Annotated[int, typer.Option("--queue", help="Requests that may wait for a worker; more get 503.")] = 32,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to answer a forecast (wait included); 504 after.")] = 30.0,
) -> None:
    """Serve forecasts from the fits in a folder over HTTP (FastAPI; OpenAPI docs at /docs)."""
    from scaling.serve.app import LOOPBACK, check_pool_options, serve
    from scaling.serve.store import FitStore

    # Checked before anything is printed, so a bad option is the one line on stderr.
    if not 0 <= port <= 65535:
        raise ScalingError(f"--port {port}: must be between 0 and 65535")
    levels = ("critical", "error", "warning", "info", "debug", "trace")  # uvicorn's LOG_LEVELS
    if log_level.lower() not in levels:
        raise ScalingError(f"--log-level {log_level!r}: expected one of {', '.join(levels)}")
    log_level = log_level.lower()
    check_pool_options(workers, queue, timeout)
    store = FitStore(fits)  # fails here, before uvicorn starts, if the folder is missing
    if host not in LOOPBACK:
        warn(f"listening on {host}: the API has no authentication; anyone who can reach this address can use it")
    note(
        f"serving {len(store.names())} fit(s) from {store.folder} at http://{host}:{port} (docs at /docs); "
        "read-only; Ctrl-C stops"
    )
    serve(fits, host=host, port=port, log_level=log_level, workers=workers, queue=queue, timeout=timeout)
