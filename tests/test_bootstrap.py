"""The bootstrap helpers (scaling.fitting.bootstrap): one NaN policy, failures counted, draws fixed by the seed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scaling.fitting.bootstrap import BootstrapRun, percentile_interval, resample_units, run_bootstrap


def test_interval_of_a_sample_is_two_floats_at_the_equal_tailed_quantiles():
    lo, hi = percentile_interval(np.arange(101.0), 0.9)
    assert isinstance(lo, float) and isinstance(hi, float)
    assert (lo, hi) == pytest.approx((5.0, 95.0))
    assert percentile_interval([1.0, 2.0, 3.0], 0.95) == pytest.approx(tuple(np.quantile([1, 2, 3], [0.025, 0.975])))


def test_non_finite_draws_are_ignored():
    clean = percentile_interval(np.arange(10.0), 0.8)
    assert percentile_interval([*range(10), np.nan, np.inf, -np.inf], 0.8) == pytest.approx(clean)


def test_no_finite_draw_gives_nan():
    for draws in ([], [np.nan, np.inf]):
        lo, hi = percentile_interval(draws, 0.95)
        assert math.isnan(lo) and math.isnan(hi)


def test_arrays_give_one_bound_per_point_along_axis():
    draws = np.column_stack([np.arange(11.0), np.full(11, np.nan), np.r_[np.arange(10.0), np.inf]])
    lo, hi = percentile_interval(draws, 0.8, axis=0)
    assert lo.shape == hi.shape == (3,)
    assert lo[0] == pytest.approx(1.0) and hi[0] == pytest.approx(9.0)
    assert math.isnan(lo[1]) and math.isnan(hi[1])
    assert (lo[2], hi[2]) == pytest.approx(percentile_interval(np.arange(10.0), 0.8))
    lo_t, hi_t = percentile_interval(draws.T, 0.8, axis=1)
    np.testing.assert_array_equal(lo_t, lo)
    np.testing.assert_array_equal(hi_t, hi)
    empty_lo, empty_hi = percentile_interval(np.empty((0, 4)), 0.95)
    assert empty_lo.shape == (4,) and np.isnan(empty_lo).all() and np.isnan(empty_hi).all()


def test_failed_resamples_are_counted_not_kept():
    run = run_bootstrap(lambda rng, i: None if i % 4 == 0 else i, 10, seed=0)
    assert isinstance(run, BootstrapRun)
    assert run.draws == [1, 2, 3, 5, 6, 7, 9]
    assert (run.n_resamples, run.n_failed) == (10, 3)
    assert run.failed_fraction == pytest.approx(0.3)
    assert run_bootstrap(lambda rng, i: i, 0, seed=0).failed_fraction == 0.0


def test_exceptions_propagate():
    def one(rng, i):
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        run_bootstrap(one, 3, seed=0)


def test_same_seed_same_draws_and_the_plain_generator_sequence():
    def one(rng, i):
        return resample_units(rng, 7)

    a, b, c = (run_bootstrap(one, 5, seed=s).draws for s in (3, 3, 4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    rng = np.random.default_rng(3)  # the loop is the plain generator's sequence: seeds keep their draws
    assert all(np.array_equal(x, rng.integers(0, 7, 7)) for x in a)


def test_resample_units_m_out_of_n_and_within_strata():
    rng = np.random.default_rng(0)
    assert resample_units(rng, 100, size=10).shape == (10,)
    strata = [np.array([0, 1, 2]), np.array([5, 9])]
    pick = resample_units(rng, 10, strata=strata)
    assert pick.shape == (5,)
    assert set(pick[:3]) <= {0, 1, 2} and set(pick[3:]) <= {5, 9}
    same = np.random.default_rng(7)
    other = np.random.default_rng(7)
    np.testing.assert_array_equal(resample_units(same, 10, strata=strata),
                                  np.concatenate([other.choice(s, s.size) for s in strata]))
