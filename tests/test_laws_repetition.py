"""Hernandez et al. 2022 repeated-data analysis: N_eff inversion, band arithmetic, region finder (R1-R3 in
docs/laws.md, 'Acceptance tests')."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from scaling.errors import ScalingError
from scaling.laws import get_law
from scaling.laws.repetition import (
    PUBLISHED_BOUNDARIES,
    effective_params,
    poor_performance_region,
    power_boundary,
    size_multiplier,
)
from scaling.analysis.repetition import analyze_repetition

LAW = get_law("repetition")
KAPLAN_BASELINE = {"L_inf": 0.0, "N_c": 8.8e13, "a_N": 0.076}


def test_effective_params_inverts_the_baseline():
    L = float(LAW.predict(KAPLAN_BASELINE, N=4e8))
    assert float(effective_params(L, **KAPLAN_BASELINE)) == pytest.approx(4e8, rel=1e-9)
    assert float(size_multiplier(L, 8e8, **KAPLAN_BASELINE)) == pytest.approx(0.5, rel=1e-9)
    # with an irreducible term too
    p = {"L_inf": 1.7, "N_c": 3e6, "a_N": 0.3}
    N = np.logspace(4, 7, 7)
    np.testing.assert_allclose(effective_params(LAW.predict(p, N=N), **p), N, rtol=1e-9)
    assert np.isinf(effective_params(1.7, **p))  # at or below L_inf no finite size reaches it


def test_published_band_at_8e8():
    left = float(power_boundary(8e8, **PUBLISHED_BOUNDARIES["left"]))
    right = float(power_boundary(8e8, **PUBLISHED_BOUNDARIES["right"]))
    assert left == pytest.approx(43.4, abs=0.5)
    assert right == pytest.approx(1803, abs=5)
    assert left < 100 < right  # 0.1% of the data repeated 100 times sits inside the region


def _gaussian_bump(E):
    return 0.5 * np.exp(-((np.log(E) - math.log(100)) ** 2) / 2)


def test_region_finder_interpolates_the_crossing():
    E = np.logspace(0, 4, 400)
    r = poor_performance_region(E, _gaussian_bump(E))
    exact = (100 * math.exp(-math.sqrt(2 * math.log(2))), 100 * math.exp(math.sqrt(2 * math.log(2))))
    assert exact == pytest.approx((30.81, 324.60), abs=0.01)
    assert r.left == pytest.approx(exact[0], rel=2e-3)
    assert r.right == pytest.approx(exact[1], rel=2e-3)
    assert not (r.left_open or r.right_open)
    # the nearest grid points (no interpolation) give R3's looser reference values
    inside = E[_gaussian_bump(E) >= 0.25]
    assert (inside[0], inside[-1]) == pytest.approx((31.17, 320.82), rel=1.5e-2)


def test_region_finder_on_a_coarse_sweep_and_open_edges():
    E = np.array([2.0, 4, 10, 30, 100, 300, 1000])
    r = poor_performance_region(E, _gaussian_bump(E))
    assert r.peak_E == 100
    assert 10 < r.left < 30 * 1.5 and 300 * 0.7 < r.right < 1000
    # degradation still high at the largest repeat count: the right edge is only a bound
    r = poor_performance_region(E, np.array([0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.35]))
    assert r.right_open and r.right == 1000 and not r.left_open
    # unsorted input is sorted first
    shuffled = np.array([3, 0, 6, 1, 5, 2, 4])
    r2 = poor_performance_region(E[shuffled], _gaussian_bump(E)[shuffled])
    assert (r2.left, r2.right) == pytest.approx(
        (poor_performance_region(E, _gaussian_bump(E)).left, poor_performance_region(E, _gaussian_bump(E)).right)
    )


def test_region_finder_rejects_bad_input():
    with pytest.raises(ScalingError, match="no repeat count degrades"):
        poor_performance_region([1, 10, 100], [0.0, -0.1, 0.0])
    with pytest.raises(ScalingError, match="distinct"):
        poor_performance_region([1, 10, 10], [0.1, 0.2, 0.3])
    with pytest.raises(ScalingError, match="at least 2"):
        poor_performance_region([1], [0.1])


# ---------------------------------------------------------------------------------------------------------
# The whole analysis on a synthetic results table with the published region edges built in


BASE = {"L_inf": 1.6, "N_c": 2e7, "a_N": 0.3}
SIZES = [1e7, 3e7, 1e8, 3e8, 8e8]
COUNTS = np.logspace(0.3, 5.5, 40)


def _lost(N, E):
    """A degradation bump in ln E whose >=50% band is exactly the published region at every N."""
    left = power_boundary(N, **PUBLISHED_BOUNDARIES["left"])
    right = power_boundary(N, **PUBLISHED_BOUNDARIES["right"])
    centre, half = (math.log(left) + math.log(right)) / 2, (math.log(right) - math.log(left)) / 2
    s = half / math.sqrt(2 * math.log(2))
    return 0.45 * np.exp(-((np.log(E) - centre) ** 2) / (2 * s**2))


def _table():
    rows = [
        {
            "N": n,
            "D": 1e8,
            "loss": float(LAW.predict(BASE, N=n)),
            "repeat_fraction": 0.0,
            "repeat_count": 1,
            "run_id": f"u{n:g}",
        }
        for n in SIZES
    ]
    for n in SIZES:
        for E in COUNTS:
            N_eff = n * (1 - _lost(n, E))
            rows.append(
                {
                    "N": n,
                    "D": 1e8,
                    "loss": float(LAW.predict(BASE, N=N_eff)),
                    "repeat_fraction": 0.1,
                    "repeat_count": E,
                    "run_id": f"r{n:g}-{E:g}",
                }
            )
    return pd.DataFrame(rows)


def test_analysis_recovers_the_published_edges():
    a = analyze_repetition(_table(), n_bootstrap=0)
    assert a.baseline.params["a_N"] == pytest.approx(0.3, rel=1e-4)
    np.testing.assert_allclose(a.runs["lost"], [_lost(r.N, r.repeat_count) for r in a.runs.itertuples()], atol=1e-6)
    assert len(a.regions) == len(SIZES) and not a.regions[["left_open", "right_open"]].any().any()
    left, right = a.boundaries[(0.1, "left")].params, a.boundaries[(0.1, "right")].params
    assert left["alpha"] == pytest.approx(-0.56, abs=0.01)
    assert right["alpha"] == pytest.approx(-0.50, abs=0.01)
    assert left["k"] == pytest.approx(4.2e6, rel=0.15)
    assert right["k"] == pytest.approx(5.1e7, rel=0.15)
    assert "f = 0.1" in a.summary()


def test_analysis_bad_tables():
    table = _table()
    with pytest.raises(ScalingError, match="one: select it"):
        analyze_repetition(table.assign(D=np.where(np.arange(len(table)) % 2, 1e8, 2e8)), n_bootstrap=0)
    with pytest.raises(ScalingError, match="3 or more sizes"):
        analyze_repetition(table[(table["repeat_fraction"] > 0) | (table["N"] < 2e7)], n_bootstrap=0)
    with pytest.raises(ScalingError, match="no runs with repeated data"):
        analyze_repetition(table[table["repeat_fraction"] == 0], n_bootstrap=0)
    with pytest.raises(ScalingError, match="repeat_fraction"):
        analyze_repetition(table.drop(columns=["repeat_count"]), n_bootstrap=0)


def test_effective_size_intervals_from_the_baseline_bootstrap():
    table = _table()
    noise = np.exp(0.002 * np.random.default_rng(0).standard_normal(len(table)))
    a = analyze_repetition(table.assign(loss=table["loss"] * noise), baseline_fix={"L_inf": 1.6}, n_bootstrap=30)
    ok = a.runs.dropna(subset=["N_eff_lower"])
    assert len(ok) == len(a.runs)
    assert ((ok["N_eff_lower"] <= ok["N_eff"]) & (ok["N_eff"] <= ok["N_eff_upper"])).all()
    assert a.baseline.params["L_inf"] == 1.6 and "a_N" in a.baseline.intervals


def test_interpolated_effective_size_checks_the_law_inversion():
    """N_eff_interp reads N off the measured unique-data runs: equal to N_eff on an exact baseline (up to the
    interpolant), NaN outside their losses, and unaffected by a baseline law that misfits."""
    table = _table()
    a = analyze_repetition(table, n_bootstrap=0)
    inside = a.runs.dropna(subset=["N_eff_interp"])
    assert len(inside) > len(a.runs) // 2
    assert np.allclose(inside["N_eff_interp"], inside["N_eff"], rtol=0.05)
    below = a.runs["loss"] > table[table["repeat_fraction"] == 0]["loss"].max()
    assert a.runs.loc[below, "N_eff_interp"].isna().all()
    # a pure power-law baseline (L_inf = 0) misfits these saturating points; the interpolation does not move
    misfit = analyze_repetition(table, baseline_fix={"L_inf": 0.0}, n_bootstrap=0)
    assert np.allclose(misfit.runs["N_eff_interp"], a.runs["N_eff_interp"], equal_nan=True)
    assert not np.allclose(misfit.runs["N_eff"], a.runs["N_eff"], rtol=0.05)


def test_amount_at_loss_is_monotone_and_refuses_noise():
    from scaling.analysis.interpolate import amount_at_loss

    pts = pd.Series([3.0, 2.5, 2.0], index=[1e4, 1e5, 1e6])
    assert amount_at_loss(pts, 2.5) == pytest.approx(1e5)
    assert 1e5 < amount_at_loss(pts, 2.25) < 1e6
    assert np.isnan(amount_at_loss(pts, 1.9)) and np.isnan(amount_at_loss(pts, 3.1))
    assert np.isnan(amount_at_loss(pd.Series([3.0, 3.2, 2.0], index=[1e4, 1e5, 1e6]), 2.5))  # not monotone
    assert amount_at_loss(pd.Series([3.1, 2.9, 2.0], index=[1e4, 1e4, 1e6]), 2.5) == pytest.approx(1e5)  # mean at 1e4
