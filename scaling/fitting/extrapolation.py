"""How far a forecast lies outside the data its fit saw: decades outside the fitted ranges and a Mahalanobis distance.

Two measures per forecast point, both in log10 input space (scaling laws are straight-ish lines there):

- ``extrap_decades``: the largest number of decades by which any input (N, D, ..., and the compute C = 6 N D when the
  law has N and D) lies outside the [min, max] range of the fitted table; 0 inside the box;
- ``extrap_distance``: the Mahalanobis distance sqrt((x - mu)^T S^+ (x - mu)) of log10 inputs from the fitted
  table's mean mu with covariance S (pseudo-inverse: an isoFLOP table has collinear log N and log D); it catches a
  point inside the box but off the data's diagonal, e.g. a tiny model trained on the largest token count.

``extrapolation`` labels the row: ``inside`` (in the box and within 3 of the mean), ``near`` (up to 1 decade out,
or in the box but off the data's support), ``far`` (more than 1 decade out; the row's ``warning`` is then
``extrapolating_far``), ``unknown`` (a fit without a data summary, such as a published law).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

FAR_DECADES = 1.0  # beyond this many decades outside the fitted range a forecast is labelled "far"
OFF_SUPPORT = 3.0  # Mahalanobis distance above which a point inside the box is labelled "near", not "inside"


def input_moments(df: pd.DataFrame, inputs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Mean and covariance of the log10 inputs of a fitted table, and the compute range (for the data summary)."""
    # log10 space needs positive inputs (formula laws may take zero or negative ones: those are left out)
    cols = [c for c in inputs if c in df.columns and bool((df[c].to_numpy(dtype=float) > 0).all())]
    logs = np.log10(df[cols].to_numpy(dtype=float)).reshape(len(df), len(cols))
    cov = np.atleast_2d(np.cov(logs, rowvar=False)) if len(df) > 1 else np.zeros((len(cols), len(cols)))
    out: dict[str, Any] = {"columns": cols, "mean": logs.mean(axis=0).tolist(), "cov": cov.tolist()}
    if {"N", "D"} <= set(cols):
        C = 6.0 * df["N"].to_numpy(float) * df["D"].to_numpy(float)
        out["C_range"] = [float(C.min()), float(C.max())]
    return out


def fitted_ranges(summary: Mapping[str, Any], columns: list[str]) -> dict[str, tuple[float, float]]:
    """{input: (min, max)} of a fit's data summary, plus ``C`` when the summary holds the compute range."""
    ranges = summary.get("ranges") or {}
    out = {c: (float(ranges[c]["min"]), float(ranges[c]["max"])) for c in columns if c in ranges}
    moments = summary.get("input_moments") or {}
    if moments.get("C_range"):
        out["C"] = tuple(float(v) for v in moments["C_range"])  # type: ignore[assignment]
    return out


def decades_outside(x: Mapping[str, np.ndarray], ranges: Mapping[str, tuple[float, float]]) -> np.ndarray:
    """Largest number of decades any input (and C = 6ND) lies outside its range; 0 inside."""
    n = len(next(iter(x.values())))
    values = dict(x)
    if "C" in ranges and {"N", "D"} <= set(x) and "C" not in x:
        values["C"] = 6.0 * np.asarray(x["N"], float) * np.asarray(x["D"], float)
    out = np.zeros(n)
    for col, (lo, hi) in ranges.items():
        if col not in values or not (lo > 0 and hi > 0):
            continue
        v = np.asarray(values[col], dtype=float)
        with np.errstate(all="ignore"):
            v = np.log10(np.where(v > 0, v, np.nan))
            far = np.fmax(v - np.log10(hi), np.log10(lo) - v)  # NaN (a non-positive input) counts as 0 here
        out = np.fmax(out, np.nan_to_num(far, nan=0.0))
    return np.maximum(out, 0.0)


def mahalanobis(x: Mapping[str, np.ndarray], moments: Mapping[str, Any]) -> np.ndarray:
    """Mahalanobis distance of log10 inputs from the fitted table's mean (pseudo-inverse covariance)."""
    cols = list(moments.get("columns") or [])
    n = len(next(iter(x.values())))
    if not cols or any(c not in x for c in cols):
        return np.full(n, np.nan)
    with np.errstate(all="ignore"):
        z = np.log10(np.column_stack([np.asarray(x[c], float) for c in cols])) - np.asarray(moments["mean"], float)
    precision = np.linalg.pinv(np.asarray(moments["cov"], float), rcond=1e-10)
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", z, precision, z), 0.0))


def describe(fit: Any, x: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Per forecast point: extrapolation (label), extrap_decades, extrap_distance, warning (code or "")."""
    n = len(next(iter(x.values())))
    summary = fit.data_summary or {}
    ranges = fitted_ranges(summary, list(fit.law.inputs))
    if not ranges:
        return pd.DataFrame({"extrapolation": ["unknown"] * n, "extrap_decades": np.full(n, np.nan),
                             "extrap_distance": np.full(n, np.nan), "warning": [""] * n})
    decades = decades_outside(x, ranges)
    distance = mahalanobis(x, summary.get("input_moments") or {})
    label = np.where(decades > FAR_DECADES, "far", np.where(decades > 0, "near", "inside"))
    off = (label == "inside") & np.isfinite(distance) & (distance > OFF_SUPPORT)
    label = np.where(off, "near", label)
    warning = np.where(label == "far", "extrapolating_far", "")
    return pd.DataFrame({"extrapolation": label, "extrap_decades": decades, "extrap_distance": distance,
                         "warning": warning})


def far_message(decades: float) -> str:
    return (f"extrapolating_far: a forecast lies {decades:.2g} decades outside the fitted range (N, D, C); "
            "its interval rests on the law's shape holding that far")


__all__ = ["FAR_DECADES", "decades_outside", "describe", "far_message", "fitted_ranges", "input_moments", "mahalanobis"]
