"""Calibration metrics, their finite-sample floor, and the ECE(N) law (LAWS.md 6.5)."""

from __future__ import annotations

import numpy as np
import pytest

from scaling.errors import ScalingError
from scaling.laws import get_law
from scaling.laws.calibration import (
    brier,
    calibration_floor,
    calibration_floor_bound,
    ece,
    rms_calibration_error,
)

LAW = get_law("calibration")


def _reference_ece(conf, correct, n_bins=10):
    # LAWS.md 6.3, written as a loop over bins
    b = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    return sum((b == m).mean() * abs(correct[b == m].mean() - conf[b == m].mean()) for m in range(n_bins) if (b == m).any())


def test_ece_matches_the_reference_definition():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, 5000)
    correct = (rng.random(5000) < conf**1.5).astype(float)
    for n_bins in (1, 10, 15):
        assert ece(conf, correct, n_bins) == pytest.approx(_reference_ece(conf, correct, n_bins), rel=1e-12)
    assert ece(np.array([1.0, 1.0]), np.array([1.0, 0.0])) == pytest.approx(0.5)  # conf 1.0 lands in the last bin


def test_calibrated_predictions_have_small_ece():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.05, 1, 200_000)
    correct = rng.random(conf.size) < conf
    assert ece(conf, correct) < 0.005
    assert ece(conf, correct, binning="mass") < 0.005


def test_overconfident_predictions():
    rng = np.random.default_rng(2)
    conf = rng.uniform(0.05, 1, 200_000)
    correct = rng.random(conf.size) < conf**2
    analytic = np.mean(conf - conf**2)  # E[conf - conf^2] over U(0.05, 1)
    assert ece(conf, correct) == pytest.approx(0.1740, abs=0.003)
    assert ece(conf, correct, 100) == pytest.approx(0.1740, abs=0.003)
    assert analytic == pytest.approx(0.1740, abs=0.002)
    # RMS calibration error is at least the ECE (Jensen) and Brier is worse than for calibrated outcomes
    assert rms_calibration_error(conf, correct) >= ece(conf, correct)
    calibrated = rng.random(conf.size) < conf
    assert brier(conf, correct) > brier(conf, calibrated)


@pytest.mark.parametrize("n, expected, tol", [(1_000, 0.032, 0.005), (10_000, 0.010, 0.002)])
def test_finite_sample_floor(n, expected, tol):
    rng = np.random.default_rng(3)
    measured = []
    for _ in range(200):
        conf = rng.uniform(0.05, 1, n)
        measured.append(ece(conf, rng.random(n) < conf))
    assert np.mean(measured) == pytest.approx(expected, abs=tol)
    # the analytic floor of one draw of confidences predicts the measured mean
    conf = rng.uniform(0.05, 1, n)
    assert calibration_floor(conf) == pytest.approx(np.mean(measured), rel=0.1)
    assert calibration_floor(conf, simulations=200, seed=4) == pytest.approx(calibration_floor(conf), rel=0.05)
    # and the n-only bound is an upper bound, within a factor 1.5
    bound = float(calibration_floor_bound(n))
    assert np.mean(measured) < bound < 1.5 * np.mean(measured)


def test_metrics_reject_bad_input():
    with pytest.raises(ScalingError, match="confidences must lie in"):
        ece([0.5, 1.2], [1, 0])
    with pytest.raises(ScalingError, match="equally many"):
        brier([0.5, 0.2], [1])
    with pytest.raises(ScalingError, match="binning"):
        ece([0.5], [1], binning="log")


def test_law_formula():
    p = {"ECE_inf": 0.01, "a": 2.0, "b": 0.5}
    assert float(LAW.predict(p, N=1e4)) == pytest.approx(0.01 + 2.0 / 100)
    assert LAW.output == "ece"
