"""One summary record of a fit (Fit.to_record): the command line's JSON prints it, the HTTP service serves its
summary fields and its quality, and Python returns it; all three agree."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke

import scaling
from scaling.fitting.result import SUMMARY_FIELDS, load_fit
from scaling.laws import get_law

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from scaling.serve.app import create_app  # noqa: E402


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("record")
    N, D = np.meshgrid(np.geomspace(7e7, 1.6e10, 4), np.geomspace(5e9, 5e11, 4))
    df = pd.DataFrame({"N": N.ravel(), "D": D.ravel()})
    df["loss"] = get_law("chinchilla").predict({"E": 1.8, "A": 480, "B": 2000, "alpha": 0.34, "beta": 0.36},
                                               N=df.N, D=df.D) * np.exp(np.random.default_rng(3).normal(0, 0.01, len(df)))
    df.to_csv(folder / "t.csv", index=False)
    code, out, err = invoke("fit", "t.csv", "--law", "chinchilla", "-b", "10", "-o", "fits/t.json", "-f", "json",
                            cwd=folder)
    assert code == 0, err
    return folder, json.loads(out)


def test_cli_json_is_the_fit_record(fitted):
    folder, printed = fitted
    record = load_fit(folder / "fits" / "t.json").to_record()
    assert printed == {**record, "saved": "fits/t.json"}
    json.dumps(record, allow_nan=False)  # JSON-ready: NaN is None
    assert set(SUMMARY_FIELDS) <= set(record)
    assert record["params"]["E"]["kind"] in ("free", "free, at bound") and record["quality"]["n_points"] == 16


def test_http_serves_the_record_summary_and_quality(fitted):
    folder, printed = fitted
    with TestClient(create_app(folder / "fits")) as client:
        (listed,) = client.get("/fits").json()["fits"]
        detail = client.get("/fits/t").json()
    assert listed == {"name": "t", **{k: printed[k] for k in SUMMARY_FIELDS}}
    assert detail["quality"] == printed["quality"] and detail["data_summary"] == printed["data"]
    assert detail["params"] == {k: v["value"] for k, v in printed["params"].items() if k in detail["params"]}


def test_parameter_table_is_the_printed_table(fitted):
    folder, printed = fitted
    table = load_fit(folder / "fits" / "t.json").parameter_table()
    assert list(table.columns) == ["name", "kind", "value", "lower", "upper"]
    assert list(table["name"]) == list(printed["params"])
    assert scaling.load_fit("chinchilla").to_record()["interval_status"] == "no_bootstrap_draws"
