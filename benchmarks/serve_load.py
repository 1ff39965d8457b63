"""Load test of the prediction service: requests/s and latency percentiles under concurrent clients.

    python benchmarks/serve_load.py                          # 2000 requests per endpoint, 16 concurrent, <= 30 s each
    python benchmarks/serve_load.py --requests 5000 --concurrency 32 --append docs/benchmarks.md

Starts ``python -m scaling serve`` as a separate process on 127.0.0.1 (a free port) over a temporary fits folder
(the published Besiroglu et al. fit, and a fit with 200 bootstrap draws made here from a synthetic table), then
drives it from this process with an asyncio HTTP client (httpx) at a fixed concurrency. Every endpoint gets the
same bounded count of requests (and a time cap). The baseline, measured in the same run against the same server,
is ``GET /health``: the cost of the HTTP stack alone; the ratio column says what each forecast costs on top.
Both processes share this machine's cores, so the numbers are a floor for a dedicated server.

Then ``/health`` under load (issue 13, item 4): ``--heavy-clients`` (48) clients send heavy ``optimal`` requests
(200 budgets on the 200-draw fit) back to back for ``--heavy-seconds`` while one probe asks ``GET /health`` every
0.25 s. Measured twice in the same run over the same folder: against the service as it was before the compute
pool (``scaling/serve/app.py`` at commit ``BEFORE_COMMIT``, read with ``git show``: sync endpoints on anyio's 40-thread
pool, ``/health`` among them) and against the current one (bounded pool, async ``/health``). A client answered
503 waits the ``Retry-After`` it was given, as a polite client would.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import pandas as pd


def make_fits(folder: Path) -> None:
    from scaling.analysis import fit as fit_law
    from scaling.fitting.fitfile import save_fit
    from scaling.fitting.result import load_fit
    from scaling.laws.chinchilla import chinchilla_loss

    rng = np.random.default_rng(0)
    N, D = (a.ravel() for a in np.meshgrid(np.geomspace(1e6, 1e8, 6), np.geomspace(2e7, 2e9, 6)))
    p = load_fit("besiroglu2024").params
    df = pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(len(N))],
            "N": N,
            "D": D,
            "loss": chinchilla_loss(N, D, **p) * np.exp(rng.normal(0, 0.01, len(N))),
        }
    )
    save_fit(fit_law(df, law="chinchilla", n_bootstrap=200, seed=0), folder / "mine.json")
    save_fit(load_fit("besiroglu2024"), folder / "besiroglu2024.json")


BEFORE_COMMIT = "17ed10c"  # the last main commit before the bounded compute pool (issue 13)


def before_server_source(folder: Path) -> Path | None:
    """The pre-pool ``scaling/serve/app.py`` written to ``folder/serve_before.py`` (None outside a git checkout)."""
    root = Path(__file__).resolve().parents[1]
    try:
        text = subprocess.run(
            ["git", "show", f"{BEFORE_COMMIT}:scaling/serve/app.py"], cwd=root, check=True, capture_output=True, text=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = folder / "serve_before.py"
    path.write_text(text)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, port: int, before: Path | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "scaling", "serve", "--fits", str(folder), "--port", str(port)]
    if before is not None:  # the old module, run the way its own serve() ran it
        code = f"import sys; sys.path.insert(0, {str(before.parent)!r}); import serve_before; "
        code += f"serve_before.serve({str(folder)!r}, port={port})"
        cmd = [sys.executable, "-c", code]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.3)
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"server did not start: {proc.stderr.read() if proc.stderr else ''}")


async def drive(url: str, method: str, path: str, body, n: int, concurrency: int, max_s: float):
    """``n`` requests from ``concurrency`` workers (stopping at ``max_s``); returns latencies (s), errors, wall."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(n))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        start = time.perf_counter()

        async def worker():
            nonlocal errors
            for _ in counter:
                if time.perf_counter() - start > max_s:
                    return
                t0 = time.perf_counter()
                r = await client.request(method, path, json=body)
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return np.array(latencies), errors, wall


async def health_under_load(url: str, body: dict, clients: int, seconds: float) -> dict:
    """``clients`` heavy ``optimal`` loops for ``seconds`` plus a ``/health`` probe every 0.25 s."""
    statuses: dict[int, int] = {}
    heavy_latencies: list[float] = []
    health: list[float] = []
    limits = httpx.Limits(max_connections=clients + 1, max_keepalive_connections=clients + 1)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=300) as client:
        start = time.perf_counter()

        async def heavy():
            while time.perf_counter() - start < seconds:
                t0 = time.perf_counter()
                try:
                    r = await client.post("/fits/mine/optimal", json=body)
                except httpx.TransportError:
                    statuses[-1] = statuses.get(-1, 0) + 1
                    continue
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    heavy_latencies.append(time.perf_counter() - t0)
                elif r.status_code == 503:
                    await asyncio.sleep(float(r.headers.get("retry-after", 1)))

        async def probe():
            await asyncio.sleep(1.0)  # let the heavy load build up first
            while time.perf_counter() - start < seconds:
                t0 = time.perf_counter()
                r = await client.get("/health")
                health.append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text
                await asyncio.sleep(0.25)

        await asyncio.gather(probe(), *(heavy() for _ in range(clients)))
        wall = time.perf_counter() - start
    h = np.array(health)
    return {
        "health probes": len(h),
        "health p50 ms": 1e3 * np.percentile(h, 50),
        "health p99 ms": 1e3 * np.percentile(h, 99),
        "health max ms": 1e3 * h.max(),
        "heavy 200/s": statuses.get(200, 0) / wall,
        "heavy p50 s": float(np.percentile(heavy_latencies, 50)) if heavy_latencies else float("nan"),
        "other statuses": ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()) if k != 200) or "none",
        "wall s": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=2000, help="requests per endpoint")
    ap.add_argument("--concurrency", type=int, default=16, help="concurrent client connections")
    ap.add_argument("--max-seconds", type=float, default=30.0, help="time cap per endpoint")
    ap.add_argument("--append", type=Path, help="append the results as a markdown section to this file")
    ap.add_argument("--heavy-clients", type=int, default=48, help="concurrent heavy optimal clients (0: skip)")
    ap.add_argument("--heavy-seconds", type=float, default=20.0, help="how long the heavy load runs, per server")
    ap.add_argument("--skip-table", action="store_true", help="only the /health-under-load comparison")
    args = ap.parse_args()
    heavy_body = {"compute": [float(c) for c in np.geomspace(1e19, 1e25, 200)]}

    points = [{"N": float(n), "D": float(20 * n)} for n in np.geomspace(1e7, 1e11, 100)]
    cases = [
        ("GET /health (baseline)", "GET", "/health", None),
        (
            "POST forecast, published fit (no draws)",
            "POST",
            "/fits/besiroglu2024/forecast",
            {"inputs": {"N": 7e10, "D": 1.4e12}},
        ),
        ("POST forecast, fit with 200 draws", "POST", "/fits/mine/forecast", {"inputs": {"N": 7e10, "D": 1.4e12}}),
        ("POST forecast/batch, 100 points, 200 draws", "POST", "/fits/mine/forecast/batch", {"points": points}),
        ("POST optimal, 200 draws", "POST", "/fits/mine/optimal", {"compute": [5.76e23]}),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print("making a fit with 200 bootstrap draws ...", file=sys.stderr)
        make_fits(folder)
        port = free_port()
        proc = start_server(folder, port)
        url = f"http://127.0.0.1:{port}"
        rows, starvation = [], []
        try:
            for label, method, path, body in ([] if args.skip_table else cases):
                asyncio.run(drive(url, method, path, body, min(100, args.requests), 4, 10.0))  # warm-up (caches)
                lat, errors, wall = asyncio.run(
                    drive(url, method, path, body, args.requests, args.concurrency, args.max_seconds)
                )
                rows.append(
                    {
                        "endpoint": label,
                        "requests": len(lat),
                        "errors": errors,
                        "req/s": len(lat) / wall,
                        "p50 ms": 1e3 * np.percentile(lat, 50),
                        "p99 ms": 1e3 * np.percentile(lat, 99),
                    }
                )
                print(f"{label}: {rows[-1]['req/s']:.0f} req/s", file=sys.stderr)
            if args.heavy_clients:
                print(f"/health under {args.heavy_clients} heavy clients, current service ...", file=sys.stderr)
                after = asyncio.run(health_under_load(url, heavy_body, args.heavy_clients, args.heavy_seconds))
        finally:
            stop(proc)
        if args.heavy_clients:
            source = before_server_source(Path(tmp))
            if source is None:
                print("not a git checkout: no before-pool baseline", file=sys.stderr)
            else:
                print(f"/health under {args.heavy_clients} heavy clients, service at {BEFORE_COMMIT} ...", file=sys.stderr)
                port = free_port()
                old = start_server(folder, port, before=source)
                try:
                    before = asyncio.run(
                        health_under_load(f"http://127.0.0.1:{port}", heavy_body, args.heavy_clients, args.heavy_seconds)
                    )
                finally:
                    stop(old)
                starvation.append({"service": f"before (commit {BEFORE_COMMIT}, sync endpoints)", **before})
            starvation.append({"service": "after (compute pool 2 workers + 32 queued, async /health)", **after})
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = (
        f"{datetime.now(timezone.utc):%Y-%m-%d}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {load:.1f}, {args.concurrency} concurrent connections, "
        f"<= {args.requests} requests per endpoint, one uvicorn process"
    )
    sections = []
    if rows:
        sections.append((header, endpoint_table(rows)))
    if starvation:
        sections.append((
            f"{datetime.now(timezone.utc):%Y-%m-%d}, /health under {args.heavy_clients} concurrent heavy optimal "
            f"clients (200 budgets x 200 draws each) for {args.heavy_seconds:g} s, {os.cpu_count()} CPUs, load "
            f"average {load:.1f}",
            starvation_table(starvation),
        ))
    for title, text in sections:
        print(f"\n{title}\n\n{text}")
    if args.append:
        with open(args.append, "a") as fh:
            for title, text in sections:
                fh.write(f"\n### Run of {title}\n\n{text}\n")
        print(f"appended to {args.append}", file=sys.stderr)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def starvation_table(rows: list[dict]) -> str:
    lines = [
        "| service | /health probes | /health p50 ms | /health p99 ms | /health max ms | heavy 200/s | heavy p50 s "
        "| other statuses |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['service']} | {r['health probes']} | {r['health p50 ms']:.1f} | {r['health p99 ms']:.1f} | "
            f"{r['health max ms']:.1f} | {r['heavy 200/s']:.2f} | {r['heavy p50 s']:.2f} | {r['other statuses']} |"
        )
    if len(rows) == 2:
        ratio = rows[0]["health p99 ms"] / rows[1]["health p99 ms"]
        lines.append(f"\n/health p99 before / after: {ratio:.1f}x")
    return "\n".join(lines)


def endpoint_table(rows: list[dict]) -> str:
    table = pd.DataFrame(rows)
    base = table["req/s"].iloc[0]
    table["throughput vs baseline"] = table["req/s"] / base
    lines = [
        "| endpoint | requests | errors | req/s | p50 ms | p99 ms | throughput vs /health |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples(index=False):
        lines.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:,.0f} | {r[4]:.1f} | {r[5]:.1f} | {r[6]:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
