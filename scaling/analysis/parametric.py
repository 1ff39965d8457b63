"""Approach 3 of Hoffmann et al. 2022 (arXiv:2203.15556, Section 3.3): the frontier from the parametric fit.

Fit L = E + A/N^alpha + B/D^beta (the fitting engine's ``chinchilla`` fit, bootstrap over runs) and read the frontier
off in closed form (Eq. 4): a = beta/(alpha+beta), b = alpha/(alpha+beta).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling.analysis.allocation import FRONTIER_COLUMNS, Allocation, checked_table, final_rows


def parametric(
    df: pd.DataFrame, *, n_bootstrap: int = 200, ci: float = 0.95, seed: int = 0, **fit_kwargs
) -> Allocation:
    """Approach 3 (Hoffmann et al. 2022, Section 3.3): fit L = E + A/N^alpha + B/D^beta to the final losses.

    The frontier follows in closed form: a = beta/(alpha+beta), b = alpha/(alpha+beta) and
    N_opt = G (C/6)^a, D_opt = (C/6)^b / G with G = (alpha A/(beta B))^(1/(alpha+beta)) (Eq. 4). The fit is the
    engine's (``scaling.fit``: Huber on log residuals, Hoffmann's grid, bootstrap over runs).
    """
    from scaling.analysis import fit as fit_law  # the engine; imported here so approaches 1-2 work without it

    df = checked_table(df, ["N", "D", "loss"])
    rows = final_rows(df)
    rows.attrs["source"] = df.attrs.get("source", "table")
    fit = fit_law(rows, law="chinchilla", n_bootstrap=n_bootstrap, ci=ci, seed=seed, **fit_kwargs)
    p = fit.params
    a = p["beta"] / (p["alpha"] + p["beta"])
    b = 1.0 - a
    G = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1.0 / (p["alpha"] + p["beta"]))
    log_kN = float(np.log(G) - a * np.log(6.0))
    log_kD = float(-np.log(G) - b * np.log(6.0))
    draws = pd.DataFrame(columns=FRONTIER_COLUMNS)
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
    warnings = [str(w) for w in q.warnings]
    if q.converged is False and not any("did NOT converge" in w for w in warnings):
        warnings.insert(0, f"the parametric fit did NOT converge: {q.message or ''}")
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
        bootstrap_failed_fraction=float(q.bootstrap_failed_fraction or 0.0),
        fit=fit,
    )
