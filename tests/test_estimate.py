"""The estimator: recovery of known parameters (K4, C2, C3 in docs/laws.md, 'Acceptance tests'), fix/tie/bounds,
bootstrap, default law, bad input. Synthetic data are generated from the laws themselves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import scaling
from scaling.errors import ScalingError
from scaling.fitting.estimate import LawFitter
from scaling.fitting.multistart import multistart
from scaling.fitting.objective import Objective, ParamSpace
from scaling.fitting.optimise import SCREEN_OPTIONS, TIGHT_OPTIONS, convergence_check
from scaling.fitting.table import default_law
from scaling.laws import get_law

BESIROGLU = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
CHIN = get_law("chinchilla")


def chinchilla_grid(params=BESIROGLU, noise=0.0, seed=0, n=12):
    """Acceptance test C2: 12 x 12 grid, N in [7e7, 1.6e10], D in [5e9, 5e11]; noise = sd of log-normal noise."""
    N, D = np.meshgrid(np.geomspace(7e7, 1.6e10, n), np.geomspace(5e9, 5e11, n))
    N, D = N.ravel(), D.ravel()
    loss = CHIN.predict(params, N=N, D=D)
    if noise:
        loss = loss * np.exp(np.random.default_rng(seed).normal(0.0, noise, loss.size))
    return pd.DataFrame({"N": N, "D": D, "loss": loss})


def test_noiseless_chinchilla_recovery_is_exact():
    fit = LawFitter("chinchilla", n_bootstrap=0, n_refine=8).fit(chinchilla_grid())
    for name, truth in BESIROGLU.items():
        assert fit.params[name] == pytest.approx(truth, rel=1e-6), name
    assert fit.quality.converged, fit.quality.message
    assert fit.quality.rmse_log < 1e-7
    assert fit.quality.n_points == 144 and fit.quality.n_params_free == 5


@pytest.mark.parametrize("loss", ["least_squares", "huber_likelihood"])
def test_noiseless_recovery_other_objectives(loss):
    fit = LawFitter("chinchilla", loss=loss, n_bootstrap=0, n_refine=4).fit(chinchilla_grid(n=8))
    for name in ("E", "alpha", "beta"):
        assert fit.params[name] == pytest.approx(BESIROGLU[name], rel=1e-5), name


def _noisy_errors(seed):
    fit = LawFitter("chinchilla", n_bootstrap=0, n_refine=8).fit(chinchilla_grid(noise=0.01, seed=seed))
    p = fit.params
    a_hat = p["beta"] / (p["alpha"] + p["beta"])
    a_true = BESIROGLU["beta"] / (BESIROGLU["alpha"] + BESIROGLU["beta"])
    return (abs(p["alpha"] - BESIROGLU["alpha"]) <= 0.04 and abs(p["beta"] - BESIROGLU["beta"]) <= 0.05
            and abs(a_hat - a_true) <= 0.04 and abs(p["E"] - BESIROGLU["E"]) / BESIROGLU["E"] <= 0.03)


def test_noisy_chinchilla_recovery_few_seeds():
    """Acceptance test C3 on 5 seeds (the 20-seed version is marked slow)."""
    passed = sum(_noisy_errors(seed) for seed in range(5))
    assert passed >= 4


@pytest.mark.slow
def test_noisy_chinchilla_recovery_20_seeds():
    passed = sum(_noisy_errors(seed) for seed in range(20))
    assert passed >= 16


def test_kaplan_nd_noiseless_recovery():
    """Acceptance test K4: 6 x 6 grid, Table 2 truth, all four parameters to rel 1e-6."""
    law = get_law("kaplan-nd")
    truth = {"alpha_N": 0.076, "alpha_D": 0.103, "N_c": 6.4e13, "D_c": 1.8e13}
    N, D = np.meshgrid(np.geomspace(1e4, 5e6, 6), np.geomspace(1e5, 1e8, 6))
    df = pd.DataFrame({"N": N.ravel(), "D": D.ravel()})
    df["loss"] = law.predict(truth, N=df.N, D=df.D)
    fit = LawFitter("kaplan-nd", loss="least_squares", n_bootstrap=0).fit(df)
    for name, value in truth.items():
        assert fit.params[name] == pytest.approx(value, rel=1e-6), name


def test_single_input_law_retargeted_with_x():
    D = np.geomspace(1e6, 1e9, 10)
    truth = {"E": 1.5, "A": 300.0, "a": 0.3}
    df = pd.DataFrame({"D": D, "loss": get_law("saturating").predict(truth, N=D)})
    fit = LawFitter("saturating", x="D", n_bootstrap=0).fit(df)
    assert fit.law_name == "saturating:D" and fit.law.inputs == ("D",)
    for name, value in truth.items():
        assert fit.params[name] == pytest.approx(value, rel=1e-5), name


def test_fix_holds_a_parameter_and_frees_the_rest():
    fit = LawFitter("chinchilla", fix={"alpha": 0.3478}, n_bootstrap=0, n_refine=4).fit(chinchilla_grid(n=8))
    assert fit.params["alpha"] == 0.3478 and fit.fixed == {"alpha": 0.3478}
    assert fit.quality.n_params_free == 4
    assert fit.params["beta"] == pytest.approx(BESIROGLU["beta"], rel=1e-6)
    # Fixing at a wrong value must show in the fit.
    wrong = LawFitter("chinchilla", fix={"alpha": 0.5}, n_bootstrap=0, n_refine=4).fit(chinchilla_grid(n=8))
    assert wrong.quality.rmse_log > 1e-3


def test_tie_makes_parameters_equal():
    truth = dict(BESIROGLU, alpha=0.35, beta=0.35)
    df = chinchilla_grid(truth, n=8)
    fit = LawFitter("chinchilla", tie={"beta": "alpha"}, n_bootstrap=0, n_refine=4).fit(df)
    assert fit.params["beta"] == fit.params["alpha"] == pytest.approx(0.35, rel=1e-6)
    assert fit.tied == {"beta": "alpha"} and fit.quality.n_params_free == 4


def test_bounds_are_respected_and_flagged():
    fit = LawFitter("chinchilla", bounds={"alpha": (0.4, 1.0)}, n_bootstrap=0, n_refine=4).fit(chinchilla_grid(n=8))
    assert fit.params["alpha"] == pytest.approx(0.4)
    assert fit.quality.at_bound == ["alpha"]
    assert any("alpha is at a bound" in w for w in fit.quality.warnings)


def test_bootstrap_is_seeded_and_gives_intervals():
    df = chinchilla_grid(noise=0.01, seed=3, n=6)
    a = LawFitter("chinchilla", n_bootstrap=20, seed=7, n_refine=4).fit(df)
    b = LawFitter("chinchilla", n_bootstrap=20, seed=7, n_refine=4).fit(df)
    c = LawFitter("chinchilla", n_bootstrap=20, seed=8, n_refine=4).fit(df)
    pd.testing.assert_frame_equal(a.draws, b.draws)
    assert not a.draws.equals(c.draws)
    assert len(a.draws) == 20 and a.quality.bootstrap_failed_fraction == 0.0
    for name in ["E", "alpha", "beta", "a", "tokens_per_param"]:
        lo, hi = a.intervals[name]
        assert lo < hi, name
    lo, hi = a.intervals["alpha"]
    assert lo <= a.params["alpha"] <= hi


def test_bootstrap_resamples_runs_when_a_group_column_exists():
    df = chinchilla_grid(noise=0.01, seed=1, n=6)
    df["run_id"] = np.repeat(np.arange(12), 3)  # 12 runs of 3 evaluations each
    fit = LawFitter("chinchilla", n_bootstrap=10, n_refine=4).fit(df)
    assert fit.settings["group"] == "run_id" and fit.data_summary["groups"] == 12
    rows = LawFitter("chinchilla", n_bootstrap=10, n_refine=4, group=None).fit(df)
    assert rows.settings["group"] is None
    assert not np.allclose(fit.draws.to_numpy(), rows.draws.to_numpy())


@pytest.mark.slow
def test_bootstrap_interval_coverage():
    """The 95% interval of alpha covers the truth in most of 12 noisy data sets (nominal 95%)."""
    covered = 0
    for seed in range(12):
        fit = LawFitter("chinchilla", n_bootstrap=100, n_refine=8, seed=seed).fit(chinchilla_grid(noise=0.01, seed=100 + seed, n=8))
        lo, hi = fit.intervals["alpha"]
        covered += lo <= BESIROGLU["alpha"] <= hi
    assert covered >= 9


def test_poorly_identified_fit_warns():
    # Three model sizes, noisy: the bootstrap spread of the scale constants is huge and must be reported.
    df = chinchilla_grid(noise=0.03, seed=5, n=3)
    fit = LawFitter("chinchilla", n_bootstrap=30, n_refine=4).fit(df)
    assert any("poorly determined" in w or "not separately identifiable" in w for w in fit.quality.warnings)
    assert "[[Warnings]]" in fit.summary()


def test_jacobian_matches_the_analytic_chinchilla_derivative():
    df = chinchilla_grid(n=5)
    space = ParamSpace(CHIN, None, None, None)
    obj = Objective(space, {"N": df.N.to_numpy(), "D": df.D.to_numpy()}, np.log(df.loss.to_numpy()),
                     loss="huber", delta=1e-3)
    theta = space.theta_of(BESIROGLU)
    E, A, B = np.exp(theta[:3])
    al, be = theta[3:]
    N, D = df.N.to_numpy(), df.D.to_numpy()
    tA, tB = A / N**al, B / D**be
    L = E + tA + tB
    exact = np.stack([E / L, tA / L, tB / L, -tA * np.log(N) / L, -tB * np.log(D) / L], axis=1)
    _, jac = obj._jacobian(theta)
    assert np.max(np.abs(jac - exact)) < 1e-9 * np.max(np.abs(exact))


def test_convergence_check_flags_a_point_off_the_optimum():
    df = chinchilla_grid(noise=0.01, seed=2, n=8)
    fit = LawFitter("chinchilla", n_bootstrap=0, n_refine=4).fit(df)
    good = convergence_check("chinchilla", df, fit.params)
    bad = convergence_check("chinchilla", df, dict(fit.params, beta=fit.params["beta"] + 0.02))
    assert good["ok"] and not bad["ok"]
    # Scale-free: the same verdict whatever the objective's scale (sum vs mean).
    assert bad["newton_step"] > 1e-3 and bad["restart_gain"] > 1e-6


def test_default_law_follows_the_columns():
    df = chinchilla_grid(n=3)
    assert default_law(df) == "chinchilla"
    assert default_law(df.assign(D=1e9)) == "saturating:N"
    assert default_law(df.assign(N=1e9)) == "saturating:D"
    repeated = df.assign(U=df.D / 4)
    assert default_law(repeated) in ("data-constrained", "chinchilla")
    with pytest.raises(ScalingError, match="cannot pick a law"):
        default_law(df.assign(N=1e9, D=1e9))


def test_scaling_fit_reads_a_csv_path_and_records_its_hash(tmp_path):
    path = tmp_path / "results.csv"
    chinchilla_grid(noise=0.01, n=5).rename(columns={"N": "Model Size"}).to_csv(path, index=False)
    fit = scaling.fit(path, mapping={"N": "Model Size"}, n_bootstrap=0, n_refine=4)
    assert fit.law_name == "chinchilla"
    assert fit.data_summary["source"] == str(path) and len(fit.data_summary["sha256"]) == 64
    assert fit.data_summary["ranges"]["N"]["distinct"] == 5


@pytest.mark.parametrize(
    "frame_change, kwargs, message",
    [
        (lambda d: d.drop(columns=["loss"]), {}, "missing column 'loss'"),
        (lambda d: d.assign(loss=d.loss.where(d.index != 3)), {}, "sweep.csv: .*column 'loss'"),
        (lambda d: d.assign(N=-d.N), {}, "must be positive"),
        (lambda d: d.head(4), {}, "4 rows but law chinchilla has 5 free parameters"),
        (lambda d: d.assign(N=1e9), {}, "column 'N' has 1 distinct value"),
        (lambda d: d, {"law": "chinchila"}, "unknown law 'chinchila'"),
        (lambda d: d, {"loss": "l1"}, "loss 'l1'"),
        (lambda d: d, {"fix": {"gamma": 1.0}}, "no parameter 'gamma'"),
        (lambda d: d, {"fix": {"A": -1.0}}, "positive scale constant"),
        (lambda d: d, {"tie": {"alpha": "alpha"}}, "tied to itself"),
        (lambda d: d, {"bounds": {"alpha": (1.0, 0.5)}}, "lower must be below upper"),
        (lambda d: d, {"ci": 1.5}, "ci 1.5"),
    ],
)
def test_bad_input_is_one_clear_scaling_error(frame_change, kwargs, message):
    df = frame_change(chinchilla_grid(n=3))
    law = kwargs.pop("law", "chinchilla")
    with pytest.raises(ScalingError, match=message) as info:
        LawFitter(law, n_bootstrap=0, n_refine=2, **kwargs).fit(df, source="sweep.csv")
    assert "\n" not in str(info.value)


def test_a_scale_constant_driven_to_zero_is_flagged():
    # Losses from a pure power law in N and D (E = 0): the floor E runs off towards 0 (log E -> -inf).
    df = chinchilla_grid(dict(BESIROGLU, E=1e-30), n=5)
    fit = LawFitter("chinchilla", n_bootstrap=0, n_refine=4).fit(df)
    assert fit.params["E"] < 1e-6
    assert "E" in fit.quality.at_bound
    assert any("E is driven to 0" in w for w in fit.quality.warnings)


def test_few_runs_to_resample_is_warned():
    """One WSD run per size carries several budgets: resampling 4 runs for 5 parameters must be flagged."""
    import pandas as pd

    import scaling

    rows = [
        dict(N=N, D=D, run_id=f"r{i}", loss=1.5 + 400 / N**0.35 + 300 / D**0.3)
        for i, N in enumerate([1e4, 3e4, 1e5, 3e5])
        for D in [1e6, 2e6, 4e6]
    ]
    df = pd.DataFrame(rows)
    by_run = scaling.fit(df, law="chinchilla", n_bootstrap=10)
    assert any("distinct 'run_id' values" in w for w in by_run.quality.warnings)
    by_row = scaling.fit(df, law="chinchilla", n_bootstrap=10, group=None)
    assert not any("distinct" in w for w in by_row.quality.warnings)


def test_as_many_free_parameters_as_distinct_points_is_warned():
    """ECE(N) = ECE_inf + a N^-b through 3 sizes (3 seeds each) matches any data: say the fit tests nothing."""
    rng = np.random.default_rng(0)
    rows = [
        dict(N=N, ece=0.01 + 2 * N**-0.5 * np.exp(rng.normal(0, 0.05)), run_id=f"{N}-{s}")
        for N in (1e4, 1e5, 1e6)
        for s in range(3)
    ]
    three = scaling.fit(pd.DataFrame(rows), law="calibration", n_bootstrap=0)
    assert any("3 distinct input points for 3 free parameters" in w for w in three.quality.warnings)
    four = pd.DataFrame(rows + [dict(N=3e6, ece=0.01 + 2 * 3e6**-0.5, run_id="x")])
    assert not any("distinct input" in w for w in scaling.fit(four, law="calibration", n_bootstrap=0).quality.warnings)
    # fixing a parameter leaves 2 free for 3 sizes: no warning
    fixed = scaling.fit(pd.DataFrame(rows), law="calibration", n_bootstrap=0, fix={"ECE_inf": 0.01})
    assert not any("distinct input" in w for w in fixed.quality.warnings)


@pytest.mark.parametrize("loss", ["huber", "huber_likelihood"])
def test_blocked_scoring_equals_unblocked_scoring(monkeypatch, loss):
    """Issue 13: evaluations are split into blocks of BLOCK_ELEMENTS (set, row) pairs; the split changes nothing."""
    import scaling.fitting.objective as objective

    df = chinchilla_grid(noise=0.02, seed=3, n=9)  # 81 rows
    space = ParamSpace(CHIN, None, None, None)
    obj = Objective(space, {"N": df.N.to_numpy(), "D": df.D.to_numpy()}, np.log(df.loss.to_numpy()),
                     loss=loss, delta=1e-3)
    grid = space.grid()[::7]  # 643 starts
    x = obj.start(space.theta_of(BESIROGLU) + 0.01)
    whole_values = obj.values(grid, block=len(grid))  # every start at every row in one evaluation
    whole_value, whole_grad = obj.value_and_grad(x)
    monkeypatch.setattr(objective, "BLOCK_ELEMENTS", 50)  # smaller than one row set: 1 start x 50 rows per block
    blocked_values = obj.values(grid)
    blocked_value, blocked_grad = obj.value_and_grad(x)
    finite = np.isfinite(whole_values)
    assert finite.sum() > 100 and np.array_equal(finite, np.isfinite(blocked_values))
    np.testing.assert_allclose(blocked_values[finite], whole_values[finite], rtol=1e-12)
    np.testing.assert_allclose(blocked_value, whole_value, rtol=1e-12)
    np.testing.assert_allclose(blocked_grad, whole_grad, rtol=1e-10, atol=1e-14 * np.abs(whole_grad).max())


def test_a_table_over_screen_rows_is_screened_on_a_subsample_and_polished_on_all(monkeypatch):
    import scaling.fitting.multistart as multistart_module

    df = chinchilla_grid(noise=0.01, seed=4, n=12)  # 144 rows
    full = LawFitter("chinchilla", n_bootstrap=0).fit(df)
    monkeypatch.setattr(multistart_module, "SCREEN_ROWS", 60)  # screen on 60 of the 144 rows
    sampled = LawFitter("chinchilla", n_bootstrap=0).fit(df)
    assert sampled.quality.converged
    # the polish on every row reaches the full-data optimum, not the subsample's
    assert sampled.quality.objective <= full.quality.objective * (1 + 1e-9)
    for k, v in full.params.items():
        assert sampled.params[k] == pytest.approx(v, rel=1e-4)


def test_other_local_optima_are_distinct_in_objective_not_only_in_theta():
    """Starts that slide along a flat direction (log E -> -inf once E -> 0) stop far apart in theta at one objective:
    one optimum, handed to the bootstrap once (it refits every resample from each alternative)."""
    rng = np.random.default_rng(0)
    N, D = np.meshgrid(np.geomspace(1e7, 1e9, 8), np.geomspace(2e8, 2e10, 10))
    N, D = N.ravel(), D.ravel()
    loss = CHIN.predict(BESIROGLU, N=N, D=D) * np.exp(0.02 * rng.standard_normal(N.size))
    space = ParamSpace(CHIN, None, None, None)
    obj = Objective(space, {"N": N, "D": D}, np.log(loss), loss="huber", delta=1e-3)
    best, _, others = multistart(obj, space.grid(), n_refine=32, screen=SCREEN_OPTIONS, polish=TIGHT_OPTIONS)
    values = sorted(obj.value(x) for x in others)
    assert values and values[0] > best.fun
    assert all(b - a > 1e-6 * a for a, b in zip(values, values[1:]))


def test_large_tables_bootstrap_m_out_of_n_matches_the_full_bootstrap(monkeypatch):
    # m-out-of-n (BOOTSTRAP_UNITS): resamples of m units refitted on their rows, deviations scaled by sqrt(m/n).
    # Its standard errors must match the full bootstrap's on the same table (here n = 6000 rows, m = 600).
    import scaling.fitting.draws as draws

    rng = np.random.default_rng(7)
    n = 6000
    N, D = np.exp(rng.uniform(np.log(1e6), np.log(1e9), n)), np.exp(rng.uniform(np.log(1e8), np.log(1e11), n))
    loss = (1.8 + 400 / N**0.34 + 410 / D**0.28) * np.exp(rng.normal(0, 0.02, n))
    df = pd.DataFrame({"N": N, "D": D, "loss": loss})
    full = LawFitter("chinchilla", n_bootstrap=40, group=None, seed=1).fit(df)
    monkeypatch.setattr(draws, "BOOTSTRAP_UNITS", 600)
    sub = LawFitter("chinchilla", n_bootstrap=40, group=None, seed=1).fit(df)
    assert sub.settings["bootstrap_units_per_resample"] == 600 and full.settings["bootstrap_units_per_resample"] is None
    for name in ("alpha", "beta"):
        ratio = sub.draws[name].std() / full.draws[name].std()
        assert 0.6 < ratio < 1.6, (name, ratio)
    assert sub.params == full.params  # the point fit does not change
    assert "m-out-of-n" in sub.summary()
