"""Effective data transferred (Hernandez et al. 2021, arXiv 2102.01293): from runs to a fitted ``transfer`` law.

The procedure (docs/transfer-repetition-calibration.md, 'transfer'):

1. fit the from-scratch law L_B(N, D) (``kaplan-nd``, Kaplan Eq. 1.5) on the target's from-scratch runs;
2. for every fine-tuned run, invert it at equal loss: D_E = D_c / (L^(1/alpha_D) - (N_c/N)^(alpha_N/alpha_D)),
   the from-scratch data that reaches the fine-tuned loss, and D_T = D_E - D_F;
3. classify each run: ``saturated`` (loss below anything from-scratch training reaches at that size),
   ``negative`` (D_T <= 0: ossification), ``high_data`` (D_F > 0.1 D(N), outside the low-data regime where the
   power law holds), ``extrapolated`` (D_E beyond the largest from-scratch D measured at that size), ``ok``;
4. fit D_T = k D_F^alpha N^beta on the ``ok`` runs by least squares on ln D_T (the paper's fit), and report the
   effective-data multiplier (D_F + D_T)/D_F and the fraction from transfer f_T = D_T/(D_F + D_T) per run.

Uncertainty. D_T is a small difference of large numbers near D_E ~ D_F and it inherits the uncertainty of L_B, so
the bootstrap is two-stage: each draw pairs a bootstrap draw of the from-scratch fit (a resample of the
from-scratch runs) with a resample of the fine-tuned runs, recomputes D_T and the classes, and refits the law.
The per-run D_T intervals come from the from-scratch draws alone.

Which rows are which. In a results table from the trainer, fine-tuned rows name the pre-training corpus in
``source`` and carry D_F; from-scratch rows have an empty ``source``; ``target`` is the corpus whose held-out loss
was measured (pre-training runs on the source corpus are left out by it). Without a ``source`` column, rows with
a D_F are the fine-tuned ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scaling.errors import ScalingError
from scaling.fitting.bootstrap import BootstrapRun, percentile_interval, resample_units, run_bootstrap
from scaling.fitting.diagnostics import FitWarning
from scaling.fitting.estimate import LawFitter
from scaling.fitting.result import Fit
from scaling.analysis.interpolate import amount_at_loss
from scaling.laws import get_law
from scaling.laws.transfer import CLASSES, OK, TRANSFER, classify_runs, data_multiplier, transfer_fraction
from scaling.results import read_results, validate_columns
from scaling.results.locate import cell_location  # "line 7, column ..." of a file

SCRATCH_PARAMS = ("alpha_N", "alpha_D", "N_c", "D_c")
MIN_OK_RUNS = 4  # three parameters plus one degree of freedom


@dataclass
class TransferAnalysis:
    """The result of :func:`analyze_transfer`.

    Attributes:
        fit: the ``transfer`` law D_T = k D_F^alpha N^beta fitted on the ``ok`` runs, with two-stage bootstrap
            intervals (a :class:`~scaling.fitting.result.Fit`: ``fit.predict(D_F=1e8, N=1e9)``, ``fit.save(path)``).
        scratch_fit: the from-scratch law L_B(N, D) on the target.
        runs: one row per fine-tuned run: N, D_F, loss, D_E, D_T (with ``D_T_lower``/``D_T_upper`` from the
            from-scratch draws), f_T, multiplier, class, D_E_interp (monotone interpolation of the measured
            from-scratch points at the same N, a cross-check of the closed form; NaN outside their range).
        counts: number of runs per class.
    """

    fit: Fit
    scratch_fit: Fit
    runs: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [
            self.scratch_fit.summary(),
            "",
            self.fit.summary(),
            "",
            "[[Runs]] " + ", ".join(f"{c}: {n}" for c, n in self.counts.items()),
        ]
        return "\n".join(lines)


def split_runs(
    data: pd.DataFrame, *, target: str | None = None, source: str = "table"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(from-scratch rows, fine-tuned rows) of a results table, on one target distribution."""
    df = data
    if "target" in df.columns:
        targets = sorted(df["target"].dropna().astype(str).unique())
        if target is None and len(targets) > 1 and "source" in df.columns:
            # A transfer sweep's table also holds the pretraining runs, scored on their source corpus: when every
            # fine-tuned row measures one target, that is the target (the pretraining rows are left out).
            src = df["source"]
            tuned = src.notna() & (src.astype(str).str.strip() != "")
            tuned_targets = sorted(df.loc[tuned, "target"].dropna().astype(str).unique())
            if len(tuned_targets) == 1:
                target = tuned_targets[0]
        if target is None:
            if len(targets) > 1:
                raise ScalingError(
                    f"{source}: rows measure {len(targets)} targets ({', '.join(targets)}); choose one with "
                    f"--where \"target == '{targets[-1]}'\" (or target=...)"
                )
        else:
            if target not in targets:
                raise ScalingError(
                    f"{source}: no rows with target {target!r}; targets are {', '.join(targets) or 'none'}"
                )
            df = df[df["target"].astype(str) == target]
    if "source" in df.columns:
        src = df["source"]
        finetuned = src.notna() & (src.astype(str).str.strip() != "")
        missing = finetuned & pd.to_numeric(df.get("D_F"), errors="coerce").isna() if "D_F" in df.columns else finetuned
        if missing.any():
            pos = int(missing.to_numpy().nonzero()[0][0])
            raise ScalingError(
                f"{source}: {cell_location(df, pos, 'D_F')} is empty: a fine-tuned run (source "
                f"{df['source'].iloc[pos]!r}) needs D_F (fine-tuning tokens)"
            )
    elif "D_F" in df.columns:
        finetuned = pd.to_numeric(df["D_F"], errors="coerce").notna()
    else:
        raise ScalingError(f"{source}: no fine-tuned runs: need a D_F column (fine-tuning tokens), or source and D_F")
    return df[~finetuned], df[finetuned]


def effective_transfer(
    finetuned: pd.DataFrame,
    scratch_params: Mapping[str, float],
    *,
    scratch: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per fine-tuned run: D_E, D_T, f_T, multiplier and class, given the from-scratch law's parameters.

    ``scratch`` (the measured from-scratch runs: N, D, loss) sets the ``extrapolated`` limit per size and the
    interpolation cross-check; without it no run is called extrapolated.
    """
    out = finetuned[["N", "D_F", "loss"]].astype(float).copy()
    d_max = None
    if scratch is not None:
        d_max = out["N"].map(scratch.groupby("N")["D"].max()).to_numpy(dtype=float)
    D_E, D_T, cls = classify_runs(out["N"], out["D_F"], out["loss"], scratch_params, D_measured_max=d_max)
    out["D_E"], out["D_T"], out["class"] = D_E, D_T, cls
    with np.errstate(invalid="ignore", divide="ignore"):
        out["f_T"] = transfer_fraction(out["D_F"], D_T)
        out["multiplier"] = data_multiplier(out["D_F"], D_T)
    if scratch is not None:
        out["D_E_interp"] = [_interpolated_data(scratch, n, loss) for n, loss in zip(out["N"], out["loss"])]
    return out


def _interpolated_data(scratch: pd.DataFrame, N: float, loss: float) -> float:
    """D at ``loss`` interpolated between the measured from-scratch points at size N (NaN where they cannot say)."""
    at_n = scratch[scratch["N"] == N]
    return amount_at_loss(pd.Series(at_n["loss"].to_numpy(), index=at_n["D"].to_numpy(dtype=float)), loss)


def analyze_transfer(
    data: pd.DataFrame | str,
    *,
    target: str | None = None,
    mapping: Mapping[str, str] | None = None,
    where: str | None = None,
    final_only: bool = True,
    scratch_law: str = "kaplan-nd",
    scratch_options: Mapping[str, Any] | None = None,
    n_bootstrap: int = 200,
    ci: float = 0.95,
    seed: int = 0,
) -> TransferAnalysis:
    """Fit the from-scratch law, invert it for every fine-tuned run, classify, fit the transfer law.

    Args:
        data: results table (DataFrame or CSV path) holding from-scratch and fine-tuned runs on the target.
        target: the target corpus when the table measures several (``target`` column).
        mapping, where: column mapping and row selection as for :func:`scaling.read_results`.
        final_only: keep only each run's final evaluation when the table has a ``final`` column.
        scratch_law: the from-scratch law; it must have Kaplan Eq. 1.5's parameters (``kaplan-nd``).
        scratch_options: keyword arguments for the from-scratch :class:`~scaling.fitting.estimate.LawFitter`.
        n_bootstrap: draws of the two-stage bootstrap (0: point estimates only).
        ci, seed: interval level and seed.
    """
    df = read_results(data, mapping=mapping, where=where) if isinstance(data, str) or mapping or where else data
    source = str(df.attrs.get("source", "table"))
    if final_only and "final" in df.columns:
        df = df[pd.to_numeric(df["final"], errors="coerce") == 1]
        df.attrs["source"] = source
    scratch, finetuned = _paired_runs(df, target, source)
    options = {"n_bootstrap": n_bootstrap, "seed": seed, "ci": ci, **(scratch_options or {})}
    scratch_fit = _fit_scratch(scratch, scratch_law, options, source)

    runs = effective_transfer(finetuned, scratch_fit.params, scratch=scratch)
    fit = fit_transfer(runs, source)
    runs["D_T_lower"], runs["D_T_upper"] = np.nan, np.nan
    if n_bootstrap and len(scratch_fit.draws):
        boot, runs["D_T_lower"], runs["D_T_upper"] = _two_stage_bootstrap(
            runs, finetuned, scratch_fit.draws, n_bootstrap=n_bootstrap, ci=ci, seed=seed, source=source
        )
        _attach_bootstrap(fit, boot, ci=ci, seed=seed)
    counts = {c: int((runs["class"] == c).sum()) for c in CLASSES}
    fit.meta.setdefault(
        "notes",
        "D_T from inverting "
        + scratch_law
        + " fitted on the from-scratch runs; runs per class: "
        + ", ".join(f"{c} {n}" for c, n in counts.items()),
    )
    return TransferAnalysis(fit=fit, scratch_fit=scratch_fit, runs=runs.reset_index(drop=True), counts=counts)


def _paired_runs(df: pd.DataFrame, target: str | None, source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(from-scratch runs: N, D, loss; fine-tuned runs: N, D_F, loss), validated, every fine-tuned size with
    from-scratch runs at that size (D_T is measured against them)."""
    scratch, finetuned = split_runs(df, target=target, source=source)
    if len(finetuned) == 0:
        raise ScalingError(f"{source}: no fine-tuned runs (rows with a source corpus and D_F)")
    if len(scratch) == 0:
        raise ScalingError(f"{source}: no from-scratch runs on the target; D_T is measured against them")
    scratch = validate_columns(scratch, ["N", "D", "loss"], source=source)
    finetuned = validate_columns(finetuned, ["N", "D_F", "loss"], source=source)
    sizes = set(scratch["N"].unique())
    lacking = finetuned[~finetuned["N"].isin(sizes)]
    if len(lacking):
        pos = int(np.flatnonzero(~finetuned["N"].isin(sizes).to_numpy())[0])
        raise ScalingError(
            f"{source}: {cell_location(finetuned, pos, 'N')}: a fine-tuned run at N = {lacking['N'].iloc[0]:.6g} "
            f"has no from-scratch runs at that size; add from-scratch baselines at every fine-tuned size"
        )
    return scratch, finetuned


def _fit_scratch(scratch: pd.DataFrame, scratch_law: str, options: Mapping[str, Any], source: str) -> Fit:
    """The from-scratch law L_B(N, D) on the target, with its bootstrap draws (the first stage)."""
    law = get_law(scratch_law)
    if tuple(sorted(law.param_names)) != tuple(sorted(SCRATCH_PARAMS)):
        raise ScalingError(
            f"scratch law {scratch_law!r} must have parameters {', '.join(SCRATCH_PARAMS)} (use kaplan-nd)"
        )
    scratch.attrs["source"] = source
    return LawFitter(law, **options).fit(scratch, source=source)


def _two_stage_bootstrap(
    runs: pd.DataFrame,
    finetuned: pd.DataFrame,
    scratch_draws: pd.DataFrame,
    *,
    n_bootstrap: int,
    ci: float,
    seed: int,
    source: str,
) -> tuple[BootstrapRun, np.ndarray, np.ndarray]:
    """Resample i pairs from-scratch draw i (cycled) with a resample of the fine-tuned runs: D_T, classes, refit.

    Returns the transfer law's draws and the per-run D_T interval, which comes from the from-scratch draws alone.
    Whether a run's D_E lies beyond the measured from-scratch data is a fact of the data, not of the draw, so the
    ``extrapolated`` class is kept from ``runs``.
    """
    stage_one = scratch_draws[list(SCRATCH_PARAMS)].to_dict("records")
    per_draw = []
    for i in range(n_bootstrap):
        r = effective_transfer(finetuned, stage_one[i % len(stage_one)], scratch=None)
        r["class"] = np.where(runs["class"] == "extrapolated", "extrapolated", r["class"])
        per_draw.append(r)
    lower, upper = percentile_interval(np.array([r["D_T"].to_numpy() for r in per_draw]), ci, axis=0)

    def one(rng: np.random.Generator, i: int):
        sample = per_draw[i].iloc[resample_units(rng, len(per_draw[i]))]
        sample = sample[sample["class"] == OK]
        if len(sample) < MIN_OK_RUNS or sample["N"].nunique() < 2 or sample["D_F"].nunique() < 2:
            return None
        return fit_transfer(sample, source, quiet=True).params

    return run_bootstrap(one, n_bootstrap, seed), lower, upper


def _attach_bootstrap(fit: Fit, boot: BootstrapRun, *, ci: float, seed: int) -> None:
    """Give the transfer fit the two-stage draws, their settings and failure share, and intervals from them."""
    fit.draws = pd.DataFrame(boot.draws, columns=list(TRANSFER.param_names), dtype=float)
    fit.settings.update(
        n_bootstrap=int(boot.n_resamples),
        seed=int(seed),
        ci=float(ci),
        bootstrap="two-stage: from-scratch fit draw x resample of fine-tuned runs",
    )
    fit.quality.bootstrap_failed_fraction = boot.failed_fraction
    if boot.failed_fraction > 0.1:
        fit.quality.warnings.append(FitWarning.coerce(
            f"{boot.n_failed} of {boot.n_resamples} bootstrap draws had too few ok runs; intervals are unreliable"
        ))
    fit.recompute_intervals()


def fit_transfer(runs: pd.DataFrame, source: str = "table", quiet: bool = False) -> Fit:
    """The ``transfer`` law fitted by least squares on ln D_T over the ``ok`` runs of ``runs`` (Hernandez et al.'s
    fit; columns D_F, N, D_T, class as :func:`effective_transfer` returns them). ``quiet`` skips the check that
    enough runs are usable (the bootstrap checks itself)."""
    ok = runs[runs["class"] == OK]
    if not quiet and (len(ok) < MIN_OK_RUNS or ok["N"].nunique() < 2 or ok["D_F"].nunique() < 2):
        counts = ", ".join(f"{c} {int((runs['class'] == c).sum())}" for c in CLASSES)
        raise ScalingError(
            f"{source}: only {len(ok)} fine-tuned runs are usable for the transfer fit ({counts}); need at least "
            f"{MIN_OK_RUNS} 'ok' runs over 2 or more sizes and 2 or more D_F (more low-data fine-tunes, or "
            f"from-scratch runs with more data so D_E is not extrapolated)"
        )
    table = ok[["D_F", "N", "D_T"]].copy()
    table.attrs["source"] = source
    # ln D_T is linear in (ln k, alpha, beta): the problem is convex and one start suffices.
    return LawFitter(TRANSFER, loss="least_squares", n_bootstrap=0, n_refine=1, group=None).fit(table, source=source)
