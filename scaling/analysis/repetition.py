"""Damage from repeated data (Hernandez et al. 2022, arXiv 2205.10487): from runs to effective model size.

The procedure (docs/transfer-repetition-calibration.md, 'repetition'), on runs that all train on the same token
budget D:

1. fit the unique-data baseline L_u(N) = L_inf + (N_c/N)^a_N (law ``repetition``) on the runs without repeated
   data (``repeat_fraction`` 0 or empty);
2. for every run with a repeated subset (a fraction f of its tokens repeat a subset ``repeat_count`` = E times),
   invert the baseline at its loss: N_eff = N_c (L - L_inf)^(-1/a_N), multiplier m = N_eff / N, fraction of
   parameters lost 1 - m (flagged ``extrapolated`` when N_eff is outside the baseline's sizes);
3. per model size and fraction f, the poor-performance region: the repeat counts with at least half the worst
   loss of parameters, its edges interpolated in ln E (seeds averaged first);
4. across sizes, fit each edge as E = k N^alpha (least squares in log space; published: left 4.2e6 N^-0.56,
   right 5.1e7 N^-0.50).

Intervals on N_eff and m come from the baseline's bootstrap draws. At CPU scale a handful of sizes and repeat
counts is all there is: an edge that reaches the end of the measured repeat counts is reported as open (only a
bound) and left out of the edge fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scaling.errors import ScalingError
from scaling.fitting.bootstrap import percentile_interval
from scaling.fitting.estimate import LawFitter
from scaling.fitting.result import Fit
from scaling.analysis.interpolate import amount_at_loss
from scaling.laws.repetition import BOUNDARY, REPETITION, effective_params, poor_performance_region
from scaling.results import read_results, validate_columns

FRACTION, COUNT = "repeat_fraction", "repeat_count"
BASELINE_PARAMS = ("L_inf", "N_c", "a_N")


@dataclass
class RepetitionAnalysis:
    """The result of :func:`analyze_repetition`.

    Attributes:
        baseline: the ``repetition`` law L_u(N) fitted on the unique-data runs.
        runs: one row per run with repeated data: N, repeat_fraction, repeat_count, loss, N_eff (with
            ``N_eff_lower``/``N_eff_upper``), m, lost (= 1 - m), extrapolated, and N_eff_interp: the size at which
            the *measured* unique-data runs reach the same loss (monotone interpolation; NaN outside their range),
            the model-free check of N_eff where the baseline law misfits by as much as the effect.
        regions: one row per (N, repeat_fraction): left, right, left_open, right_open, peak_E, peak_lost.
        boundaries: ``{(repeat_fraction, "left"|"right"): Fit}`` of E = k N^alpha, where at least 2 sizes have
            a closed edge.
    """

    baseline: Fit
    runs: pd.DataFrame
    regions: pd.DataFrame
    boundaries: dict[tuple[float, str], Fit] = field(default_factory=dict)

    def edges_table(self) -> pd.DataFrame:
        """The edge fits E = k N^alpha as one table: repeat_fraction, edge (left/right), k, alpha and their
        intervals (``k_lower`` ...; NaN without bootstrap draws). Empty (with these columns) when no edge was closed
        at 2 or more sizes."""
        rows = []
        for (f, edge), fit in self.boundaries.items():
            row = {"repeat_fraction": f, "edge": edge, "k": fit.params["k"], "alpha": fit.params["alpha"]}
            for name in ("k", "alpha"):
                row[f"{name}_lower"], row[f"{name}_upper"] = fit.intervals.get(name, (np.nan, np.nan))
            rows.append(row)
        return pd.DataFrame(
            rows, columns=["repeat_fraction", "edge", "k", "alpha", "k_lower", "k_upper", "alpha_lower", "alpha_upper"]
        )

    def summary(self) -> str:
        lines = [
            self.baseline.summary(),
            "",
            "[[Poor-performance regions]] (repeat counts with >= half the worst loss)",
        ]
        for r in self.regions.itertuples():
            left = f"{'<=' if r.left_open else ''}{r.left:.4g}"
            right = f"{'>=' if r.right_open else ''}{r.right:.4g}"
            lines.append(
                f"    N = {r.N:.4g}, f = {r.repeat_fraction:g}: E in [{left}, {right}], worst at E = "
                f"{r.peak_E:.4g} ({100 * r.peak_lost:.1f}% of parameters lost)"
            )
        for (f, edge), fit in self.boundaries.items():
            p = fit.params
            ci = fit.intervals.get("alpha")
            extra = f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else ""
            lines.append(f"    {edge} edge (f = {f:g}): E = {p['k']:.4g} N^{p['alpha']:.3f}{extra}")
        return "\n".join(lines)


def _is_unique(df: pd.DataFrame) -> pd.Series:
    f = pd.to_numeric(df[FRACTION], errors="coerce") if FRACTION in df.columns else pd.Series(0.0, index=df.index)
    k = pd.to_numeric(df[COUNT], errors="coerce") if COUNT in df.columns else pd.Series(1.0, index=df.index)
    return f.fillna(0.0).le(0.0) | k.fillna(1.0).le(1.0)


def analyze_repetition(
    data: pd.DataFrame | str,
    *,
    mapping: Mapping[str, str] | None = None,
    where: str | None = None,
    final_only: bool = True,
    baseline_fix: Mapping[str, float] | None = None,
    level: float = 0.5,
    n_bootstrap: int = 200,
    ci: float = 0.95,
    seed: int = 0,
    calibrate: int | None = None,
) -> RepetitionAnalysis:
    """Fit the unique-data baseline, convert every repeated-data run to an effective size, find the regions.

    Args:
        data: results table (DataFrame or CSV path) with N, D, loss, repeat_fraction, repeat_count.
        mapping, where: column mapping and row selection as for :func:`scaling.read_results`.
        final_only: keep only each run's final evaluation when the table has a ``final`` column.
        baseline_fix: parameters of the baseline held fixed, e.g. ``{"L_inf": 0}`` for Kaplan's pure power law
            (advisable with fewer than 5 sizes).
        level: the region holds repeat counts whose loss of parameters is >= level x the worst (0.5 in the paper).
        n_bootstrap, ci, seed: bootstrap of the baseline (and of the edge fits).
        calibrate: rollout cuts calibrating the baseline's prediction intervals (LawFitter's ``calibrate``; None:
            its default, 0: off).
    """
    df = read_results(data, mapping=mapping, where=where) if isinstance(data, str) or mapping or where else data
    source = str(df.attrs.get("source", "table"))
    if final_only and "final" in df.columns:
        df = df[pd.to_numeric(df["final"], errors="coerce") == 1]
    base, repeated = _unique_and_repeated_runs(df, source)
    baseline = LawFitter(REPETITION, fix=dict(baseline_fix or {}), n_bootstrap=n_bootstrap, ci=ci, seed=seed,
                         calibrate=calibrate).fit(base, source=source)
    runs = _effective_sizes(repeated, base, baseline, ci)
    regions = _regions(runs, level)
    boundaries = _boundary_fits(regions, n_bootstrap=n_bootstrap, ci=ci, seed=seed, source=source)
    return RepetitionAnalysis(baseline=baseline, runs=runs, regions=regions, boundaries=boundaries)


def _unique_and_repeated_runs(df: pd.DataFrame, source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the baseline's rows: N, loss and run_id when present; the runs with repeated data), validated: one token
    budget, some repeated runs, unique-data runs at 3 or more sizes."""
    if FRACTION not in df.columns or COUNT not in df.columns:
        raise ScalingError(
            f"{source}: need columns {FRACTION!r} and {COUNT!r} (fraction of tokens repeated, times "
            f"the repeated subset is seen); columns are {', '.join(map(str, df.columns))}"
        )
    df = validate_columns(df, ["N", "D", "loss"], source=source)
    budgets = sorted(df["D"].unique())
    if len(budgets) > 1:
        raise ScalingError(
            f"{source}: runs train on {len(budgets)} token budgets ({', '.join(f'{b:.4g}' for b in budgets[:5])}); the "
            f'repeated-data comparison needs one: select it with --where "D == {budgets[-1]:.6g}"'
        )
    unique = _is_unique(df)
    base_rows, rep_rows = df[unique], df[~unique]
    if len(rep_rows) == 0:
        raise ScalingError(f"{source}: no runs with repeated data ({FRACTION} > 0 and {COUNT} > 1)")
    if base_rows["N"].nunique() < 3:
        raise ScalingError(
            f"{source}: the unique-data baseline needs runs at 3 or more sizes without repeated data "
            f"({FRACTION} = 0); found {base_rows['N'].nunique()}"
        )
    rep_rows = validate_columns(rep_rows, [FRACTION, COUNT], source=source)
    base = base_rows[["N", "loss"] + (["run_id"] if "run_id" in base_rows.columns else [])].copy()
    base.attrs["source"] = source
    return base, rep_rows


def _effective_sizes(repeated: pd.DataFrame, base: pd.DataFrame, baseline: Fit, ci: float) -> pd.DataFrame:
    """Per repeated-data run: N_eff from inverting the baseline at its loss (interval from the baseline's draws),
    m = N_eff / N, the share lost, whether N_eff lies outside the baseline's sizes, and the model-free N_eff_interp
    from the measured unique-data runs."""
    runs = repeated[["N", FRACTION, COUNT, "loss"]].astype(float).reset_index(drop=True)
    p = baseline.params
    runs["N_eff"] = effective_params(runs["loss"], **{k: p[k] for k in BASELINE_PARAMS})
    runs["m"] = runs["N_eff"] / runs["N"]
    runs["lost"] = 1.0 - runs["m"]
    lo, hi = base["N"].min(), base["N"].max()
    runs["extrapolated"] = (runs["N_eff"] < lo) | (runs["N_eff"] > hi)
    measured = pd.Series(base["loss"].to_numpy(dtype=float), index=base["N"].to_numpy(dtype=float))
    runs["N_eff_interp"] = [amount_at_loss(measured, loss) for loss in runs["loss"]]
    runs["N_eff_lower"], runs["N_eff_upper"] = np.nan, np.nan
    if len(baseline.draws):
        draws = np.array(
            [
                effective_params(runs["loss"].to_numpy(), **{k: d[k] for k in BASELINE_PARAMS})
                for d in baseline.draws.to_dict("records")
            ]
        )
        runs["N_eff_lower"], runs["N_eff_upper"] = percentile_interval(draws, ci, axis=0)
    return runs


def _regions(runs: pd.DataFrame, level: float) -> pd.DataFrame:
    rows = []
    for (n, f), g in runs.groupby(["N", FRACTION]):
        curve = g.groupby(COUNT)["lost"].mean()  # seeds averaged
        if len(curve) < 2 or not (curve > 0).any():
            continue
        r = poor_performance_region(curve.index.to_numpy(dtype=float), curve.to_numpy(), level=level)
        rows.append(
            {
                "N": n,
                FRACTION: f,
                "left": r.left,
                "right": r.right,
                "left_open": r.left_open,
                "right_open": r.right_open,
                "peak_E": r.peak_E,
                "peak_lost": r.peak_degradation,
            }
        )
    return pd.DataFrame(
        rows, columns=["N", FRACTION, "left", "right", "left_open", "right_open", "peak_E", "peak_lost"]
    )


def _boundary_fits(regions: pd.DataFrame, *, n_bootstrap: int, ci: float, seed: int, source: str) -> dict:
    fits: dict[tuple[float, str], Fit] = {}
    for f, g in regions.groupby(FRACTION):
        for edge in ("left", "right"):
            closed = g[~g[f"{edge}_open"]]
            if closed["N"].nunique() < 2:
                continue
            table = pd.DataFrame({"N": closed["N"].to_numpy(float), "E": closed[edge].to_numpy(float)})
            table.attrs["source"] = source
            # ln E is linear in (ln k, alpha): convex, one start suffices.
            fitter = LawFitter(
                BOUNDARY,
                loss="least_squares",
                n_refine=1,
                group=None,
                ci=ci,
                seed=seed,
                n_bootstrap=n_bootstrap if closed["N"].nunique() > 2 else 0,
            )
            fits[(float(f), edge)] = fitter.fit(table, source=source)
    return fits
