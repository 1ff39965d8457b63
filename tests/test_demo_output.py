"""How `scaling demo` prints its check and forecast (no training: a real fit on a small synthetic grid).

Regression: after forecasts gained confidence and prediction intervals (conf_*/pred_* columns), the demo printed
the raw columns, wrapped past reading, and a withheld leave-largest-out coverage as "nan%".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import scaling
from scaling.cli import _load_commands

_load_commands()  # every command module in its listed order: importing one first would reorder the CLI's commands
from scaling.cli.demo import coverage_text, forecast_rows  # noqa: E402
from scaling.demo import forecast_larger, leave_largest_out  # noqa: E402


def _grid(noise: float = 0.01, seed: int = 0) -> pd.DataFrame:
    """4 sizes x 3 budgets from Hoffmann et al.'s constants, with log-normal noise; one run per point."""
    rng = np.random.default_rng(seed)
    truth = scaling.load_fit("chinchilla")
    rows = []
    for N in (1e4, 3e4, 1e5, 3e5):
        for D in (5e5, 1e6, 2e6):
            loss = float(truth.predict(N=N, D=D)["point"].iloc[0]) * float(np.exp(rng.normal(0, noise)))
            rows.append({"N": N, "D": D, "loss": loss, "run_id": f"{N:g}-{D:g}"})
    return pd.DataFrame(rows)


def test_forecast_rows_read_like_scaling_forecast():
    data = _grid()
    fit = scaling.fit(data, law="chinchilla", n_bootstrap=20, group=None)
    rows = forecast_rows(forecast_larger(fit, data))
    assert {"confidence", "prediction", "extrapolation", "interval_status", "at", "point"} <= set(rows.columns)
    assert not {"conf_lower", "pred_upper", "extrap_distance", "warning"} & set(rows.columns)
    assert all(text == "withheld" or text.startswith("[") for text in rows["confidence"])
    assert rows["extrapolation"].str.contains("decades").all()  # 100x the largest size is outside the data


def test_coverage_text_says_why_instead_of_nan():
    withheld = {"coverage_95": float("nan"), "notes": "intervals withheld: bootstrap_failed_75%"}
    assert coverage_text(withheld) == "no intervals (intervals withheld: bootstrap_failed_75%)"
    assert coverage_text({"coverage_95": 2 / 3, "notes": ""}) == "67% of the held-out points"


def test_leave_largest_out_carries_the_backtest_notes():
    h = leave_largest_out(_grid(), n_bootstrap=20)
    assert "notes" in h and isinstance(h["notes"], str)
    assert "nan" not in coverage_text(h)
