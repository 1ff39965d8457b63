"""How forecast rows print for people (``scaling forecast``, ``optimal``, the demo): intervals as ``[lower, upper]``
text, the extrapolation label with its distance, the caption saying what the intervals mean, and the notes on
stderr when intervals are withheld or a point extrapolates far. JSON and CSV keep every column."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from scaling.cli.output import note, warn
from scaling.values import format_number
from scaling.fitting.diagnostics import describe_status
from scaling.fitting.extrapolation import far_message

if TYPE_CHECKING:  # pragma: no cover
    from scaling.fitting.result import Fit


INTERVAL_COLUMNS = ("conf_lower", "conf_upper", "pred_lower", "pred_upper")


def interval_text(table: pd.DataFrame) -> pd.DataFrame:
    """Forecast rows for people: ``confidence`` and ``prediction`` as ``[lower, upper]`` (``withheld`` when null),
    and the extrapolation as ``far (3.7 decades)``."""
    out = table.drop(columns=[*INTERVAL_COLUMNS, "extrap_decades", "extrap_distance", "warning"])
    for kind, lo, hi in (("confidence", "conf_lower", "conf_upper"), ("prediction", "pred_lower", "pred_upper")):
        out[kind] = [
            "withheld" if not (np.isfinite(a) and np.isfinite(b)) else f"[{format_number(a)}, {format_number(b)}]"
            for a, b in zip(table[lo].astype(float), table[hi].astype(float))
        ]
    out = out.drop(columns=["extrapolation", "interval_status"])
    out["extrapolation"] = extrapolation_text(table)
    out["interval_status"] = table["interval_status"].to_numpy()
    return out


def extrapolation_text(table: pd.DataFrame) -> list[str]:
    """``inside``, ``near (0.64 decades)``, ``far (1.8 decades)``: the label with its distance."""
    return [
        label if label in ("inside", "unknown") else f"{label} ({d:.2g} decades)"
        for label, d in zip(table["extrapolation"], table["extrap_decades"].astype(float))
    ]


def note_intervals(table: pd.DataFrame, result: Fit) -> None:
    """On stderr: why intervals are withheld or limited, and a warning when a point extrapolates far."""
    statuses = [s for s in pd.unique(table["interval_status"]) if s != "ok"]
    for status in statuses:
        if status == "no_bootstrap_draws":
            note("no intervals: this fit carries no bootstrap draws")
        elif status == "small_calibration":
            note("small_calibration: the rollout backtest has too few points for this level; the prediction "
                 "interval uses its largest error (below the conformal guarantee)")
        elif status == "uncalibrated":
            why = ("the fit was made without a rollout backtest (calibrate 0)" if result.settings.get("calibrate") == 0
                   else "too few sizes for a rollout backtest")
            note(f"uncalibrated: {why}; the prediction interval is bootstrap plus residual noise only and does not "
                 "cover misspecification")
        else:
            warn(f"no intervals: {describe_status(str(status))}")
    far = table["warning"] == "extrapolating_far"
    if far.any():
        warn(far_message(float(table.loc[far, "extrap_decades"].max())))


def fit_label(name: str, result: Fit) -> str:
    return name if name == result.law_name else f"{name} ({result.law_name})"


def ci_caption(result: Fit, ci: float | None) -> str | None:
    if result.interval_status is not None:
        return None
    level = f"{(ci if ci is not None else result.ci):.0%}"
    return (f"{level} intervals: confidence = where the mean law lies ({len(result.draws)} bootstrap draws); "
            f"prediction = where one new run lands (plus residual noise, widened by the fit's rollout backtest "
            f"with the distance extrapolated): plan on the prediction interval")
