"""Usability fixes found on real tables, each through the real CLI (in-process): --where on a column's name in the
file, mapped-away columns kept, "did you mean" for loss variants, single-input laws over the table's one input,
GPT-3's tail hold-out, paired forecast points, isoFLOP checks, skip warnings and backtest ranking."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from cli_helpers import assert_user_error, run

from scaling.analysis.backtest import backtest
from scaling.laws.chinchilla import chinchilla_loss, chinchilla_optimal

TRUTH = {"E": 1.8, "A": 400.0, "B": 410.0, "alpha": 0.34, "beta": 0.28}


def grid_table(noise=0.003, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    N, D = (a.ravel() for a in np.meshgrid(np.geomspace(1e6, 1e8, 5), np.geomspace(1e8, 1e10, 4)))
    loss = chinchilla_loss(N, D, **TRUTH) * np.exp(rng.normal(0, noise, N.size))
    return pd.DataFrame({"Model Size": N, "D": D, "loss_c4_val": loss, "loss": 9.9, "run": np.arange(N.size)})


def test_where_names_the_file_column_and_a_mapped_away_column_is_kept(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    grid_table().to_csv(path, index=False)
    out = tmp_path / "fit.json"
    code, stdout, err = run(
        capsys, "fit", str(path), "-m", "N=Model Size", "-m", "loss=loss_c4_val", "--where",
        "`Model Size` > 2e6 and loss_unmapped > 1", "-b", "0", "-o", str(out), "--format", "json",
    )
    assert code == 0, err
    record = json.loads(stdout)
    assert record["quality"]["n_points"] == 16  # the smallest of 5 sizes dropped by the pre-map name
    assert "kept as loss_unmapped" in err


def test_missing_loss_suggests_the_loss_variant(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    grid_table().drop(columns=["loss"]).rename(columns={"Model Size": "N"}).to_csv(path, index=False)
    code, out, err = run(capsys, "fit", str(path), "-b", "0", "-o", str(tmp_path / "f.json"))
    assert_user_error(code, out, err, "missing column 'loss'", "did you mean 'loss_c4_val'", "--map loss=loss_c4_val")
    assert not (tmp_path / "f.json").exists()


def test_single_input_law_defaults_to_the_tables_one_input(tmp_path, capsys):
    D = np.geomspace(1e7, 1e10, 8)
    path = tmp_path / "d.csv"
    pd.DataFrame({"D": D, "loss": 1.8 + 300 * D**-0.3}).to_csv(path, index=False)
    code, out, err = run(capsys, "fit", str(path), "--law", "saturating", "-b", "0", "-o", str(tmp_path / "f.json"),
                         "--format", "json")
    assert code == 0, err
    assert json.loads(out)["law"] == "saturating:D"
    assert "fitted saturating:D" in err
    both = tmp_path / "dc.csv"
    pd.DataFrame({"D": D, "C": 10 * D, "loss": 1.8 + 300 * D**-0.3}).to_csv(both, index=False)
    code, out, err = run(capsys, "fit", str(both), "--law", "saturating", "-o", str(tmp_path / "g.json"))
    assert_user_error(code, out, err, "saturating:D", "saturating:C")


def curves(sizes=(1e4, 1e5, 1e6), evals=10, noise=0.002, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i, N in enumerate(sizes):
        for D in np.geomspace(1e6, 1e8, evals):
            loss = chinchilla_loss(N, D, **TRUTH) * np.exp(rng.normal(0, noise))
            rows.append({"run_id": f"r{i}", "N": N, "D": D, "loss": loss})
    return pd.DataFrame(rows)


def test_backtest_tail_holds_out_the_end_of_the_largest_curve_only(tmp_path, capsys):
    path = tmp_path / "curves.csv"
    curves().to_csv(path, index=False)
    code, out, err = run(capsys, "backtest", str(path), "--law", "chinchilla", "--holdout", "largest-N", "--tail",
                         "0.3", "-b", "0", "--format", "json")
    assert code == 0, err
    payload = json.loads(out)
    row = payload["table"][0]
    # the largest run's last 30% of tokens: D >= 0.7 * 1e8 holds the last evaluation only (log-spaced D)
    assert row["n_test"] == 1
    assert row["n_train"] == 20  # the two smaller runs; the largest run's early part is used by neither side
    assert "tail 0.3" in payload["settings"]["holdout"]
    code, out, err = run(capsys, "backtest", str(path), "--holdout", "last-fraction", "--tail", "0.3")
    assert_user_error(code, out, err, "--tail")


def test_forecast_paired_points_and_a_csv_of_points(tmp_path, capsys):
    code, out, err = run(capsys, "forecast", "chinchilla", "--points", "N=1e9,D=2e10", "--points", "N=70B,D=1.4T",
                         "--format", "csv")
    assert code == 0, err
    table = pd.read_csv(pd.io.common.StringIO(out))
    assert list(table["N"]) == [1e9, 7e10] and list(table["D"]) == [2e10, 1.4e12]  # paired, not a 2x2 grid
    points = tmp_path / "points.csv"
    pd.DataFrame({"N": [1e9, 7e10], "D": [2e10, 1.4e12]}).to_csv(points, index=False)
    code, out2, err = run(capsys, "forecast", "chinchilla", "--points", str(points), "--format", "csv")
    assert code == 0, err
    np.testing.assert_allclose(pd.read_csv(pd.io.common.StringIO(out2))["point"], table["point"], rtol=1e-12)
    code, out, err = run(capsys, "forecast", "chinchilla", "--points", "N=1e9")
    assert_user_error(code, out, err, "needs D")
    code, out, err = run(capsys, "forecast", "chinchilla", "--points", "N=1e9,D=1e10", "--N", "1e9")
    assert_user_error(code, out, err, "--points")


def isoflop_rows(half_width_dex: float, budgets=(1e17, 1e18, 1e19, 1e20), n=9, repeat=1) -> pd.DataFrame:
    rows = []
    for C in budgets:
        N0, _ = chinchilla_optimal(TRUTH, C)
        N = np.repeat(N0 * 10 ** np.linspace(-half_width_dex, half_width_dex, n), repeat)
        rows.append(pd.DataFrame({"N": N, "D": C / (6 * N), "loss": chinchilla_loss(N, C / (6 * N), **TRUTH)}))
    return pd.concat(rows, ignore_index=True)


def test_optimal_warns_on_pooled_configurations_and_non_parabolic_profiles(tmp_path, capsys):
    path = tmp_path / "iso.csv"
    isoflop_rows(2.0, repeat=2).to_csv(path, index=False)
    code, out, err = run(capsys, "optimal", str(path), "--approach", "2", "-C", "1e21", "-b", "0")
    assert code == 0, err
    assert "(budget, N) configurations have several rows" in err
    assert "move by more than 10%" in err  # two decades either side: the profile is far from a parabola
    code, out, err = run(capsys, "optimal", str(path), "--approach", "2", "-C", "1e21", "-b", "0", "--near-min", "10")
    assert code == 0, err
    assert "move by more than 10%" not in err
    code, out, err = run(capsys, "optimal", str(path), "--approach", "2", "-C", "1e21", "--near-min", "0.5")
    assert_user_error(code, out, err, "--near-min")


def test_isoflop_near_min_brings_the_exponent_back():
    from scaling.analysis.optimal import isoflop

    wide = isoflop_rows(2.0, budgets=np.geomspace(1e17, 1e21, 5))
    a_true = TRUTH["beta"] / (TRUTH["alpha"] + TRUTH["beta"])
    near = isoflop(wide, n_bootstrap=0, near_min=10)
    assert abs(near.a - a_true) <= abs(isoflop(wide, n_bootstrap=0).a - a_true) + 1e-9


def test_backtest_single_input_laws_pooled_by_default_and_partial_laws_rank_last():
    table = curves(sizes=np.geomspace(1e4, 1e6, 5), evals=6)
    pooled = backtest(table, ["power:N"], "largest-N", n_bootstrap=0)
    assert set(pooled.fits["power:N"]) == {"all"}
    assert "one fit over all D" in pooled.table.loc[0, "notes"]
    per = backtest(table, ["power:N"], "largest-N", n_bootstrap=0, per_curve=True)
    assert len(per.fits["power:N"]) == 6  # one per D value
    # One curve too short for BNSL (it needs >= 7 distinct D per curve): BNSL predicts part of the held-out rows
    long_and_short = pd.concat([curves(sizes=[1e4, 1e5], evals=14), curves(sizes=[1e6], evals=6).assign(run_id="s")])
    result = backtest(long_and_short, ["bnsl:D", "saturating:D"], "last-fraction:0.3", n_bootstrap=0)
    t = result.table.set_index("law")
    assert t.loc["bnsl:D", "n_predicted"] < t.loc["bnsl:D", "n_test"] == t.loc["saturating:D", "n_predicted"]
    assert t.loc["saturating:D", "rank"] < t.loc["bnsl:D", "rank"]
    assert t.loc["bnsl:D", "notes"].startswith("skipped ")


@pytest.mark.parametrize("fraction", [0, 1.5])
def test_tail_must_be_a_fraction(tmp_path, capsys, fraction):
    path = tmp_path / "curves.csv"
    curves().to_csv(path, index=False)
    code, out, err = run(capsys, "backtest", str(path), "--tail", str(fraction))
    assert_user_error(code, out, err, "--tail")
