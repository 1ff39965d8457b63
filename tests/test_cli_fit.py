"""The ``scaling`` command for fitting: fit, forecast, optimal, laws, and every bad-input case.

Fits run through the real console script in a subprocess; forecasts,
optimal allocations and errors run in-process through :func:`scaling.cli.main`, which is what the console
script calls, so their output, exit status and the files they leave can be checked cheaply.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli_helpers import assert_user_error, run

EPOCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "chinchilla_epoch" / "svg_extracted_data.csv"

# Besiroglu et al. 2024 constants (arXiv 2404.10102): the synthetic table is generated from them.
TRUTH = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}

ENV = {**os.environ, "NO_COLOR": "1"}


def chinchilla(N, D, p=TRUTH):
    return p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]


def write_synthetic(path: Path, noise: float = 0.002, seed: int = 0) -> Path:
    """6 model sizes x 5 token counts from the TRUTH law, 0.2% log-normal noise, one run per row."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, N in enumerate(np.geomspace(1e7, 3e9, 6)):
        for j, D in enumerate(np.geomspace(2e8, 2e11, 5)):
            loss = chinchilla(N, D) * np.exp(rng.normal(0.0, noise))
            rows.append({"run_id": f"n{i}-d{j}", "N": N, "D": D, "loss": loss, "final": 1})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def scaling_cli(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """The real console script (falls back to ``python -m scaling`` when the script is not on PATH)."""
    exe = Path(sys.executable).with_name("scaling")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "scaling"]
    return subprocess.run([*cmd, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout, check=False)


# ---------------------------------------------------------------------------------------------------------
# One real fit, shared: `scaling fit syn.csv --bootstrap 30 --format json` with the default law and path


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fit")
    write_synthetic(folder / "syn.csv")
    proc = scaling_cli("fit", "syn.csv", "--bootstrap", "30", "--seed", "1", "--format", "json", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return folder, proc


def test_fit_picks_law_and_default_path(fitted):
    folder, proc = fitted
    assert "law: chinchilla" in proc.stderr and "picked from the columns" in proc.stderr
    assert (folder / "fits" / "syn-chinchilla.json").is_file()
    assert f"saved {Path('fits') / 'syn-chinchilla.json'}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_fit_json_on_stdout_recovers_truth(fitted):
    _, proc = fitted
    doc = json.loads(proc.stdout)  # stdout holds the JSON document and nothing else
    assert doc["law"] == "chinchilla" and doc["ci"] == 0.95
    p = {k: v["value"] for k, v in doc["params"].items()}
    assert abs(p["alpha"] - TRUTH["alpha"]) < 0.03
    assert abs(p["beta"] - TRUTH["beta"]) < 0.03
    assert abs(p["E"] - TRUTH["E"]) / TRUTH["E"] < 0.03
    assert doc["params"]["a"]["kind"] == "derived"
    assert p["a"] == pytest.approx(p["beta"] / (p["alpha"] + p["beta"]), rel=1e-9)
    for name in ("E", "alpha", "beta", "a", "tokens_per_param"):
        entry = doc["params"][name]
        assert entry["lower"] < entry["upper"], name
        assert entry["lower"] <= entry["value"] <= entry["upper"], name
    q = doc["quality"]
    assert q["n_points"] == 30 and q["converged"] is True and q["bootstrap_failed_fraction"] == 0.0
    assert q["rmse_log"] < 0.005  # 0.2% noise
    assert doc["data"]["rows"] == 30


def test_fit_file_round_trips(fitted):
    from scaling.fitting.result import load_fit

    folder, proc = fitted
    doc = json.loads(proc.stdout)
    fit = load_fit(folder / "fits" / "syn-chinchilla.json")
    assert fit.law_name == "chinchilla" and len(fit.draws) == 30
    assert fit.params["alpha"] == pytest.approx(doc["params"]["alpha"]["value"], rel=1e-12)


# ---- forecast / optimal on the fitted file (in-process: no optimisation happens here) ---------------------


def test_forecast_point_matches_the_formula(fitted, capsys):
    folder, proc = fitted
    p = {k: v["value"] for k, v in json.loads(proc.stdout)["params"].items()}
    code, out, err = run(capsys, "forecast", str(folder / "fits" / "syn-chinchilla.json"), "--N", "70B", "--D", "1.4T",
                         "--format", "json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["N"] == 70e9 and row["D"] == 1.4e12
    assert row["point"] == pytest.approx(chinchilla(70e9, 1.4e12, p), rel=1e-9)
    assert row["pred_lower"] < row["conf_lower"] < row["point"] < row["conf_upper"] < row["pred_upper"]


def test_forecast_grid_syntax_and_csv(fitted, capsys):
    folder, _ = fitted
    code, out, err = run(capsys, "forecast", str(folder / "fits" / "syn-chinchilla.json"),
                         "--N", "1e9:1e11:5", "--D", "2e10,2e11", "--ci", "0.5", "-f", "csv")
    assert code == 0, err
    table = pd.read_csv(io.StringIO(out))
    assert list(table.columns) == ["N", "D", "point", "conf_lower", "conf_upper", "pred_lower", "pred_upper", "interval_status", "extrapolation", "extrap_decades", "extrap_distance", "warning"]
    assert len(table) == 10  # 5 N x 2 D
    assert np.allclose(sorted(set(table["N"])), np.geomspace(1e9, 1e11, 5))
    assert ((table["conf_lower"] <= table["point"]) & (table["point"] <= table["conf_upper"])).all()
    # more data at the same N lowers the loss
    for _, group in table.groupby("N"):
        assert group.sort_values("D")["point"].is_monotonic_decreasing


def test_forecast_interval_level(fitted, capsys):
    folder, _ = fitted
    path = str(folder / "fits" / "syn-chinchilla.json")
    widths = []
    for level in ("0.5", "0.95"):
        code, out, _ = run(capsys, "forecast", path, "--at", "N=7e10", "--at", "D=1.4e12", "--ci", level, "-f", "json")
        assert code == 0
        (row,) = json.loads(out)
        widths.append(row["conf_upper"] - row["conf_lower"])
    assert 0 < widths[0] < widths[1]


def test_forecast_table(fitted, capsys):
    folder, _ = fitted
    code, out, err = run(capsys, "forecast", str(folder / "fits" / "syn-chinchilla.json"), "--N", "7e10", "--D", "1.4e12")
    assert code == 0, err
    assert "point" in out and "confidence" in out and "prediction" in out and "7e+10" in out
    assert "95% intervals" in out and "30 bootstrap draws" in out


def test_optimal_matches_closed_form(fitted, capsys):
    folder, proc = fitted
    p = {k: v["value"] for k, v in json.loads(proc.stdout)["params"].items()}
    code, out, err = run(capsys, "optimal", str(folder / "fits" / "syn-chinchilla.json"),
                         "--compute", "5.76e23", "--compute", "1e21", "-f", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["compute"] for r in rows] == [5.76e23, 1e21]
    for r in rows:  # Hoffmann et al. 2022 Eq. 4, written out independently of the library
        G = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
        n_opt = G * (r["compute"] / 6) ** (p["beta"] / (p["alpha"] + p["beta"]))
        assert r["N_opt"] == pytest.approx(n_opt, rel=1e-9)
        assert r["N_opt"] * r["D_opt"] * 6 == pytest.approx(r["compute"], rel=1e-9)
        assert r["tokens_per_param"] == pytest.approx(r["D_opt"] / r["N_opt"], rel=1e-9)
        assert r["N_opt_conf_lower"] < r["N_opt"] < r["N_opt_conf_upper"]
        assert r["loss_pred_lower"] < r["loss_conf_lower"] < r["loss"] < r["loss_conf_upper"] < r["loss_pred_upper"]


def test_optimal_table_shows_intervals(fitted, capsys):
    folder, _ = fitted
    code, out, _ = run(capsys, "optimal", str(folder / "fits" / "syn-chinchilla.json"), "-C", "1e21")
    assert code == 0
    assert "N_opt" in out and "tokens_per_param" in out and " [" in out


# ---- other fit runs through the console script ------------------------------------------------------------


def test_fit_table_and_csv_formats(tmp_path):
    write_synthetic(tmp_path / "syn.csv")
    proc = scaling_cli("fit", "syn.csv", "--law", "kaplan-n", "--where", "D > 1e11", "--bootstrap", "10",
                       "-o", "out/k.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for text in ("kaplan-n: L = (N_c/N)^alpha_N", "alpha_N", "N_c", "fit quality", "points", "6", "converged"):
        assert text in proc.stdout
    assert (tmp_path / "out" / "k.json").is_file()
    proc = scaling_cli("fit", "syn.csv", "--law", "kaplan-n", "--where", "D > 1e11", "--bootstrap", "0",
                       "-o", "out/k2.json", "-f", "csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(io.StringIO(proc.stdout))
    assert list(table.columns) == ["name", "kind", "value", "lower", "upper"]
    assert table["name"].tolist() == ["alpha_N", "N_c"]
    assert table["lower"].isna().all()  # --bootstrap 0: no intervals


def test_fit_fix_and_tie(tmp_path):
    write_synthetic(tmp_path / "syn.csv")
    proc = scaling_cli("fit", "syn.csv", "--law", "chinchilla", "--fix", "E=1.8172", "--tie", "beta=alpha",
                       "--bootstrap", "0", "-o", "t.json", "-f", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    params = json.loads(proc.stdout)["params"]
    assert params["E"]["value"] == 1.8172 and params["E"]["kind"] == "fixed"
    assert params["beta"]["kind"] == "tied to alpha"
    assert params["beta"]["value"] == params["alpha"]["value"]
    assert 0.3 < params["alpha"]["value"] < 0.42  # between the true alpha and beta


@pytest.mark.skipif(not EPOCH.exists(), reason=f"Epoch Chinchilla data not found at {EPOCH}")
def test_fit_epoch_replication_through_map_and_where(tmp_path):
    """Acceptance test C4 (docs/laws.md): Hoffmann's procedure on the 240 points gives Besiroglu et al.'s values."""
    proc = scaling_cli("fit", str(EPOCH), "--map", "N=Model Size", "--map", "C=Training FLOP",
                       "--where", "loss < 3.44", "--law", "chinchilla", "--bootstrap", "0",
                       "-o", "epoch.json", "-f", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "D derived as C/(6N)" in proc.stderr
    doc = json.loads(proc.stdout)
    p = {k: v["value"] for k, v in doc["params"].items()}
    assert doc["quality"]["n_points"] == 240
    assert doc["quality"]["objective"] <= 1.0183e-3 * (1 + 1e-6)
    assert 0.345 <= p["alpha"] <= 0.350 and 0.364 <= p["beta"] <= 0.370 and 1.812 <= p["E"] <= 1.822


def test_real_entry_point_reports_user_error(tmp_path):
    (tmp_path / "r.csv").write_text("N,D,loss\n1e6,1e9,3.0\n2e6,1e9,oops\n")
    for cmd in (None, [sys.executable, "-m", "scaling"]):
        if cmd is None:
            proc = scaling_cli("fit", "r.csv", "--law", "chinchilla", cwd=tmp_path)
        else:
            proc = subprocess.run([*cmd, "fit", "r.csv", "--law", "chinchilla"], cwd=tmp_path, env=ENV,
                                  capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 2
        assert proc.stdout == ""
        assert proc.stderr.strip() == "error: r.csv: line 3, column 'loss' is 'oops', not a number"
        assert not (tmp_path / "fits").exists()


# ---------------------------------------------------------------------------------------------------------
# laws


def test_laws_list_and_one(capsys):
    code, out, _ = run(capsys, "laws", "-f", "csv")
    assert code == 0
    table = pd.read_csv(io.StringIO(out))
    assert {"name", "formula", "inputs", "params", "paper"} <= set(table.columns)
    row = table.set_index("name").loc["chinchilla"]
    assert row["formula"] == "L = E + A/N^alpha + B/D^beta" and "2203.15556" in row["paper"]
    code, out, _ = run(capsys, "laws", "chinchilla", "-f", "json")
    doc = json.loads(out)
    assert [p["name"] for p in doc["params"]] == ["E", "A", "B", "alpha", "beta"]
    assert doc["inputs"] == ["N", "D"] and doc["closed_form_optimal"] is True
    code, out, _ = run(capsys, "laws")
    assert code == 0 and "chinchilla" in out and "kaplan-nd" in out


# ---------------------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing written


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def assert_nothing_written(folder: Path, *allowed: str) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(allowed)


TABLE = "run_id,N,D,loss\na,1e7,1e9,3.2\nb,1e8,1e9,2.9\nc,1e7,1e10,2.8\nd,1e8,1e10,2.5\ne,1e9,1e11,2.2\nf,1e9,1e10,2.3\n"


@pytest.mark.parametrize(
    "content, args, fragments",
    [
        (TABLE.replace("loss", "Loss"), [], ["r.csv: missing column 'loss'", "--map loss=Loss"]),
        ("Model Size,D,loss\n1,2,3\n", ["--law", "chinchilla"], ["missing column 'N'", '--map N="Model Size"']),
        (TABLE.replace("2.9", "two"), [], ["r.csv: line 3, column 'loss' is 'two', not a number"]),
        (TABLE.replace("2.9", "nan"), [], ["line 3, column 'loss' is 'nan', not a finite number"]),
        (TABLE.replace("1e10,2.8", "inf,2.8"), [], ["line 4, column 'D' is 'inf', not a finite number"]),
        (TABLE.replace("1e10,2.8", ",2.8"), [], ["line 4, column 'D' is an empty cell"]),
        (TABLE.replace("b,1e8", "b,-1e8"), [], ["line 3, column 'N' is -1e8; N must be positive"]),
        (TABLE.replace("2.5", "0"), [], ["line 5, column 'loss' is 0; loss must be positive"]),
        ("N,D,loss\n1e7,1e9,3\n1e8,1e10,2.5\n1e9,1e11,2\n", ["--law", "chinchilla"],
         ["3 rows but law chinchilla has 5 free parameters"]),
        ("N,D,loss\n" + "".join(f"1e8,{d},{3 - i / 10}\n" for i, d in enumerate([1e9, 2e9, 4e9, 8e9, 1.6e10, 3.2e10])),
         ["--law", "chinchilla"], ["column 'N' has 1 distinct value; law chinchilla needs at least 2"]),
        (TABLE, ["--law", "chinchila"], ["unknown law 'chinchila'", "known laws:", "chinchilla"]),
        ("run_id,N,D,loss\na,1e7,1e9,3\nb,1e8,1e10,2.5\nc,1e9,1e11,2\n", [],  # default law, then too few rows
         ["3 rows but law chinchilla has 5 free parameters"]),
        (TABLE, ["--where", "final == 1"], ["--where 'final == 1'", "unknown column 'final'", "columns are"]),
        (TABLE, ["--where", "N >"], ["--where 'N >'", "SyntaxError"]),
        (TABLE, ["--where", "N > 1e12"], ["selects no rows (of 6)"]),
        (TABLE, ["--map", "N"], ["--map 'N': expected CANONICAL=FOREIGN"]),
        (TABLE, ["--map", "N=params"], ["--map N='params': no column 'params'"]),
        (TABLE, ["--law", "chinchilla", "--fix", "alpha"], ["--fix 'alpha': expected NAME=VALUE"]),
        (TABLE, ["--law", "chinchilla", "--fix", "gamma=1"], ["law chinchilla has no parameter 'gamma'", "alpha, beta"]),
        (TABLE, ["--law", "chinchilla", "--fix", "alpha=abc"], ["--fix alpha: 'abc' is not a number"]),
        (TABLE, ["--law", "chinchilla", "--fix", "alpha=9"], ["alpha must lie in [0, 5]"]),
        (TABLE, ["--law", "chinchilla", "--tie", "beta=gamma"], ["has no parameter 'gamma'"]),
        (TABLE, ["--law", "chinchilla", "--tie", "beta=beta"], ["cannot be tied to itself"]),
        (TABLE, ["--law", "chinchilla", "--fix", "beta=0.3", "--tie", "beta=alpha"], ["--fix and --tie both set beta"]),
        (TABLE, ["--loss", "mse"], ["--loss 'mse': expected one of", "huber"]),
        (TABLE, ["--ci", "95"], ["--ci 95: must lie strictly between 0 and 1"]),
        (TABLE, ["--law", "chinchilla", "--param-def", "total"], ["missing column 'N_total'"]),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None,
)
def test_fit_bad_input(workdir, capsys, content, args, fragments):
    (workdir / "r.csv").write_text(content)
    code, out, err = run(capsys, "fit", "r.csv", "--bootstrap", "0", *args)
    assert_user_error(code, out, err, *fragments)
    assert_nothing_written(workdir, "r.csv")


@pytest.mark.parametrize(
    "content, fragments",
    [
        (None, ["r.csv: no such file"]),
        (b"", ["r.csv: the file is empty"]),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00", ["r.csv: not a text CSV file"]),
        (b"{\"N\": [1, 2]}\n", ["r.csv: looks like JSON, not a CSV table"]),
        (b"just prose\nno commas\n", ["r.csv: not a CSV table (found 1 column"]),
        (b"N,D,loss\n", ["r.csv: has a header but no data rows"]),
    ],
)
def test_fit_unreadable_file(workdir, capsys, content, fragments):
    if content is not None:
        (workdir / "r.csv").write_bytes(content)
    code, out, err = run(capsys, "fit", "r.csv", "--law", "chinchilla")
    assert_user_error(code, out, err, *fragments)
    assert_nothing_written(workdir, *(["r.csv"] if content is not None else []))


def test_fit_output_is_a_folder(workdir, capsys):
    (workdir / "r.csv").write_text(TABLE)
    (workdir / "fits").mkdir()
    code, out, err = run(capsys, "fit", "r.csv", "--law", "chinchilla", "-o", "fits")
    assert_user_error(code, out, err, "-o fits: is a folder")
    assert list((workdir / "fits").iterdir()) == []


def test_fit_usage_error_is_not_a_traceback(workdir, capsys):
    code, _out, err = run(capsys, "fit", "r.csv", "--bootstrap", "many")
    assert code == 2 and "Traceback" not in err and "--bootstrap" in err


# ---- forecast / optimal bad input: fit files built directly (no optimisation needed) ----------------------


@pytest.fixture
def fit_file(workdir):
    from scaling.fitting.result import Fit
    from scaling.fitting.fitfile import save_fit
    from scaling.laws import get_law

    law = get_law("chinchilla")
    save_fit(Fit(law, TRUTH), workdir / "c.json")
    save_fit(Fit(get_law("kaplan-n"), {"alpha_N": 0.076, "N_c": 8.8e13}), workdir / "kn.json")
    return workdir


def test_forecast_without_draws_has_point_only(fit_file, capsys):
    code, out, err = run(capsys, "forecast", "c.json", "--N", "70e9", "--D", "1.4e12", "-f", "json")
    assert code == 0
    (row,) = json.loads(out)
    assert row["point"] == pytest.approx(chinchilla(70e9, 1.4e12), rel=1e-12)
    assert all(row[k] is None for k in ("conf_lower", "conf_upper", "pred_lower", "pred_upper"))  # JSON has no NaN
    assert row["interval_status"] == "no_bootstrap_draws"
    assert "no intervals" in err


def test_forecast_values_with_suffixes(fit_file, capsys):
    code, out, _ = run(capsys, "forecast", "kn.json", "--N", "500M,1.5B,20k", "-f", "csv")
    assert code == 0
    table = pd.read_csv(io.StringIO(out))
    assert table["N"].tolist() == [5e8, 1.5e9, 2e4]
    assert table["point"].tolist() == pytest.approx([(8.8e13 / n) ** 0.076 for n in (5e8, 1.5e9, 2e4)], rel=1e-12)


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["c.json", "--N", "7e10"], ["law chinchilla", "needs D: add --D VALUE"]),
        (["c.json", "--N", "7e10", "--D", "abc"], ["--D: 'abc' is not a number"]),
        (["c.json", "--N", "1e9:1e11", "--D", "1e12"], ["--N: '1e9:1e11': a grid is START:STOP:COUNT"]),
        (["c.json", "--N", "1e9:1e11:x", "--D", "1e12"], ["COUNT 'x' must be a whole number"]),
        (["c.json", "--N", "-5", "--D", "1e12"], ["--N: -5 must be positive"]),
        (["c.json", "--N", "7e10", "--D", "1e12", "--at", "U=1e9"], ["law chinchilla has no input 'U'", "N, D"]),
        (["c.json", "--N", "7e10", "--at", "D"], ["--at 'D': expected COLUMN=VALUES"]),
        (["c.json", "--N", "7e10", "--D", "1e12", "--ci", "1.5"], ["ci 1.5: must be between 0 and 1"]),
        (["nope.json", "--N", "1"], ["nope.json: no such fit file"]),
        (["nope", "--N", "1"], ["nope: no such fit file", "no fit of that name"]),
    ],
)
def test_forecast_bad_input(fit_file, capsys, args, fragments):
    assert_user_error(*run(capsys, "forecast", *args), *fragments)


def test_fit_file_newer_format_and_broken_json(fit_file, capsys):
    doc = json.loads((fit_file / "c.json").read_text())
    doc["format_version"] = 99
    (fit_file / "new.json").write_text(json.dumps(doc))
    assert_user_error(*run(capsys, "forecast", "new.json", "--N", "1e9", "--D", "1e10"),
                      "new.json: fit file format version 99 is newer", "upgrade scaling")
    (fit_file / "broken.json").write_text('{"format_version": 1,')
    assert_user_error(*run(capsys, "optimal", "broken.json", "-C", "1e21"), "broken.json: not valid JSON (line 1")


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["kn.json", "-C", "1e21"], ["law kaplan-n has inputs N", "needs a law of N and D"]),
        (["c.json", "-C", "lots"], ["--compute: 'lots' is not a number"]),
        (["c.json", "-C", "0"], ["--compute: 0 must be positive"]),
    ],
)
def test_optimal_bad_input(fit_file, capsys, args, fragments):
    assert_user_error(*run(capsys, "optimal", *args), *fragments)


def test_optimal_published_constants_golden(fit_file, capsys):
    """Acceptance test C1 (docs/laws.md): Besiroglu constants at the Gopher budget give N_opt = 7.225e10,
    D/N = 18.39."""
    code, out, _ = run(capsys, "optimal", "c.json", "--compute", "5.76e23", "-f", "json")
    assert code == 0
    (row,) = json.loads(out)
    assert row["N_opt"] == pytest.approx(7.225e10, rel=1e-3)
    assert row["tokens_per_param"] == pytest.approx(18.39, abs=0.01)


def test_laws_unknown(capsys):
    assert_user_error(*run(capsys, "laws", "bogus"), "unknown law 'bogus'")
