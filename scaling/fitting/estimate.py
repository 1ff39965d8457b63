"""The law fitter: settings in, a :class:`~scaling.fitting.result.Fit` out (scikit-learn's estimator contract).

The procedure is Hoffmann et al. 2022, Approach 3 (arXiv 2203.15556, Eq. 3 and App. D.2), with the corrections of
Besiroglu et al. 2024 (arXiv 2404.10102). :meth:`LawFitter.fit` runs the pipeline, one module per step:

1. :mod:`scaling.fitting.table`: bind the law to the table's columns and check the rows can identify it;
2. :mod:`scaling.fitting.objective`: the parameter space (positive scale constants optimised as logs, fixed and
   tied parameters removed) and the objective on the residuals r_i = log L_hat(x_i) - log L_i (linear residuals for
   a law declared with ``residual_space="linear"``): "huber" = SUM_i Huber_delta(r_i) with delta = 1e-3 (the
   default), "least_squares" = SUM_i r_i^2, or "huber_likelihood" = the Huber negative log-likelihood with a
   learned residual scale (Besiroglu et al.'s estimator);
3. :mod:`scaling.fitting.multistart`: many starts (Hoffmann's 4500-point grid for chinchilla, or variable
   projection), the best refined by L-BFGS-B (:mod:`scaling.fitting.optimise`) and polished tightly;
4. :mod:`scaling.fitting.optimise`: convergence judged by scale-free checks, not by the optimizer's flag (the mean
   instead of the sum of Huber terms makes L-BFGS-B "converge" far from the optimum);
5. :mod:`scaling.fitting.draws`: uncertainty by a seeded bootstrap over runs (the ``group`` column) or rows;
6. :mod:`scaling.fitting.conformal`: the rollout backtest that calibrates prediction intervals.

This module holds the settings, their validation, the quality report and the warnings. ``scaling.fit``, the
one-call function that also dispatches to analyses (transfer, repetition, downstream), is
:func:`scaling.analysis.fit`: the fitting package does not depend on the analyses built on it.

Speed. A plain loop of ``scipy.optimize.minimize`` over 4500 starts with finite-difference gradients takes about
15 CPU minutes on the Epoch data. Here (1) the objective is evaluated for all grid starts at once (one broadcast call
of the law), (2) only the best ``n_refine`` starts are refined by L-BFGS-B at screening tolerances and the winner is
polished tightly, (3) the gradient is exact in the loss function and takes the Jacobian of the log-prediction from
one broadcast call of the law (central finite differences: laws are plain functions without derivatives), and
(4) bootstrap resamples are weighted copies of the data, refitted by BFGS from the full-data optimum with its inverse
Hessian as the first curvature model, plus the multi-start's other local optima. ``benchmarks/fit_speed.py``
measures it against the plain loop (docs/benchmarks.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from scaling.errors import ScalingError
from scaling.fitting.conformal import CUT_REFINE, rollout_errors
from scaling.fitting.diagnostics import BOOTSTRAP_FAIL_MAX, FitWarning
from scaling.fitting.draws import ParameterDraws, bootstrap_draws
from scaling.fitting.multistart import METHODS, Multistart, multistart
from scaling.fitting.objective import LOSSES, Objective, ParamSpace, law_arrays
from scaling.fitting.quality import FitQuality
from scaling.fitting.optimise import SCREEN_OPTIONS, TIGHT_OPTIONS, convergence_diagnostics, convergence_verdict
from scaling.fitting.result import Fit
from scaling.fitting.table import bind_law, data_summary, prepare_table, single_input_column
from scaling.laws.base import Law


class LawFitter:
    """Fit a scaling law to a results table (scikit-learn style: settings here, learned state on the :class:`Fit`).

    Args:
        law: a law or its registry name (``"chinchilla"``, ``"saturating:D"``).
        loss: ``"huber"`` (sum of Huber terms of log residuals; Hoffmann et al. 2022), ``"least_squares"`` (sum of
            squared log residuals) or ``"huber_likelihood"`` (Huber MLE with learned residual scale; Besiroglu et
            al. 2024).
        delta: Huber threshold on log residuals (1e-3, as Hoffmann et al.).
        fix: parameters held at a value, e.g. ``{"alpha": 0.35}``.
        fix_draws: bootstrap draws of fixed parameters (columns: some of ``fix``), e.g. the draws of a stage-1 fit
            whose point values are frozen in ``fix``. Bootstrap resample i holds those parameters at row i (cycled),
            so the intervals carry the stage-1 uncertainty instead of treating the frozen values as exact. The two
            stages are resampled independently (a plug-in propagation; it ignores runs shared by both stages).
        tie: parameters made equal to another, e.g. ``{"beta": "alpha"}`` makes beta == alpha.
        bounds: ``{name: (lower, upper)}`` overriding the law's bounds (natural units).
        n_bootstrap: bootstrap resamples for intervals (0: none).
        ci: central interval level (0.95).
        seed: seed of the bootstrap.
        group: column whose values define resampling units (runs); rows are resampled when it is absent.
        param_def: ``"nonemb"`` (N excludes embeddings, Kaplan) or ``"total"`` (Hoffmann). With ``"total"`` the
            ``N_total`` column is used as N when present.
        x: re-target a single-input law to this column (``saturating`` over ``D``).
        n_refine: how many of the best grid starts L-BFGS-B refines.
        n_bootstrap_starts: grid starts refined per resample, besides the full-data optimum.
        reduction: ``"sum"`` (always, for real fits) or ``"mean"`` (reproduces the Hoffmann et al. loss-scale trap).
        optimizer_options: L-BFGS-B options; None = tight (ftol 1e-15, gtol 1e-12); ``{}`` = SciPy's defaults.
        ref_compute: compute (FLOPs) at which ``tokens_per_param`` is reported for laws with a closed-form optimum;
            default: the largest 6 N D in the data.
        strata: column whose values the bootstrap keeps balanced: units (runs) are resampled within each value
            (per-group fits: every group keeps its runs' count, so its own parameters stay identified).
        method: where the local searches start: ``"grid"`` (the law's multi-start grid) or ``"varpro"`` (variable
            projection: a fine grid of the exponents, the linear parameters solved by NNLS at each; laws linear in
            some parameters only, see :mod:`scaling.fitting.varpro`). Both refine with the full objective.
        asymmetry: cost multiplier of over-predictions (residual > 0) relative to under-predictions: 1 = symmetric;
            k > 1 fits the lower envelope of the points (OLMo-core's ``overestimate_penalty``; they suggest 10).
        calibrate: rollout cuts for calibrating prediction intervals (fit on the smaller sizes, predict the next
            block up; :mod:`scaling.fitting.conformal`); 0 = none; None = 4 when ``n_bootstrap`` > 0, else 0.
    """

    def __init__(
        self,
        law: Law | str,
        *,
        loss: str = "huber",
        delta: float = 1e-3,
        fix: Mapping[str, float] | None = None,
        tie: Mapping[str, str] | None = None,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        fix_draws: pd.DataFrame | None = None,
        n_bootstrap: int = 200,
        ci: float = 0.95,
        seed: int = 0,
        group: str | None = "run_id",
        param_def: str = "nonemb",
        x: str | None = None,
        n_refine: int = 32,
        n_bootstrap_starts: int = 2,
        reduction: str = "sum",
        optimizer_options: Mapping[str, Any] | None = None,
        ref_compute: float | None = None,
        strata: str | None = None,
        method: str = "grid",
        asymmetry: float = 1.0,
        calibrate: int | None = None,
    ):
        self.law = law
        self.method = method
        self.asymmetry = asymmetry
        self.loss = loss
        self.delta = delta
        self.fix = dict(fix or {})
        self.tie = dict(tie or {})
        self.bounds = dict(bounds or {})
        self.fix_draws = fix_draws
        self.n_bootstrap = n_bootstrap
        self.ci = ci
        self.seed = seed
        self.group = group
        self.param_def = param_def
        self.x = x
        self.n_refine = n_refine
        self.n_bootstrap_starts = n_bootstrap_starts
        self.reduction = reduction
        self.optimizer_options = optimizer_options
        self.ref_compute = ref_compute
        self.strata = strata
        self.calibrate = calibrate

    # -- settings ------------------------------------------------------------------------------------------------

    def _validate(self) -> None:
        if self.loss not in LOSSES:
            raise ScalingError(f"loss {self.loss!r}: expected one of {', '.join(LOSSES)}")
        if not (isinstance(self.delta, (int, float)) and self.delta > 0 and math.isfinite(self.delta)):
            raise ScalingError(f"delta {self.delta!r}: must be a positive number")
        if not (isinstance(self.n_bootstrap, (int, np.integer)) and self.n_bootstrap >= 0):
            raise ScalingError(f"n_bootstrap {self.n_bootstrap!r}: must be a whole number >= 0")
        if not (isinstance(self.ci, (int, float)) and 0 < self.ci < 1):
            raise ScalingError(f"ci {self.ci!r}: must be between 0 and 1 (e.g. 0.95)")
        if self.seed is not None and not (isinstance(self.seed, (int, np.integer)) and self.seed >= 0):
            raise ScalingError(f"seed {self.seed!r}: must be a whole number >= 0")  # numpy refuses negative seeds
        if self.param_def not in ("nonemb", "total"):
            raise ScalingError(f"param_def {self.param_def!r}: expected 'nonemb' or 'total'")
        if self.reduction not in ("sum", "mean"):
            raise ScalingError(f"reduction {self.reduction!r}: expected 'sum' or 'mean'")
        if self.method not in METHODS:
            raise ScalingError(f"method {self.method!r}: expected one of {', '.join(METHODS)}")
        if not (isinstance(self.asymmetry, (int, float)) and math.isfinite(self.asymmetry) and self.asymmetry > 0):
            raise ScalingError(f"asymmetry {self.asymmetry!r}: must be a positive number (1 = symmetric)")
        if self.asymmetry != 1.0 and self.loss == "huber_likelihood":
            raise ScalingError("asymmetry: not available with loss huber_likelihood (its normaliser assumes a "
                               "symmetric density); use huber or least_squares")
        if self.calibrate is not None and not (isinstance(self.calibrate, (int, np.integer)) and self.calibrate >= 0):
            raise ScalingError(f"calibrate {self.calibrate!r}: must be a whole number >= 0 (rollout cuts)")
        if not (isinstance(self.n_refine, (int, np.integer)) and self.n_refine >= 1):
            raise ScalingError(f"n_refine {self.n_refine!r}: must be a whole number >= 1")
        if self.fix_draws is not None:
            if not isinstance(self.fix_draws, pd.DataFrame) or self.fix_draws.empty:
                raise ScalingError("fix_draws: expected a non-empty table of draws (one column per fixed parameter)")
            unfixed = [c for c in self.fix_draws.columns if c not in self.fix]
            if unfixed:
                raise ScalingError(f"fix_draws: column {unfixed[0]!r} is not a fixed parameter (fix={{...}} first)")
            if not np.isfinite(self.fix_draws.to_numpy(dtype=float)).all():
                raise ScalingError("fix_draws: every draw must be a finite number")

    def settings(self, law_key: str, group_used: str | None, grid_size: int, ref_compute: float | None) -> dict:
        return {
            "law": law_key,
            "loss": self.loss,
            "delta": self.delta,
            "reduction": self.reduction,
            "fix": dict(self.fix),
            "fix_draws": None if self.fix_draws is None else len(self.fix_draws),
            "tie": dict(self.tie),
            "bounds": {k: [float(a), float(b)] for k, (a, b) in self.bounds.items()},
            "n_bootstrap": int(self.n_bootstrap),
            "ci": float(self.ci),
            "seed": int(self.seed),
            "group": group_used,
            "param_def": self.param_def,
            "x": self.x,
            "grid_size": int(grid_size),
            "n_refine": int(self.n_refine),
            "n_bootstrap_starts": int(self.n_bootstrap_starts),
            "optimizer": "L-BFGS-B",
            "optimizer_options": dict(TIGHT_OPTIONS if self.optimizer_options is None else self.optimizer_options),
            "ref_compute": ref_compute,
            "strata": self.strata,
            "method": self.method,
            "asymmetry": float(self.asymmetry),
            "calibrate": self._n_cuts(),
        }

    def _n_cuts(self) -> int:
        if self.calibrate is None:
            return 4 if self.n_bootstrap else 0
        return int(self.calibrate)

    def _options(self) -> tuple[dict, dict]:
        """L-BFGS-B options for screening (and bootstrap refits) and for the final polish."""
        if self.optimizer_options is None:
            return SCREEN_OPTIONS, TIGHT_OPTIONS
        return dict(self.optimizer_options), dict(self.optimizer_options)

    # -- fitting -------------------------------------------------------------------------------------------------

    def fit(self, data: pd.DataFrame, *, source: str | None = None) -> Fit:
        """Estimate the law's parameters (and bootstrap intervals) from ``data``; returns a :class:`Fit`."""
        # One BLAS thread: L-BFGS-B's matrices are 5x10, and a threaded OpenBLAS spends 5-10x longer waking
        # threads than computing (measured 9 ms instead of 1 ms per iteration on a busy 2-core machine).
        with threadpool_limits(limits=1, user_api="blas"):
            return self._fit(data, source)

    def _fit(self, data: pd.DataFrame, source: str | None) -> Fit:
        t_start = time.perf_counter()
        self._validate()
        # 1. the law bound to the table's columns, the rows checked
        law_key, law = bind_law(self.law, self.x)
        source = source or (str(data.attrs.get("source")) if isinstance(data, pd.DataFrame) and data.attrs.get("source") else "table")
        if self.x is None and isinstance(data, pd.DataFrame):
            column = single_input_column(law, [str(c) for c in data.columns], source=source)
            if column is not None:  # saturating on a table of D: the law over D, recorded as saturating:D
                law_key, law = bind_law(law_key.partition(":")[0], column)
        df = prepare_table(data, law, source=source, param_def=self.param_def)
        space = ParamSpace(law, self.fix, self.tie, self.bounds)
        if space.size == 0:  # scipy's minimize would fail on an empty bounds list with a bare ValueError
            raise ScalingError(f"law {law.name}: all parameters are fixed; nothing to fit")
        if len(df) < space.size:
            n = len(df)
            raise ScalingError(
                f"{source}: {n} row{'s' if n != 1 else ''} but law {law.name} has {space.size} free parameters; "
                f"need at least {space.size} (fix some with fix=... / --fix)"
            )
        # 2. the objective over the free parameters; 3. multi-start to its optimum; 4. the convergence measures
        inputs, log_y = law_arrays(law, df)
        obj = Objective(space, inputs, log_y, loss=self.loss, delta=self.delta, reduction=self.reduction,
                        asymmetry=self.asymmetry)
        grid = space.grid()
        screen, polish = self._options()
        found = multistart(obj, grid, n_refine=self.n_refine, screen=screen, polish=polish, method=self.method)
        if found.best is None:
            raise ScalingError(f"{source}: law {law.name}: the objective is not finite at any start (check the data)")
        best = found.best
        check = convergence_diagnostics(obj, best.x, restart_gain=best.restart_gain)
        params = {k: float(v[0]) for k, v in space.natural(best.x[None, : space.size]).items()}
        params = {k: params[k] for k in law.param_names}
        # 5. bootstrap draws over runs (or rows); 6. the quality report, calibration included; the Fit
        group_used = self.group if (self.group and self.group in df.columns and df[self.group].nunique() >= 2) else None
        resampled = bootstrap_draws(obj, df, best.x, check["hessian"], found.other_optima,
                                    n_resamples=self.n_bootstrap, seed=self.seed, group=group_used,
                                    strata=self.strata, spaces=self._resample_spaces(law),
                                    n_starts=self.n_bootstrap_starts, options=screen)
        quality = self._quality(obj, df, grid, found, check, params, resampled, group_used)
        n_starts = int(getattr(best, "n_starts", len(grid)))
        fit = Fit(
            law=law,
            params=params,
            fixed=dict(space.fixed),
            tied=dict(space.tied),
            draws=resampled.draws,
            settings={**self.settings(law_key, group_used, n_starts, self._ref_compute(df, law)),
                      "bootstrap_units_per_resample": resampled.units_per_resample},
            data_summary=data_summary(df, law, source, group_used),
            quality=quality,
        )
        fit.recompute_intervals()
        fit.quality.warnings.extend(fit.identifiability_warnings())
        fit.quality.seconds = round(time.perf_counter() - t_start, 3)
        return fit

    def _resample_spaces(self, law: Law) -> list[ParamSpace]:
        """One parameter space per draw of the frozen parameters (``fix_draws``), cycled over the resamples; built
        before any resample so that a bad draw fails early. Empty without ``fix_draws`` or bootstrap."""
        if self.fix_draws is None or not self.n_bootstrap:
            return []
        spaces = []
        for k, row in enumerate(self.fix_draws.to_dict("records")):
            try:
                spaces.append(ParamSpace(law, {**self.fix, **row}, self.tie, self.bounds))
            except ScalingError as exc:
                raise ScalingError(f"fix_draws row {k}: {exc}") from None
        return spaces

    def _ref_compute(self, df: pd.DataFrame, law: Law) -> float | None:
        """The compute (FLOPs) at which ``tokens_per_param`` is reported for a compute-optimal law: the setting, or
        the largest 6 N D in the data."""
        if self.ref_compute is None and law.optimal is not None and {"N", "D"} <= set(law.inputs):
            return float((6.0 * df["N"] * df["D"]).max())
        return self.ref_compute

    def _calibration(self, df: pd.DataFrame, law: Law, n_free: int) -> dict | None:
        """The rollout backtest of :mod:`scaling.fitting.conformal`, each cut fitted by this fitter's settings as a
        point fit (no bootstrap, no calibration of its own, a reduced multi-start)."""
        n_cuts = self._n_cuts()
        if n_cuts <= 0:
            return None
        cut_fitter = LawFitter(law, loss=self.loss, delta=self.delta, fix=self.fix, tie=self.tie, bounds=self.bounds,
                               group=None, param_def=self.param_def, n_refine=min(CUT_REFINE, self.n_refine),
                               reduction=self.reduction, optimizer_options=self.optimizer_options,
                               method=self.method, asymmetry=self.asymmetry, n_bootstrap=0, calibrate=0)
        return rollout_errors(df, law, lambda rows: cut_fitter.fit(rows, source="rollout cut"), n_cuts, n_free)

    # -- the quality report --------------------------------------------------------------------------------------

    def _quality(self, obj: Objective, df: pd.DataFrame, grid: np.ndarray, found: Multistart,
                 check: Mapping[str, Any], params: Mapping[str, float], resampled: ParameterDraws,
                 group_used: str | None) -> FitQuality:
        """``Fit.quality``: goodness of fit, the convergence verdict and its measures, the bootstrap's failures,
        the rollout calibration and the warnings (point estimate first, then bootstrap)."""
        space, law, best = obj.space, obj.space.law, found.best
        theta = best.x[: space.size]
        n = len(df)
        with np.errstate(all="ignore"):
            resid = obj.log_pred(theta[None, :])[0] - obj.log_y
        n_distinct = len(df[list(law.inputs)].drop_duplicates())
        status, message = convergence_verdict(check, best.status, str(best.message), found.n_refined, n)
        at_bound = _at_bound(space, theta, grid)
        n_failed = resampled.run.n_failed
        quality = FitQuality(
            n_points=int(n),
            n_distinct_points=int(n_distinct),
            n_params_free=int(space.size),
            rmse_log=float(np.sqrt(np.mean(resid**2))),
            residual_space=law.residual_space,
            objective=float(best.fun),
            converged=status == "converged",
            convergence=status,
            message=message,
            optimizer_message=str(best.message),
            newton_step=float(check["newton_step"]),
            relative_gradient=float(check["relative_gradient"]),
            restart_gain=float(check["restart_gain"]),
            at_bound=at_bound,
            n_starts=int(getattr(best, "n_starts", len(grid))),
            n_refined=int(found.n_refined),
            bootstrap_failed_fraction=float(n_failed / self.n_bootstrap) if self.n_bootstrap else None,
            warnings=[*_point_warnings(space, theta, params, grid, at_bound, n_distinct, status, message),
                      *self._bootstrap_warnings(df, space, group_used, n_failed)],
            seconds=None,
            calibration=self._calibration(df, law, space.size),
        )
        if self.loss == "huber_likelihood":
            quality.residual_scale = float(np.exp(best.x[space.size]))
        return quality

    def _bootstrap_warnings(self, df: pd.DataFrame, space: ParamSpace, group_used: str | None,
                            n_failed: int) -> list[FitWarning]:
        warnings_: list[FitWarning] = []
        if self.n_bootstrap and n_failed / self.n_bootstrap > 0.1:
            share = n_failed / self.n_bootstrap
            withheld = "intervals withheld" if share >= BOOTSTRAP_FAIL_MAX else "intervals are less reliable"
            warnings_.append(FitWarning("bootstrap_failed",
                                        f"{n_failed} of {self.n_bootstrap} bootstrap resamples failed; {withheld}"))
        if self.group and self.group in df.columns and group_used is None:
            warnings_.append(FitWarning("bootstrap_rows_not_runs",
                                        f"column {self.group!r} has one value: bootstrap resampled rows instead of runs",
                                        "info"))
        n_groups = int(df[group_used].nunique()) if group_used else 0
        if self.n_bootstrap and group_used and n_groups <= 2 * space.size:
            # Resampling K whole runs (e.g. one WSD run per size carrying several budgets) with K close to the number
            # of free parameters gives degenerate or failed resamples: say so rather than print narrow intervals.
            warnings_.append(FitWarning(
                "few_resampling_units",
                f"only {n_groups} distinct {group_used!r} values to resample for {space.size} free parameters: "
                f"intervals are coarse; group=None (--group \"\") resamples rows instead, which understates "
                "correlated errors within a run"))
        return warnings_


def _at_bound(space: ParamSpace, theta: np.ndarray, grid: np.ndarray) -> list[str]:
    """Free parameters at (within 1e-6 of) a bound, or scale constants driven towards 0 (log -> -inf)."""
    grid_min = grid.min(axis=0) if grid.size else np.zeros(space.size)
    return [
        name for name, t, lo, hi, is_log, g0 in zip(space.free, theta, space.lower, space.upper, space.log, grid_min)
        if (np.isfinite(lo) and t - lo <= 1e-6 * max(1.0, abs(lo)))
        or (np.isfinite(hi) and hi - t <= 1e-6 * max(1.0, abs(hi)))
        # a scale constant driven towards its bound 0 (log -> -inf): 9 decades below its smallest start
        or (is_log and not np.isfinite(lo) and t < g0 - 20.0)
    ]


def _point_warnings(space: ParamSpace, theta: np.ndarray, params: Mapping[str, float], grid: np.ndarray,
                    at_bound: list[str], n_distinct: int, status: str, message: str) -> list[FitWarning]:
    """What is wrong with the point estimate: an interpolating fit, no convergence, parameters at a bound or far
    outside their start grid."""
    warnings_: list[FitWarning] = []
    if n_distinct <= space.size:
        # e.g. ECE(N) = ECE_inf + a N^-b through 3 sizes: any 3 points are matched exactly, whatever the truth
        warnings_.append(FitWarning(
            "interpolating_fit",
            f"{n_distinct} distinct input point{'s' if n_distinct != 1 else ''} for {space.size} free parameters: "
            "the law can pass through every one, so the fit tests nothing and extrapolates blindly; "
            "add points or fix parameters", "error"))
    if status != "converged":
        warnings_.append(FitWarning("not_converged", f"the fit did NOT converge ({status}): {message}", "error"))
    for name in at_bound:
        if space.log[space.free.index(name)] and params[name] < 1e-6:
            warnings_.append(FitWarning(
                "param_driven_to_zero",
                f"{name} is driven to 0 ({name} = {params[name]:.3g}): the data do not pin it down; "
                f"consider fixing it (fix={{'{name}': ...}})"))
        else:
            warnings_.append(FitWarning(
                "param_at_bound", f"{name} is at a bound ({name} = {params[name]:.6g}); the optimum may lie outside it"))
    for name, t in zip(space.free, theta):
        if name in at_bound:
            continue
        axis = np.unique(grid[:, space.free.index(name)])
        span = axis.max() - axis.min()
        if axis.size > 1 and (t < axis.min() - 0.5 * span or t > axis.max() + 0.5 * span):
            warnings_.append(FitWarning("param_outside_start_grid",
                                        f"{name} = {params[name]:.6g} lies far outside its start grid; check the fit"))
    return warnings_


__all__ = ["LawFitter"]
