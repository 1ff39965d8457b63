"""Estimating a law's parameters from a results table: log-space objectives, multi-start, bootstrap.

This module is the estimator (:class:`LawFitter`, :func:`fit`); the objective and parameter space live in
:mod:`scaling.fitting.objective`, the local optimiser runs and the convergence verdict in
:mod:`scaling.fitting.optimise`.

The procedure is Hoffmann et al. 2022, Approach 3 (arXiv 2203.15556, Eq. 3 and App. D.2), with the corrections of
Besiroglu et al. 2024 (arXiv 2404.10102):

- residuals in log space, r_i = log L_hat(x_i) - log L_i, through the law's stable ``log_predict`` (in linear space,
  r_i = L_hat(x_i) - L_i, for a law declared with ``residual_space="linear"``: signed targets, accuracies);
- objective (``loss``): "huber" = SUM_i Huber_delta(r_i) with delta = 1e-3 (the default), "least_squares" =
  SUM_i r_i^2, or "huber_likelihood" = the Huber negative log-likelihood with a learned residual scale s = exp(sigma):
  SUM_i [Huber_delta(r_i/s) + log Z_delta + log s], Z_delta = sqrt(2 pi)(1 - 2 Phi(-delta)) + 2 exp(-delta^2/2)/delta
  (Besiroglu et al.'s estimator);
- positive scale constants (``Param.log_scale``) are optimised as logs, every other parameter as itself;
- multi-start from the cartesian product of the free parameters' grids (Hoffmann's 4500-point grid for chinchilla),
  tight L-BFGS-B tolerances (ftol 1e-15, gtol 1e-12), best objective kept;
- convergence is judged by scale-free checks (see :func:`convergence_check`), not by the optimizer's flag: the mean
  instead of the sum of Huber terms makes L-BFGS-B "converge" far from the optimum (Besiroglu et al. 2024,
  arXiv 2404.10102);
- uncertainty by a seeded bootstrap over runs (the ``group`` column) or rows.

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

import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from scaling.fitting.conformal import rollout_errors
from scaling.fitting.diagnostics import BOOTSTRAP_FAIL_MAX, FitWarning
from scaling.fitting.extrapolation import input_moments
from scaling.errors import ScalingError
from scaling.fitting.result import Fit
from scaling.fitting.objective import (
    LOSSES,
    Objective,
    ParamSpace,
    huber,
    law_arrays,
)
from scaling.fitting.optimise import (
    SCREEN_OPTIONS,
    TIGHT_OPTIONS,
    bfgs_warm,
    convergence_check,
    convergence_diagnostics,
    convergence_verdict,
    gauss_newton_polish,
    lbfgsb,
)
from scaling.laws.base import _REGISTRY, Law, get_law
from scaling.results import read_results, validate_columns
from scaling.fitting.varpro import varpro_starts
# Where the local searches start: "grid" = the law's multi-start grid (Hoffmann's 4500 points for chinchilla);
# "varpro" = a fine grid of the exponents with the linear parameters solved by NNLS at each (scaling/fitting/varpro.py).
METHODS = ("grid", "varpro")
# Time. On tables larger than SCREEN_ROWS the grid starts are scored and screened on a seeded random subsample of
# SCREEN_ROWS rows (which locates the basins as well: its optimum lies within ~1/sqrt(10^4) of the full one), and
# only the best distinct screened optima are refined and polished on every row. Without it a 1e6-row fit spends
# ~10 minutes screening 32 starts at 0.1-0.2 s per gradient. Tables up to SCREEN_ROWS rows are fitted as before.
SCREEN_ROWS = 10_000
SCREEN_SEED = 0
# The bootstrap on large tables: with more than BOOTSTRAP_UNITS resampling units (runs, or rows), each resample
# draws m = BOOTSTRAP_UNITS units with replacement instead of n and is refitted on those rows only; its deviation
# from the full-data optimum is scaled by sqrt(m/n) (the m-out-of-n bootstrap, Bickel, Goetze & van Zwet 1997,
# consistent for smooth sqrt(n)-estimators such as these M-estimators). Refitting every resample on all rows cost
# ~34 s a resample at 1e6 rows (~2 hours for the default 200); this keeps a resample at the cost of ~2e4 rows.
BOOTSTRAP_UNITS = 20_000


# ---------------------------------------------------------------------------------------------------------------
# The estimator


def _law_key(law: Law | str, x: str | None) -> tuple[str, Law]:
    """Registry name (``saturating:D`` for a re-targeted single-input law) and the bound law."""
    if isinstance(law, str):
        key = law.strip()
        bound = get_law(key)
    else:
        bound = law
        base = _REGISTRY.get(law.name)
        key = law.name
        if base is not None and base.inputs != law.inputs and len(law.inputs) == 1:
            key = f"{law.name}:{law.inputs[0]}"
    if x is not None:
        bound = bound.with_input(x)
        base_name = key.partition(":")[0]
        key = base_name if _REGISTRY.get(base_name) is not None and _REGISTRY[base_name].inputs == (x,) else f"{base_name}:{x}"
    return key, bound


# Inputs a single-input law (power, saturating, bnsl, ...) is commonly fitted over.
SINGLE_INPUT_CANDIDATES = ("N", "D", "C")


def single_input_column(law: Law, columns: Sequence[str], *, source: str = "table") -> str | None:
    """The column a single-input law should read when the table lacks the law's default input.

    ``saturating`` reads N; on a table with D but no N it is fitted over D (returns ``"D"``). None when the law's
    own input is present (or it has several inputs). Raises when the table offers several candidates, naming the
    choices (``saturating:D``), and when it offers none.
    """
    if len(law.inputs) != 1 or law.inputs[0] in columns or law.output != "loss":  # ece(N) over D means nothing
        return None
    present = [c for c in SINGLE_INPUT_CANDIDATES if c in columns]
    base = law.name
    if len(present) == 1:
        return present[0]
    if present:
        choices = " or ".join(f"{base}:{c}" for c in present)
        raise ScalingError(
            f"{source}: law {base} reads {law.inputs[0]}, which the table lacks; it has {', '.join(present)}: "
            f"choose with --law {choices} (or --x)"
        )
    raise ScalingError(
        f"{source}: law {base} reads {law.inputs[0]}, which the table lacks, and none of "
        f"{', '.join(SINGLE_INPUT_CANDIDATES)} either; map a column (--map {law.inputs[0]}=COLUMN) or name one with "
        f"--law {base}:COLUMN"
    )


def _min_distinct(law: Law) -> dict[str, int]:
    """The law's identifiability requirement, following a single-input law re-targeted to another column."""
    out = {}
    for col, k in law.min_distinct.items():
        if col not in law.inputs and len(law.inputs) == 1:
            col = law.inputs[0]
        out[col] = k
    return out


def _unit_strata(df: pd.DataFrame, strata: str | None, codes: np.ndarray, n_units: int) -> list[np.ndarray] | None:
    """The resampling units of each value of the ``strata`` column (a unit belongs to the stratum of its first
    row), or None without strata."""
    if not strata or strata not in df.columns:
        return None
    first = pd.Series(df[strata].to_numpy()).groupby(codes).first().reindex(range(n_units))
    return [np.flatnonzero((first == value).to_numpy()) for value in pd.unique(first.dropna())]


def _file_sha256(path: str | None) -> str | None:
    if not path:
        return None
    p = Path(path)
    if not p.is_file():
        return None
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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

    def _calibration(self, df: pd.DataFrame, law: Law, n_free: int) -> dict | None:
        """The rollout backtest of :mod:`scaling.fitting.conformal` with this fitter's settings (point fits only)."""
        n_cuts = self._n_cuts()
        if n_cuts <= 0:
            return None
        kwargs = {"loss": self.loss, "delta": self.delta, "fix": self.fix, "tie": self.tie, "bounds": self.bounds,
                  "group": None, "param_def": self.param_def, "n_refine": self.n_refine, "reduction": self.reduction,
                  "optimizer_options": self.optimizer_options, "method": self.method, "asymmetry": self.asymmetry}
        return rollout_errors(df, law, kwargs, n_cuts, n_free)

    # -- fitting -------------------------------------------------------------------------------------------------

    def _prepare(self, data: pd.DataFrame, source: str, law: Law) -> pd.DataFrame:
        if not isinstance(data, pd.DataFrame):
            raise ScalingError(f"expected a pandas DataFrame or a CSV path, got {type(data).__name__}")
        df = data
        if self.param_def == "total" and "N_total" in df.columns and "N" in law.inputs:
            df = df.assign(N=df["N_total"])
        positive = None
        if not law.positive_inputs:  # a formula law: inputs may be <= 0; a log-space target must still be > 0
            positive = {law.output} if law.residual_space == "log" else set()
        df = validate_columns(df, list(law.inputs) + [law.output], source=source, positive=positive)
        if len(df) == 0:
            raise ScalingError(f"{source}: no rows to fit")
        for col, k in _min_distinct(law).items():
            if col in df.columns:
                m = int(df[col].nunique())
                if m < k:
                    raise ScalingError(
                        f"{source}: column {col!r} has {m} distinct value{'s' if m != 1 else ''}; "
                        f"law {law.name} needs at least {k}"
                    )
        return df

    def fit(self, data: pd.DataFrame, *, source: str | None = None) -> Fit:
        """Estimate the law's parameters (and bootstrap intervals) from ``data``; returns a :class:`Fit`."""
        # One BLAS thread: L-BFGS-B's matrices are 5x10, and a threaded OpenBLAS spends 5-10x longer waking
        # threads than computing (measured 9 ms instead of 1 ms per iteration on a busy 2-core machine).
        with threadpool_limits(limits=1, user_api="blas"):
            return self._fit(data, source)

    def _fit(self, data: pd.DataFrame, source: str | None) -> Fit:
        t_start = time.perf_counter()
        self._validate()
        law_key, law = _law_key(self.law, self.x)
        source = source or (str(data.attrs.get("source")) if isinstance(data, pd.DataFrame) and data.attrs.get("source") else "table")
        if self.x is None and isinstance(data, pd.DataFrame):
            column = single_input_column(law, [str(c) for c in data.columns], source=source)
            if column is not None:  # saturating on a table of D: the law over D, recorded as saturating:D
                law_key, law = _law_key(law_key.partition(":")[0], column)
        df = self._prepare(data, source, law)
        space = ParamSpace(law, self.fix, self.tie, self.bounds)
        if space.size == 0:  # scipy's minimize would fail on an empty bounds list with a bare ValueError
            raise ScalingError(f"law {law.name}: all parameters are fixed; nothing to fit")
        n = len(df)
        if n < space.size:
            raise ScalingError(
                f"{source}: {n} row{'s' if n != 1 else ''} but law {law.name} has {space.size} free parameters; "
                f"need at least {space.size} (fix some with fix=... / --fix)"
            )
        inputs, log_y = law_arrays(law, df)
        obj = Objective(space, inputs, log_y, loss=self.loss, delta=self.delta, reduction=self.reduction,
                         asymmetry=self.asymmetry)
        grid = space.grid()

        best, n_refined, other_optima = self._multistart(obj, grid)
        if best is None:
            raise ScalingError(f"{source}: law {law.name}: the objective is not finite at any start (check the data)")
        x_best = best.x
        check = convergence_diagnostics(obj, x_best, restart_gain=best.restart_gain)
        theta = x_best[: space.size]
        params = {k: float(v[0]) for k, v in space.natural(theta[None, :]).items()}
        params = {k: params[k] for k in law.param_names}

        # Goodness of fit
        with np.errstate(all="ignore"):
            resid = obj.log_pred(theta[None, :])[0] - log_y
        rmse = float(np.sqrt(np.mean(resid**2)))
        grid_min = grid.min(axis=0) if grid.size else np.zeros(space.size)
        at_bound = [
            name for name, t, lo, hi, is_log, g0 in zip(space.free, theta, space.lower, space.upper, space.log, grid_min)
            if (np.isfinite(lo) and t - lo <= 1e-6 * max(1.0, abs(lo)))
            or (np.isfinite(hi) and hi - t <= 1e-6 * max(1.0, abs(hi)))
            # a scale constant driven towards its bound 0 (log -> -inf): 9 decades below its smallest start
            or (is_log and not np.isfinite(lo) and t < g0 - 20.0)
        ]
        warnings_: list[FitWarning] = []
        n_distinct = len(df[list(law.inputs)].drop_duplicates())
        if n_distinct <= space.size:
            # e.g. ECE(N) = ECE_inf + a N^-b through 3 sizes: any 3 points are matched exactly, whatever the truth
            warnings_.append(FitWarning(
                "interpolating_fit",
                f"{n_distinct} distinct input point{'s' if n_distinct != 1 else ''} for {space.size} free parameters: "
                "the law can pass through every one, so the fit tests nothing and extrapolates blindly; "
                "add points or fix parameters", "error"))
        status, message = convergence_verdict(check, best.status, str(best.message), n_refined, n)
        converged = status == "converged"
        if not converged:
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

        # Where the optimum of a compute-optimal law sits (tokens per parameter) is reported at one compute.
        ref_compute = self.ref_compute
        if ref_compute is None and law.optimal is not None and {"N", "D"} <= set(law.inputs):
            ref_compute = float((6.0 * df["N"] * df["D"]).max())

        # Bootstrap
        group_used = self.group if (self.group and self.group in df.columns and df[self.group].nunique() >= 2) else None
        draws, n_failed, m_units = self._bootstrap(obj, space, df, law, x_best, check["hessian"], other_optima,
                                                   group_used)
        quality = {
            "n_points": int(n),
            "n_distinct_points": int(n_distinct),
            "n_params_free": int(space.size),
            "rmse_log": rmse,  # RMSE of the residuals in the law's residual space (linear for a linear-space law)
            "residual_space": law.residual_space,
            "objective": float(best.fun),
            "converged": converged,
            "convergence": status,
            "message": message,
            "optimizer_message": str(best.message),
            "newton_step": float(check["newton_step"]),
            "relative_gradient": float(check["relative_gradient"]),
            "restart_gain": float(check["restart_gain"]),
            "at_bound": at_bound,
            "n_starts": int(getattr(best, "n_starts", len(grid))),
            "n_refined": int(n_refined),
            "bootstrap_failed_fraction": float(n_failed / self.n_bootstrap) if self.n_bootstrap else None,
            "warnings": warnings_,
            "seconds": None,
        }
        quality["calibration"] = self._calibration(df, law, space.size)
        if self.loss == "huber_likelihood":
            quality["residual_scale"] = float(np.exp(x_best[space.size]))
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

        data_summary = self._data_summary(df, law, source, group_used)
        fit = Fit(
            law=law,
            params=params,
            fixed=dict(space.fixed),
            tied=dict(space.tied),
            draws=draws,
            settings={**self.settings(law_key, group_used, int(getattr(best, "n_starts", len(grid))), ref_compute),
                      "bootstrap_units_per_resample": m_units},
            data_summary=data_summary,
            quality=quality,
        )
        fit.recompute_intervals()
        fit.quality["warnings"].extend(fit.identifiability_warnings())
        fit.quality["seconds"] = round(time.perf_counter() - t_start, 3)
        return fit

    def _multistart(self, obj: Objective, grid: np.ndarray):
        """Score every grid start in broadcast blocks, screen the best ``n_refine`` with L-BFGS-B, polish the
        winner with tight tolerances. Returns the best result, the number screened and the other distinct local
        optima found (best first; warm starts for the bootstrap).

        Tables over SCREEN_ROWS rows are scored and screened on a seeded subsample of SCREEN_ROWS rows; the best
        two distinct screened optima are then refined on all rows before the polish (see SCREEN_ROWS).
        """
        screen, polish = self._options()
        n = obj.log_y.size
        sampled = n > SCREEN_ROWS
        if sampled:
            index = np.sort(np.random.default_rng(SCREEN_SEED).choice(n, SCREEN_ROWS, replace=False))
            screen_obj = obj.subset(index)
        else:
            screen_obj = obj
        if self.method == "varpro":
            grid = varpro_starts(screen_obj, self.asymmetry)
        values = screen_obj.values(grid)
        finite = np.flatnonzero(np.isfinite(values))
        if finite.size == 0:
            return None, 0, []
        order = finite[np.argsort(values[finite], kind="stable")][: self.n_refine]
        results = []
        for i in order:
            res = lbfgsb(screen_obj, screen_obj.start(grid[i]), screen, order=2)
            if np.isfinite(res.fun):
                results.append(res)
        if not results:
            return None, len(order), []
        results.sort(key=lambda r: r.fun)
        # Distinct local optima: apart in theta AND in objective. Runs that slid along a flat direction (e.g. log E
        # anywhere below -20 once E -> 0) end far apart in theta at the same objective; they are one optimum, and
        # counting them as several made every bootstrap resample refit the same far basin several times.
        distinct: list[Any] = []
        for r in results:
            if all(np.max(np.abs(r.x - o.x)) > 1e-2 and abs(r.fun - o.fun) > 1e-6 * abs(o.fun) for o in distinct):
                distinct.append(r)
        if sampled:  # the subsample's objective is not the full one: refine its best optima on every row
            full = [lbfgsb(obj, r.x, screen, order=2) for r in distinct[:2]]
            full = sorted((r for r in full if np.isfinite(r.fun)), key=lambda r: r.fun)
            if not full:
                return None, len(order), []
            distinct = full + distinct[2:]
        best = distinct[0]
        nit = best.nit
        # Polish until a tight restart stops gaining (a fresh L-BFGS memory gains the last digits in a few
        # iterations); the last relative gain is one of the convergence measures.
        gain = np.inf
        for _ in range(5):
            polished = lbfgsb(obj, best.x, polish, order=4)
            if not np.isfinite(polished.fun):
                break
            gain = max(0.0, (best.fun - polished.fun) / max(abs(best.fun), 1e-300))
            if polished.fun <= best.fun:
                nit += polished.nit
                polished.status = polished.status if polished.status == 1 else best.status
                best = polished
            if gain <= 1e-12:
                break
        if obj.loss == "least_squares" and obj.asymmetry == 1.0:
            best = gauss_newton_polish(obj, best)
        best.nit = nit
        best.restart_gain = gain
        best.n_starts = len(grid)
        others: list[np.ndarray] = []
        for r in distinct[1:]:
            if all(np.max(np.abs(r.x - o)) > 1e-2 for o in [best.x, *others]):
                others.append(r.x)
        return best, len(order), others

    def _options(self) -> tuple[dict, dict]:
        if self.optimizer_options is None:
            return SCREEN_OPTIONS, TIGHT_OPTIONS
        return dict(self.optimizer_options), dict(self.optimizer_options)

    def _bootstrap(self, obj: Objective, space: ParamSpace, df: pd.DataFrame, law: Law, x_best: np.ndarray,
                   hessian: np.ndarray | None, other_optima: list[np.ndarray], group: str | None):
        """Resample runs (or rows) with replacement; each resample is the full data with integer weights.

        Each resample is refitted from the full-data optimum (BFGS with the full-data inverse Hessian, or
        L-BFGS-B when a bound is active or BFGS leaves the bounds) and from up to ``n_bootstrap_starts`` other
        local optima of the multi-start, which cover the case of a resample whose best basin differs. Such a start
        is refined only when the resample's objective there is within a factor 2 of the best found so far (basin
        optima move little under resampling; this saves most of the cost).
        """
        columns = list(law.param_names)
        if not self.n_bootstrap:
            return pd.DataFrame(columns=columns, dtype=float), 0, None
        options, _ = self._options()
        hess_inv = None
        if hessian is not None:
            try:
                hess_inv = np.linalg.inv(hessian)
                hess_inv = 0.5 * (hess_inv + hess_inv.T)
                if np.any(np.linalg.eigvalsh(hess_inv) <= 0):
                    hess_inv = None
            except np.linalg.LinAlgError:
                hess_inv = None
        lo, hi = obj.lower_upper()
        rng = np.random.default_rng(self.seed)
        if group is not None:
            codes, uniques = pd.factorize(df[group])  # NaN -> -1: such rows become units of their own
            missing = codes < 0
            codes[missing] = len(uniques) + np.arange(int(missing.sum()))
            n_units = len(uniques) + int(missing.sum())
        else:
            codes, n_units = np.arange(len(df)), len(df)
        distinct = [(df[col].to_numpy(), k) for col, k in _min_distinct(law).items() if col in df.columns]
        alternatives = other_optima[: self.n_bootstrap_starts]
        draw_spaces = []  # one space per draw of the frozen parameters (fix_draws); built first so a bad draw fails early
        for k, row in enumerate([] if self.fix_draws is None else self.fix_draws.to_dict("records")):
            try:
                draw_spaces.append(ParamSpace(law, {**self.fix, **row}, self.tie, self.bounds))
            except ScalingError as exc:
                raise ScalingError(f"fix_draws row {k}: {exc}") from None
        rows, failed = [], 0
        strata = _unit_strata(df, self.strata, codes, n_units)
        # m-out-of-n on large tables (see BOOTSTRAP_UNITS); strata keep the full resample
        m_units = min(n_units, BOOTSTRAP_UNITS) if strata is None else n_units
        shrink = np.sqrt(m_units / n_units)
        if m_units < n_units and hess_inv is not None:  # a resample's objective is ~m/n of the full one
            hess_inv = hess_inv * (n_units / m_units)
        for i in range(self.n_bootstrap):
            if strata is None:
                counts = np.bincount(rng.integers(0, n_units, m_units), minlength=n_units)
            else:  # resample units within each stratum, so every stratum (a per-group parameter's data) stays
                counts = sum(np.bincount(rng.choice(units, units.size), minlength=n_units) for units in strata)
            weights = counts[codes].astype(float)
            used = weights > 0
            if used.sum() < space.size or any(np.unique(v[used]).size < k for v, k in distinct):
                failed += 1
                continue
            # this resample's values of the frozen parameters (stage-1 draws), else the frozen point values
            sub_space = draw_spaces[i % len(draw_spaces)] if draw_spaces else space
            rows_used = np.flatnonzero(used) if m_units < n_units else slice(None)
            sub = Objective(sub_space, {k: v[rows_used] for k, v in obj.inputs.items()}, obj.log_y[rows_used],
                             loss=obj.loss, delta=obj.delta, reduction=self.reduction, weights=weights[rows_used],
                             asymmetry=obj.asymmetry)
            best = None
            if hess_inv is not None:
                res = bfgs_warm(sub, x_best, hess_inv)
                if res is not None and np.isfinite(res.fun) and np.all(res.x >= lo) and np.all(res.x <= hi):
                    best = res
            if best is None:
                res = lbfgsb(sub, x_best, options, order=2)
                best = res if np.isfinite(res.fun) else None
            for x0 in alternatives:
                f0 = sub.value(x0)
                if best is not None and not f0 < 2.0 * best.fun:
                    continue
                res = lbfgsb(sub, x0, options, order=2)
                if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
                    best = res
            if best is None:
                failed += 1
                continue
            theta = best.x[: space.size]
            if shrink < 1.0:  # m-out-of-n: the deviation of an m-unit resample, scaled to n units
                theta = x_best[: space.size] + shrink * (theta - x_best[: space.size])
            natural = sub_space.natural(theta[None, :])
            rows.append([float(natural[c][0]) for c in columns])
        return pd.DataFrame(rows, columns=columns, dtype=float), failed, (m_units if m_units < n_units else None)

    def _data_summary(self, df: pd.DataFrame, law: Law, source: str, group: str | None) -> dict:
        ranges = {}
        for col in list(law.inputs) + [law.output]:
            v = df[col].to_numpy(dtype=float)
            ranges[col] = {"min": float(v.min()), "max": float(v.max()), "distinct": int(np.unique(v).size)}
        return {
            "rows": len(df),
            "ranges": ranges,
            "source": source,
            "sha256": _file_sha256(source),
            "groups": int(df[group].nunique()) if group else None,
            "columns": [str(c) for c in df.columns],
            "input_moments": input_moments(df, list(law.inputs)),
        }


# ---------------------------------------------------------------------------------------------------------------
# The one-call API


def default_law(data: pd.DataFrame) -> str:
    """Pick a law from the columns present (used when no law is given).

    N, D and U with some row repeating data (epochs > 1) -> ``data-constrained`` when registered (else
    ``chinchilla``); N and D with at least 2 distinct values each -> ``chinchilla``; only N varies ->
    ``saturating:N``; only D varies -> ``saturating:D``.
    """
    def distinct(col: str) -> int:
        if col not in data.columns:
            return 0
        return int(pd.to_numeric(data[col], errors="coerce").dropna().nunique())

    n_distinct, d_distinct = distinct("N"), distinct("D")
    if {"N", "D", "U"} <= set(data.columns):
        if "epochs" in data.columns:
            epochs = pd.to_numeric(data["epochs"], errors="coerce")
        else:
            epochs = pd.to_numeric(data["D"], errors="coerce") / pd.to_numeric(data["U"], errors="coerce")
        if (epochs > 1).any():
            return "data-constrained" if "data-constrained" in _REGISTRY else "chinchilla"
    if n_distinct >= 2 and d_distinct >= 2:
        return "chinchilla"
    if n_distinct >= 2:
        return "saturating:N"
    if d_distinct >= 2:
        return "saturating:D"
    source = data.attrs.get("source", "table")
    raise ScalingError(
        f"{source}: cannot pick a law: need at least 2 distinct values of N or D (columns: "
        f"{', '.join(map(str, data.columns))}); name one with law=... / --law"
    )


def fit(data: pd.DataFrame | str | Path, law: str | Law | None = None, *, mapping: Mapping[str, str] | None = None,
        where: str | None = None, source: str | None = None, **kwargs: Any) -> Fit:
    """Fit a law to a results table (a DataFrame or a CSV path); ``law=None`` picks one from the columns.

    >>> fit = scaling.fit("results.csv", law="chinchilla", n_bootstrap=200)   # doctest: +SKIP

    ``mapping``/``where`` are applied when reading a path (see :func:`scaling.read_results`); other keyword
    arguments go to :class:`LawFitter`. ``law="downstream"`` is the two-step task forecast (Bhagia et al. 2024):
    both steps are fitted from the table's N, D, task_loss and accuracy (:func:`scaling.analysis.downstream.fit_downstream`).
    ``law="transfer"`` on a table of from-scratch and fine-tuned runs, and
    ``law="repetition"`` on a table with repeated-data runs, run their analysis (:mod:`scaling.analysis`): the
    returned fit (the transfer law; the unique-data baseline) carries it as ``fit.analysis``.
    """
    if isinstance(data, (str, Path)):
        source = source or str(data)
        data = read_results(data, mapping=mapping, where=where)
    elif isinstance(data, pd.DataFrame):
        if mapping or where:
            data = read_results(data, mapping=mapping, where=where)
    else:
        raise ScalingError(f"expected a pandas DataFrame or a CSV path, got {type(data).__name__}")
    if law is None:
        law = default_law(data)
    if (law.strip() if isinstance(law, str) else getattr(law, "name", None)) == "downstream":
        from scaling.analysis.downstream import fit_downstream  # the chained law is fitted step by step, not in one go

        return fit_downstream(data, source=source, **kwargs)
    from scaling.analysis import analysis_for, run_analysis

    kind = analysis_for(get_law(law) if isinstance(law, str) else law, data)
    if kind is not None:  # transfer from runs, repetition with repeated-data runs: fitted through their analysis
        return run_analysis(kind, data, source=source, **kwargs)
    return LawFitter(law, **kwargs).fit(data, source=source)


__all__ = ["LOSSES", "METHODS", "LawFitter", "convergence_check", "default_law", "fit", "huber"]
