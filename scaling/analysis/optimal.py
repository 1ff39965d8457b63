"""Compute-optimal allocation from one results table: Chinchilla approaches 1, 2 and 3 side by side, and ensembles.

Hoffmann et al. 2022 ("Training Compute-Optimal Large Language Models", arXiv:2203.15556, Section 3) estimate
the frontier ``N_opt(C) = k_N C^a``, ``D_opt(C) = k_D C^b`` (C = 6 N D FLOPs) three ways:

1. **Envelope of training curves** (:func:`envelope`): interpolate every run's loss against compute, take the
   run with the lowest loss at each of many log-spaced compute values, regress log N and log D of those winners
   on log C.
2. **IsoFLOP profiles** (:func:`isoflop`): at each fixed budget C, fit a parabola to loss against log N; its
   vertex is N_opt(C) and D_opt = C / (6 N_opt); regress as above.
3. **Parametric** (:func:`parametric`): fit L = E + A/N^alpha + B/D^beta (the fitting engine's chinchilla fit)
   and use the closed form a = beta/(alpha+beta), b = alpha/(alpha+beta) (Eq. 4).

Each returns an :class:`Allocation` (frontier exponents with bootstrap intervals, the points the frontier was fitted
to, warnings) whose :meth:`Allocation.optimal` gives N_opt, D_opt at a user's budget with intervals;
:func:`compare` lays them side by side. Bootstrap resamples *runs* (approach 1), rows within each budget
(approach 2, one row is one run there) or whatever the engine resamples (approach 3: runs).

Known properties (acceptance test C5 in docs/laws.md, checked in tests/test_optimal.py): with a fixed grid of
log-offsets around each budget's optimum, approach 2 recovers the exponent without bias but over-estimates the
prefactor (x1.01, x1.04, x1.09 for +-0.5, +-1, +-1.5 dex with Hoffmann's constants): keep isoFLOP grids narrow and
centred.

:func:`ensemble_plan` asks Geiger et al.'s question (arXiv:1901.01608): at a fixed budget, is one model better than
the average of k smaller ones? It needs ensemble evaluations in the table to answer and says so when there are none.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d

from scaling.errors import ScalingError
from scaling.results import run_key, training_compute

APPROACH_NAMES = {1: "envelope", 2: "isoFLOP", 3: "parametric"}


# ---------------------------------------------------------------------------------------------------------
# The result of one approach


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
    fit: object | None = None  # the engine's Fit for approach 3

    @property
    def name(self) -> str:
        return APPROACH_NAMES[self.approach]

    def interval(self, column: str, ci: float | None = None) -> tuple[float, float]:
        """Percentile bootstrap interval of ``a``, ``b``, ``log_kN`` or ``log_kD`` (NaN without draws)."""
        ci = self.ci if ci is None else ci
        if self.draws.empty or column not in self.draws:
            return (np.nan, np.nan)
        lo, hi = np.quantile(self.draws[column].to_numpy(float), [(1 - ci) / 2, (1 + ci) / 2])
        return float(lo), float(hi)

    def optimal(self, compute: float | Sequence[float], ci: float | None = None) -> pd.DataFrame:
        """N_opt and D_opt at each budget, with bootstrap intervals (columns as :meth:`Fit.optimal`)."""
        C = _as_budgets(compute)
        ci = self.ci if ci is None else ci
        if self.fit is not None:  # approach 3: the engine's closed form with its own bootstrap
            # the approaches' tables are all confidence intervals (the bootstrap): X_conf_lower -> X_lower here
            out = self.fit.optimal(C, ci=ci)
            out = out.rename(columns={c: c.replace("_conf_", "_") for c in out.columns if "_conf_" in c})
            keep = [
                c
                for c in out.columns
                if c.split("_lower")[0].split("_upper")[0] in ("compute", "N_opt", "D_opt", "tokens_per_param", "loss")
            ]
            return out[keep].reset_index(drop=True)
        lnC = np.log(C)
        out = pd.DataFrame({"compute": C})
        out["N_opt"] = np.exp(self.log_kN + self.a * lnC)
        out["D_opt"] = np.exp(self.log_kD + self.b * lnC)
        out["tokens_per_param"] = out["D_opt"] / out["N_opt"]
        q = [(1 - ci) / 2, (1 + ci) / 2]
        if self.draws.empty:
            for col in ("N_opt", "D_opt", "tokens_per_param"):
                out[f"{col}_lower"] = np.nan
                out[f"{col}_upper"] = np.nan
            return out
        d = self.draws
        lnN = d["log_kN"].to_numpy()[:, None] + d["a"].to_numpy()[:, None] * lnC[None, :]
        lnD = d["log_kD"].to_numpy()[:, None] + d["b"].to_numpy()[:, None] * lnC[None, :]
        for col, values in (("N_opt", np.exp(lnN)), ("D_opt", np.exp(lnD)), ("tokens_per_param", np.exp(lnD - lnN))):
            lo, hi = np.quantile(values, q, axis=0)
            out[f"{col}_lower"] = lo
            out[f"{col}_upper"] = hi
        return out

    def summary_row(self) -> dict:
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


# ---------------------------------------------------------------------------------------------------------
# Shared helpers


def _as_budgets(compute) -> np.ndarray:
    C = np.atleast_1d(np.asarray(compute, dtype=float))
    if C.size == 0 or not np.all(np.isfinite(C)) or np.any(C <= 0):
        raise ScalingError(f"compute budgets must be positive finite numbers, got {list(np.atleast_1d(compute))}")
    return C


def _require(df: pd.DataFrame, columns: Iterable[str], what: str) -> pd.DataFrame:
    from scaling.results import validate_columns

    source = str(df.attrs.get("source", "table"))
    out = validate_columns(df, list(columns), source=source)
    out.attrs["source"] = source
    return out


def _final_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The final evaluation of each run when the table says which rows are final (approaches 2 and 3)."""
    if "final" in df.columns:
        final = pd.to_numeric(df["final"], errors="coerce").fillna(0).astype(bool)
        if final.any():
            return df[final.to_numpy()]
    return df


def _frontier(lnC: np.ndarray, lnN: np.ndarray, lnD: np.ndarray) -> tuple[float, float, float, float]:
    """Least-squares lines ln N = ln k_N + a ln C and ln D = ln k_D + b ln C (Hoffmann et al.'s step 4)."""
    a, log_kN = np.polyfit(lnC, lnN, 1)
    b, log_kD = np.polyfit(lnC, lnD, 1)
    return float(a), float(b), float(log_kN), float(log_kD)


def _bootstrap(n_bootstrap: int, seed: int, one) -> tuple[pd.DataFrame, float]:
    """Run ``one(rng)`` n_bootstrap times; a resample that cannot be fitted returns None and counts as failed."""
    rng = np.random.default_rng(seed)
    rows, failed = [], 0
    for _ in range(n_bootstrap):
        r = one(rng)
        if r is None:
            failed += 1
        else:
            rows.append(r)
    draws = pd.DataFrame(rows, columns=["a", "b", "log_kN", "log_kD"])
    return draws, (failed / n_bootstrap if n_bootstrap else 0.0)


def _spread_warning(draws: pd.DataFrame, ci: float) -> list[str]:
    if len(draws) < 2:
        return []
    lo, hi = np.quantile(draws["a"], [(1 - ci) / 2, (1 + ci) / 2])
    if hi - lo > 0.25:
        return [f"exponent a is poorly determined: {ci:.0%} interval [{lo:.3f}, {hi:.3f}]"]
    return []


# ---------------------------------------------------------------------------------------------------------
# Approach 1: envelope of training curves


def _envelope_points(runs: list[tuple[float, np.ndarray, np.ndarray]], n_grid: int):
    """The lowest-loss run at each of ``n_grid`` log-spaced compute values.

    ``runs`` holds (N, ln C sorted, loss) per run. A budget counts only when its winner is an interior minimum:
    some run of a smaller and some run of a larger size also reach that budget. Where the winner is the largest
    (or smallest) size that reaches a budget it wins by default, and the true optimum may lie beyond it; keeping
    such points biases the exponent low (the isoFLOP analogue is a vertex outside the sampled sizes).
    """
    lo = min(r[1][0] for r in runs)
    hi = max(r[1][-1] for r in runs)
    grid = np.linspace(lo, hi, n_grid)
    losses = np.full((len(runs), n_grid), np.inf)
    for i, (_, lnC, loss) in enumerate(runs):
        inside = (grid >= lnC[0]) & (grid <= lnC[-1])
        losses[i, inside] = np.interp(grid[inside], lnC, loss)
    sizes = np.array([r[0] for r in runs])
    covered = np.isfinite(losses)
    best = np.argmin(losses, axis=0)
    winner = sizes[best]
    smaller = (covered & (sizes[:, None] < winner[None, :])).any(axis=0)
    larger = (covered & (sizes[:, None] > winner[None, :])).any(axis=0)
    keep = smaller & larger
    C = np.exp(grid[keep])
    N = winner[keep]
    return pd.DataFrame({"C": C, "N_opt": N, "D_opt": C / (6.0 * N), "loss": losses[best[keep], np.nonzero(keep)[0]]})


def envelope(
    df: pd.DataFrame,
    *,
    n_grid: int = 1500,
    smooth: float = 0.0,
    n_bootstrap: int = 200,
    ci: float = 0.95,
    seed: int = 0,
) -> Allocation:
    """Approach 1 (Hoffmann et al. 2022, Section 3.1): the envelope of training curves.

    Every run (``run_id``, else one curve per N and seed) is a curve of loss against compute C (the ``C`` column
    or 6 N D), optionally Gaussian-smoothed over ``smooth`` evaluation points (Hoffmann smooth over 10 steps;
    sparse evaluations need little) and interpolated linearly in log C. At ``n_grid`` log-spaced budgets the
    run with the lowest loss gives (C, N, D = C/6N); ln N and ln D are regressed on ln C. The bootstrap
    resamples runs with replacement.
    """
    df = _require(df, ["N", "D", "loss"], "approach 1")
    data = df.assign(_C=training_compute(df), _run=run_key(df).to_numpy())
    runs = []
    for _, g in data.groupby("_run", sort=False):
        g = g.sort_values("_C")
        if g["_C"].nunique() < 2 or g["N"].nunique() != 1:
            continue
        loss = g["loss"].to_numpy(float)
        if smooth > 0:
            loss = gaussian_filter1d(loss, smooth, mode="nearest")
        runs.append((float(g["N"].iloc[0]), np.log(g["_C"].to_numpy(float)), loss))
    sizes = {r[0] for r in runs}
    source = df.attrs.get("source", "table")
    if len(sizes) < 3:
        raise ScalingError(
            f"{source}: approach 1 needs training curves (>= 2 evaluations per run) for at least 3 model sizes; "
            f"found {len(runs)} curve(s) over {len(sizes)} size(s)"
        )

    def frontier(selected):
        pts = _envelope_points(selected, n_grid)
        if len(pts) < 2 or pts["N_opt"].nunique() < 2:
            return None, pts
        return _frontier(np.log(pts["C"]), np.log(pts["N_opt"]), np.log(pts["D_opt"])), pts

    est, points = frontier(runs)
    if est is None:
        raise ScalingError(
            f"{source}: approach 1: fewer than 2 sizes ever win the envelope between a smaller and a larger size; "
            "train longer runs of the smaller models, shorter runs of the larger ones, or add sizes"
        )

    def one(rng):
        pick = rng.integers(0, len(runs), len(runs))
        chosen = [runs[i] for i in np.unique(pick)]  # duplicates do not change a minimum
        if len({r[0] for r in chosen}) < 3:
            return None
        e, _ = frontier(chosen)
        return e

    draws, failed = _bootstrap(n_bootstrap, seed, one)
    warnings = _spread_warning(draws, ci)
    n_winners = points["N_opt"].nunique()
    if n_winners < 3:
        warnings.append(f"the envelope has only {n_winners} distinct winning sizes: the exponent rests on them alone")
    return Allocation(
        1, *est, draws=draws, ci=ci, points=points, n_rows=len(df), warnings=warnings, bootstrap_failed_fraction=failed
    )


# ---------------------------------------------------------------------------------------------------------
# Approach 2: isoFLOP profiles


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
    df = _require(df, ["N", "D", "loss"], "approach 2")
    df = _final_rows(df)
    source = df.attrs.get("source", "table")
    if budget_column:
        if budget_column not in df.columns:
            raise ScalingError(f"{source}: no budget column {budget_column!r}")
        budget = pd.to_numeric(df[budget_column], errors="coerce").to_numpy(float)
        if not np.all(np.isfinite(budget) & (budget > 0)):
            raise ScalingError(f"{source}: column {budget_column!r} must hold positive compute budgets")
    else:
        budget = assign_budgets(training_compute(df), tol_dex)
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
    est = _frontier(np.log(vertices["C"]), np.log(vertices["N_opt"]), np.log(vertices["D_opt"]))
    groups = [np.nonzero(budget == b)[0] for b in np.unique(budget)]

    def one(rng):
        idx = np.concatenate([rng.choice(g, len(g), replace=True) for g in groups])
        v, _ = _vertices(budget[idx], lnN[idx], loss[idx], min_points)
        if len(v) < 2:
            return None
        return _frontier(np.log(v["C"]), np.log(v["N_opt"]), np.log(v["D_opt"]))

    draws, failed = _bootstrap(n_bootstrap, seed, one)
    warnings = pooled + _summarise_skips(notes, n_budgets=len(groups)) + _spread_warning(draws, ci)
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
        bootstrap_failed_fraction=failed,
    )


# ---------------------------------------------------------------------------------------------------------
# Approach 3: the parametric fit (the fitting engine does the work)


def parametric(
    df: pd.DataFrame, *, n_bootstrap: int = 200, ci: float = 0.95, seed: int = 0, **fit_kwargs
) -> Allocation:
    """Approach 3 (Hoffmann et al. 2022, Section 3.3): fit L = E + A/N^alpha + B/D^beta to the final losses.

    The frontier follows in closed form: a = beta/(alpha+beta), b = alpha/(alpha+beta) and
    N_opt = G (C/6)^a, D_opt = (C/6)^b / G with G = (alpha A/(beta B))^(1/(alpha+beta)) (Eq. 4). The fit is the
    engine's (``scaling.fit``: Huber on log residuals, Hoffmann's grid, bootstrap over runs).
    """
    from scaling.fitting.estimate import (
        fit as fit_law,  # the engine; imported here so approaches 1-2 work without it
    )

    df = _require(df, ["N", "D", "loss"], "approach 3")
    rows = _final_rows(df)
    rows.attrs["source"] = df.attrs.get("source", "table")
    fit = fit_law(rows, law="chinchilla", n_bootstrap=n_bootstrap, ci=ci, seed=seed, **fit_kwargs)
    p = fit.params
    a = p["beta"] / (p["alpha"] + p["beta"])
    b = 1.0 - a
    G = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1.0 / (p["alpha"] + p["beta"]))
    log_kN = float(np.log(G) - a * np.log(6.0))
    log_kD = float(-np.log(G) - b * np.log(6.0))
    draws = pd.DataFrame(columns=["a", "b", "log_kN", "log_kD"])
    if fit.draws is not None and len(fit.draws):
        d = fit.draws
        da = d["beta"] / (d["alpha"] + d["beta"])
        dG = (d["alpha"] * d["A"] / (d["beta"] * d["B"])) ** (1.0 / (d["alpha"] + d["beta"]))
        draws = pd.DataFrame(
            {
                "a": da,
                "b": 1 - da,
                "log_kN": np.log(dG) - da * np.log(6.0),
                "log_kD": -np.log(dG) - (1 - da) * np.log(6.0),
            }
        ).reset_index(drop=True)
    q = fit.quality
    warnings = [str(w) for w in q.get("warnings", [])]
    if not q.get("converged", True) and not any("did NOT converge" in w for w in warnings):
        warnings.insert(0, f"the parametric fit did NOT converge: {q.get('message', '')}")
    return Allocation(
        3,
        float(a),
        float(b),
        log_kN,
        log_kD,
        draws=draws,
        ci=ci,
        n_rows=len(rows),
        warnings=warnings,
        bootstrap_failed_fraction=float(q.get("bootstrap_failed_fraction") or 0.0),
        fit=fit,
    )


# ---------------------------------------------------------------------------------------------------------
# Side by side


def compare(
    df: pd.DataFrame,
    compute: float | Sequence[float],
    *,
    approaches: Sequence[int] = (1, 2, 3),
    n_bootstrap: int = 200,
    ci: float = 0.95,
    seed: int = 0,
    envelope_options: dict | None = None,
    isoflop_options: dict | None = None,
    fit_options: dict | None = None,
) -> tuple[pd.DataFrame, dict[int, Allocation | str]]:
    """Run the requested approaches on one table; one row per (approach, budget).

    Columns: approach, method, a (+ interval), b (+ interval), compute, N_opt, D_opt, tokens_per_param (+
    intervals), n_rows, warnings. An approach the table cannot support gets a row with NaNs and the reason in
    ``warnings`` when several were asked for; asked for alone, it raises the :class:`ScalingError`.
    """
    C = _as_budgets(compute)
    bad = [a for a in approaches if a not in APPROACH_NAMES]
    if bad:
        raise ScalingError(f"unknown approach {bad[0]!r}: choose 1 (envelope), 2 (isoFLOP), 3 (parametric) or all")
    runners = {
        1: lambda: envelope(df, n_bootstrap=n_bootstrap, ci=ci, seed=seed, **(envelope_options or {})),
        2: lambda: isoflop(df, n_bootstrap=n_bootstrap, ci=ci, seed=seed, **(isoflop_options or {})),
        3: lambda: parametric(df, n_bootstrap=n_bootstrap, ci=ci, seed=seed, **(fit_options or {})),
    }
    results: dict[int, Allocation | str] = {}
    rows = []
    for k in approaches:
        try:
            res = runners[k]()
        except ScalingError as exc:
            if len(approaches) == 1:
                raise
            results[k] = str(exc)
            for c in C:
                rows.append(
                    {"approach": k, "method": APPROACH_NAMES[k], "compute": c, "warnings": f"not applicable: {exc}"}
                )
            continue
        results[k] = res
        head = res.summary_row()
        for _, opt in res.optimal(C, ci=ci).iterrows():
            rows.append({**head, **opt.to_dict()})
    columns = [
        "approach",
        "method",
        "a",
        "a_lower",
        "a_upper",
        "b",
        "b_lower",
        "b_upper",
        "compute",
        "N_opt",
        "N_opt_lower",
        "N_opt_upper",
        "D_opt",
        "D_opt_lower",
        "D_opt_upper",
        "tokens_per_param",
        "tokens_per_param_lower",
        "tokens_per_param_upper",
        "n_rows",
        "n_frontier_points",
        "bootstrap_failed_fraction",
        "warnings",
    ]
    table = pd.DataFrame(rows).reindex(columns=columns)
    return table, results


# ---------------------------------------------------------------------------------------------------------
# Ensembles (Geiger et al. 2019/2020)


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


def ensemble_plan(df: pd.DataFrame, fit, compute: float, k: int = 4, ci: float = 0.95) -> EnsembleVerdict:
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
    C = float(_as_budgets(compute)[0])
    one = fit.optimal([C], ci=ci).iloc[0]
    member = fit.optimal([C / k], ci=ci).iloc[0]
    L1, Lm = float(one["loss"]), float(member["loss"])
    need = Lm - L1  # the gain the ensemble must deliver to tie
    spread = seed_spread(df)
    gains = ensemble_gain_table(df)
    rows = [
        {
            "option": "one model",
            "N": one["N_opt"],
            "D": one["D_opt"],
            "member_loss": L1,
            "ensemble_gain": 0.0,
            "loss": L1,
            "lower": one.get("loss_conf_lower", np.nan),
            "upper": one.get("loss_conf_upper", np.nan),
        }
    ]
    label = f"ensemble of {k}"
    if gains.empty:
        rows.append(
            {
                "option": label,
                "N": member["N_opt"],
                "D": member["D_opt"],
                "member_loss": Lm,
                "ensemble_gain": np.nan,
                "loss": np.nan,
                "lower": np.nan,
                "upper": np.nan,
            }
        )
        noise = f"; seed-to-seed spread of the loss is {spread:.4f}" if np.isfinite(spread) else ""
        reason = (
            f"the table has no ensemble evaluations (rows with ensemble_k > 1), so the ensemble's gain over its "
            f"members is unknown; {k} members of N={member['N_opt']:.3g} would have to gain more than "
            f"{need:.4f} nats over their own loss to beat one model of N={one['N_opt']:.3g}{noise}"
        )
        return EnsembleVerdict(C, k, pd.DataFrame(rows), "cannot tell", reason)

    Nk = float(member["N_opt"])
    by_size = gains.groupby("N").agg(V=("V", "mean"), se=("se", "mean")).reset_index()
    if len(by_size) >= 2 and np.all(by_size["V"] > 0):
        slope, icpt = np.polyfit(np.log(by_size["N"]), np.log(by_size["V"]), 1)
        V = float(np.exp(icpt + slope * np.log(Nk)))
        where = "interpolated" if by_size["N"].min() <= Nk <= by_size["N"].max() else "extrapolated"
    else:
        nearest = by_size.iloc[int(np.argmin(np.abs(np.log(by_size["N"]) - np.log(Nk))))]
        V, where = float(nearest["V"]), f"taken from N={nearest['N']:.3g} (nearest measured size)"
    se = (
        float(np.nanmean(by_size["se"])) if by_size["se"].notna().any() else (spread if np.isfinite(spread) else np.nan)
    )
    gain = V * (1 - 1 / k)
    Lk = Lm - gain
    # Interval: the member's loss interval (from the fit's bootstrap; none for a published fit) widened by the
    # seed noise of the gain estimate, in quadrature.
    half = float(np.hypot(_half_width(member, Lm), 2 * se if np.isfinite(se) else 0.0))
    rows.append(
        {
            "option": label,
            "N": Nk,
            "D": member["D_opt"],
            "member_loss": Lm,
            "ensemble_gain": gain,
            "loss": Lk,
            "lower": Lk - half,
            "upper": Lk + half,
        }
    )
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
