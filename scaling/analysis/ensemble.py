"""One model or an ensemble at a fixed budget (Geiger et al. 2019/2020, arXiv:1901.01608).

At a fixed budget, is one compute-optimal model better than the average of k compute-optimal models of 1/k of it
each? The members' losses come from a fit's compute-optimal allocation; the ensemble's gain over its members has
to be measured (rows with ``ensemble_k`` > 1), and without such rows the answer is "cannot tell".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from scaling.analysis.allocation import as_budgets
from scaling.errors import ScalingError

if TYPE_CHECKING:  # pragma: no cover
    from scaling.fitting.result import Fit


@dataclass
class EnsembleVerdict:
    """One model of the full budget against k models of 1/k of it each, at one budget."""

    compute: float
    k: int
    table: pd.DataFrame  # one row per option: option, N, D, member_loss, ensemble_gain, loss, lower, upper
    verdict: str  # "one model", "ensemble of k", "cannot tell"
    reason: str


def ensemble_gain_table(df: pd.DataFrame) -> pd.DataFrame:
    """Measured ensemble gains: rows with ``ensemble_k`` > 1 against the mean single-model loss at the same N, D.

    With the log-loss bias-variance decomposition of averaged predictors, an ensemble of k members has loss
    ``L_k = L_1 - V (1 - 1/k)`` where V is the members' diversity (the gain of an infinite ensemble); each
    ensemble row gives one estimate of V. ``se`` is the seed-to-seed standard error of the single-model mean.
    """
    if "ensemble_k" not in df.columns:
        return pd.DataFrame(columns=["N", "D", "k", "single_loss", "ensemble_loss", "V", "se", "n_seeds"])
    k = pd.to_numeric(df["ensemble_k"], errors="coerce").fillna(1)
    singles = df[k <= 1]
    rows = []
    for _, r in df[k > 1].iterrows():
        same = singles[np.isclose(singles["N"], r["N"], rtol=1e-6) & np.isclose(singles["D"], r["D"], rtol=1e-6)]
        if len(same) == 0:
            continue
        kk = float(r["ensemble_k"])
        L1 = float(same["loss"].mean())
        se = float(same["loss"].std(ddof=1) / np.sqrt(len(same))) if len(same) > 1 else np.nan
        rows.append(
            {
                "N": float(r["N"]),
                "D": float(r["D"]),
                "k": kk,
                "single_loss": L1,
                "ensemble_loss": float(r["loss"]),
                "V": (L1 - float(r["loss"])) / (1 - 1 / kk),
                "se": se,
                "n_seeds": len(same),
            }
        )
    return pd.DataFrame(rows, columns=["N", "D", "k", "single_loss", "ensemble_loss", "V", "se", "n_seeds"])


def seed_spread(df: pd.DataFrame) -> float:
    """Median seed-to-seed standard deviation of the loss at a fixed (N, D) (NaN without repeated seeds)."""
    if "seed" not in df.columns:
        return np.nan
    single = (
        df if "ensemble_k" not in df.columns else df[pd.to_numeric(df["ensemble_k"], errors="coerce").fillna(1) <= 1]
    )
    sd = single.groupby(["N", "D"])["loss"].std(ddof=1).dropna()
    return float(sd.median()) if len(sd) else np.nan


def _half_width(row: pd.Series, value: float) -> float:
    """Half-width of a row's loss interval; 0 when the fit has no intervals (NaN bounds)."""
    lo, hi = float(row.get("loss_conf_lower", np.nan)), float(row.get("loss_conf_upper", np.nan))
    widths = [w for w in (hi - value, value - lo) if np.isfinite(w)]
    return max(widths) if widths else 0.0


def _option(option: str, N: float, D: float, member_loss: float, gain: float, loss: float, lower: float,
            upper: float) -> dict:
    """One row of the verdict's table."""
    return {"option": option, "N": N, "D": D, "member_loss": member_loss, "ensemble_gain": gain, "loss": loss,
            "lower": lower, "upper": upper}


def _diversity_at(gains: pd.DataFrame, N: float, spread: float) -> tuple[float, str, float]:
    """(V, where it came from, its standard error) for members of size N, from the measured ensemble gains.

    V is a power law V = v N^-g in N across the measured sizes (Geiger et al.'s form) when two or more sizes were
    measured with positive V; otherwise the nearest measured size's V, flagged. The standard error is the measured
    one, else the seed-to-seed spread of the loss.
    """
    by_size = gains.groupby("N").agg(V=("V", "mean"), se=("se", "mean")).reset_index()
    if len(by_size) >= 2 and np.all(by_size["V"] > 0):
        slope, icpt = np.polyfit(np.log(by_size["N"]), np.log(by_size["V"]), 1)
        V = float(np.exp(icpt + slope * np.log(N)))
        where = "interpolated" if by_size["N"].min() <= N <= by_size["N"].max() else "extrapolated"
    else:
        nearest = by_size.iloc[int(np.argmin(np.abs(np.log(by_size["N"]) - np.log(N))))]
        V, where = float(nearest["V"]), f"taken from N={nearest['N']:.3g} (nearest measured size)"
    se = (
        float(np.nanmean(by_size["se"])) if by_size["se"].notna().any() else (spread if np.isfinite(spread) else np.nan)
    )
    return V, where, se


def _unmeasured(
    C: float, k: int, one: pd.Series, member: pd.Series, spread: float, rows: list[dict]
) -> EnsembleVerdict:
    """The verdict without ensemble evaluations: "cannot tell", with the gain the ensemble would need."""
    L1, Lm = float(one["loss"]), float(member["loss"])
    rows.append(_option(f"ensemble of {k}", member["N_opt"], member["D_opt"], Lm, np.nan, np.nan, np.nan, np.nan))
    noise = f"; seed-to-seed spread of the loss is {spread:.4f}" if np.isfinite(spread) else ""
    reason = (
        f"the table has no ensemble evaluations (rows with ensemble_k > 1), so the ensemble's gain over its "
        f"members is unknown; {k} members of N={member['N_opt']:.3g} would have to gain more than "
        f"{Lm - L1:.4f} nats over their own loss to beat one model of N={one['N_opt']:.3g}{noise}"
    )
    return EnsembleVerdict(C, k, pd.DataFrame(rows), "cannot tell", reason)


def ensemble_plan(df: pd.DataFrame, fit: Fit, compute: float, k: int = 4, ci: float = 0.95) -> EnsembleVerdict:
    """Compare one compute-optimal model at budget C with an ensemble of k compute-optimal models at C/k each.

    Member losses come from ``fit`` (a chinchilla-style Fit with ``optimal``; intervals from its bootstrap draws).
    The ensemble's gain over its members, ``V(N)(1 - 1/k)``, comes from the table's ensemble evaluations
    (:func:`ensemble_gain_table`): V is interpolated in log N (a power law V = v N^-g across sizes, Geiger et al.'s
    form, when two or more sizes were measured; the nearest measurement otherwise, flagged). Per-seed losses alone
    cannot measure an ensemble's gain (it depends on how much the members' predictions differ, not on how much
    their losses differ): without ensemble rows the verdict is "cannot tell", with the gain the ensemble would need.
    """
    if k < 2:
        raise ScalingError(f"--ensemble k must be >= 2, got {k}")
    C = float(as_budgets(compute)[0])
    one = fit.optimal([C], ci=ci).iloc[0]
    member = fit.optimal([C / k], ci=ci).iloc[0]
    L1, Lm = float(one["loss"]), float(member["loss"])
    spread = seed_spread(df)
    gains = ensemble_gain_table(df)
    rows = [_option("one model", one["N_opt"], one["D_opt"], L1, 0.0, L1, one.get("loss_conf_lower", np.nan),
                    one.get("loss_conf_upper", np.nan))]
    if gains.empty:
        return _unmeasured(C, k, one, member, spread, rows)

    Nk = float(member["N_opt"])
    V, where, se = _diversity_at(gains, Nk, spread)
    gain = V * (1 - 1 / k)
    Lk = Lm - gain
    # Interval: the member's loss interval (from the fit's bootstrap; none for a published fit) widened by the
    # seed noise of the gain estimate, in quadrature.
    half = float(np.hypot(_half_width(member, Lm), 2 * se if np.isfinite(se) else 0.0))
    label = f"ensemble of {k}"
    rows.append(_option(label, Nk, member["D_opt"], Lm, gain, Lk, Lk - half, Lk + half))
    diff = Lk - L1
    margin = float(np.hypot(half, _half_width(one, L1)))
    if abs(diff) <= margin:
        verdict = "cannot tell"
        reason = (
            f"the ensemble's predicted loss differs from one model's by {diff:+.4f} nats, within the "
            f"uncertainty ({margin:.4f}); gain V {where}"
        )
    else:
        verdict = label if diff < 0 else "one model"
        reason = f"the ensemble's loss is {diff:+.4f} nats from one model's (uncertainty {margin:.4f}); gain V {where}"
    return EnsembleVerdict(C, k, pd.DataFrame(rows), verdict, reason)
