"""``scaling fit --law transfer|repetition|calibration|data-constrained`` from raw results tables, and the matching
``scaling forecast`` questions, through the real entry point.

Every table is synthetic, generated from known parameters (the papers' published constants), so each fit can
be checked against the truth. Commands run in-process through :func:`scaling.cli.main` (what the console script
calls) with small bootstraps; one test runs the console script in a subprocess.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.errors import ScalingError
from scaling.fitting.estimate import LawFitter
from scaling.fitting.result import load_fit
from scaling.laws import get_law
from scaling.laws.data_constrained import MUENNIGHOFF_C4
from scaling.laws.kaplan import KAPLAN_L_ND, kaplan_nd_loss
from scaling.laws.repetition import PUBLISHED_BOUNDARIES, power_boundary
from cli_helpers import assert_user_error, invoke, run

ENV = {**os.environ, "NO_COLOR": "1"}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def assert_nothing_written(folder: Path) -> None:
    assert not (folder / "fits").exists(), list((folder / "fits").iterdir())


def within(value: float, lower: float, upper: float) -> bool:
    return lower <= value <= upper


# ---------------------------------------------------------------------------------------------------------
# The engine refuses a fit with nothing to fit


CALIBRATION = {"ECE_inf": 0.01, "a": 2.0, "b": 0.3}


def calibration_table(noise: float = 0.02, seed: int = 0, count: float = 2e4) -> pd.DataFrame:
    """ECE(N) at 7 sizes from CALIBRATION, log-normal noise, scored on ``count`` predictions per run."""
    rng = np.random.default_rng(seed)
    N = np.geomspace(1e5, 1e9, 7)
    ece = get_law("calibration").predict(CALIBRATION, N=N) * np.exp(noise * rng.standard_normal(N.size))
    return pd.DataFrame({"run_id": [f"c{i}" for i in range(N.size)], "N": N, "ece": ece, "ece_count": count})


def test_engine_with_every_parameter_fixed_says_so():
    with pytest.raises(ScalingError, match="all parameters are fixed; nothing to fit"):
        LawFitter("calibration", fix=CALIBRATION, n_bootstrap=0).fit(calibration_table())


def test_fit_with_every_parameter_fixed_is_a_user_error(workdir, capsys):
    calibration_table().to_csv("cal.csv", index=False)
    code, out, err = run(capsys, "fit", "cal.csv", "--law", "calibration", "--fix", "ECE_inf=0.01,a=2,b=0.3")
    assert_user_error(code, out, err, "all parameters are fixed")
    assert not (workdir / "fits").exists()


# ---------------------------------------------------------------------------------------------------------
# transfer: from-scratch runs from Kaplan's L(N, D), fine-tuned runs whose effective data follows Hernandez et
# al.'s text -> Python constants (Table 1), 0.1% loss noise

TRANSFER = {"k": 1.9e4, "alpha": 0.18, "beta": 0.38}
T_SIZES = np.logspace(4, np.log10(5e6), 5)
T_BUDGETS = np.logspace(4, 6, 5)


def transfer_table(noise: float = 1e-3, seed: int = 0) -> pd.DataFrame:
    """As the trainer writes it: from-scratch rows with an empty ``source``; fine-tuned rows with source and D_F."""
    rng = np.random.default_rng(seed)
    law, rows = get_law("transfer"), []
    for n in T_SIZES:
        for d in np.logspace(4, 9, 11):
            loss = float(kaplan_nd_loss(n, d, **KAPLAN_L_ND)) * math.exp(noise * rng.standard_normal())
            rows.append({"run_id": f"s-{n:.0f}-{d:.0f}", "N": n, "D": d, "loss": loss, "source": "", "final": 1})
    for n in T_SIZES:
        for d_f in T_BUDGETS:
            d_e = d_f + float(law.predict(TRANSFER, D_F=d_f, N=n))
            loss = float(kaplan_nd_loss(n, d_e, **KAPLAN_L_ND)) * math.exp(noise * rng.standard_normal())
            rows.append(
                {
                    "run_id": f"f-{n:.0f}-{d_f:.0f}",
                    "N": n,
                    "D": d_f,
                    "D_F": d_f,
                    "loss": loss,
                    "source": "english",
                    "final": 1,
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def transfer_fit(tmp_path_factory):
    """One ``scaling fit transfer.csv --law transfer --bootstrap 20 --format json``, shared."""
    folder = tmp_path_factory.mktemp("transfer")
    transfer_table().to_csv(folder / "transfer.csv", index=False)
    code, out, err = invoke("fit", "transfer.csv", "--law", "transfer", "--bootstrap", "20", "-f", "json", cwd=folder)
    assert code == 0, err
    return folder, json.loads(out), err


def test_transfer_fit_recovers_the_constants(transfer_fit):
    _, record, err = transfer_fit
    assert record["law"] == "transfer" and record["saved"] == "fits/transfer-transfer.json"
    p = record["params"]
    assert p["alpha"]["value"] == pytest.approx(0.18, abs=0.02)
    assert p["beta"]["value"] == pytest.approx(0.38, abs=0.02)
    assert abs(math.log10(p["k"]["value"] / 1.9e4)) < 0.15
    for name in ("k", "alpha", "beta"):  # two-stage bootstrap intervals around the point, covering the truth
        assert within(p[name]["value"], p[name]["lower"], p[name]["upper"]), name
    assert within(0.38, p["beta"]["lower"] - 0.01, p["beta"]["upper"] + 0.01)
    # the from-scratch fit is Kaplan's Eq. 1.5 on the from-scratch rows
    assert record["scratch"]["law"] == "kaplan-nd"
    assert record["scratch"]["params"]["alpha_D"]["value"] == pytest.approx(KAPLAN_L_ND["alpha_D"], abs=0.002)
    assert record["counts"] == {"ok": 25, "saturated": 0, "negative": 0, "extrapolated": 0, "high_data": 0}
    assert "left out" not in err and "saved fits/transfer-transfer.json" in err


def test_transfer_fit_per_run_table(transfer_fit):
    _, record, _ = transfer_fit
    runs = pd.DataFrame(record["runs"])
    assert len(runs) == 25 and set(runs["class"]) == {"ok"}
    np.testing.assert_allclose(runs["D_T"], runs["D_E"] - runs["D_F"], rtol=1e-12)
    np.testing.assert_allclose(runs["multiplier"], runs["D_E"] / runs["D_F"], rtol=1e-12)
    np.testing.assert_allclose(runs["f_T"], runs["D_T"] / runs["D_E"], rtol=1e-12)
    # D_T matches the law that generated the runs (0.1% loss noise is a few % of D_T)
    truth = get_law("transfer").predict(TRANSFER, D_F=runs["D_F"].to_numpy(), N=runs["N"].to_numpy())
    np.testing.assert_allclose(runs["D_T"], truth, rtol=0.15)
    assert ((runs["D_T_lower"] <= runs["D_T"]) & (runs["D_T"] <= runs["D_T_upper"])).all()


def test_transfer_fit_file_answers_the_forecast_question(transfer_fit, capsys):
    """D_T and effective data for a 1B model fine-tuned on 1e8 tokens, from the saved transfer fit."""
    folder, record, _ = transfer_fit
    path = str(folder / record["saved"])
    saved = load_fit(path)
    assert saved.law_name == "transfer" and len(saved.draws) >= 18
    code, out, err = run(capsys, "forecast", path, "--N", "1B", "--at", "D_F=1e8", "-f", "json")
    assert code == 0, err
    (row,) = json.loads(out)
    p = saved.params
    d_t = p["k"] * 1e8 ** p["alpha"] * 1e9 ** p["beta"]
    assert row["point"] == pytest.approx(d_t, rel=1e-12)
    assert row["D_E"] == pytest.approx(1e8 + d_t, rel=1e-12)
    assert row["multiplier"] == pytest.approx((1e8 + d_t) / 1e8, rel=1e-12)
    assert row["f_T"] == pytest.approx(d_t / (1e8 + d_t), rel=1e-12)
    for name in ("D_E", "multiplier", "f_T"):  # D_T's interval, mapped through each
        assert row[f"{name}_lower"] < row[name] < row[f"{name}_upper"], name
    assert row["D_E_lower"] == pytest.approx(1e8 + row["conf_lower"], rel=1e-12)
    code, out, _ = run(capsys, "forecast", path, "--N", "1B", "--at", "D_F=1e8")
    assert code == 0 and "D_E" in out and "multiplier" in out and "[" in out  # value [lower, upper]


def test_published_transfer_forecast_golden(capsys):
    """Hernandez et al. text -> Python at N = 1e9, D_F = 1e8 characters: D_T = 1.9e4 * 1e8^0.18 * 1e9^0.38."""
    code, out, err = run(capsys, "forecast", "hernandez2021", "--N", "1e9", "--at", "D_F=1e8", "-f", "csv")
    assert code == 0, err
    row = pd.read_csv(io.StringIO(out)).iloc[0]
    d_t = 1.9e4 * 1e8**0.18 * 1e9**0.38
    assert row["point"] == pytest.approx(d_t, rel=1e-12) and row["point"] == pytest.approx(1.3764e9, rel=1e-4)
    assert row["multiplier"] == pytest.approx(14.764, rel=1e-4)
    assert np.isnan(row["D_E_lower"])  # a published fit without draws has no interval


def test_transfer_fit_table_and_csv_with_runs_left_out(workdir, capsys):
    table = transfer_table(seed=1)
    ft = table.index[table["source"] == "english"]
    table.loc[ft[:3], "loss"] *= 0.5  # below anything from-scratch training reaches: saturated
    table.to_csv("runs.csv", index=False)
    code, out, err = run(capsys, "fit", "runs.csv", "--law", "transfer", "--bootstrap", "0")
    assert code == 0, err
    assert "from-scratch fit on the target, kaplan-nd" in out
    assert "fine-tuned runs (runs per class: ok 22, saturated 3" in out
    assert "transfer fit on the 22 ok runs" in out and "saturated" in out
    assert "skipped 3 of 25 fine-tuned runs in the transfer fit" in err
    assert (workdir / "fits" / "runs-transfer.json").exists()
    code, out, err = run(capsys, "fit", "runs.csv", "--law", "transfer", "-b", "0", "-f", "csv", "-o", "t.json")
    assert code == 0, err
    runs = pd.read_csv(io.StringIO(out))
    assert list(runs.columns) == [
        "N",
        "D_F",
        "loss",
        "D_E",
        "D_E_interp",
        "D_T",
        "D_T_lower",
        "D_T_upper",
        "f_T",
        "multiplier",
        "class",
    ]
    assert (runs["class"] == "saturated").sum() == 3 and np.isinf(runs.loc[runs["class"] == "saturated", "D_E"]).all()
    assert Path("t.json").exists()


def test_transfer_table_with_d_t_is_fitted_directly(workdir, capsys):
    """A table that already holds D_T (e.g. from another analysis) needs no from-scratch runs."""
    N, D_F = (a.ravel() for a in np.meshgrid(T_SIZES, T_BUDGETS))
    D_T = get_law("transfer").predict(TRANSFER, D_F=D_F, N=N)
    pd.DataFrame({"N": N, "D_F": D_F, "D_T": D_T}).to_csv("dt.csv", index=False)
    code, out, err = run(
        capsys, "fit", "dt.csv", "--law", "transfer", "--loss", "least_squares", "-b", "0", "-f", "json"
    )
    assert code == 0, err
    p = json.loads(out)["params"]
    assert p["alpha"]["value"] == pytest.approx(0.18, abs=1e-6) and p["beta"]["value"] == pytest.approx(0.38, abs=1e-6)


def _drop_scratch_at_one_size(t: pd.DataFrame) -> pd.DataFrame:
    return t[~((t["source"] == "") & (t["N"] == T_SIZES[2]))]


def _one_d_f_missing(t: pd.DataFrame) -> pd.DataFrame:
    t = t.copy()
    t.loc[t.index[-1], "D_F"] = np.nan
    return t


@pytest.mark.parametrize(
    "edit, args, fragments",
    [
        (_drop_scratch_at_one_size, [], ["line 56, column 'N'", "no from-scratch runs at that size"]),
        (_one_d_f_missing, [], ["line 81, column 'D_F' is empty", "needs D_F"]),
        (lambda t: t.drop(columns=["D_F", "source"]), [], ["no fine-tuned runs", "D_F"]),
        (lambda t: t[t["source"] != ""], [], ["no from-scratch runs"]),
        (lambda t: t.assign(target=np.where(np.arange(len(t)) % 2, "python", "bible")), [], ["choose one", "--where"]),
        (lambda t: t, ["--fix", "alpha=0.2"], ["--fix does not apply to the transfer analysis"]),
        (lambda t: t, ["--tie", "beta=alpha"], ["--tie does not apply"]),
        (lambda t: t, ["--method", "varpro"], ["--method does not apply to the transfer analysis"]),
        (lambda t: t, ["--calibrate", "0"], ["--calibrate does not apply to the transfer analysis"]),
    ],
    ids=["no-scratch-at-a-size", "no-D_F", "no-D_F-column", "no-scratch", "two-targets", "fix", "tie", "method",
         "calibrate"],
)
def test_transfer_bad_input(workdir, capsys, edit, args, fragments):
    edit(transfer_table()).to_csv("bad.csv", index=False)
    code, out, err = run(capsys, "fit", "bad.csv", "--law", "transfer", "--bootstrap", "0", *args)
    assert_user_error(code, out, err, *fragments)
    assert_nothing_written(workdir)


# ---------------------------------------------------------------------------------------------------------
# repetition: unique-data runs on the baseline L_u(N); runs with repeated data lose a fraction of parameters that
# peaks between the published region edges (Hernandez et al. 2022), 0.1% loss noise

BASELINE = {"L_inf": 1.6, "N_c": 2e7, "a_N": 0.3}
R_SIZES = [1e7, 3e7, 1e8, 3e8, 8e8]


def lost(N: float, E: np.ndarray) -> np.ndarray:
    """A bump in ln E whose >= 50% band is exactly the published region at every N (peak: 45% of parameters)."""
    left = math.log(power_boundary(N, **PUBLISHED_BOUNDARIES["left"]))
    right = math.log(power_boundary(N, **PUBLISHED_BOUNDARIES["right"]))
    s = (right - left) / 2 / math.sqrt(2 * math.log(2))
    return 0.45 * np.exp(-((np.log(E) - (left + right) / 2) ** 2) / (2 * s**2))


def repetition_table(noise: float = 1e-3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    law, rows = get_law("repetition"), []
    for n in R_SIZES:
        rows.append({"run_id": f"u{n:g}", "N": n, "repeat_fraction": 0.0, "repeat_count": 1, "N_eff": n})
        for E in np.logspace(0.3, 5.5, 14):
            rows.append(
                {
                    "run_id": f"r{n:g}-{E:.4g}",
                    "N": n,
                    "repeat_fraction": 0.1,
                    "repeat_count": E,
                    "N_eff": n * (1 - float(lost(n, E))),
                }
            )
    table = pd.DataFrame(rows)
    table["loss"] = law.predict(BASELINE, N=table["N_eff"].to_numpy()) * np.exp(noise * rng.standard_normal(len(table)))
    return table.drop(columns=["N_eff"]).assign(D=1e8, final=1)


@pytest.fixture(scope="module")
def repetition_fit(tmp_path_factory):
    folder = tmp_path_factory.mktemp("repetition")
    repetition_table().to_csv(folder / "rep.csv", index=False)
    args = ("fit", "rep.csv", "--law", "repetition", "--fix", "L_inf=1.6", "--bootstrap", "20", "-f", "json")
    code, out, err = invoke(*args, cwd=folder)
    assert code == 0, err
    return folder, json.loads(out), err


def test_repetition_fit_baseline_and_effective_sizes(repetition_fit):
    _, record, _ = repetition_fit
    assert record["law"] == "repetition" and record["saved"] == "fits/rep-repetition.json"
    p = record["params"]
    assert p["L_inf"]["kind"] == "fixed" and p["a_N"]["value"] == pytest.approx(0.3, abs=0.01)
    assert p["a_N"]["lower"] <= p["a_N"]["value"] <= p["a_N"]["upper"]
    assert record["data"]["rows"] == len(R_SIZES)  # the baseline sees the unique-data runs only
    runs = pd.DataFrame(record["runs"])
    assert len(runs) == 14 * len(R_SIZES)
    # 0.1% loss noise is up to 2% of L - L_inf at the largest size, and N_eff ~ (L - L_inf)^(-1/0.3): a few % of N
    np.testing.assert_allclose(runs["lost"], [lost(r.N, r.repeat_count) for r in runs.itertuples()], atol=0.06)
    np.testing.assert_allclose(runs["m"], runs["N_eff"] / runs["N"], rtol=1e-12)
    assert ((runs["N_eff_lower"] <= runs["N_eff"]) & (runs["N_eff"] <= runs["N_eff_upper"])).all()


def test_repetition_regions_and_their_edges(repetition_fit):
    _, record, _ = repetition_fit
    regions = pd.DataFrame(record["regions"])
    assert len(regions) == len(R_SIZES) and not regions[["left_open", "right_open"]].any().any()
    # each region brackets the published band at its size (sampled at 14 repeat counts: edges within 40%)
    for r in regions.itertuples():
        assert r.left == pytest.approx(power_boundary(r.N, **PUBLISHED_BOUNDARIES["left"]), rel=0.4)
        assert r.right == pytest.approx(power_boundary(r.N, **PUBLISHED_BOUNDARIES["right"]), rel=0.4)
    edges = {e["edge"]: e for e in record["edges"]}
    assert edges["left"]["alpha"] == pytest.approx(-0.56, abs=0.06)
    assert edges["right"]["alpha"] == pytest.approx(-0.50, abs=0.06)


def test_repetition_fit_file_forecasts_the_baseline(repetition_fit, capsys):
    folder, record, _ = repetition_fit
    saved = load_fit(str(folder / record["saved"]))
    code, out, err = run(capsys, "forecast", str(folder / record["saved"]), "--N", "1e9,1e10", "-f", "json")
    assert code == 0, err
    rows = json.loads(out)
    p = saved.params
    for row in rows:
        assert row["point"] == pytest.approx(p["L_inf"] + (p["N_c"] / row["N"]) ** p["a_N"], rel=1e-12)


def test_repetition_table_and_csv(workdir, capsys):
    repetition_table(seed=2).to_csv("rep.csv", index=False)
    code, out, err = run(capsys, "fit", "rep.csv", "--law", "repetition", "--fix", "L_inf=1.6", "-b", "0")
    assert code == 0, err
    for title in ("unique-data baseline", "runs with repeated data", "poor-performance regions", "region edges"):
        assert title in out, title
    assert "published (Hernandez et al. 2022): left 4.2e+06 N^-0.56" in out
    code, out, err = run(capsys, "fit", "rep.csv", "--law", "repetition", "--fix", "L_inf=1.6", "-b", "0", "-f", "csv")
    assert code == 0, err
    runs = pd.read_csv(io.StringIO(out))
    assert len(runs) == 14 * len(R_SIZES) and {"N_eff", "m", "lost", "extrapolated"} <= set(runs.columns)


def test_repetition_without_repeat_columns_is_a_plain_baseline_fit(workdir, capsys):
    t = repetition_table()
    t[t["repeat_fraction"] == 0].drop(columns=["repeat_fraction", "repeat_count"]).to_csv("u.csv", index=False)
    code, out, err = run(capsys, "fit", "u.csv", "--law", "repetition", "--fix", "L_inf=1.6", "-b", "0", "-f", "json")
    assert code == 0, err
    record = json.loads(out)
    assert "runs" not in record and record["params"]["a_N"]["value"] == pytest.approx(0.3, abs=0.01)


@pytest.mark.parametrize(
    "edit, args, fragments",
    [
        (lambda t: t.assign(D=np.where(np.arange(len(t)) % 2, 1e8, 2e8)), [], ["2 token budgets", "--where"]),
        (lambda t: t[t["repeat_fraction"] == 0], [], ["no runs with repeated data"]),
        (lambda t: t[(t["repeat_fraction"] > 0) | (t["N"] < 2e7)], [], ["3 or more sizes"]),
        (lambda t: t, ["--loss", "least_squares"], ["--loss does not apply to the repetition analysis"]),
        (lambda t: t, ["--fix", "L_inf=-1"], ["--fix", "L_inf"]),
        (lambda t: t, ["--asymmetry", "10"], ["--asymmetry does not apply to the repetition analysis"]),
    ],
    ids=["two-budgets", "no-repeats", "two-baseline-sizes", "loss", "fix-out-of-bounds", "asymmetry"],
)
def test_repetition_bad_input(workdir, capsys, edit, args, fragments):
    edit(repetition_table()).to_csv("bad.csv", index=False)
    code, out, err = run(capsys, "fit", "bad.csv", "--law", "repetition", "--bootstrap", "0", *args)
    assert_user_error(code, out, err, *fragments)
    assert_nothing_written(workdir)


# ---------------------------------------------------------------------------------------------------------
# calibration: ECE(N) with the finite-sample floor beside it


def test_calibration_fit_reports_the_floor(workdir, capsys):
    calibration_table().to_csv("cal.csv", index=False)
    code, out, err = run(capsys, "fit", "cal.csv", "--law", "calibration", "--bootstrap", "20", "-f", "json")
    assert code == 0, err
    record = json.loads(out)
    assert record["params"]["b"]["value"] == pytest.approx(0.3, abs=0.1)
    floor = pd.DataFrame(record["floor"])
    bound = math.sqrt(10 / (2 * math.pi * 2e4))  # 10 bins, 2e4 scored predictions
    np.testing.assert_allclose(floor["floor"], bound, rtol=1e-12)
    assert list(floor["informative"]) == list(floor["ece"] >= 2 * bound)
    near = floor.loc[~floor["informative"], "N"]
    assert len(near) >= 1 and 1e9 in set(near)  # ECE(1e9) = 0.014 < 2 x 0.0089
    warning = [line for line in err.splitlines() if "finite-sample floor" in line]
    assert len(warning) == 1 and "1e+09" in warning[0]
    code, out, err = run(capsys, "fit", "cal.csv", "--law", "calibration", "--bootstrap", "0")
    assert code == 0 and "finite-sample ECE floor" in out and "informative" in out


def test_calibration_forecast_of_ece_at_n(workdir, capsys):
    calibration_table(noise=0.0).to_csv("cal.csv", index=False)
    code, _, err = run(capsys, "fit", "cal.csv", "--law", "calibration", "--bootstrap", "0", "-f", "csv")
    assert code == 0, err
    code, out, err = run(capsys, "forecast", "fits/cal-calibration.json", "--N", "1e10", "-f", "csv")
    assert code == 0, err
    assert pd.read_csv(io.StringIO(out))["point"].iloc[0] == pytest.approx(0.01 + 2.0 * 1e10**-0.3, rel=1e-4)


def test_calibration_floor_needs_a_prediction_count(workdir, capsys):
    """Without ece_floor / ece_count / eval_tokens the fit stands and says why no floor is shown."""
    calibration_table().drop(columns=["ece_count"]).to_csv("cal.csv", index=False)
    code, out, err = run(capsys, "fit", "cal.csv", "--law", "calibration", "--bootstrap", "0")
    assert code == 0, err
    assert "cannot report the ECE floor" in err and "finite-sample ECE floor" not in out
    assert (workdir / "fits" / "cal-calibration.json").exists()


def test_brier_has_no_ece_floor(workdir, capsys):
    calibration_table().rename(columns={"ece": "brier"}).to_csv("cal.csv", index=False)
    code, out, err = run(
        capsys, "fit", "cal.csv", "--law", "calibration", "--map", "ece=brier", "-b", "0", "-f", "json"
    )
    assert code == 0, err
    assert "floor" not in json.loads(out) and "no finite-sample floor for the Brier score" in err


@pytest.mark.parametrize("value", [1.3, -0.01])
def test_calibration_ece_outside_0_1(workdir, capsys, value):
    t = calibration_table()
    t.loc[3, "ece"] = value
    t.to_csv("cal.csv", index=False)
    code, out, err = run(capsys, "fit", "cal.csv", "--law", "calibration", "--bootstrap", "0")
    assert_user_error(code, out, err, "cal.csv: line 5, column 'ece'", "[0, 1]")
    assert_nothing_written(workdir)


# ---------------------------------------------------------------------------------------------------------
# data-constrained: loss over (N, D, U) from the published C4 law, base frozen with --fix, R*_D and R*_N fitted

BASE_FIX = ",".join(f"{k}={MUENNIGHOFF_C4[k]!r}" for k in ("E", "A", "B", "alpha", "beta"))


def data_constrained_table(noise: float = 2e-3, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    N, U, epochs = (a.ravel() for a in np.meshgrid(np.geomspace(1e8, 9e9, 5), [1e9, 1e10, 1e11], [1, 2, 4, 8, 16, 40]))
    D = U * epochs
    loss = get_law("data-constrained").predict(MUENNIGHOFF_C4, N=N, D=D, U=U) * np.exp(
        noise * rng.standard_normal(N.size)
    )
    return pd.DataFrame({"run_id": [f"r{i}" for i in range(N.size)], "N": N, "D": D, "U": U, "loss": loss})


def test_data_constrained_fit_and_forecast(workdir, capsys):
    data_constrained_table().to_csv("dc.csv", index=False)
    code, out, err = run(
        capsys, "fit", "dc.csv", "--law", "data-constrained", "--fix", BASE_FIX, "-b", "20", "-f", "json"
    )
    assert code == 0, err
    p = json.loads(out)["params"]
    assert p["E"]["kind"] == "fixed" and p["R_D"]["kind"] == "free"
    assert p["R_D"]["value"] == pytest.approx(MUENNIGHOFF_C4["R_D"], rel=0.1)
    assert p["R_N"]["value"] == pytest.approx(MUENNIGHOFF_C4["R_N"], rel=0.1)
    assert p["R_D"]["lower"] < MUENNIGHOFF_C4["R_D"] * 1.05 and p["R_D"]["upper"] > MUENNIGHOFF_C4["R_D"] * 0.95
    # loss at N, D, U from the saved fit
    saved = load_fit("fits/dc-data-constrained.json")
    code, out, err = run(
        capsys, "forecast", "fits/dc-data-constrained.json", "--N", "1e9", "--D", "1e11", "--at", "U=1e10", "-f", "json"
    )
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["point"] == pytest.approx(float(saved.law.predict(saved.params, N=1e9, D=1e11, U=1e10)), rel=1e-12)
    assert row["conf_lower"] < row["point"] < row["conf_upper"]


def test_two_stage_data_constrained_with_fix_from(workdir, capsys):
    """Stage 1 on the one-epoch runs, stage 2 frozen on it with --fix-from: its draws widen stage 2's intervals."""
    table = data_constrained_table()
    table["epochs"] = table["D"] / table["U"]
    table.to_csv("dc.csv", index=False)
    code, out, err = run(
        capsys, "fit", "dc.csv", "--law", "chinchilla", "--where", "epochs == 1", "-o", "fits/base.json", "-b", "40"
    )
    assert code == 0, err
    base = load_fit("fits/base.json")
    assert len(base.draws) == 40
    code, out, err = run(
        capsys, "fit", "dc.csv", "--law", "data-constrained", "--fix-from", "fits/base.json", "-b", "40", "-f", "json"
    )
    assert code == 0, err
    assert "frozen from fits/base.json: E, A, B, alpha, beta; its 40 bootstrap draws carried into the intervals" in err
    carried = json.loads(out)
    p = carried["params"]
    assert all(p[n]["kind"] == "fixed" and p[n]["value"] == base.params[n] for n in ("E", "A", "B", "alpha", "beta"))
    # near the truth, not at it: a plain chinchilla on one-epoch runs absorbs the excess-parameter decay (R_N) of
    # the runs with N above N_opt(U), so the base is not exactly the generating one
    assert 0.5 < p["R_D"]["value"] / MUENNIGHOFF_C4["R_D"] < 1.5
    # each resample used one stage-1 draw: the frozen parameters vary across the saved draws as in stage 1
    saved = load_fit("fits/dc-data-constrained.json")
    assert saved.draws["alpha"].nunique() > 1
    assert sorted(saved.draws["alpha"]) == sorted(base.draws["alpha"])
    assert saved.settings["fix_draws"] == 40
    # the same point values frozen with --fix alone: exact base, narrower R_D interval
    fix = ",".join(f"{n}={base.params[n]!r}" for n in ("E", "A", "B", "alpha", "beta"))
    code, out, err = run(capsys, "fit", "dc.csv", "--law", "data-constrained", "--fix", fix, "-b", "40", "-f", "json")
    assert code == 0, err
    exact = json.loads(out)["params"]
    assert exact["R_D"]["value"] == pytest.approx(p["R_D"]["value"], rel=1e-9)
    assert exact["R_D"]["upper"] - exact["R_D"]["lower"] < p["R_D"]["upper"] - p["R_D"]["lower"]
    # --fix wins over --fix-from for the parameters it names
    code, out, err = run(
        capsys, "fit", "dc.csv", "--law", "data-constrained", "--fix-from", "fits/base.json", "--fix", "E=1.9",
        "-b", "0", "-f", "json", "-o", "fits/e.json",
    )
    assert code == 0, err
    assert json.loads(out)["params"]["E"]["value"] == 1.9


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("--fix-from", "nosuchfit"), ("nosuchfit", "no such fit file")),
        (("--fix-from", "hernandez2021"), ("--fix-from hernandez2021", "law transfer models D_T", "not a stage 1")),
        (("--fix-from", "chinchilla"), ("--fix-from chinchilla", "total", "--param-def")),
    ],
)
def test_fix_from_refusals(workdir, capsys, args, fragments):
    data_constrained_table().to_csv("dc.csv", index=False)
    code, out, err = run(capsys, "fit", "dc.csv", "--law", "data-constrained", *args, "-b", "0")
    assert_user_error(code, out, err, *fragments)
    assert_nothing_written(workdir)

def test_published_data_constrained_golden(capsys):
    """The datablations README's golden value: L(N = 6.34e9, D = 242e9, U = 25e9) = 2.2256440889984477."""
    code, out, err = run(
        capsys, "forecast", "muennighoff2023", "--N", "6.34e9", "--D", "242e9", "--at", "U=25e9", "-f", "csv"
    )
    assert code == 0, err
    assert pd.read_csv(io.StringIO(out))["point"].iloc[0] == pytest.approx(2.2256440889984477, abs=1e-12)


def test_optimal_allocation_under_a_unique_data_budget(workdir, capsys):
    """`scaling optimal --at U=...`: the loss-minimising (N, D) on C = 6ND when only U unique tokens exist."""
    from scaling.laws.data_constrained import optimal_allocation

    code, out, err = run(capsys, "optimal", "muennighoff2023", "-C", "1e22", "--at", "U=25e9,1e12", "-f", "json")
    assert code == 0, err
    scarce, plenty = json.loads(out)
    exact = optimal_allocation(MUENNIGHOFF_C4, 1e22, 25e9, method="bounded")  # N = 7.026e9, 9.488 epochs
    assert scarce["U"] == 25e9 and scarce["N_opt"] == pytest.approx(exact.N, rel=1e-6)
    assert scarce["epochs"] == pytest.approx(exact.epochs, rel=1e-6)
    assert scarce["loss"] == pytest.approx(exact.loss, rel=1e-9)
    # with enough unique data the constraint is slack: the base Chinchilla optimum, one epoch
    code, out, err = run(capsys, "optimal", "muennighoff2023", "-C", "1e22", "-f", "json")
    (free,) = json.loads(out)
    assert plenty["N_opt"] == pytest.approx(free["N_opt"], rel=1e-4) and plenty["epochs"] == pytest.approx(1.0)
    assert plenty["loss"] == pytest.approx(free["loss"], rel=1e-9) and scarce["loss"] > free["loss"]


def test_optimal_at_u_carries_intervals_from_a_fit(workdir, capsys):
    data_constrained_table().to_csv("dc.csv", index=False)
    code, out, err = run(capsys, "fit", "dc.csv", "--law", "data-constrained", "--fix", BASE_FIX, "-b", "20")
    assert code == 0, err
    code, out, err = run(
        capsys, "optimal", "fits/dc-data-constrained.json", "-C", "1e21", "--at", "U=1e9", "-f", "json"
    )
    assert code == 0, err
    (row,) = json.loads(out)
    for name in ("N_opt", "D_opt", "loss", "epochs"):
        assert row[f"{name}_conf_lower"] <= row[name] <= row[f"{name}_conf_upper"], name
    assert row["epochs"] > 1


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("muennighoff2023", "-C", "1e22", "--at", "D_F=1e9"), ("D_F is not one of its other inputs", "U")),
        (("chinchilla", "-C", "1e22", "--at", "U=1e9"), ("U is not one of its other inputs",)),
        (("muennighoff2023", "-C", "1e22", "--at", "U"), ("--at 'U': expected COLUMN=VALUES",)),
        (("dc.csv", "-C", "1e15", "--at", "U=1e9"), ("--at applies to a fit file",)),
    ],
)
def test_optimal_at_refusals(workdir, capsys, args, fragments):
    data_constrained_table().to_csv("dc.csv", index=False)
    assert_user_error(*run(capsys, "optimal", *args), *fragments)

def test_data_constrained_without_u_names_the_column(workdir, capsys):
    data_constrained_table().drop(columns=["U"]).to_csv("dc.csv", index=False)
    code, out, err = run(capsys, "fit", "dc.csv", "--law", "data-constrained", "--fix", BASE_FIX, "-b", "0")
    assert_user_error(code, out, err, "dc.csv", "'U'")
    assert_nothing_written(workdir)


# ---------------------------------------------------------------------------------------------------------
# The real console script, once: transfer from a raw table, then the forecast question, in a subprocess


def scaling_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("scaling")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "scaling"]
    return subprocess.run([*cmd, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300, check=False)


def test_console_script_transfer_then_forecast(tmp_path):
    transfer_table(seed=3).to_csv(tmp_path / "results.csv", index=False)
    proc = scaling_cli("fit", "results.csv", "--law", "transfer", "--bootstrap", "20", "--format", "csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "saved fits/results-transfer.json" in proc.stderr
    runs = pd.read_csv(io.StringIO(proc.stdout))
    assert len(runs) == 25 and (runs["class"] == "ok").all()
    proc = scaling_cli("forecast", "fits/results-transfer.json", "--N", "1e9", "--at", "D_F=1e8", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (
        "D_E" in proc.stdout and "multiplier" in proc.stdout and "95% interval from 20 bootstrap draws" in proc.stdout
    )
