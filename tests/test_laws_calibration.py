"""Calibration metrics, their finite-sample floor, and the ECE(N) law (E1-E4 in docs/laws.md,
'Acceptance tests')."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from scaling.errors import ScalingError
from scaling.fitting.estimate import LawFitter
from scaling.laws import get_law
from scaling.laws.calibration import (
    brier,
    calibration_floor,
    calibration_floor_bound,
    ece,
    floor_table,
    rms_calibration_error,
)
from scaling.results import read_results

LAW = get_law("calibration")


def _reference_ece(conf, correct, n_bins=10):
    # the ECE of Kadavath et al. 2022 (equal-width bins), written as a loop over bins
    b = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    return sum(
        (b == m).mean() * abs(correct[b == m].mean() - conf[b == m].mean()) for m in range(n_bins) if (b == m).any()
    )


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


# ---------------------------------------------------------------------------------------------------------
# ECE(N) fit (acceptance test E3) and the floor reported beside it


SIZES = np.array([1e4, 3e4, 1e5, 3e5, 1e6, 3e6, 5e6])
TRUTH = {"ECE_inf": 0.01, "a": 2.0, "b": 0.5}


def _b_errors(seeds: range, n_refine: int) -> float:
    clean = LAW.predict(TRUTH, N=SIZES)
    errors = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for seed in seeds:
            ece_values = clean * np.exp(0.05 * np.random.default_rng(seed).standard_normal(SIZES.size))
            fit = LawFitter(LAW, loss="least_squares", n_bootstrap=0, n_refine=n_refine).fit(
                pd.DataFrame({"N": SIZES, "ece": ece_values})
            )
            errors.append(abs(fit.params["b"] - 0.5))
    return float(np.quantile(errors, 0.9))


def test_noiseless_fit_is_exact():
    fit = LawFitter(LAW, loss="least_squares", n_bootstrap=0).fit(
        pd.DataFrame({"N": SIZES, "ece": LAW.predict(TRUTH, N=SIZES)})
    )
    assert fit.params["b"] == pytest.approx(0.5, abs=1e-6)
    assert fit.params["ECE_inf"] == pytest.approx(0.01, abs=1e-8)


def test_fit_with_5_percent_noise():
    # p90 |db| <= 0.15 (measured 0.13 over these 100 seeds, 0.12 over 200; refining only the best grid start
    # gives the same optima here as refining 8, at a quarter of the time)
    assert _b_errors(range(100), n_refine=1) <= 0.15


@pytest.mark.slow
def test_fit_with_5_percent_noise_full_seeds():
    assert _b_errors(range(200), n_refine=8) <= 0.15


def test_floor_table_from_counts_and_measured_floors():
    df = pd.DataFrame({"N": [1e4, 1e5, 1e6], "ece": [0.05, 0.012, 0.004], "ece_count": [1e4, 1e4, 1e4], "ece_bins": 10})
    t = floor_table(df)
    assert t["floor"].iloc[0] == pytest.approx(np.sqrt(10 / (2 * np.pi * 1e4)))
    assert list(t["informative"]) == [True, False, False]
    assert (t["floor_kind"] == "bound").all()
    t = floor_table(df.assign(ece_floor=[0.01, 0.01, 0.001]))
    assert list(t["informative"]) == [True, False, True] and (t["floor_kind"] == "measured").all()
    with pytest.raises(ScalingError, match="number of scored predictions"):
        floor_table(df.drop(columns=["ece_count"]))


def test_ece_outside_0_1_is_a_one_line_error(tmp_path):
    path = tmp_path / "results.csv"
    pd.DataFrame({"N": [1e4, 1e5, 1e6], "ece": [0.05, 1.2, 0.01]}).to_csv(path, index=False)
    with pytest.raises(ScalingError, match=r"line 3.*must lie in \[0, 1\]"):
        read_results(path, require=["N", "ece"])
    with pytest.raises(ScalingError, match=r"must lie in \[0, 1\]"):
        LawFitter(LAW, n_bootstrap=0).fit(read_results(path))


def test_cli_rejects_ece_outside_0_1(tmp_path, capsys, monkeypatch):
    from scaling.cli import main

    monkeypatch.chdir(tmp_path)
    pd.DataFrame({"N": [1e4, 1e5, 1e6, 1e7], "ece": [0.05, 0.02, -0.01, 0.01]}).to_csv("results.csv", index=False)
    with pytest.raises(SystemExit) as exc:
        main(["fit", "results.csv", "--law", "calibration", "--bootstrap", "0"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2
    assert err.startswith("error: ") and "\n" not in err and "line 4" in err and "[0, 1]" in err
    assert not (tmp_path / "fits").exists()  # nothing written on failure
