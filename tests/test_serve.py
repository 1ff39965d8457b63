"""The prediction service, started for real (`python -m scaling serve`) on 127.0.0.1 at a free port.

Checks that answers equal the library's (Fit.predict / Fit.optimal), that every kind of bad input gets a 4xx with
a clear one-line message, that nothing outside the fits folder is ever read, and (bounded) schemathesis fuzzing from
the OpenAPI schema finds no 5xx. The hardening tests (issue 13) run the real app in-process with FastAPI's
TestClient over a fits folder of every kind of bad entry: RFC 9457 problems, bounded work, the compute pool, and
the header/body timeouts of the uvicorn configuration `scaling serve` uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from importlib.metadata import version as installed_version
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from packaging.requirements import Requirement
from packaging.version import Version

from scaling.analysis.backtest import backtest
from scaling.analysis import fit as fit_law
from scaling.fitting.result import Fit
from scaling.fitting.fitfile import save_fit
from scaling.fitting.result import load_fit
from scaling.laws.chinchilla import chinchilla_loss
from scaling.serve.app import create_app, server_config
from scaling.serve.limits import MAX_EVALUATIONS, ComputePool, Overloaded, TimedOut

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
    keys = ("point", "conf_lower", "conf_upper", "pred_lower", "pred_upper")
    assert tuple(p[k] for k in keys) == pytest.approx(tuple(ref[k] for k in keys), rel=1e-12)
    assert p["interval_status"] == ref["interval_status"]
    assert p["extrapolation"]["label"] == ref["extrapolation"]
    assert one["ci"] == 0.9 and one["law"] == "chinchilla"

    points = [{"N": n, "D": 20 * n} for n in (1e6, 1e7, 1e8)]
    batch = client.post("/fits/tiny/forecast/batch", json={"points": points}).json()["predictions"]
    ref = fit.predict(N=np.array([1e6, 1e7, 1e8]), D=20 * np.array([1e6, 1e7, 1e8]))
    assert [b["point"] for b in batch] == pytest.approx(list(ref["point"]), rel=1e-12)

    opt = client.post("/fits/tiny/optimal", json={"compute": [1e18, 1e20]}).json()["allocations"]
    ref = fit.optimal(np.array([1e18, 1e20]))
    assert [o["N_opt"] for o in opt] == pytest.approx(list(ref["N_opt"]), rel=1e-12)
    assert [o["N_opt_conf_upper"] for o in opt] == pytest.approx(list(ref["N_opt_conf_upper"]), rel=1e-12)


def test_optimal_under_a_unique_data_budget(client):
    fit = load_fit("muennighoff2023")
    r = client.post("/fits/datablations/optimal", json={"compute": [1e22], "at": {"U": 25e9}})
    assert r.status_code == 200, r.text
    (a,) = r.json()["allocations"]
    ref = fit.optimal(1e22, at={"U": 25e9}).iloc[0]
    assert a["at"] == {"U": 25e9} and a["N_opt"] == pytest.approx(ref["N_opt"], rel=1e-12)
    assert a["epochs"] == pytest.approx(ref["epochs"], rel=1e-12) and a["epochs"] > 9  # 9.49 epochs (DC1)
    bad = client.post("/fits/tiny/optimal", json={"compute": [1e22], "at": {"U": 25e9}})
    assert bad.status_code == 422 and "U is not one of its other inputs" in bad.text


def test_published_fit_without_draws_gives_null_bounds(client):
    r = client.post("/fits/chinchilla/optimal", json={"compute": [5.76e23]})
    assert r.status_code == 200
    a = r.json()["allocations"][0]
    assert a["N_opt"] == pytest.approx(4.031e10, rel=1e-3)  # acceptance test C1 golden value
    assert a["N_opt_conf_lower"] is None and a["N_opt_conf_upper"] is None
    assert a["interval_status"] == "no_bootstrap_draws"


@pytest.mark.parametrize(
    "path,body,status,message",
    [
        ("/fits/tiny/forecast", {"inputs": {"N": "lots", "D": 1e9}}, 422, "inputs.N"),
        ("/fits/tiny/forecast", {"inputs": {"N": True, "D": 1e9}}, 422, "inputs.N"),
        ("/fits/tiny/forecast", {"inputs": {"N": None, "D": 1e9}}, 422, "inputs.N"),
        ("/fits/tiny/forecast", {"inputs": {"N": [1e9], "D": 1e9}}, 422, "inputs.N"),
        ("/fits/tiny/forecast", {"inputs": {"N": -1e9, "D": 1e9}}, 422, "greater than or equal to 1"),
        ("/fits/tiny/forecast", {"inputs": {"N": 0, "D": 1e9}}, 422, "greater than or equal to 1"),
        # a law of counts refuses inputs below 1 once the fit is known (the schema takes any finite number)
        ("/fits/chinchilla/forecast", {"inputs": {"N": -5, "D": 1e9}}, 422, "body.inputs.N: Input should be greater"),
        ("/fits/chinchilla/forecast", {"inputs": {"N": 1e9, "D": 0}}, 422, "body.inputs.D: Input should be greater"),
        ("/fits/chinchilla/forecast/batch", {"points": [{"N": 1e9, "D": 1e9}, {"N": 0.5, "D": 1e9}]}, 422,
         "body.points[1].N: Input should be greater than or equal to 1"),
        ("/fits/datablations/optimal", {"compute": [1e21], "at": {"U": -1}}, 422, "body.at.U: Input should be greater"),
        ("/fits/tiny/forecast", {"inputs": {"N": -1e41, "D": 1e9}}, 422, "greater than or equal"),
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
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "/problems/body-too-large" and "over 1000000 bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: FastAPI's own limit stops it while reading
        for _ in range(40):
            yield big[:40_000]

    r = client.post("/fits/tiny/forecast/batch", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["type"] == "/problems/body-too-large"


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


# ---------------------------------------------------------------------------------------------------------
# Hardening (issue 13): a hostile fits folder, RFC 9457 problems, bounded work, the compute pool, timeouts.
# In-process (FastAPI's TestClient over the real app) except the timeouts, which need real sockets.

SECRET_MARK = "7.77777"  # the E of the fit outside the folder: must never appear in an answer


def _with_draws(name: str, n: int, seed: int = 0) -> Fit:
    """A published fit plus ``n`` bootstrap-like draws (the parameters jittered by 1%), as a real Fit object."""
    base = load_fit(name)
    rng = np.random.default_rng(seed)
    draws = pd.DataFrame({k: v * np.exp(rng.normal(0, 0.01, n)) for k, v in base.params.items()})
    return Fit(base.law, base.params, draws=draws, settings=base.settings, meta=base.meta)


def _edit(good: dict, **changes) -> str:
    return json.dumps({**good, **changes})


# every kind of bad entry the issue lists, and then some; value: what /fits must say about it under unreadable
HOSTILE = {
    "loop": "symbolic link loop",
    "loop-a": "symbolic link loop",
    "escape": "outside the fits folder",
    "fifo": "not a regular file",
    "folder": "not a regular file",
    "deep": "nested too deeply",
    "deep-ok-json": "nested too deeply",
    "hugeint": "4300 digits",
    "binary": "not UTF-8",
    "notjson": "not valid JSON",
    "nan-param": "field params.A is nan, not a finite number",
    "inf-param": "field params.A is inf, not a finite number",
    "negative-A": "field params.A is -406.4, outside the law's range",
    "ci-5": "field ci is 5",
    "ci-nan": "field ci is nan",
    "bad-draw": "field draws.rows[1] A is -5, outside",
    "too-big": "over the",
    "unknown-law": "unknown law",
}


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    folder, outside = root / "fits", root / "outside"
    folder.mkdir()
    outside.mkdir()
    save_fit(load_fit("chinchilla"), folder / "chinchilla.json")
    save_fit(load_fit("muennighoff2023"), folder / "datablations.json")
    save_fit(_with_draws("besiroglu2024", 50), folder / "drawn.json")
    save_fit(_with_draws("besiroglu2024", 6000), folder / "many-draws.json")
    save_fit(_with_draws("muennighoff2023", 10), folder / "datablations-drawn.json")
    good = json.loads((folder / "chinchilla.json").read_text())
    # outside the folder: a fit, a folder of backtests; links to both from inside
    (outside / "secret.json").write_text(_edit(good, params={**good["params"], "E": 7.77777}))
    (outside / "backtests").mkdir()
    (outside / "backtests" / "secret.json").write_text(json.dumps({"format": "scaling-backtest", "E": 7.77777}))
    os.symlink(outside / "secret.json", folder / "escape.json")
    os.symlink(outside / "backtests", folder / "backtests")
    os.symlink("loop.json", folder / "loop.json")
    os.symlink("loop-b.json", folder / "loop-a.json")
    os.symlink("loop-a.json", folder / "loop-b.json")
    os.symlink(root / "nowhere.json", folder / "dangling.json")  # a link to nothing: not an entry at all
    os.mkfifo(folder / "fifo.json")  # reading it would block forever
    (folder / "folder.json").mkdir()
    (folder / "deep.json").write_text("[" * 100_000 + "]" * 100_000)  # RecursionError in json.loads
    (folder / "deep-ok-json.json").write_text("[" * 500 + "]" * 500)  # parses, but 500 levels deep
    (folder / "hugeint.json").write_text('{"format_version": 1, "ci": ' + "9" * 5000 + "}")
    (folder / "binary.json").write_bytes(bytes(range(256)) * 4)
    (folder / "notjson.json").write_text("{not json")
    text = (folder / "chinchilla.json").read_text()
    a = f'"A": {good["params"]["A"]!r}'
    assert a in text
    (folder / "nan-param.json").write_text(text.replace(a, '"A": NaN'))  # Python's json writes and reads NaN
    (folder / "inf-param.json").write_text(text.replace(a, '"A": 1e400'))
    (folder / "negative-A.json").write_text(_edit(good, params={**good["params"], "A": -406.4}))
    (folder / "ci-5.json").write_text(_edit(good, ci=5))
    (folder / "ci-nan.json").write_text(text.replace('"ci": 0.95', '"ci": NaN'))
    drawn = json.loads((folder / "drawn.json").read_text())
    col = drawn["draws"]["columns"].index("A")
    drawn["draws"]["rows"][1][col] = -5.0
    (folder / "bad-draw.json").write_text(json.dumps(drawn))
    with open(folder / "too-big.json", "wb") as fh:  # sparse: 40 MB on paper, nothing on disk
        fh.truncate(40 * 2**20)
    (folder / "unknown-law.json").write_text(_edit(good, law="no-such-law"))
    (folder / "my fit.json").write_text(text)
    odd = _edit(good, quality={"n_points": "many", "rmse_log": "low", "converged": "yes", "deep": [[[1]]]})
    (folder / "odd-quality.json").write_text(odd)  # usable: free-form quality of the wrong types shows as null
    return folder


@pytest.fixture(scope="module")
def hostile(hostile_dir):
    with TestClient(create_app(hostile_dir), raise_server_exceptions=False) as c:
        yield c


def _is_problem(r, status: int, kind: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert set(body) == {"type", "title", "status", "detail", "instance"} and body["status"] == status
    assert body["instance"] == r.request.url.path and "\n" not in body["detail"] and body["title"]
    if kind is not None:
        assert body["type"] == f"/problems/{kind}", body
    assert SECRET_MARK not in r.text
    return body


def test_one_bad_entry_never_takes_the_listing_down(hostile):
    assert hostile.get("/health").status_code == 200
    r = hostile.get("/fits")
    assert r.status_code == 200, r.text
    body = r.json()
    names = [f["name"] for f in body["fits"]]
    assert names == ["chinchilla", "datablations", "datablations-drawn", "drawn", "many-draws", "odd-quality"]
    odd = next(f for f in body["fits"] if f["name"] == "odd-quality")
    assert (odd["n_points"], odd["rmse_log"], odd["converged"]) == (None, None, None)
    for name, reason in HOSTILE.items():
        assert reason in body["unreadable"].get(name, ""), (name, body["unreadable"].get(name))
    assert "dangling" not in body["unreadable"] and "loop-b" in body["unreadable"]
    assert SECRET_MARK not in r.text


def test_a_fit_whose_name_no_url_can_carry_is_listed_as_unreadable(hostile):
    """'my fit.json' (a usable fit) vanished from /fits: neither listed nor under unreadable."""
    body = hostile.get("/fits").json()
    assert "this file name cannot be served" in body["unreadable"]["my fit"]
    _is_problem(hostile.get("/fits/my fit"), 422, "invalid-request")


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_bad_fit_file_is_a_problem_not_a_500(hostile, name):
    detail = _is_problem(hostile.get(f"/fits/{name}"), 422, "unusable-fit")["detail"]
    assert HOSTILE[name] in detail and name in detail
    _is_problem(hostile.post(f"/fits/{name}/forecast", json={"inputs": {"N": 1e9, "D": 1e10}}), 422, "unusable-fit")
    _is_problem(hostile.post(f"/fits/{name}/optimal", json={"compute": [1e21]}), 422, "unusable-fit")


def test_usable_fits_still_answer_beside_the_bad_ones(hostile):
    r = hostile.post("/fits/drawn/forecast", json={"inputs": {"N": 7e10, "D": 1.4e12}})
    assert r.status_code == 200, r.text
    (p,) = r.json()["predictions"]
    assert p["conf_lower"] <= p["point"] <= p["conf_upper"] and 1.5 < p["point"] < 3
    assert hostile.get("/fits/odd-quality").json()["quality"]["n_points"] == "many"  # shown as stored


def test_nothing_is_read_through_a_link_out_of_the_folder(hostile):
    assert hostile.get("/backtests").json() == {"backtests": []}  # FOLDER/backtests links outside
    _is_problem(hostile.get("/backtests/secret"), 404, "unknown-backtest")
    _is_problem(hostile.get("/fits/escape"), 422, "unusable-fit")
    _is_problem(hostile.get("/fits/dangling"), 404, "unknown-fit")


def test_every_error_is_an_rfc9457_problem(hostile):
    _is_problem(hostile.post("/fits/drawn/forecast", json={"inputs": {"N": -1}}), 422, "invalid-request")
    _is_problem(hostile.post("/fits/nope/forecast", json={"inputs": {"N": 1e9, "D": 1e9}}), 404, "unknown-fit")
    _is_problem(hostile.post("/fits/drawn/forecast", json={"inputs": {"N": 1e9, "U": 1e9}}), 422, "cannot-answer")
    bad_json = hostile.post("/fits/drawn/forecast", content=b"\xc3\x28", headers={"content-type": "application/json"})
    _is_problem(bad_json, 400, "invalid-json")
    big = b'{"inputs": {"N": 1e9, "D": 1e9}, "pad": "' + b"x" * 1_100_000 + b'"}'
    _is_problem(hostile.post("/fits/drawn/forecast", content=big, headers={"content-type": "application/json"}), 413,
                "body-too-large")
    assert _is_problem(hostile.delete("/fits/drawn"), 405)["type"] == "about:blank"
    assert _is_problem(hostile.get("/no/such/route"), 404)["type"] == "about:blank"
    described = hostile.get("/problems/busy").json()
    assert described["status"] == 503 and "Retry-After" in described["detail"]
    schema = hostile.get("/openapi.json").json()
    declared = schema["paths"]["/fits/{name}/optimal"]["post"]["responses"]
    assert {"404", "422", "503", "504"} <= set(declared)
    assert "application/problem+json" in declared["503"]["content"]


def test_per_request_work_is_bounded(hostile):
    points = [{"N": 1e9, "D": 2e10}] * 1000  # 1000 points x 6001 draws = 6e6 law evaluations
    assert 1000 * 6001 > MAX_EVALUATIONS
    body = _is_problem(hostile.post("/fits/many-draws/forecast/batch", json={"points": points}), 422, "too-costly")
    assert "send at most 833 points" in body["detail"]
    assert hostile.post("/fits/many-draws/forecast/batch", json={"points": points[:833]}).status_code == 200  # the limit it names
    # numeric optima (U held): 300 budgets x 11 draws is over 2000 optimisations; without draws 300 are fine
    compute = list(np.geomspace(1e20, 1e23, 300))
    r = hostile.post("/fits/datablations-drawn/optimal", json={"compute": compute, "at": {"U": 25e9}})
    _is_problem(r, 422, "too-costly")
    r = hostile.post("/fits/datablations/optimal", json={"compute": compute[:20], "at": {"U": 25e9}})
    assert r.status_code == 200, r.text


def test_compute_pool_refuses_when_full_and_times_out():
    pool = ComputePool(workers=1, queue=1, timeout=0.5)
    release = threading.Event()

    async def scenario():
        first = asyncio.ensure_future(pool.run(release.wait, 10))  # holds the worker
        second = asyncio.ensure_future(pool.run(lambda: "queued"))  # waits in the queue
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded) as full:
            await pool.run(lambda: "refused")
        assert 1 <= full.value.retry_after <= 60
        with pytest.raises(TimedOut):
            await second  # still queued behind the first after 0.5 s: cancelled, never runs
        with pytest.raises(TimedOut):
            await first
        release.set()  # the running job finishes in the background and frees its slot
        for _ in range(100):
            try:
                return await pool.run(lambda: "after")
            except Overloaded:
                await asyncio.sleep(0.02)

    try:
        assert asyncio.run(scenario()) == "after"
    finally:
        release.set()
        pool.shutdown()


def _hold(pool: ComputePool, release: threading.Event) -> threading.Thread:
    """Occupy one worker of the app's real pool until ``release`` is set (a stand-in for a long forecast)."""

    async def hold():
        with contextlib.suppress(TimedOut):
            await pool.run(release.wait, 30)

    thread = threading.Thread(target=asyncio.run, args=(hold(),), daemon=True)
    thread.start()
    return thread


def test_busy_service_answers_503_and_health_keeps_answering(hostile_dir):
    app = create_app(hostile_dir, workers=1, queue=0, timeout=60)
    release = threading.Event()
    holder = _hold(app.state.pool, release)
    try:
        with TestClient(app) as c:
            for _ in range(100):  # until the holder has the worker
                r = c.post("/fits/drawn/forecast", json={"inputs": {"N": 1e9, "D": 2e10}})
                if r.status_code == 503:
                    break
            body = _is_problem(r, 503, "busy")
            assert int(r.headers["retry-after"]) >= 1 and "busy" in body["detail"]
            assert c.get("/health").status_code == 200  # async: never waits for the pool
            assert c.get("/fits/drawn").status_code == 200  # reading a fit does not use the pool either
    finally:
        release.set()
        holder.join(10)


def test_slow_computation_answers_504(hostile_dir):
    app = create_app(hostile_dir, workers=1, queue=4, timeout=0.3)
    release = threading.Event()
    holder = _hold(app.state.pool, release)
    try:
        with TestClient(app) as c:
            r = c.post("/fits/drawn/forecast", json={"inputs": {"N": 1e9, "D": 2e10}})
            _is_problem(r, 504, "timeout")
    finally:
        release.set()
        holder.join(10)


@pytest.fixture()
def real_server(hostile_dir):
    """The app under the exact uvicorn configuration `scaling serve` uses, short timeouts, in a thread."""
    import uvicorn

    port = _free_port()
    app = create_app(hostile_dir, read_timeout=1.0)
    server = uvicorn.Server(server_config(app, port=port, header_timeout=1.0))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(10)


def _read_all(sock: socket.socket, wait: float) -> bytes:
    sock.settimeout(wait)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return data + b"<still open>"
    return data


def test_header_and_body_read_timeouts(real_server):
    with socket.create_connection(("127.0.0.1", real_server)) as s:  # a slowloris: headers never finish
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        assert _read_all(s, 5.0) == b""  # closed by the server after 1 s, nothing sent
    with socket.create_connection(("127.0.0.1", real_server)) as s:  # a complete request is answered
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert b"200 OK" in _read_all(s, 5.0)
    with socket.create_connection(("127.0.0.1", real_server)) as s:  # a body that never arrives: 408
        s.sendall(b"POST /fits/drawn/forecast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{\"inputs\"")
        answer = _read_all(s, 5.0)
        assert b" 408 " in answer.split(b"\r\n")[0] and b"/problems/read-timeout" in answer


def test_dependency_lower_bounds_are_the_tested_versions():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    meta = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in meta["dependencies"]]
    reqs += [Requirement(r) for extra in meta["optional-dependencies"].values() for r in extra]
    floors = {r.name: Version(str(s.version)) for r in reqs for s in r.specifier if s.operator == ">="}
    assert "click" in {Requirement(d).name for d in meta["dependencies"]}  # the CLI's error path imports it
    for name in ("fastapi", "uvicorn", "ray", "click"):
        tested = Version(installed_version(name))
        assert floors[name] <= tested, f"{name}: declared >= {floors[name]}, tested with {tested}"
        assert (floors[name].major, floors[name].minor) == (tested.major, tested.minor), (
            f"{name}: the lower bound {floors[name]} is not the version the tests ran with ({tested})"
        )


@pytest.mark.parametrize(
    "option,message",
    [(["--workers", "0"], "--workers 0: must be 1 or more"), (["--queue", "-1"], "--queue -1: must be 0 or more"),
     (["--timeout", "0"], "--timeout 0.0: must be a positive number"), (["--timeout", "nan"], "--timeout nan")],
)
def test_bad_pool_options_are_one_line(tmp_path, option, message):
    out = subprocess.run([sys.executable, "-m", "scaling", "serve", "--fits", str(tmp_path), *option],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == "", out
    (line,) = out.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith(f"error: {message}"), line


@pytest.mark.slow
def test_schemathesis_over_a_hostile_folder_finds_no_server_errors(hostile_dir):
    """Fuzz every operation (valid and invalid inputs) against the real app over the folder of broken files and
    links; an audit hook records every file opened or listed, and nothing outside the folder may be."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

    outside = (hostile_dir.parent / "outside").resolve()
    touched: list[str] = []
    watching = threading.Event()

    def audit(event: str, args: tuple) -> None:
        if watching.is_set() and event in ("open", "os.scandir", "os.listdir") and args and args[0] is not None:
            path = args[0]
            if isinstance(path, (str, bytes, os.PathLike)) and str(os.fsdecode(path)).startswith(str(outside)):
                touched.append(f"{event} {os.fsdecode(path)}")

    sys.addaudithook(audit)  # hooks cannot be removed; the event gates it to this test
    app = create_app(hostile_dir)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    checks = [not_a_server_error, content_type_conformance, response_schema_conformance]
    statuses: dict[str, set[int]] = {}
    watching.set()
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(max_examples=60, deadline=None, database=None, derandomize=True,
                          suppress_health_check=list(HealthCheck))
                def fuzz(case):
                    response = case.call_and_validate(checks=checks)
                    statuses.setdefault(operation.label, set()).add(response.status_code)

                try:
                    fuzz()
                except Unsatisfiable:
                    assert mode == GenerationMode.NEGATIVE  # an operation without inputs has no invalid ones
    finally:
        watching.clear()
    assert touched == [], touched[:5]
    assert all(s < 500 for codes in statuses.values() for s in codes), statuses
    # the fuzzer reached the broken files, not only 404s: the schema's examples name them
    assert 422 in statuses["GET /fits/{name}"] and 422 in statuses["POST /fits/{name}/optimal"], statuses
