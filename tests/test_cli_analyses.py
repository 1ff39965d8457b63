"""``scaling fit --law transfer|repetition|calibration|data-constrained`` from raw results tables, and the matching
``scaling forecast`` questions, through the real entry point.

Every table is synthetic, generated from known parameters (the published constants of LAWS.md), so each fit can
be checked against the truth. Commands run in-process through :func:`scaling.cli.main` (what the console script
calls) with small bootstraps; one test runs the console script in a subprocess.
"""

from __future__ import annotations

import contextlib
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

from scaling.cli import main
from scaling.errors import ScalingError
from scaling.estimate import LawFitter
from scaling.fitfile import load_fit
from scaling.laws import get_law
from scaling.laws.data_constrained import MUENNIGHOFF_C4
from scaling.laws.kaplan import KAPLAN_L_ND, kaplan_nd_loss
from scaling.laws.repetition import PUBLISHED_BOUNDARIES, power_boundary

ENV = {**os.environ, "NO_COLOR": "1"}


def run(capsys, *args: str) -> tuple[int, str, str]:
    """In-process ``scaling ARGS``: (exit status, stdout, stderr)."""
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code: int, out: str, err: str, *fragments: str) -> str:
    """Exit 2, nothing on stdout, exactly one line on stderr starting with 'error:', no traceback."""
    assert code == 2, (code, out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def invoke(*args: str, cwd: Path) -> tuple[int, str, str]:
    """``scaling ARGS`` in-process from ``cwd`` without capsys (for module-scoped fixtures that share one fit)."""
    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    code = 0
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(here)
    return code, out.getvalue(), err.getvalue()


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
# al.'s text -> Python constants (LAWS.md 3), 0.1% loss noise

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
    folder, record, err = transfer_fit
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
    assert row["D_E_lower"] == pytest.approx(1e8 + row["lower"], rel=1e-12)
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
    assert "3 of 25 fine-tuned runs are left out of the transfer fit" in err
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
    ],
    ids=["no-scratch-at-a-size", "no-D_F", "no-D_F-column", "no-scratch", "two-targets", "fix", "tie"],
)
def test_transfer_bad_input(workdir, capsys, edit, args, fragments):
    edit(transfer_table()).to_csv("bad.csv", index=False)
    code, out, err = run(capsys, "fit", "bad.csv", "--law", "transfer", "--bootstrap", "0", *args)
    assert_user_error(code, out, err, *fragments)
    assert_nothing_written(workdir)
