"""Compute-optimal allocation from one results table: Chinchilla approaches 1, 2 and 3 side by side.

Hoffmann et al. 2022 ("Training Compute-Optimal Large Language Models", arXiv:2203.15556, Section 3) estimate
the frontier ``N_opt(C) = k_N C^a``, ``D_opt(C) = k_D C^b`` (C = 6 N D FLOPs) three ways, one module each:

1. **Envelope of training curves** (:func:`~scaling.analysis.envelope.envelope`): interpolate every run's loss
   against compute, take the run with the lowest loss at each of many log-spaced compute values, regress log N and
   log D of those winners on log C.
2. **IsoFLOP profiles** (:func:`~scaling.analysis.isoflop.isoflop`): at each fixed budget C, fit a parabola to loss
   against log N; its vertex is N_opt(C) and D_opt = C / (6 N_opt); regress as above.
3. **Parametric** (:func:`~scaling.analysis.parametric.parametric`): fit L = E + A/N^alpha + B/D^beta (the fitting
   engine's chinchilla fit) and use the closed form a = beta/(alpha+beta), b = alpha/(alpha+beta) (Eq. 4).

Each returns an :class:`~scaling.analysis.allocation.Allocation` (frontier exponents with bootstrap intervals, the
points the frontier was fitted to, warnings) whose ``optimal`` gives N_opt, D_opt at a user's budget with
intervals; :func:`compare` (here) lays them side by side. Bootstrap resamples *runs* (approach 1), rows within each
budget (approach 2, one row is one run there) or whatever the engine resamples (approach 3: runs). The three
approaches are importable from here too (``from scaling.analysis.optimal import compare, envelope, isoflop,
parametric``, docs/planning.md).

Whether one model or an ensemble of smaller ones is better at a budget (Geiger et al.) is
:mod:`scaling.analysis.ensemble`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from scaling.analysis.allocation import APPROACH_NAMES, Allocation, as_budgets
from scaling.analysis.envelope import envelope
from scaling.analysis.isoflop import isoflop
from scaling.analysis.parametric import parametric
from scaling.errors import ScalingError

COMPARE_COLUMNS = [
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
    C = as_budgets(compute)
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
    table = pd.DataFrame(rows).reindex(columns=COMPARE_COLUMNS)
    return table, results


__all__ = ["APPROACH_NAMES", "COMPARE_COLUMNS", "Allocation", "compare", "envelope", "isoflop", "parametric"]
