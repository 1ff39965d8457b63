"""Approach 2 of Hoffmann et al. 2022 (arXiv:2203.15556, Section 3.2): isoFLOP profiles.

At each fixed budget C, fit a parabola to loss against ln N; its vertex is N_opt(C) and D_opt = C / (6 N_opt);
ln N_opt and ln D_opt are regressed on ln C (:func:`~scaling.analysis.allocation.fit_frontier`). The bootstrap
resamples rows within each budget (one row is one run there).

Known property (acceptance test C5 in docs/laws.md, checked in tests/test_optimal.py): with a fixed grid of
log-offsets around each budget's optimum, this recovers the exponent without bias but over-estimates the prefactor
(x1.01, x1.04, x1.09 for +-0.5, +-1, +-1.5 dex with Hoffmann's constants): keep isoFLOP grids narrow and centred.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling.analysis.allocation import (
    FRONTIER_COLUMNS,
    Allocation,
    checked_table,
    final_rows,
    fit_frontier,
    spread_warning,
)
from scaling.errors import ScalingError
from scaling.fitting.bootstrap import resample_units, run_bootstrap
from scaling.results import training_compute


def assign_budgets(C: np.ndarray, tol_dex: float = 0.02) -> np.ndarray:
    """Group rows into isoFLOP budgets: sorted log10 C values split wherever the gap exceeds ``tol_dex``.

    Trainers round D to whole steps, so the rows of one budget differ slightly in C; their budget is the
    geometric mean of the group's C.
    """
    order = np.argsort(C)
    logc = np.log10(C[order])
    group = np.concatenate([[0], np.cumsum(np.diff(logc) > tol_dex)])
    budgets = np.empty_like(C)
    for g in np.unique(group):
        budgets[order[group == g]] = 10 ** logc[group == g].mean()
    return budgets


def _row_budgets(df: pd.DataFrame, budget_column: str | None, tol_dex: float, source: str) -> np.ndarray:
    """Each row's isoFLOP budget: the ``budget_column`` when given, else C clustered by :func:`assign_budgets`."""
    if not budget_column:
        return assign_budgets(training_compute(df), tol_dex)
    if budget_column not in df.columns:
        raise ScalingError(f"{source}: no budget column {budget_column!r}")
    budget = pd.to_numeric(df[budget_column], errors="coerce").to_numpy(float)
    if not np.all(np.isfinite(budget) & (budget > 0)):
        raise ScalingError(f"{source}: column {budget_column!r} must hold positive compute budgets")
    return budget


def _vertices(
    budgets: np.ndarray, lnN: np.ndarray, loss: np.ndarray, min_points: int
) -> tuple[pd.DataFrame, list[str]]:
    """Parabola loss = c2 x^2 + c1 x + c0 in x = ln N per budget; the vertex is N_opt (Hoffmann Section 3.2).

    Plain arrays rather than a DataFrame groupby: the bootstrap calls this hundreds of times.
    """
    rows, notes = [], []
    for budget in np.unique(budgets):
        sel = budgets == budget
        x, y = lnN[sel], loss[sel]
        n_sizes = len(np.unique(x))
        if n_sizes < min_points:
            notes.append(f"budget {budget:.3g}: {n_sizes} distinct sizes (< {min_points}), skipped")
            continue
        c2, c1, c0 = np.polyfit(x, y, 2)
        if c2 <= 0:
            notes.append(f"budget {budget:.3g}: loss is not convex in log N, skipped")
            continue
        xv = -c1 / (2 * c2)
        if not (x.min() <= xv <= x.max()):
            notes.append(f"budget {budget:.3g}: the vertex lies outside the sampled sizes, skipped (widen the grid)")
            continue
        N = float(np.exp(xv))
        rows.append((float(budget), N, float(budget) / (6 * N), float(c0 - c1**2 / (4 * c2)), c2, c1, c0, n_sizes))
    return pd.DataFrame(rows, columns=["C", "N_opt", "D_opt", "loss", "c2", "c1", "c0", "n_sizes"]), notes


def _summarise_skips(notes: list[str], n_budgets: int) -> list[str]:
    """One warning per reason rather than one per skipped budget (digitised tables have dozens), in the one format
    of skip warnings: ``skipped K of M THINGS: REASON: n (e.g. ...); REASON: n``."""
    if not notes:
        return []
    reasons: dict[str, list[str]] = {}
    for n in notes:
        budget, _, reason = n.partition(": ")
        key = "fewer than the minimum sizes" if "distinct sizes" in reason else reason.replace(", skipped", "")
        reasons.setdefault(key, []).append(budget.replace("budget ", ""))
    detail = "; ".join(f"{k}: {len(v)} (e.g. C = {', '.join(v[:3])})" for k, v in reasons.items())
    return [f"skipped {len(notes)} of {n_budgets} budgets: {detail}"]


def _pooled_configurations(data: pd.DataFrame) -> list[str]:
    """A warning when some (budget, N) holds several rows: seeds, learning rates or other settings pooled into
    one profile (each parabola then fits their mixture, and the bootstrap treats them as independent sizes)."""
    counts = data.groupby(["budget", "N"]).size()
    repeated = counts[counts > 1]
    if repeated.empty:
        return []
    return [
        f"{len(repeated)} of {len(counts)} (budget, N) configurations have several rows (up to {int(repeated.max())}): "
        "pooled seeds or settings; average them first or pick one with --where"
    ]


def _near_minimum(data: pd.DataFrame, factor: float, source: str) -> pd.DataFrame:
    """Per budget, the rows whose N is within ``factor`` of the budget's lowest-loss N."""
    if not (isinstance(factor, (int, float)) and np.isfinite(factor) and factor > 1):
        raise ScalingError(f"--near-min {factor!r}: a factor above 1, e.g. 10 (a decade either side of the minimum)")
    best = data.loc[data.groupby("budget")["loss"].idxmin(), ["budget", "N"]].set_index("budget")["N"]
    ratio = np.abs(np.log(data["N"].to_numpy() / data["budget"].map(best).to_numpy()))
    kept = data[ratio <= np.log(factor) + 1e-12]
    if kept.empty:  # cannot happen (each budget's best row is kept) but keep the contract explicit
        raise ScalingError(f"{source}: --near-min {factor:g} keeps no rows")
    return kept.reset_index(drop=True)


def _profile_shape_warnings(vertices: pd.DataFrame, data: pd.DataFrame, near_min: float | None) -> list[str]:
    """Profiles whose vertex depends on how wide they were sampled, and lopsided ones.

    Sensitivity check: per used budget, the vertex is refitted on the sizes within 10x of the budget's lowest-loss
    size; a vertex that moves by more than 10% means the parabola is bent by points far from the minimum, where
    the profile is not parabolic (it rises faster towards small models). Lopsided: the vertex lies in the outer
    fifth of the sampled sizes, so one side of the minimum is barely measured.
    """
    moved, lopsided = [], []
    for _, v in vertices.iterrows():
        rows = data[np.isclose(data["budget"], v["C"], rtol=1e-12)]
        lnN = np.log(rows["N"].to_numpy())
        span = lnN.max() - lnN.min()
        position = (np.log(v["N_opt"]) - lnN.min()) / span if span > 0 else 0.5
        if position < 0.2 or position > 0.8:
            lopsided.append(f"{v['C']:.3g}")
        if near_min is None:
            near = _near_minimum(rows, 10.0, "table")
            x, y = np.log(near["N"].to_numpy()), near["loss"].to_numpy()
            if len(np.unique(x)) >= 3 and len(near) < len(rows):
                c2, c1, _ = np.polyfit(x, y, 2)
                if c2 > 0 and abs(-c1 / (2 * c2) - np.log(v["N_opt"])) > np.log(1.1):
                    moved.append(f"{v['C']:.3g}")
    out = []
    if moved:
        out.append(
            f"{len(moved)} of {len(vertices)} profile vertices move by more than 10% when only sizes within 10x of "
            f"the minimum are fitted (e.g. C = {', '.join(moved[:3])}): the profiles are not parabolic over their "
            "width; try --near-min 10"
        )
    if lopsided:
        out.append(
            f"{len(lopsided)} of {len(vertices)} profiles have their vertex in the outer fifth of the sampled sizes "
            f"(e.g. C = {', '.join(lopsided[:3])}): sample more sizes on the far side of the minimum"
        )
    return out


def isoflop(
    df: pd.DataFrame,
    *,
    budget_column: str | None = None,
    tol_dex: float = 0.02,
    min_points: int = 3,
    n_bootstrap: int = 200,
    ci: float = 0.95,
    seed: int = 0,
    near_min: float | None = None,
) -> Allocation:
    """Approach 2 (Hoffmann et al. 2022, Section 3.2): isoFLOP profiles.

    ``near_min``: keep, per budget, only the sizes within that factor of the budget's lowest-loss size (e.g. 10: a
    decade either side). A parabola in ln N describes a profile near its minimum; far from it the profile is
    asymmetric (it rises faster towards small models) and a wide profile drags the vertex. Warnings say when rows
    repeat a (budget, N) configuration (pooled seeds or settings), when a profile's vertex moves by more than 10%
    with only the sizes near its minimum, and when a profile is lopsided (its vertex in the outer fifth of the
    sampled sizes).

    Rows (final evaluations when the table has a ``final`` column) are grouped into budgets: by
    ``budget_column`` when given, else by clustering C (``C`` column or 6 N D) within ``tol_dex`` decades. Per
    budget a parabola in ln N is fitted to the loss (numpy.polyfit) and its vertex taken as N_opt, with
    D_opt = C / (6 N_opt); ln N_opt and ln D_opt are regressed on ln C. Budgets with fewer than ``min_points``
    sizes, a concave profile or a vertex outside the sampled sizes are skipped with a warning. The bootstrap
    resamples rows within each budget.
    """
    df = checked_table(df, ["N", "D", "loss"])
    df = final_rows(df)
    source = df.attrs.get("source", "table")
    budget = _row_budgets(df, budget_column, tol_dex, source)
    data = pd.DataFrame({"N": df["N"].to_numpy(float), "loss": df["loss"].to_numpy(float), "budget": budget})
    pooled = _pooled_configurations(data)
    if near_min is not None:
        data = _near_minimum(data, near_min, source)
        budget = data["budget"].to_numpy(float)
    lnN, loss = np.log(data["N"].to_numpy()), data["loss"].to_numpy()
    vertices, notes = _vertices(budget, lnN, loss, min_points)
    if len(vertices) < 2:
        n_budgets = data["budget"].nunique()
        raise ScalingError(
            f"{source}: approach 2 needs >= 2 isoFLOP budgets with >= {min_points} model sizes each around the "
            f"optimum; found {n_budgets} budget(s) and {len(vertices)} usable ({'; '.join(notes[:3]) or 'no detail'})"
        )
    est = fit_frontier(np.log(vertices["C"]), np.log(vertices["N_opt"]), np.log(vertices["D_opt"]))
    groups = [np.nonzero(budget == b)[0] for b in np.unique(budget)]

    def one(rng: np.random.Generator, _resample: int):
        idx = resample_units(rng, len(budget), strata=groups)
        v, _ = _vertices(budget[idx], lnN[idx], loss[idx], min_points)
        if len(v) < 2:
            return None
        return fit_frontier(np.log(v["C"]), np.log(v["N_opt"]), np.log(v["D_opt"]))

    boot = run_bootstrap(one, n_bootstrap, seed)
    draws = pd.DataFrame(boot.draws, columns=FRONTIER_COLUMNS)
    warnings = pooled + _summarise_skips(notes, n_budgets=len(groups)) + spread_warning(draws, ci)
    warnings += _profile_shape_warnings(vertices, data, near_min)
    if len(vertices) == 2:
        warnings.append("only 2 usable budgets: the exponent is a line through two points")
    return Allocation(
        2,
        *est,
        draws=draws,
        ci=ci,
        points=vertices,
        profiles=data,
        n_rows=len(df),
        warnings=warnings,
        bootstrap_failed_fraction=boot.failed_fraction,
    )
