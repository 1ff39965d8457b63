"""User-defined laws: formulas parsed safely, fitted like the catalogue's laws, saved and reloaded, scored.

Acceptance (issue 12): a formula law recovers what the same built-in law recovers; its fit file round-trips and
forecasts from the CLI and over HTTP; malicious formulas are refused with one line; per-group fits recover
per-group truths; linear-space fits of a signed target work.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import scaling
from cli_helpers import assert_user_error, run
from scaling.errors import ScalingError
from scaling.fitting.estimate import LawFitter
from scaling.fitting.objective import MAX_GRID, SOBOL_STARTS, ParamSpace
from scaling.fitting.result import load_fit
from scaling.laws.base import Law, Param
from scaling.laws.formula import build_law, formula_law
from scaling.laws.formula_syntax import parse_rhs, split_formula

TRUTH = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
CHINCHILLA = "L = E + A/N^alpha + B/D^beta"
# Hoffmann et al.'s grid (the built-in law's), written as a law file's starts
HOFFMANN_PARAMS = {
    "E": {"lower": 0, "start": list(np.exp(np.arange(-1.0, 1.01, 0.5)))},
    "A": {"lower": 0, "start": list(np.exp(np.arange(0.0, 26.0, 5.0)))},
    "B": {"lower": 0, "start": list(np.exp(np.arange(0.0, 26.0, 5.0)))},
    "alpha": {"lower": 0, "upper": 5, "start": [0.0, 0.5, 1.0, 1.5, 2.0]},
    "beta": {"lower": 0, "upper": 5, "start": [0.0, 0.5, 1.0, 1.5, 2.0]},
}
CLI_PARAMS = ["--param", "alpha=0:2", "--param", "beta=0:2", "--param", "E=0:inf", "--param", "A=0:inf",
              "--param", "B=0:inf"]


def synthetic(seed: int = 0, noise: float = 0.002) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i, N in enumerate(np.geomspace(1e7, 3e9, 6)):
        for D in np.geomspace(2e8, 2e11, 5):
            L = TRUTH["E"] + TRUTH["A"] / N ** TRUTH["alpha"] + TRUTH["B"] / D ** TRUTH["beta"]
            rows.append({"run_id": f"r{i}", "params": N, "D": D, "loss": L * np.exp(rng.normal(0, noise))})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def runs_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("formula") / "runs.csv"
    synthetic().to_csv(path, index=False)
    return path


# -- parsing ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, fragment", [
    ("__import__('os')", "'__import__'"),
    ("L = __import__('os').system('true')", "attribute access"),
    ("a.b", "attribute access"),
    ("lambda x: x", "lambda"),
    ("().__class__", "attribute access"),
    ("L = E + N.__class__", "attribute access"),
    ("L = __builtins__", "'__builtins__'"),
    ("L = eval('1')", "'eval'"),
    ("L = E + 'x'", "the constant 'x'"),
    ("L = N[0]", "subscripts"),
    ("L = E if N else A", "if/else"),
    ("L = exp", "'exp' used as a variable"),
])
def test_malicious_formulas_are_refused_before_anything_runs(text, fragment):
    with pytest.raises(ScalingError, match="not allowed") as info:
        parse_rhs(text, split_formula(text)[1])
    assert fragment in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("text", ["__import__('os')", "a.b", "lambda x: x", "().__class__"])
def test_cli_refuses_malicious_formula_with_one_line(capsys, runs_csv, tmp_path, text):
    out = tmp_path / "bad.json"
    code, stdout, stderr = run(capsys, "fit", str(runs_csv), "--formula", text, "-m", "N=params", "-o", str(out))
    assert_user_error(code, stdout, stderr, "not allowed")
    assert not out.exists()


def test_caret_is_power_with_power_precedence():
    expr = parse_rhs(CHINCHILLA, split_formula(CHINCHILLA)[1])
    law = build_law(formula_law(CHINCHILLA, inputs=["N", "D"]).spec)
    assert str(expr).count("**") == 2
    got = law.predict(TRUTH, N=np.array([1e9]), D=np.array([1e10]))
    want = TRUTH["E"] + TRUTH["A"] / 1e9 ** TRUTH["alpha"] + TRUTH["B"] / 1e10 ** TRUTH["beta"]
    assert got == pytest.approx(want, rel=1e-12)
    assert law.param_names == ("E", "A", "alpha", "B", "beta")  # the order of the formula


def test_names_of_the_generated_code_are_refused_and_functions_evaluate():
    with pytest.raises(ScalingError, match="'e' used as a variable"):
        formula_law("y = e*exp(1)*x", inputs=["x"])
    law = formula_law("y = E*exp(1)*x + abs(x) + sqrt(x) + log10(x) + log2(x) + ln(x) + tanh(x) + sigmoid(x)",
                      inputs=["x"])
    x = np.array([0.5, 2.0])
    want = (0.5 * np.e * x + np.abs(x) + np.sqrt(x) + np.log10(x) + np.log2(x) + np.log(x) + np.tanh(x)
            + 1 / (1 + np.exp(-x)))
    np.testing.assert_allclose(law.predict({"E": 0.5}, x=x), want, rtol=1e-12)


# -- recovery and speed of the machinery ------------------------------------------------------------------


def test_formula_recovery_equals_builtin_recovery():
    df = synthetic().rename(columns={"params": "N"})
    builtin = LawFitter("chinchilla", n_bootstrap=0).fit(df)
    law = formula_law(CHINCHILLA, inputs=["N", "D"], params=HOFFMANN_PARAMS)
    mine = LawFitter(law, n_bootstrap=0).fit(df)
    assert mine.quality.converged and builtin.quality.converged
    for name in TRUTH:
        assert mine.params[name] == pytest.approx(builtin.params[name], rel=1e-5), name
    assert abs(mine.params["alpha"] - TRUTH["alpha"]) < 0.01 and abs(mine.params["beta"] - TRUTH["beta"]) < 0.01


def test_many_parameters_use_sobol_starts():
    terms = " + ".join(f"a{i}*exp(-b{i}*x)" for i in range(6))
    law = formula_law(f"y = c + {terms}", inputs=["x"], params={
        **{f"a{i}": {"lower": -10, "upper": 10} for i in range(6)},
        **{f"b{i}": {"lower": 0, "upper": 5} for i in range(6)}})
    grid = ParamSpace(law, None, None, None).grid()
    assert 5 ** 13 > MAX_GRID and grid.shape == (SOBOL_STARTS, 13)
    assert grid.min(axis=0)[1] >= -10 and grid.max(axis=0)[1] <= 10


# -- fit files ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_fit(runs_csv, tmp_path_factory) -> Path:
    from cli_helpers import invoke

    folder = tmp_path_factory.mktemp("fits")
    out = folder / "mine.json"
    code, _, err = invoke("fit", str(runs_csv), "--formula", CHINCHILLA, *CLI_PARAMS, "-m", "N=params", "-b", "20",
                          "-o", str(out), cwd=runs_csv.parent)
    assert code == 0, err
    return out


def test_fit_file_round_trips_and_forecasts_from_cli(capsys, cli_fit):
    doc = json.loads(cli_fit.read_text())
    assert doc["law_spec"]["formula"] == CHINCHILLA and doc["law_spec"]["inputs"] == ["N", "D"]
    fit = load_fit(cli_fit)
    assert fit.law.formula == CHINCHILLA and len(fit.draws) == 20
    assert fit.params["alpha"] == pytest.approx(TRUTH["alpha"], abs=0.02)
    code, out, err = run(capsys, "forecast", str(cli_fit), "--N", "7e10", "--D", "1.4e12", "-f", "json")
    assert code == 0, err
    row = json.loads(out)[0]
    want = fit.predict(N=7e10, D=1.4e12).iloc[0]
    assert row["point"] == pytest.approx(want["point"], rel=1e-12)
    assert row["conf_lower"] < row["point"] < row["conf_upper"]


def test_fit_file_forecasts_over_http(cli_fit):
    from fastapi.testclient import TestClient

    from scaling.serve.app import create_app

    client = TestClient(create_app(cli_fit.parent))
    r = client.post("/fits/mine/forecast", json={"inputs": {"N": 7e10, "D": 1.4e12}})
    assert r.status_code == 200, r.text
    body = r.json()
    want = load_fit(cli_fit).predict(N=7e10, D=1.4e12).iloc[0]
    assert body["law"] == "formula" and body["output"] == "loss"
    assert body["predictions"][0]["point"] == pytest.approx(want["point"], rel=1e-12)
    assert body["predictions"][0]["conf_lower"] == pytest.approx(want["conf_lower"], rel=1e-12)
    assert client.get("/fits/mine").json()["formula"] == CHINCHILLA


def test_formula_fit_of_negative_inputs_forecasts_over_http(tmp_path):
    """A law of log learning rate (x < 0 throughout) forecasts over HTTP at a negative input and at 0, as from
    Python; a catalogue law at N = -5 in the same folder is still a one-line 422 naming the field."""
    from fastapi.testclient import TestClient

    from scaling.serve.app import create_app

    x = np.linspace(-4.0, -2.0, 12)
    noise = np.random.default_rng(0).normal(0, 0.005, x.size)
    df = pd.DataFrame({"x": x, "loss": 2.5 + 0.3 * (x + 3.1) ** 2 + noise})
    law = formula_law("L = E + A*(x - x0)^2", inputs=["x"], params={"x0": {"lower": -6, "upper": 0}})
    fit = scaling.fit(df, law=law, n_bootstrap=10, seed=0)
    fit.save(tmp_path / "lr.json")
    scaling.load_fit("chinchilla").save(tmp_path / "chinchilla.json")
    client = TestClient(create_app(tmp_path))

    r = client.post("/fits/lr/forecast", json={"inputs": {"x": -3.5}})
    assert r.status_code == 200, r.text
    (p,) = r.json()["predictions"]
    want = load_fit(tmp_path / "lr.json").predict(x=-3.5).iloc[0]
    assert p["inputs"] == {"x": -3.5} and p["point"] == pytest.approx(want["point"], rel=1e-12)
    assert p["conf_lower"] == pytest.approx(want["conf_lower"], rel=1e-12)
    r = client.post("/fits/lr/forecast/batch", json={"points": [{"x": 0}, {"x": -5.0}]})
    assert r.status_code == 200, r.text
    want = load_fit(tmp_path / "lr.json").predict(x=[0.0, -5.0])["point"].to_numpy()
    np.testing.assert_allclose([p["point"] for p in r.json()["predictions"]], want, rtol=1e-12)
    r = client.post("/fits/lr/forecast", content=b'{"inputs": {"x": -Infinity}}',  # still finite numbers only
                    headers={"content-type": "application/json"})
    assert r.status_code == 422

    for body in ({"inputs": {"N": -5, "D": 1e10}}, {"inputs": {"N": 0, "D": 1e10}}):
        r = client.post("/fits/chinchilla/forecast", json=body)
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert problem["type"] == "/problems/invalid-request" and "\n" not in problem["detail"]
        assert problem["detail"].startswith("body.inputs.N: Input should be greater than or equal to 1")


def test_http_service_refuses_a_tampered_formula(cli_fit, tmp_path):
    from fastapi.testclient import TestClient

    from scaling.serve.app import create_app

    doc = json.loads(cli_fit.read_text())
    doc["law_spec"]["formula"] = "L = ().__class__"
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    client = TestClient(create_app(tmp_path))
    assert "attribute access" in client.get("/fits").json()["unreadable"]["bad"]
    r = client.post("/fits/bad/forecast", json={"inputs": {"N": 1e9, "D": 1e10}})
    assert r.status_code == 422 and "not allowed" in r.json()["detail"]


def test_tampered_formula_in_a_fit_file_is_refused(capsys, cli_fit, tmp_path):
    doc = json.loads(cli_fit.read_text())
    doc["law_spec"]["formula"] = "L = __import__('os').system('touch pwned')"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    code, out, err = run(capsys, "forecast", str(bad), "--N", "1e9", "--D", "1e10")
    assert_user_error(code, out, err, "not allowed")
    assert not Path("pwned").exists() and not (tmp_path / "pwned").exists()


def test_script_law_with_formula_saves_and_reloads(tmp_path):
    def fn(N, D, *, E, A, B, alpha, beta):
        return E + A / N**alpha + B / D**beta

    params = tuple(Param(n, 0.0, np.inf if n in "EAB" else 5.0, tuple(v["start"]), log_scale=n in "EAB")
                   for n, v in HOFFMANN_PARAMS.items())
    law = Law(name="my-chinchilla", formula=CHINCHILLA, reference="mine", inputs=("N", "D"), params=params,
              function=fn)
    fit = scaling.fit(synthetic().rename(columns={"params": "N"}), law=law, n_bootstrap=5)
    path = fit.save(tmp_path / "script.json")
    back = load_fit(path)
    assert back.law.name == "my-chinchilla"
    a, b = fit.predict(N=[1e9, 1e11], D=[1e10, 1e12]), back.predict(N=[1e9, 1e11], D=[1e10, 1e12])
    np.testing.assert_allclose(a[["point", "conf_lower", "conf_upper"]], b[["point", "conf_lower", "conf_upper"]], rtol=1e-12)


def test_script_law_without_a_usable_formula_is_refused_clearly(tmp_path):
    law = Law(name="opaque", formula="L = E + A/N^alpha (plus a correction)", reference="mine", inputs=("N",),
              params=(Param("E", 0, np.inf, (1.0,), True), Param("A", 0, np.inf, (10.0,), True),
                      Param("alpha", 0, 2, (0.3,))),
              function=lambda N, *, E, A, alpha: E + A / N**alpha)
    df = synthetic().rename(columns={"params": "N"})
    fit = scaling.fit(df, law=law, n_bootstrap=0)
    target = tmp_path / "opaque.json"
    with pytest.raises(ScalingError, match="not in the catalogue.*could not be loaded again"):
        fit.save(target)
    assert not target.exists()


# -- inputs, residual space, groups, targets ---------------------------------------------------------------


def test_linear_space_fit_of_a_signed_target_with_negative_inputs(capsys, tmp_path):
    # y = a + b x + c x^2 with x = log10(lr) < 0 and y changing sign: a log-space fit is impossible
    rng = np.random.default_rng(3)
    x = np.repeat(np.linspace(-4.5, -2.0, 11), 2)
    y = -0.2 + 1.2 * (x + 3) + 0.8 * (x + 3) ** 2 + rng.normal(0, 0.01, x.size)
    assert (y < 0).any() and (y > 0).any()
    path = tmp_path / "lr.csv"
    pd.DataFrame({"log_lr": x, "delta_loss": y}).to_csv(path, index=False)
    formula = "delta_loss = a + b*(x + 3) + c*(x + 3)^2"
    code, out, err = run(capsys, "fit", str(path), "--formula", formula, "-m", "x=log_lr", "-b", "0",
                         "-o", str(tmp_path / "log.json"))
    assert_user_error(code, out, err, "--residual linear")
    code, out, err = run(capsys, "fit", str(path), "--formula", formula, "-m", "x=log_lr", "--residual", "linear",
                         "-b", "0", "-o", str(tmp_path / "lin.json"), "-f", "json")
    assert code == 0, err
    fit = load_fit(tmp_path / "lin.json")
    assert fit.law.residual_space == "linear"
    assert fit.params["a"] == pytest.approx(-0.2, abs=0.02)
    assert fit.params["b"] == pytest.approx(1.2, abs=0.03)
    assert fit.params["c"] == pytest.approx(0.8, abs=0.03)
    assert fit.predict(x=-3.0).iloc[0]["point"] == pytest.approx(fit.params["a"])  # a negative input forecasts
    code, out, err = run(capsys, "forecast", str(tmp_path / "lin.json"), "--at", "x=-3", "-f", "json")
    assert code == 0, err
    assert json.loads(out)[0]["point"] == pytest.approx(fit.params["a"])


def grouped_table(seed: int = 1) -> tuple[pd.DataFrame, dict]:
    rng = np.random.default_rng(seed)
    truth = {"c4": (1.7, 400.0), "pile": (2.1, 700.0), "code": (1.2, 250.0)}
    rows = []
    for ds, (E, A) in truth.items():
        for i, N in enumerate(np.geomspace(1e7, 3e9, 5)):
            for D in np.geomspace(2e8, 2e11, 4):
                L = E + A / N**0.34 + 2000.0 / D**0.36
                rows.append({"dataset": ds, "run_id": f"{ds}-{i}", "N": N, "D": D,
                             "loss": L * np.exp(rng.normal(0, 0.002))})
    return pd.DataFrame(rows), truth


def test_per_group_fit_recovers_per_group_truths(tmp_path):
    df, truth = grouped_table()
    fit = scaling.fit_formula(df, CHINCHILLA, params=HOFFMANN_PARAMS, by="dataset", per_group=["E", "A"],
                              n_bootstrap=20, seed=0)
    assert set(fit.params) == {"alpha", "B", "beta"} | {f"{p}[{g}]" for p in "EA" for g in truth}
    for g, (E, A) in truth.items():
        assert fit.params[f"E[{g}]"] == pytest.approx(E, rel=0.02), g
        assert fit.params[f"A[{g}]"] == pytest.approx(A, rel=0.15), g
    assert fit.params["alpha"] == pytest.approx(0.34, abs=0.01)
    assert fit.quality.bootstrap_failed_fraction == 0.0 and len(fit.draws) == 20
    # the bootstrap kept every group in every resample, so each group's E has a finite interval around it
    for g in truth:
        lo, hi = fit.intervals[f"E[{g}]"]
        assert lo <= fit.params[f"E[{g}]"] <= hi
    path = fit.save(tmp_path / "groups.json")
    back = load_fit(path)
    rows = pd.DataFrame({"dataset": ["pile", "code"], "N": [1e9, 1e9], "D": [1e10, 1e10]})
    from scaling.fitting.scoring import predict_rows

    got = predict_rows(back, rows)["prediction"].to_numpy()
    want = [fit.params[f"E[{g}]"] + fit.params[f"A[{g}]"] / 1e9 ** fit.params["alpha"]
            + fit.params["B"] / 1e10 ** fit.params["beta"] for g in ("pile", "code")]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    with pytest.raises(ScalingError, match="not one of the fitted groups"):
        predict_rows(back, rows.assign(dataset=["pile", "wiki"]))


def test_several_targets_give_one_fit_each(capsys, tmp_path):
    df, _ = grouped_table()
    df = df[df.dataset == "c4"].assign(loss_english=lambda d: d.loss, loss_python=lambda d: d.loss * 0.7)
    path = tmp_path / "two.csv"
    df.to_csv(path, index=False)
    code, out, err = run(capsys, "fit", str(path), "--formula", CHINCHILLA, *CLI_PARAMS, "--target",
                         "loss_english,loss_python", "-b", "0", "-o", str(tmp_path / "two.json"))
    assert code == 0, err
    english, python = load_fit(tmp_path / "two-loss_english.json"), load_fit(tmp_path / "two-loss_python.json")
    assert english.law.output == "loss_english" and python.law.output == "loss_python"
    assert python.params["E"] == pytest.approx(0.7 * english.params["E"], rel=0.05)


def test_law_file_predict_and_evaluate(capsys, runs_csv, tmp_path):
    law_file = tmp_path / "mylaw.yaml"
    law_file.write_text(
        "name: my-chinchilla\n"
        f"formula: {CHINCHILLA}\n"
        "reference: Hoffmann et al. 2022 (arXiv:2203.15556), as a formula\n"
        "inputs: [N, D]\n"
        "params:\n"
        "  alpha: {lower: 0, upper: 2}\n  beta: {lower: 0, upper: 2}\n"
        "  E: {lower: 0}\n  A: {lower: 0}\n  B: {lower: 0}\n"
    )
    out = tmp_path / "lf.json"
    code, _, err = run(capsys, "fit", str(runs_csv), "--law-file", str(law_file), "-m", "N=params", "-b", "0",
                       "-o", str(out))
    assert code == 0, err
    assert load_fit(out).law.name == "my-chinchilla"
    code, stdout, err = run(capsys, "predict", str(out), str(runs_csv), "-m", "N=params")
    assert code == 0, err
    from io import StringIO

    table = pd.read_csv(StringIO(stdout))
    assert list(table.columns[:4]) == ["run_id", "params", "D", "loss"]  # the rows as given, then the predictions
    assert np.max(np.abs(np.log(table.prediction / table.loss))) < 0.01
    code, stdout, err = run(capsys, "evaluate", str(out), str(runs_csv), "-m", "N=params", "-f", "json")
    assert code == 0, err
    scores = json.loads(stdout)[0]
    assert scores["r2"] > 0.999 and scores["log_rmse"] < 0.003
    assert scores["nmse"] == pytest.approx(1 - scores["r2"], rel=1e-9)


def test_metrics_definitions():
    from scaling.fitting.scoring import metrics

    y, p = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 2.0, 2.5, 4.0])
    m = metrics(y, p)
    assert m["r2"] == pytest.approx(1 - 0.5 / 5.0)
    assert m["nmae"] == pytest.approx(0.25 / 1.0)
    assert m["mean_relative_error"] == pytest.approx((0.5 + 0 + 0.5 / 3) / 4)
    assert m["log_rmse"] == pytest.approx(np.sqrt(np.mean(np.log(p / y) ** 2)))


def test_law_file_is_plain_data(capsys, runs_csv, tmp_path):
    """yaml.safe_load: a Python tag in a law file is refused as invalid YAML, never constructed."""
    marker = tmp_path / "constructed"
    law_file = tmp_path / "evil.yaml"
    law_file.write_text(f"formula: !!python/object/apply:os.system ['touch {marker}']\n")
    code, out, err = run(capsys, "fit", str(runs_csv), "--law-file", str(law_file), "-o", str(tmp_path / "x.json"))
    assert_user_error(code, out, err, "not valid YAML")
    assert not marker.exists()
    law_file.write_text("formula: L = E + A/N^alpha\nparameters: {}\n")
    code, out, err = run(capsys, "fit", str(runs_csv), "--law-file", str(law_file), "-o", str(tmp_path / "x.json"))
    assert_user_error(code, out, err, "field parameters")


def test_zero_inputs_are_fitted_by_a_formula_law(capsys, tmp_path):
    """D = 0 (no fine-tuning tokens yet) is refused for catalogue laws but is a valid input of a formula law."""
    D = np.repeat([0.0, 1e6, 1e7, 1e8, 1e9], 3)
    L = 1.5 + 3.0 / (D + 2e6) ** 0.25 * np.exp(np.random.default_rng(5).normal(0, 0.002, D.size))
    path = tmp_path / "ft.csv"
    pd.DataFrame({"D": D, "loss": L}).to_csv(path, index=False)
    code, out, err = run(capsys, "fit", str(path), "--law", "saturating", "--x", "D", "-b", "0",
                         "-o", str(tmp_path / "sat.json"))
    assert_user_error(code, out, err, "D must be positive")
    code, out, err = run(capsys, "fit", str(path), "--formula", "L = E + A/(D + D0)^beta", "--param", "E=0:10",
                         "--param", "A=0:inf", "--param", "D0=1e3:1e9", "--param", "beta=0:2", "-b", "0",
                         "-o", str(tmp_path / "ft.json"))
    assert code == 0, err
    fit = load_fit(tmp_path / "ft.json")
    assert fit.params["beta"] == pytest.approx(0.25, abs=0.05)
    assert fit.predict(D=0.0).iloc[0]["point"] == pytest.approx(L[:3].mean(), rel=0.01)
