"""Load test of the prediction service: requests/s and latency percentiles under concurrent clients.

    python benchmarks/serve_load.py                          # 2000 requests per endpoint, 16 concurrent, <= 30 s each
    python benchmarks/serve_load.py --requests 5000 --concurrency 32 --append docs/benchmarks.md

Starts ``python -m scaling serve`` as a separate process on 127.0.0.1 (a free port) over a temporary fits folder
(the published Besiroglu et al. fit, and a fit with 200 bootstrap draws made here from a synthetic table), then
drives it from this process with an asyncio HTTP client (httpx) at a fixed concurrency. Every endpoint gets the
same bounded count of requests (and a time cap). The baseline, measured in the same run against the same server,
is ``GET /health``: the cost of the HTTP stack alone; the ratio column says what each forecast costs on top.
Both processes share this machine's cores, so the numbers are a floor for a dedicated server.
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
    from scaling.estimate import fit as fit_law
    from scaling.fitfile import load_fit, save_fit
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "scaling", "serve", "--fits", str(folder), "--port", str(port)],
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=2000, help="requests per endpoint")
    ap.add_argument("--concurrency", type=int, default=16, help="concurrent client connections")
    ap.add_argument("--max-seconds", type=float, default=30.0, help="time cap per endpoint")
    ap.add_argument("--append", type=Path, help="append the results as a markdown section to this file")
    args = ap.parse_args()

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
        rows = []
        try:
            for label, method, path, body in cases:
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
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    table = pd.DataFrame(rows)
    base = table["req/s"].iloc[0]
    table["throughput vs baseline"] = table["req/s"] / base
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = (
        f"{datetime.now(timezone.utc):%Y-%m-%d}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {load:.1f}, {args.concurrency} concurrent connections, "
        f"<= {args.requests} requests per endpoint, one uvicorn process"
    )
    lines = [
        "| endpoint | requests | errors | req/s | p50 ms | p99 ms | throughput vs /health |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples(index=False):
        lines.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:,.0f} | {r[4]:.1f} | {r[5]:.1f} | {r[6]:.2f} |")
    text = "\n".join(lines)
    print(f"\n{header}\n\n{text}")
    if args.append:
        with open(args.append, "a") as fh:
            fh.write(f"\n### Run of {header}\n\n{text}\n")
        print(f"appended to {args.append}", file=sys.stderr)


if __name__ == "__main__":
    main()
