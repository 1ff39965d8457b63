"""The compute-optimal frontier every approach estimates, and the steps the approaches share.

Hoffmann et al. 2022 (arXiv:2203.15556, Section 3) summarise each approach by the same two lines,
``ln N_opt = ln k_N + a ln C`` and ``ln D_opt = ln k_D + b ln C`` (C = 6 N D FLOPs). :class:`Allocation` holds one
such fit with its bootstrap draws and answers N_opt, D_opt at a budget; the functions below are the steps the
approaches (:mod:`~scaling.analysis.envelope`, :mod:`~scaling.analysis.isoflop`,
:mod:`~scaling.analysis.parametric`) share: checking the table, the regression on ln C, and what the draws say.
Resampling and intervals are :mod:`scaling.fitting.bootstrap`'s, as everywhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from scaling.errors import ScalingError
from scaling.fitting.bootstrap import percentile_interval

if TYPE_CHECKING:  # pragma: no cover
    from scaling.fitting.result import Fit

APPROACH_NAMES = {1: "envelope", 2: "isoFLOP", 3: "parametric"}
FRONTIER_COLUMNS = ["a", "b", "log_kN", "log_kD"]


@dataclass
class Allocation:
    """A fitted compute-optimal frontier ``ln N_opt = ln k_N + a ln C``, ``ln D_opt = ln k_D + b ln C``.

    ``points`` holds what the frontier was fitted to (columns C, N_opt, D_opt, loss): the envelope winners
    (approach 1), the parabola vertices (approach 2) or nothing (approach 3). ``profiles`` keeps the raw rows
    with their budget (approach 2) for plotting. ``draws`` has one row per successful bootstrap resample.
    """

    approach: int
    a: float
    b: float
    log_kN: float
    log_kD: float
    draws: pd.DataFrame
    ci: float = 0.95
    points: pd.DataFrame = field(default_factory=pd.DataFrame)
    profiles: pd.DataFrame = field(default_factory=pd.DataFrame)
    n_rows: int = 0
    warnings: list[str] = field(default_factory=list)
    bootstrap_failed_fraction: float = 0.0
    fit: Fit | None = None  # the engine's Fit for approach 3

    @property
    def name(self) -> str:
        """The approach's name: envelope, isoFLOP or parametric."""
        return APPROACH_NAMES[self.approach]

    def interval(self, column: str, ci: float | None = None) -> tuple[float, float]:
        """Percentile bootstrap interval of ``a``, ``b``, ``log_kN`` or ``log_kD`` (NaN without draws)."""
        ci = self.ci if ci is None else ci
        if self.draws.empty or column not in self.draws:
            return (np.nan, np.nan)
        return percentile_interval(self.draws[column].to_numpy(float), ci)

    def optimal(self, compute: float | Sequence[float], ci: float | None = None) -> pd.DataFrame:
        """N_opt and D_opt at each budget, with bootstrap intervals (columns as :meth:`Fit.optimal`)."""
        C = as_budgets(compute)
        ci = self.ci if ci is None else ci
        if self.fit is not None:  # approach 3: the engine's closed form with its own bootstrap
            return _engine_optimal(self.fit, C, ci)
        lnC = np.log(C)
        out = pd.DataFrame({"compute": C})
        out["N_opt"] = np.exp(self.log_kN + self.a * lnC)
        out["D_opt"] = np.exp(self.log_kD + self.b * lnC)
        out["tokens_per_param"] = out["D_opt"] / out["N_opt"]
        if self.draws.empty:
            for col in ("N_opt", "D_opt", "tokens_per_param"):
                out[f"{col}_lower"] = np.nan
                out[f"{col}_upper"] = np.nan
            return out
        d = self.draws
        lnN = d["log_kN"].to_numpy()[:, None] + d["a"].to_numpy()[:, None] * lnC[None, :]
        lnD = d["log_kD"].to_numpy()[:, None] + d["b"].to_numpy()[:, None] * lnC[None, :]
        for col, values in (("N_opt", np.exp(lnN)), ("D_opt", np.exp(lnD)), ("tokens_per_param", np.exp(lnD - lnN))):
            out[f"{col}_lower"], out[f"{col}_upper"] = percentile_interval(values, ci, axis=0)
        return out

    def summary_row(self) -> dict:
        """The approach's line of :func:`~scaling.analysis.optimal.compare`'s table: exponents with intervals, how
        many rows and frontier points it used, the failed share of the bootstrap, warnings."""
        a_lo, a_hi = self.interval("a")
        b_lo, b_hi = self.interval("b")
        return {
            "approach": self.approach,
            "method": self.name,
            "a": self.a,
            "a_lower": a_lo,
            "a_upper": a_hi,
            "b": self.b,
            "b_lower": b_lo,
            "b_upper": b_hi,
            "n_rows": self.n_rows,
            "n_frontier_points": len(self.points),
            "bootstrap_failed_fraction": self.bootstrap_failed_fraction,
            "warnings": "; ".join(self.warnings),
        }


def _engine_optimal(fit: Fit, C: np.ndarray, ci: float) -> pd.DataFrame:
    """The engine's ``Fit.optimal`` in the approaches' columns: all their intervals are the bootstrap's
    confidence intervals, so X_conf_lower becomes X_lower; the loss and allocation columns are kept."""
    out = fit.optimal(C, ci=ci)
    out = out.rename(columns={c: c.replace("_conf_", "_") for c in out.columns if "_conf_" in c})
    keep = [
        c
        for c in out.columns
        if c.split("_lower")[0].split("_upper")[0] in ("compute", "N_opt", "D_opt", "tokens_per_param", "loss")
    ]
    return out[keep].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------------
# Steps the approaches share


def as_budgets(compute: float | Sequence[float]) -> np.ndarray:
    """Compute budgets as a 1-d float array; a ScalingError unless every one is positive and finite."""
    C = np.atleast_1d(np.asarray(compute, dtype=float))
    if C.size == 0 or not np.all(np.isfinite(C)) or np.any(C <= 0):
        raise ScalingError(f"compute budgets must be positive finite numbers, got {list(np.atleast_1d(compute))}")
    return C


def checked_table(df: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """``df`` with ``columns`` validated (numeric, present; errors name the file and row) and its source kept."""
    from scaling.results import validate_columns

    source = str(df.attrs.get("source", "table"))
    out = validate_columns(df, list(columns), source=source)
    out.attrs["source"] = source
    return out


def final_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The final evaluation of each run when the table says which rows are final (approaches 2 and 3)."""
    if "final" in df.columns:
        final = pd.to_numeric(df["final"], errors="coerce").fillna(0).astype(bool)
        if final.any():
            return df[final.to_numpy()]
    return df


def fit_frontier(lnC: np.ndarray, lnN: np.ndarray, lnD: np.ndarray) -> tuple[float, float, float, float]:
    """Least-squares lines ln N = ln k_N + a ln C and ln D = ln k_D + b ln C (Hoffmann et al.'s step 4)."""
    a, log_kN = np.polyfit(lnC, lnN, 1)
    b, log_kD = np.polyfit(lnC, lnD, 1)
    return float(a), float(b), float(log_kN), float(log_kD)


def spread_warning(draws: pd.DataFrame, ci: float) -> list[str]:
    """A warning when the bootstrap interval of the exponent a is wider than 0.25 (the frontier says little)."""
    if len(draws) < 2:
        return []
    lo, hi = percentile_interval(draws["a"], ci)
    if hi - lo > 0.25:
        return [f"exponent a is poorly determined: {ci:.0%} interval [{lo:.3f}, {hi:.3f}]"]
    return []
