"""Compute-optimal planning: Chinchilla approaches 1, 2, 3 (Hoffmann et al. 2022, §3.1-3.3;
C5, C6 in docs/laws.md, 'Acceptance tests') and ensembles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scaling.errors import ScalingError
from scaling.laws.chinchilla import chinchilla_loss, chinchilla_optimal
from scaling.analysis.isoflop import assign_budgets
from scaling.analysis.optimal import compare, envelope, isoflop

# Hoffmann et al. 2022 Eq. 10 as printed (rounded): the constants acceptance test C5's prefactor ratios
# were computed with.
HOFFMANN_ROUNDED = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
BESIROGLU = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def a_of(p):
    return p["beta"] / (p["alpha"] + p["beta"])


def isoflop_table(p, budgets, half_width_dex, n=9, noise=0.0, seed=0):
    """Each budget sampled at a fixed set of log-offsets around its true optimum (as in C5)."""
    rng = np.random.default_rng(seed)
    rows = []
    for C in budgets:
        N0, _ = chinchilla_optimal(p, C)
        N = N0 * 10 ** np.linspace(-half_width_dex, half_width_dex, n)
        D = C / (6 * N)
        L = chinchilla_loss(N, D, **p)
        if noise:
            L = L * np.exp(rng.normal(0, noise, n))
        rows.append(pd.DataFrame({"N": N, "D": D, "loss": L}))
    return pd.concat(rows, ignore_index=True)


def curves_table(p, sizes, d_min=1e5, d_max=1e10, n_eval=40, noise=0.0, seed=0):
    """Training curves: each size evaluated at log-spaced token counts; loss = L(N, D) (+ log-normal noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, N in enumerate(sizes):
        D = np.geomspace(d_min, d_max, n_eval)
        L = chinchilla_loss(N, D, **p) * np.exp(rng.normal(0, noise, n_eval) if noise else 0.0)
        rows.append(
            pd.DataFrame(
                {
                    "run_id": f"run{i}",
                    "N": N,
                    "D": D,
                    "loss": L,
                    "step": np.arange(n_eval),
                    "final": (np.arange(n_eval) == n_eval - 1).astype(int),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


# ---------------------------------------------------------------------------------------------------------
# Approach 2 (acceptance tests C5 and C6)


@pytest.mark.parametrize("half_width", [0.3, 0.5, 1.0, 1.5])
def test_approach2_exponent_unbiased_noiseless(half_width):
    table = isoflop_table(HOFFMANN_ROUNDED, np.geomspace(1e17, 1e21, 5), half_width)
    res = isoflop(table, n_bootstrap=0)
    assert abs(res.a - a_of(HOFFMANN_ROUNDED)) < 1e-4
    assert abs(res.b - (1 - a_of(HOFFMANN_ROUNDED))) < 1e-4
    assert len(res.points) == 5 and not res.warnings


@pytest.mark.parametrize("half_width,ratio", [(0.5, 1.01), (1.0, 1.04), (1.5, 1.092)])
def test_approach2_prefactor_bias(half_width, ratio):
    # The vertex of a parabola in log N sits above the true optimum because the profile is asymmetric; the
    # bias is the same at every budget (so the exponent is unbiased) and grows with the grid's width.
    table = isoflop_table(HOFFMANN_ROUNDED, np.geomspace(1e17, 1e21, 5), half_width)
    res = isoflop(table, n_bootstrap=0)
    for C in (1e17, 1e19, 1e21):
        N_true, _ = chinchilla_optimal(HOFFMANN_ROUNDED, C)
        assert res.optimal(C)["N_opt"].iloc[0] / N_true == pytest.approx(ratio, abs=0.005)


def test_approach2_noisy_p90():
    # acceptance test C6: Besiroglu constants, budgets 1e13-1e17, 9 points +-1 dex, 1% noise: p90 |da| <= 0.008.
    errors = [
        abs(
            isoflop(isoflop_table(BESIROGLU, np.geomspace(1e13, 1e17, 5), 1.0, noise=0.01, seed=s), n_bootstrap=0).a
            - a_of(BESIROGLU)
        )
        for s in range(100)
    ]
    assert np.quantile(errors, 0.9) <= 0.008


def test_approach2_bootstrap_interval_covers_and_is_seeded():
    table = isoflop_table(BESIROGLU, np.geomspace(1e13, 1e17, 5), 1.0, noise=0.01, seed=3)
    res = isoflop(table, n_bootstrap=200, seed=7)
    lo, hi = res.interval("a")
    assert lo < a_of(BESIROGLU) < hi
    assert 0.005 < hi - lo < 0.1  # a real interval, neither degenerate nor useless
    again = isoflop(table, n_bootstrap=200, seed=7)
    pd.testing.assert_frame_equal(res.draws, again.draws)
    other = isoflop(table, n_bootstrap=200, seed=8)
    assert not res.draws.equals(other.draws)
    opt = res.optimal([1e18, 1e20])
    assert (opt["N_opt_lower"] < opt["N_opt"]).all() and (opt["N_opt"] < opt["N_opt_upper"]).all()
    assert np.allclose(opt["N_opt"] * opt["D_opt"] * 6, opt["compute"], rtol=1e-9)  # b = 1 - a under C = 6ND


def test_assign_budgets_tolerates_step_rounding():
    rng = np.random.default_rng(0)
    C = np.repeat([1e13, 1e14, 1e15], 7) * (1 + rng.uniform(-0.01, 0.01, 21))  # D rounded to whole steps
    budgets = assign_budgets(C)
    assert len(np.unique(budgets)) == 3
    assert np.allclose(np.unique(budgets), [1e13, 1e14, 1e15], rtol=0.01)


def test_approach2_budget_column_and_skipped_budgets():
    table = isoflop_table(BESIROGLU, np.geomspace(1e13, 1e17, 5), 1.0)
    table["budget"] = np.repeat(np.geomspace(1e13, 1e17, 5), 9)
    # A sixth budget sampled only on one side of its optimum: its vertex is outside the sizes and is skipped.
    N0, _ = chinchilla_optimal(BESIROGLU, 1e18)
    N = N0 * 10 ** np.linspace(-2.0, -1.0, 5)
    lopsided = pd.DataFrame(
        {"N": N, "D": 1e18 / (6 * N), "loss": chinchilla_loss(N, 1e18 / (6 * N), **BESIROGLU), "budget": 1e18}
    )
    res = isoflop(pd.concat([table, lopsided], ignore_index=True), budget_column="budget", n_bootstrap=0)
    assert len(res.points) == 5
    assert any("outside the sampled sizes" in w for w in res.warnings)
    assert abs(res.a - a_of(BESIROGLU)) < 0.01


def test_approach2_needs_budgets():
    one_budget = isoflop_table(BESIROGLU, [1e15], 1.0)
    with pytest.raises(ScalingError, match="approach 2 needs >= 2 isoFLOP budgets"):
        isoflop(one_budget, n_bootstrap=0)
    bad = one_budget.assign(loss=one_budget["loss"].astype(object))
    bad.loc[3, "loss"] = "oops"
    with pytest.raises(ScalingError, match="column 'loss'"):
        isoflop(bad, n_bootstrap=0)


# ---------------------------------------------------------------------------------------------------------
# Approach 1: envelope of synthetic chinchilla-generated training curves


def test_approach1_recovers_frontier_from_chinchilla_curves():
    sizes = np.geomspace(1e4, 1e7, 13)  # 0.25 dex apart
    res = envelope(curves_table(BESIROGLU, sizes), n_bootstrap=100, seed=0)
    a = a_of(BESIROGLU)
    assert abs(res.a - a) < 0.01  # measured 0.004: the envelope is quantised to the trained sizes
    assert abs(res.b - (1 - a)) < 0.01
    lo, hi = res.interval("a")
    assert lo < a < hi
    for C in (1e14, 1e16):
        N_true, D_true = chinchilla_optimal(BESIROGLU, C)
        opt = res.optimal(C).iloc[0]
        assert opt["N_opt"] / N_true == pytest.approx(1, abs=0.1)
        assert opt["D_opt"] / D_true == pytest.approx(1, abs=0.1)
    # Every envelope winner is an interior minimum: never the smallest or largest trained size.
    assert res.points["N_opt"].min() > sizes.min() and res.points["N_opt"].max() < sizes.max()


def test_approach1_noisy_curves_with_smoothing():
    sizes = np.geomspace(1e4, 1e7, 13)
    errors = []
    for s in range(5):
        res = envelope(curves_table(BESIROGLU, sizes, noise=0.005, seed=s), smooth=2, n_bootstrap=0)
        errors.append(abs(res.a - a_of(BESIROGLU)))
    assert max(errors) < 0.02  # measured p90 0.008 over 30 seeds


def test_approach1_edge_winners_are_not_taken_as_optima():
    # Every size is far too small for these budgets: the largest size "wins" everywhere by default. Taking
    # those points would report a = 0; the envelope refuses instead.
    sizes = np.geomspace(1e3, 1e4, 4)
    table = curves_table(BESIROGLU, sizes, d_min=1e9, d_max=1e12, n_eval=10)
    with pytest.raises(ScalingError, match="approach 1"):
        envelope(table, n_bootstrap=0)


def test_approach1_needs_curves():
    finals = curves_table(BESIROGLU, np.geomspace(1e4, 1e7, 5)).query("final == 1")
    with pytest.raises(ScalingError, match="training curves"):
        envelope(finals, n_bootstrap=0)


# ---------------------------------------------------------------------------------------------------------
# Side by side


def isoflop_runs_table(p, budgets, half_width=1.0, n=7, fractions=(1 / 16, 1 / 8, 1 / 4, 1 / 2, 1)):
    """An isoFLOP sweep whose runs also log intermediate evaluations: one table serves all three approaches."""
    rows = []
    for C in budgets:
        N0, _ = chinchilla_optimal(p, C)
        for j, N in enumerate(N0 * 10 ** np.linspace(-half_width, half_width, n)):
            D_end = C / (6 * N)
            D = D_end * np.asarray(fractions)
            rows.append(
                pd.DataFrame(
                    {
                        "run_id": f"C{C:.0e}-{j}",
                        "N": N,
                        "D": D,
                        "loss": chinchilla_loss(N, D, **p),
                        "final": (D == D_end).astype(int),
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def test_compare_approaches_1_and_2_side_by_side():
    table = isoflop_runs_table(BESIROGLU, np.geomspace(1e13, 1e17, 5))
    out, results = compare(table, [1e18, 1e19], approaches=(1, 2), n_bootstrap=50, seed=0)
    assert list(out["approach"]) == [1, 1, 2, 2]
    assert {"a", "a_lower", "a_upper", "N_opt", "N_opt_lower", "N_opt_upper", "D_opt", "tokens_per_param"} <= set(out)
    a = a_of(BESIROGLU)
    assert abs(results[2].a - a) < 1e-3
    assert abs(results[1].a - a) < 0.05  # 7 sizes per budget: a coarse envelope
    assert (out["N_opt_lower"] <= out["N_opt"]).all() and (out["N_opt"] <= out["N_opt_upper"]).all()


def test_compare_reports_inapplicable_approach_instead_of_failing():
    finals_only = isoflop_table(BESIROGLU, np.geomspace(1e13, 1e17, 5), 1.0)
    out, results = compare(finals_only, 1e18, approaches=(1, 2), n_bootstrap=0)
    assert isinstance(results[1], str) and "training curves" in results[1]
    row1 = out[out["approach"] == 1].iloc[0]
    assert np.isnan(row1["a"]) and row1["warnings"].startswith("not applicable")
    assert abs(out[out["approach"] == 2]["a"].iloc[0] - a_of(BESIROGLU)) < 1e-3
    with pytest.raises(ScalingError, match="training curves"):  # asked for alone, it is an error
        compare(finals_only, 1e18, approaches=(1,), n_bootstrap=0)
    with pytest.raises(ScalingError, match="unknown approach"):
        compare(finals_only, 1e18, approaches=(4,))
    with pytest.raises(ScalingError, match="positive"):
        compare(finals_only, -1.0, approaches=(2,))


# ---------------------------------------------------------------------------------------------------------
# Approach 3 and all three from one table


def test_three_approaches_agree_on_noiseless_chinchilla_sweep():
    table = isoflop_runs_table(BESIROGLU, np.geomspace(1e13, 1e17, 5))
    out, results = compare(table, [1e18], approaches=(1, 2, 3), n_bootstrap=10, seed=0)
    a = a_of(BESIROGLU)
    assert list(out["approach"]) == [1, 2, 3]
    assert abs(results[3].a - a) < 1e-6  # the parametric fit recovers the generating law exactly
    assert results[3].n_rows == 35  # final rows only: one per run
    N_true, D_true = chinchilla_optimal(BESIROGLU, 1e18)
    row3 = out[out["approach"] == 3].iloc[0]
    assert row3["N_opt"] == pytest.approx(N_true, rel=1e-4) and row3["D_opt"] == pytest.approx(D_true, rel=1e-4)
    assert abs(results[2].a - a) < 1e-3 and abs(results[1].a - a) < 0.05
    assert out[out["approach"] == 2]["N_opt"].iloc[0] / N_true == pytest.approx(1, abs=0.05)


# ---------------------------------------------------------------------------------------------------------
# Ensembles (Geiger et al.): one model or k smaller ones at the same compute?


def ensemble_table(V: float, k: int = 4, seeds: int = 3, noise: float = 0.002, seed: int = 0):
    """Single runs (several seeds) and k-member ensemble evaluations whose loss is L_1 - V (1 - 1/k)."""
    rng = np.random.default_rng(seed)
    rows = []
    for N in np.geomspace(1e7, 1e9, 5):
        D = 20 * N
        L1 = chinchilla_loss(N, D, **BESIROGLU)
        singles = L1 * np.exp(rng.normal(0, noise, seeds))
        rows += [{"N": N, "D": D, "loss": s, "seed": i, "ensemble_k": 1} for i, s in enumerate(singles)]
        rows.append({"N": N, "D": D, "loss": singles.mean() - V * (1 - 1 / k), "seed": -1, "ensemble_k": k})
    return pd.DataFrame(rows)


def test_ensemble_without_ensemble_evaluations_cannot_tell():
    from scaling.fitting.result import load_fit
    from scaling.analysis.ensemble import ensemble_plan

    fit = load_fit("besiroglu2024")
    table = ensemble_table(0.1).query("ensemble_k == 1")
    v = ensemble_plan(table, fit, 1e20, k=4)
    assert v.verdict == "cannot tell" and "no ensemble evaluations" in v.reason
    one, ens = v.table.iloc[0], v.table.iloc[1]
    assert ens["N"] == pytest.approx(chinchilla_optimal(BESIROGLU, 1e20 / 4)[0], rel=1e-3)
    need = ens["member_loss"] - one["loss"]
    assert need > 0 and f"{need:.4f}" in v.reason  # the gain the ensemble would need, in nats
    assert "seed-to-seed spread" in v.reason


@pytest.mark.parametrize("V,verdict", [(0.5, "ensemble of 4"), (1e-4, "one model")])
def test_ensemble_verdict_follows_measured_gain(V, verdict):
    from scaling.fitting.result import load_fit
    from scaling.analysis.ensemble import ensemble_gain_table, ensemble_plan

    table = ensemble_table(V)
    gains = ensemble_gain_table(table)
    assert len(gains) == 5 and gains["V"].to_numpy() == pytest.approx(V, abs=1e-12)
    v = ensemble_plan(table, load_fit("besiroglu2024"), 1e20, k=4)
    assert v.verdict == verdict, v.reason
    ens = v.table.iloc[1]
    assert ens["ensemble_gain"] == pytest.approx(V * 0.75, rel=1e-6)
    assert ens["loss"] == pytest.approx(ens["member_loss"] - V * 0.75)


def test_ensemble_needs_k_of_two_or_more():
    from scaling.fitting.result import load_fit
    from scaling.analysis.ensemble import ensemble_plan

    with pytest.raises(ScalingError, match=">= 2"):
        ensemble_plan(ensemble_table(0.1), load_fit("besiroglu2024"), 1e20, k=1)


# ---------------------------------------------------------------------------------------------------------
# The command line: scaling optimal RESULTS.csv --approach ...


def test_cli_optimal_from_results(tmp_path, capsys):
    import json

    from scaling.cli import main

    path = tmp_path / "iso.csv"
    isoflop_runs_table(BESIROGLU, np.geomspace(1e13, 1e17, 5)).to_csv(path, index=False)
    main(["optimal", str(path), "--approach", "1,2", "--compute", "1e18", "--bootstrap", "10", "--format", "json"])
    payload = json.loads(capsys.readouterr().out)
    rows = payload["allocations"]
    assert [r["approach"] for r in rows] == [1, 2] and abs(rows[1]["a"] - a_of(BESIROGLU)) < 1e-3
    with pytest.raises(SystemExit) as exit_:
        main(["optimal", str(path), "--approach", "5", "--compute", "1e18"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --approach '5'") and err.count("\n") == 1
