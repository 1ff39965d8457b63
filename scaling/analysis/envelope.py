"""Approach 1 of Hoffmann et al. 2022 (arXiv:2203.15556, Section 3.1): the envelope of training curves.

Interpolate every run's loss against compute, take the run with the lowest loss at each of many log-spaced compute
values, and regress log N and log D of those winners on log C (:func:`~scaling.analysis.allocation.fit_frontier`).
The bootstrap resamples runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d

from scaling.analysis.allocation import FRONTIER_COLUMNS, Allocation, checked_table, fit_frontier, spread_warning
from scaling.errors import ScalingError
from scaling.fitting.bootstrap import resample_units, run_bootstrap
from scaling.results import run_key, training_compute


def _training_curves(df: pd.DataFrame, smooth: float) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """(N, ln C sorted, loss) per run with two or more evaluations at one size; the loss Gaussian-smoothed over
    ``smooth`` evaluation points when asked. A run is ``run_id``, else one curve per N and seed."""
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
    return runs


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
    df = checked_table(df, ["N", "D", "loss"])
    runs = _training_curves(df, smooth)
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
        return fit_frontier(np.log(pts["C"]), np.log(pts["N_opt"]), np.log(pts["D_opt"])), pts

    est, points = frontier(runs)
    if est is None:
        raise ScalingError(
            f"{source}: approach 1: fewer than 2 sizes ever win the envelope between a smaller and a larger size; "
            "train longer runs of the smaller models, shorter runs of the larger ones, or add sizes"
        )

    def one(rng: np.random.Generator, _resample: int):
        pick = resample_units(rng, len(runs))
        chosen = [runs[i] for i in np.unique(pick)]  # duplicates do not change a minimum
        if len({r[0] for r in chosen}) < 3:
            return None
        e, _ = frontier(chosen)
        return e

    boot = run_bootstrap(one, n_bootstrap, seed)
    draws = pd.DataFrame(boot.draws, columns=FRONTIER_COLUMNS)
    warnings = spread_warning(draws, ci)
    n_winners = points["N_opt"].nunique()
    if n_winners < 3:
        warnings.append(f"the envelope has only {n_winners} distinct winning sizes: the exponent rests on them alone")
    return Allocation(
        1,
        *est,
        draws=draws,
        ci=ci,
        points=points,
        n_rows=len(df),
        warnings=warnings,
        bootstrap_failed_fraction=boot.failed_fraction,
    )
