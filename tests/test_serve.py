"""The prediction service, started for real (`python -m scaling serve`) on 127.0.0.1 at a free port.

Checks that answers equal the library's (Fit.predict / Fit.optimal), that every kind of bad input gets a 4xx with
a clear one-line message, that nothing outside the fits folder is ever read, and (bounded) schemathesis fuzzing from
the OpenAPI schema finds no 5xx.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from scaling.backtest import backtest
from scaling.estimate import fit as fit_law
from scaling.fitfile import load_fit, save_fit
from scaling.laws.chinchilla import chinchilla_loss

BESIROGLU = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def fits_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("serve")
    folder = root / "fits"
    folder.mkdir()
    rng = np.random.default_rng(0)
    N = np.repeat(np.geomspace(1e4, 1e6, 5), 4)
    D = np.tile(np.geomspace(1e6, 1e8, 4), 5)
    df = pd.DataFrame({"N": N, "D": D, "loss": chinchilla_loss(N, D, **BESIROGLU) * np.exp(rng.normal(0, 0.01, 20))})
    save_fit(fit_law(df, law="chinchilla", n_bootstrap=30, seed=0), folder / "tiny.json")
    save_fit(load_fit("chinchilla"), folder / "chinchilla.json")  # a published fit: no draws, NaN intervals
    save_fit(load_fit("muennighoff2023"), folder / "datablations.json")  # a law with a third input, U
    (folder / "broken.json").write_text("{not json")
    # A fit outside the folder, and a symlink to it inside: neither may ever be served.
    save_fit(load_fit("besiroglu2024"), root / "secret.json")
    os.symlink(root / "secret.json", folder / "escape.json")
    backtest(df, ["chinchilla", "power:N"], "largest-N", n_bootstrap=0).save(folder / "backtests" / "demo.json")
    return folder


@pytest.fixture(scope="module")
def server(fits_dir):
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "scaling", "serve", "--fits", str(fits_dir), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"server did not start: {proc.stdout.read()}")
        time.sleep(0.3)
    yield url
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server, timeout=30) as c:
        yield c


def test_listens_on_loopback_only(server):
    port = int(server.rsplit(":", 1)[1])
    # Another local address of this machine (if it has one) must not reach the server. A UDP "connect" sends
    # nothing; it only asks the kernel which local address routes outwards.
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.254.254.254", 9))
            other = s.getsockname()[0]
    except OSError:
        other = "127.0.0.1"
    if other.startswith("127.") or other == "0.0.0.0":
        pytest.skip("this machine has no non-loopback address to try")
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{other}:{port}/health", timeout=2)


def test_lists_fits_in_folder_only(client, fits_dir):
    body = client.get("/fits").json()
    names = [f["name"] for f in body["fits"]]
    assert names == ["chinchilla", "datablations", "tiny"]  # not escape (symlink out of the folder), not broken
    assert "broken" in body["unreadable"] and "not valid JSON" in body["unreadable"]["broken"]
    tiny = next(f for f in body["fits"] if f["name"] == "tiny")
    assert tiny["law"] == "chinchilla" and tiny["n_points"] == 20 and tiny["n_draws"] > 0
    assert client.get("/health").json()["fits"] == 4  # tiny, chinchilla, datablations, broken; escape is outside


def test_answers_equal_the_library(client, fits_dir):
    fit = load_fit(fits_dir / "tiny.json")
    shown = client.get("/fits/tiny").json()
    assert shown["params"] == pytest.approx(fit.params, rel=1e-12)
    assert shown["intervals"]["alpha"] == pytest.approx(list(fit.intervals["alpha"]))

    one = client.post("/fits/tiny/forecast", json={"inputs": {"N": 7e7, "D": 1.4e9}, "ci": 0.9}).json()
    ref = fit.predict(ci=0.9, N=7e7, D=1.4e9).iloc[0]
    p = one["predictions"][0]
    assert (p["point"], p["lower"], p["upper"]) == pytest.approx((ref["point"], ref["lower"], ref["upper"]), rel=1e-12)
    assert one["ci"] == 0.9 and one["law"] == "chinchilla"

    points = [{"N": n, "D": 20 * n} for n in (1e6, 1e7, 1e8)]
    batch = client.post("/fits/tiny/forecast/batch", json={"points": points}).json()["predictions"]
    ref = fit.predict(N=np.array([1e6, 1e7, 1e8]), D=20 * np.array([1e6, 1e7, 1e8]))
    assert [b["point"] for b in batch] == pytest.approx(list(ref["point"]), rel=1e-12)

    opt = client.post("/fits/tiny/optimal", json={"compute": [1e18, 1e20]}).json()["allocations"]
    ref = fit.optimal(np.array([1e18, 1e20]))
    assert [o["N_opt"] for o in opt] == pytest.approx(list(ref["N_opt"]), rel=1e-12)
    assert [o["N_opt_upper"] for o in opt] == pytest.approx(list(ref["N_opt_upper"]), rel=1e-12)


def test_optimal_under_a_unique_data_budget(client):
    fit = load_fit("muennighoff2023")
    r = client.post("/fits/datablations/optimal", json={"compute": [1e22], "at": {"U": 25e9}})
    assert r.status_code == 200, r.text
    (a,) = r.json()["allocations"]
    ref = fit.optimal(1e22, at={"U": 25e9}).iloc[0]
    assert a["at"] == {"U": 25e9} and a["N_opt"] == pytest.approx(ref["N_opt"], rel=1e-12)
    assert a["epochs"] == pytest.approx(ref["epochs"], rel=1e-12) and a["epochs"] > 9  # 9.49 epochs (LAWS.md 5.2)
    bad = client.post("/fits/tiny/optimal", json={"compute": [1e22], "at": {"U": 25e9}})
    assert bad.status_code == 422 and "U is not one of its other inputs" in bad.text


def test_published_fit_without_draws_gives_null_bounds(client):
    r = client.post("/fits/chinchilla/optimal", json={"compute": [5.76e23]})
    assert r.status_code == 200
    a = r.json()["allocations"][0]
    assert a["N_opt"] == pytest.approx(4.031e10, rel=1e-3)  # LAWS.md 2.8 item 1 golden value
    assert a["N_opt_lower"] is None and a["N_opt_upper"] is None


@pytest.mark.parametrize(
    "path,body,status,message",
    [
        ("/fits/tiny/forecast", {"inputs": {"N": "lots", "D": 1e9}}, 422, "inputs.N"),
        ("/fits/tiny/forecast", {"inputs": {"N": True, "D": 1e9}}, 422, "inputs.N"),
        ("/fits/tiny/forecast", {"inputs": {"N": None, "D": 1e9}}, 422, "inputs.N"),
        ("/fits/tiny/forecast", {"inputs": {"N": [1e9], "D": 1e9}}, 422, "inputs.N"),
        ("/fits/tiny/forecast", {"inputs": {"N": -1e9, "D": 1e9}}, 422, "greater than or equal to 1"),
        ("/fits/tiny/forecast", {"inputs": {"N": 0, "D": 1e9}}, 422, "greater than or equal to 1"),
        ("/fits/tiny/forecast", {"inputs": {"N": 1e9, "D": 1e-300}}, 422, "inputs.D"),
        ("/fits/tiny/forecast", {"inputs": {"N": 1e41, "D": 1e9}}, 422, "less than or equal"),
        ("/fits/tiny/forecast", {"inputs": {"N": 1e9}}, 422, "needs D"),
        ("/fits/tiny/forecast", {"inputs": {"N": 1e9, "D": 1e9, "U": 1e8}}, 422, "no input 'U'"),
        ("/fits/tiny/forecast", {"inputs": {"N": 1e9, "D": 1e9}, "ci": 1.5}, 422, "ci"),
        ("/fits/tiny/forecast", {"inputs": {"N": 1e9, "D": 1e9}, "level": 0.9}, 422, "level"),
        ("/fits/tiny/forecast", {"N": 1e9, "D": 1e9}, 422, "inputs"),
        ("/fits/tiny/forecast/batch", {"points": []}, 422, "at least 1"),
        ("/fits/tiny/forecast/batch", {"points": [{"N": 1e9, "D": 1e10}] * 1001}, 422, "at most 1000"),
        ("/fits/tiny/forecast/batch", {"points": [{"N": 1e9, "D": 1e10}, {"N": 1e9}]}, 422, "points[1]"),
        ("/fits/tiny/optimal", {"compute": [-5.0]}, 422, "greater than 6"),
        ("/fits/tiny/optimal", {"compute": [1e18, 1e99]}, 422, "compute[1]"),
        ("/fits/tiny/optimal", {"compute": 5.76e23}, 422, "compute"),
        ("/fits/nope/forecast", {"inputs": {"N": 1e9, "D": 1e10}}, 404, "unknown fit 'nope'"),
        ("/fits/broken/forecast", {"inputs": {"N": 1e9, "D": 1e10}}, 422, "not valid JSON"),
    ],
)
def test_bad_input_gets_4xx_with_one_clear_line(client, path, body, status, message):
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and message in detail


def test_non_json_nan_and_oversize_bodies(client):
    r = client.post("/fits/tiny/forecast", content=b"N=1e9", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["detail"]
    r = client.post("/fits/tiny/forecast", content=b"\xc3\x28", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["detail"]
    r = client.post(
        "/fits/tiny/forecast", content=b'{"inputs": {"N": NaN, "D": 1e9}}', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and "inputs.N" in r.json()["detail"]
    big = json.dumps({"points": [{"N": 1e9, "D": 1e10}] * 40_000}).encode()  # ~1.2 MB
    r = client.post("/fits/tiny/forecast/batch", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "Too Large" in r.text

    def chunks():  # no Content-Length: FastAPI's own limit stops it while reading
        for _ in range(40):
            yield big[:40_000]

    r = client.post("/fits/tiny/forecast/batch", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


@pytest.mark.parametrize(
    "name",
    [
        "escape",
        "..%2Fsecret",
        "%2E%2E%2Fsecret",
        "..",
        "...",
        ".hidden",
        "a%00b",
        "secret",
        "..%5Csecret",
        "%2Fetc%2Fpasswd",
        "x" * 200,
    ],
)
def test_never_reads_outside_the_folder(client, name):
    r = client.get(f"/fits/{name}")
    assert r.status_code in (404, 422), r.text
    assert "1.8172" not in r.text  # besiroglu2024's E: the secret fit's contents never come back
    r = client.post(f"/fits/{name}/forecast", json={"inputs": {"N": 1e9, "D": 1e10}})
    assert r.status_code in (404, 422)


def test_read_only(client):
    for method in ("PUT", "DELETE", "PATCH"):
        assert client.request(method, "/fits/tiny").status_code == 405
    assert client.post("/fits", json={}).status_code == 405


def test_backtest_summaries(client):
    assert client.get("/backtests").json() == {"backtests": ["demo"]}
    body = client.get("/backtests/demo").json()
    assert body["format"] == "scaling-backtest" and next(r["law"] for r in body["table"]) in ("chinchilla", "power:N")
    assert client.get("/backtests/nope").status_code == 404


def test_openapi_schema_describes_the_api(client):
    schema = client.get("/openapi.json").json()
    assert {
        "/fits",
        "/fits/{name}",
        "/fits/{name}/forecast",
        "/fits/{name}/forecast/batch",
        "/fits/{name}/optimal",
        "/backtests",
        "/health",
    } <= set(schema["paths"])
    assert "post" not in schema["paths"]["/fits"] and "put" not in schema["paths"]["/fits/{name}"]


@pytest.mark.slow
def test_schemathesis_finds_no_server_errors(server, tmp_path):
    """Fuzz every operation from the OpenAPI schema (bounded: examples per operation and total time)."""
    exe = shutil.which("schemathesis") or shutil.which("st")
    if exe is None:
        pytest.skip("schemathesis is not installed (pip install schemathesis)")
    cmd = [
        exe,
        "run",
        f"{server}/openapi.json",
        "--checks",
        ("not_a_server_error,content_type_conformance,response_schema_conformance,status_code_conformance"),
        "--max-examples",
        "40",
        "--max-time",
        "90",
        "--seed",
        "1",
        "--workers",
        "1",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
