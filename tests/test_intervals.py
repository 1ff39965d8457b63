"""Honest uncertainty: withheld intervals with coded reasons, structured warnings, the convergence verdict,
confidence vs prediction intervals, extrapolation labels and their rollout (conformal) calibration.

The 5-point chinchilla case uses five real runs of the Epoch digitisation of Hoffmann et al. (2022), one per size
quintile; the CLI cases run through :func:`scaling.cli.main`, the same entry point as the console script.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import scaling
from cli_helpers import assert_user_error, run
from scaling.fitting.diagnostics import FitWarning, as_warnings, interval_status
from scaling.fitting.result import load_fit
from scaling.fitting.optimise import convergence_verdict

EPOCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "chinchilla_epoch" / "svg_extracted_data.csv"
needs_epoch = pytest.mark.skipif(not EPOCH.exists(), reason=f"reference data not found at {EPOCH}")

TRUTH = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def epoch_table() -> pd.DataFrame:
    raw = pd.read_csv(EPOCH)
    return pd.DataFrame({"N": raw["Model Size"], "D": raw["Training FLOP"] / (6 * raw["Model Size"]), "loss": raw["loss"]})


def five_points(path: Path) -> Path:
    """One real run from each fifth of the model sizes: 5 distinct points for chinchilla's 5 parameters."""
    df = epoch_table().sort_values("N")
    sub = df.groupby(pd.qcut(df["N"], 5, labels=False)).head(1)
    sub.to_csv(path, index=False)
    return path


def synthetic(path: Path | None = None, noise: float = 0.01, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for N in np.geomspace(1e7, 1e9, 7):
        for D in np.geomspace(2e8, 2e10, 4):
            loss = TRUTH["E"] + TRUTH["A"] / N ** TRUTH["alpha"] + TRUTH["B"] / D ** TRUTH["beta"]
            rows.append({"N": N, "D": D, "loss": loss * np.exp(rng.normal(0, noise))})
    df = pd.DataFrame(rows)
    if path is not None:
        df.to_csv(path, index=False)
    return df


# ---------------------------------------------------------------------------------------------------------
# Withheld intervals


@needs_epoch
def test_five_point_chinchilla_prints_no_numeric_interval(tmp_path, capsys):
    csv = five_points(tmp_path / "five.csv")
    out_fit = tmp_path / "five.json"
    code, out, err = run(capsys, "fit", str(csv), "--law", "chinchilla", "--bootstrap", "40", "-o", str(out_fit),
                         "--format", "json")
    assert code == 0, err
    record = json.loads(out)
    assert record["interval_status"] == "no_uncertainty_information"
    assert all(p["lower"] is None and p["upper"] is None for p in record["params"].values())
    assert "no_uncertainty_information" in err

    code, out, err = run(capsys, "forecast", str(out_fit), "--N", "7e10", "--D", "1.4e12", "--format", "json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["point"] > 0
    for col in ("conf_lower", "conf_upper", "pred_lower", "pred_upper"):
        assert row[col] is None, col
    assert row["interval_status"] == "no_uncertainty_information"
    assert "no_uncertainty_information" in err

    code, out, err = run(capsys, "forecast", str(out_fit), "--N", "7e10", "--D", "1.4e12")
    assert code == 0, err
    assert "no_uncertainty_information" in out + err
    row_line = next(line for line in out.splitlines() if "7e+10" in line)
    assert row_line.count("withheld") == 2 and "[" not in row_line  # no bracketed numeric interval


@needs_epoch
def test_high_bootstrap_failure_withholds_intervals_with_its_share(tmp_path):
    fit = scaling.fit(five_points(tmp_path / "five.csv"), law="chinchilla", n_bootstrap=30)
    assert fit.quality.bootstrap_failed_fraction > 0.5
    # as if the points were many: the failure rate alone decides
    quality = dataclasses.replace(fit.quality, n_distinct_points=99,
                                  warnings=[w for w in fit.warnings if w.code != "interpolating_fit"])
    status = interval_status(quality, len(fit.draws))
    assert status == f"bootstrap_failed_{round(100 * fit.quality.bootstrap_failed_fraction)}%"


# ---------------------------------------------------------------------------------------------------------
# Structured warnings


def test_fit_file_round_trip_keeps_structured_warnings(tmp_path):
    df = synthetic()
    fit = scaling.fit(df.head(5), law="chinchilla", n_bootstrap=10)  # 5 points, 5 parameters
    codes = [w.code for w in fit.warnings]
    assert "interpolating_fit" in codes
    path = fit.save(tmp_path / "f.json")
    stored = json.loads(path.read_text())["quality"]["warnings"]
    assert all(set(w) == {"code", "severity", "message"} for w in stored)
    loaded = load_fit(path)
    assert [w.to_dict() for w in loaded.warnings] == [w.to_dict() for w in fit.warnings]
    assert loaded.interval_status == fit.interval_status == "no_uncertainty_information"


def test_old_fit_file_with_plain_string_warnings_loads_and_is_classified(tmp_path):
    fit = scaling.fit(synthetic(), law="chinchilla", n_bootstrap=0)
    d = fit.to_dict()
    d["quality"]["warnings"] = ["alpha is at a bound (alpha = 2); the optimum may lie outside it", "something new"]
    d["quality"].pop("convergence")
    path = tmp_path / "old.json"
    path.write_text(json.dumps(d))
    loaded = load_fit(path)
    assert [w.code for w in loaded.warnings] == ["param_at_bound", "unclassified"]
    assert loaded.convergence == ("converged" if d["quality"]["converged"] else "not_converged")
    assert "at a bound" in loaded.warnings[0]  # a warning still answers `in` like the string it was


def test_fit_warning_validates_severity():
    with pytest.raises(ValueError):
        FitWarning("x", "y", "fatal")  # type: ignore[arg-type]
    assert as_warnings([{"code": "c", "message": "m", "severity": "info"}])[0].severity == "info"


# ---------------------------------------------------------------------------------------------------------
# Convergence verdict


def test_abnormal_stop_with_large_gradient_is_not_called_converged():
    check = {"newton_step": 3e-2, "relative_gradient": 9e-4, "restart_gain": 0.0}
    status, message = convergence_verdict(check, 2, "ABNORMAL_TERMINATION_IN_LNSRCH")
    assert status == "stalled"
    assert "900x" in message and "ABNORMAL" in message


def test_abnormal_stop_confirmed_by_newton_step_is_converged_and_says_why():
    check = {"newton_step": 1e-8, "relative_gradient": 3e-4, "restart_gain": 0.0}
    status, message = convergence_verdict(check, 2, "ABNORMAL_TERMINATION_IN_LNSRCH")
    assert status == "converged"
    assert "Newton step confirms" in message and "round-off" in message


def test_iteration_limit_is_not_converged():
    check = {"newton_step": 1e-8, "relative_gradient": 1e-9, "restart_gain": 0.0}
    assert convergence_verdict(check, 1, "STOP: TOTAL NO. of ITERATIONS REACHED LIMIT")[0] == "not_converged"


def test_converged_flag_matches_status_on_a_real_fit():
    fit = scaling.fit(synthetic(), law="chinchilla", n_bootstrap=0)
    assert fit.quality.convergence in ("converged", "stalled", "not_converged")
    assert fit.quality.converged == (fit.quality.convergence == "converged")
    assert fit.quality.message.startswith(fit.quality.convergence)


# ---------------------------------------------------------------------------------------------------------
# Confidence vs prediction intervals, extrapolation, rollout calibration


@pytest.fixture(scope="module")
def noisy_fit():
    return scaling.fit(synthetic(noise=0.01), law="chinchilla", n_bootstrap=30)


def test_far_extrapolation_is_said_through_the_cli(tmp_path, capsys):
    synthetic(tmp_path / "syn.csv")
    out_fit = tmp_path / "syn.json"
    code, _, err = run(capsys, "fit", str(tmp_path / "syn.csv"), "--law", "chinchilla", "-b", "20", "-o", str(out_fit))
    assert code == 0, err
    code, out, err = run(capsys, "forecast", str(out_fit), "--points", "N=1e8,D=2e9", "--points", "N=1e12,D=1e14",
                         "-f", "json")
    assert code == 0, err
    near, far = json.loads(out)
    assert near["extrapolation"] == "inside" and near["extrap_decades"] == 0 and near["warning"] == ""
    assert far["extrapolation"] == "far" and far["extrap_decades"] > 3 and far["warning"] == "extrapolating_far"
    assert far["extrap_distance"] > near["extrap_distance"]
    assert "extrapolating_far" in err and "decades outside the fitted range" in err
    code, out, err = run(capsys, "forecast", str(out_fit), "--N", "1e12", "--D", "1e14")
    assert code == 0 and "far (" in out and "extrapolating_far" in err


def test_prediction_intervals_are_wider_than_confidence_intervals(noisy_fit):
    out = noisy_fit.predict(N=[1e8, 1e9, 1e11], D=[2e9, 2e10, 2e12])
    assert (out["pred_lower"] < out["conf_lower"]).all() and (out["conf_upper"] < out["pred_upper"]).all()
    assert (out["conf_lower"] < out["point"]).all() and (out["point"] < out["conf_upper"]).all()
    # the calibration term grows with the distance extrapolated: relative width grows from inside to far
    rel = (out["pred_upper"] - out["pred_lower"]) / out["point"]
    assert rel.iloc[2] > 2 * rel.iloc[0]


def test_rollout_calibration_is_recorded_and_widens_far_forecasts(noisy_fit):
    cal = noisy_fit.quality.calibration
    # 7 sizes: cuts predict sizes 7, 6 and 5, each fitted on at least half of the sizes (4 cuts allowed)
    assert cal["axis"] == "N" and [c["n_train"] for c in cal["cuts"]] == [24, 20, 16]
    assert len(cal["abs_error"]) == len(cal["decades"]) == sum(c["n_test"] for c in cal["cuts"])
    assert all(d > 0 for d in cal["decades"])  # each cut predicts sizes above its training range
    plain = copy.copy(noisy_fit)
    plain.quality = dataclasses.replace(noisy_fit.quality, calibration=None)
    far = {"N": 1e11, "D": 2e12}
    calibrated, uncalibrated = noisy_fit.predict(**far).iloc[0], plain.predict(**far).iloc[0]
    assert uncalibrated["interval_status"] == "uncalibrated"
    assert calibrated["interval_status"] in ("ok", "small_calibration")
    assert calibrated["pred_upper"] - calibrated["pred_lower"] > uncalibrated["pred_upper"] - uncalibrated["pred_lower"]


def test_calibrate_option_sets_the_rollout_cuts_and_0_turns_the_widening_off(tmp_path, capsys):
    """``scaling fit --calibrate K``: K rollout cuts, recorded in the fit file; 0 leaves the prediction interval
    bootstrap plus noise (the default fit's interval without its calibration), and the forecast says why."""
    synthetic(tmp_path / "syn.csv")
    fits = {}
    for k in (None, 0, 2):
        path = tmp_path / f"syn-{k}.json"
        extra = [] if k is None else ["--calibrate", str(k)]
        code, _, err = run(capsys, "fit", str(tmp_path / "syn.csv"), "--law", "chinchilla", "-b", "20", *extra,
                           "-o", str(path))
        assert code == 0, err
        fits[k] = path
    default, off, two = (load_fit(fits[k]) for k in (None, 0, 2))
    assert (default.settings["calibrate"], off.settings["calibrate"], two.settings["calibrate"]) == (4, 0, 2)
    assert off.quality.calibration is None
    assert len(two.quality.calibration["cuts"]) == 2 < len(default.quality.calibration["cuts"])
    code, out, err = run(capsys, "forecast", str(fits[0]), "--N", "1e11", "--D", "2e12", "-f", "json")
    assert code == 0, err
    row = json.loads(out)[0]
    assert row["interval_status"] == "uncalibrated" and "without a rollout backtest (calibrate 0)" in err
    plain = copy.copy(default)  # the same fit (same draws, same seed) without its rollout calibration
    plain.quality = dataclasses.replace(default.quality, calibration=None)
    expected, calibrated = plain.predict(N=1e11, D=2e12).iloc[0], default.predict(N=1e11, D=2e12).iloc[0]
    assert np.isclose(row["pred_lower"], expected["pred_lower"])
    assert np.isclose(row["pred_upper"], expected["pred_upper"])
    assert calibrated["pred_upper"] - calibrated["pred_lower"] > row["pred_upper"] - row["pred_lower"]
    for bad, fragment in (("-1", "--calibrate -1: must be a whole number >= 0"), ("x", "'--calibrate'")):
        code, out, err = run(capsys, "fit", str(tmp_path / "syn.csv"), "--calibrate", bad,
                             "-o", str(tmp_path / "b.json"))
        assert_user_error(code, out, err, fragment)
    assert not (tmp_path / "b.json").exists()


def test_optimal_carries_the_prediction_interval_of_the_loss(noisy_fit):
    row = noisy_fit.optimal([1e19, 1e23]).iloc[1]
    assert row["loss_pred_lower"] < row["loss_conf_lower"] < row["loss"] < row["loss_conf_upper"] < row["loss_pred_upper"]
    assert row["extrapolation"] == "far" and row["warning"] == "extrapolating_far"


def test_service_forecast_names_both_intervals_and_structured_warnings(tmp_path):
    from fastapi.testclient import TestClient

    from scaling.serve.app import create_app

    five = scaling.fit(synthetic().head(5), law="chinchilla", n_bootstrap=10)
    five.save(tmp_path / "five.json")
    scaling.fit(synthetic(), law="chinchilla", n_bootstrap=20).save(tmp_path / "ok.json")
    client = TestClient(create_app(tmp_path))
    body = client.post("/fits/ok/forecast", json={"inputs": {"N": 1e12, "D": 1e14}}).json()
    (p,) = body["predictions"]
    assert p["pred_lower"] < p["conf_lower"] < p["point"] < p["conf_upper"] < p["pred_upper"]
    assert p["extrapolation"]["label"] == "far"
    assert [w["code"] for w in p["warnings"]] == ["extrapolating_far"]
    body = client.post("/fits/five/forecast", json={"inputs": {"N": 1e8, "D": 1e9}}).json()
    (p,) = body["predictions"]
    assert p["interval_status"] == "no_uncertainty_information"
    assert p["conf_lower"] is None and p["pred_upper"] is None
    assert "interval_withheld" in [w["code"] for w in p["warnings"]]
    assert "interpolating_fit" in [w["code"] for w in body["fit_warnings"]]
    listed = {f["name"]: f for f in client.get("/fits").json()["fits"]}
    assert listed["five"]["interval_status"] == "no_uncertainty_information"


def test_report_says_why_intervals_are_withheld(tmp_path):
    from scaling.report.html import build_report

    table = synthetic()
    five = scaling.fit(table.head(5), law="chinchilla", n_bootstrap=10)
    ok = scaling.fit(table, law="chinchilla", n_bootstrap=10)
    html = build_report(table, [("five", five), ("ok", ok)], out_dir=tmp_path / "r", run_backtest=False).read_text()
    assert "no intervals: no_uncertainty_information" in html
    assert "interpolating_fit (error)" in html
    assert "prediction interval" in html and "confidence band" in html
