"""Estimating a law's parameters from a results table: log-space objectives, multi-start, bootstrap.

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
import itertools
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import least_squares, minimize
from scipy.stats import norm, qmc
from threadpoolctl import threadpool_limits

from scaling.fitting.conformal import rollout_errors
from scaling.fitting.diagnostics import BOOTSTRAP_FAIL_MAX, FitWarning
from scaling.fitting.extrapolation import input_moments
from scaling.errors import ScalingError
from scaling.fitting.result import Fit
from scaling.fitting.forecast import predict_many
from scaling.laws.base import _REGISTRY, Law, get_law
from scaling.results import read_results, validate_columns
from scaling.fitting.varpro import varpro_starts

LOSSES = ("huber", "least_squares", "huber_likelihood")
# Where the local searches start: "grid" = the law's multi-start grid (Hoffmann's 4500 points for chinchilla);
# "varpro" = a fine grid of the exponents with the linear parameters solved by NNLS at each (scaling/fitting/varpro.py).
METHODS = ("grid", "varpro")

# L-BFGS-B's ftol and gtol are absolute for objectives below 1, so a mean-reduced Huber objective (400x smaller
# than the sum) stops early under SciPy's defaults: Hoffmann et al.'s mistake (Besiroglu et al. 2024). Every run
# here therefore minimises the objective divided by its value at the run's start (so the tolerances act as
# relative ones whatever the loss scale) and the winner is polished with tight tolerances (ftol 1e-15, gtol 1e-12).
TIGHT_OPTIONS: dict[str, Any] = {"ftol": 1e-15, "gtol": 1e-12, "maxiter": 20000, "maxfun": 40000}
# Screening the grid starts and refitting bootstrap resamples needs ~6 digits, not 15.
SCREEN_OPTIONS: dict[str, Any] = {"ftol": 1e-10, "gtol": 1e-8, "maxiter": 5000, "maxfun": 10000}

# A fit counts as converged when the estimated distance to the optimum (a Newton step, in optimisation units:
# logs of scale constants, exponents as themselves) is below STEP_TOL, or the projected gradient relative to the
# objective is below GRAD_TOL. Both are unchanged when the objective is multiplied by a constant (sum vs mean).
# A third, for objectives with kinks (Huber with a tiny delta is nearly least-absolute-deviations, where gradient
# tests are fragile): restarting a tight L-BFGS-B from the point lowers the objective by at most RESTART_TOL relative.
STEP_TOL = 1e-4
# Multi-start: a full grid up to MAX_GRID starts (Hoffmann's chinchilla grid has 4500), else SOBOL_STARTS Sobol points.
MAX_GRID = 50_000
SOBOL_STARTS = 4096
GRAD_TOL = 1e-6
RESTART_TOL = 1e-9
# Objective per point below which a fit counts as exact (noiseless data): residuals ~1e-7 in log space.
EXACT_FIT = 1e-14

# Memory. A law evaluation for K parameter sets at n rows allocates K x n arrays, several of them (chinchilla's
# logsumexp keeps about 8 temporaries of that size), so scoring 4500 starts at once on 1e6 rows needed tens of GB
# (issue 13). Every evaluation here is therefore split into blocks of at most BLOCK_ELEMENTS (parameter set, row)
# pairs: 2e6, i.e. 16 MB a temporary and roughly 150 MB at peak for chinchilla, whatever the table size. Blocks
# this large keep the per-block Python overhead negligible (measured in benchmarks/fit_memory.py).
BLOCK_ELEMENTS = 2_000_000
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
# Parameter space: named natural parameters <-> the free vector theta the optimizer sees


class _Space:
    """Which parameters are free, fixed or tied, and the log transform of scale constants.

    theta holds the free parameters in optimisation units (log for ``log_scale`` parameters). Tied parameters copy
    their master (free or fixed) in natural units. lmfit expresses the same with ``Parameter(vary=False)`` and
    ``expr="alpha"``; we compile it by hand because the multi-start evaluates thousands of parameter sets in one
    array operation, which lmfit's one-set-at-a-time ``Parameters`` cannot do.
    """

    def __init__(
        self,
        law: Law,
        fix: Mapping[str, float] | None,
        tie: Mapping[str, str] | None,
        bounds: Mapping[str, tuple[float, float]] | None,
    ):
        self.law = law
        names = law.param_names
        self.fixed: dict[str, float] = {}
        for name, value in (fix or {}).items():
            p = law.param(name)  # ScalingError for an unknown name
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ScalingError(f"fix {name}={value!r}: not a number") from None
            if not math.isfinite(value):
                raise ScalingError(f"fix {name}={value!r}: must be finite")
            # 0 is allowed where the bounds allow it: a fit can drive E to 0, and a two-stage fit freezes that value.
            if p.log_scale and value < 0:
                raise ScalingError(f"fix {name}={value!r}: {name} is a positive scale constant of law {law.name}")
            self.fixed[name] = value
        self.tied: dict[str, str] = {}
        for name, master in (tie or {}).items():
            law.param(name)
            law.param(master)
            if name == master:
                raise ScalingError(f"tie {name}={master}: a parameter cannot be tied to itself")
            if name in self.fixed:
                raise ScalingError(f"tie {name}={master}: {name} is also fixed")
            self.tied[name] = master
        for name, master in self.tied.items():
            if master in self.tied:
                raise ScalingError(f"tie {name}={master}: {master} is itself tied to {self.tied[master]}; tie both to one")
        self.bounds_natural: dict[str, tuple[float, float]] = {p.name: (p.lower, p.upper) for p in law.params}
        for name, pair in (bounds or {}).items():
            p = law.param(name)
            try:
                lo, hi = (float(v) for v in pair)
            except (TypeError, ValueError):
                raise ScalingError(f"bounds {name}={pair!r}: expected (lower, upper)") from None
            if not lo < hi:
                raise ScalingError(f"bounds {name}=({lo}, {hi}): lower must be below upper")
            if p.log_scale and lo < 0:
                raise ScalingError(f"bounds {name}=({lo}, {hi}): {name} is a positive scale constant; lower must be >= 0")
            self.bounds_natural[name] = (lo, hi)
        for name, value in self.fixed.items():
            lo, hi = self.bounds_natural[name]
            if not lo <= value <= hi:
                raise ScalingError(f"fix {name}={value}: outside the bounds [{lo}, {hi}] of {name}")
        self.free: tuple[str, ...] = tuple(n for n in names if n not in self.fixed and n not in self.tied)
        self.log = np.array([law.param(n).log_scale for n in self.free], dtype=bool)
        lo = np.array([self.bounds_natural[n][0] for n in self.free], dtype=float)
        hi = np.array([self.bounds_natural[n][1] for n in self.free], dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):  # np.where evaluates log(lo) for every parameter
            self.lower = np.where(self.log, np.log(lo), lo)
            self.upper = np.where(self.log, np.log(hi), hi)

    @property
    def size(self) -> int:
        return len(self.free)

    def natural(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """theta of shape (K, P) -> {name: array (K,)} for every parameter of the law."""
        theta = np.atleast_2d(theta)
        values = np.where(self.log, np.exp(theta), theta)
        out = {name: values[:, i] for i, name in enumerate(self.free)}
        for name, value in self.fixed.items():
            out[name] = np.full(theta.shape[0], value)
        for name, master in self.tied.items():
            out[name] = out[master]
        return out

    def theta_of(self, params: Mapping[str, float]) -> np.ndarray:
        x = np.array([float(params[n]) for n in self.free])
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.log, np.log(x), x)

    def grid(self) -> np.ndarray:
        """The multi-start grid (cartesian product of the free parameters' grids), clipped into the bounds.

        When the product would exceed ``MAX_GRID`` starts (many parameters, e.g. per-group copies), a scrambled
        Sobol sequence of ``SOBOL_STARTS`` points over the box spanned by the grids replaces it (scipy.stats.qmc;
        low-discrepancy points cover the box far more evenly than as many random starts).
        """
        axes = []
        for name, is_log, lo, hi in zip(self.free, self.log, self.lower, self.upper):
            g = np.asarray(self.law.param(name).grid, dtype=float)
            with np.errstate(divide="ignore"):
                g = np.log(g) if is_log else g
            g = g[np.isfinite(g)] if np.isfinite(g).any() else np.array([0.0])
            axes.append(np.unique(np.clip(g, lo, hi)))
        if not axes:
            return np.zeros((1, 0))
        if math.prod(a.size for a in axes) > MAX_GRID:
            lo = np.array([a.min() for a in axes])
            hi = np.array([a.max() for a in axes])
            unit = qmc.Sobol(d=len(axes), scramble=True, seed=0).random(SOBOL_STARTS)
            return lo + unit * (hi - lo)
        return np.array(list(itertools.product(*axes)), dtype=float)

    def scipy_bounds(self) -> list[tuple[float | None, float | None]]:
        return [(lo if np.isfinite(lo) else None, hi if np.isfinite(hi) else None) for lo, hi in zip(self.lower, self.upper)]


# ---------------------------------------------------------------------------------------------------------------
# Objectives


def huber(r: np.ndarray, delta: float) -> np.ndarray:
    """Huber_delta(r) = r^2/2 for |r| <= delta, else delta (|r| - delta/2) (Hoffmann et al. 2022, Eq. 3)."""
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def huber_log_normaliser(delta: float) -> float:
    """log Z_delta of the Huber density exp(-Huber_delta(u)) / Z_delta (Besiroglu et al. 2024)."""
    return float(np.log(np.sqrt(2 * np.pi) * (1 - 2 * norm.sf(delta)) + 2 * np.exp(-0.5 * delta**2) / delta))


def _one_sided(f0: np.ndarray, block: np.ndarray, h: float, k: int, sign: int) -> np.ndarray:
    """Derivative at a bound from f0 and a stencil shifted to the inside (sign +1: above theta, -1: below).

    k = 4: the shifted points are theta + sign (0, 1, 3, 4) h; a quadratic through 0, h, 3h gives
    f'(0) = (-8 f0 + 9 f(h) - f(3h)) / (6h). k = 2: points theta + sign (0, 2) h, a one-sided difference.
    """
    if k == 4:
        near, far = (block[1], block[2]) if sign > 0 else (block[2], block[1])
        d = (-8 * f0 + 9 * near - far) / (6 * h)
    else:
        near = block[1] if sign > 0 else block[0]
        d = (near - f0) / (2 * h)
    return sign * d


class _Objective:
    """The fitting objective for one (weighted) data set, vectorised over parameter sets.

    ``x`` is theta, plus a trailing log residual scale sigma for "huber_likelihood".
    Weights are bootstrap counts (1 for the full data); "mean" divides by their sum (only to reproduce the
    Hoffmann et al. trap: never use it for real fits).
    """

    def __init__(self, space: _Space, inputs: Mapping[str, np.ndarray], log_y: np.ndarray, *, loss: str,
                 delta: float, reduction: str = "sum", weights: np.ndarray | None = None, asymmetry: float = 1.0):
        self.space = space
        self.asymmetry = float(asymmetry)
        self.inputs = inputs
        self.log_y = log_y
        self.loss = loss
        self.delta = delta
        self.weights = np.ones_like(log_y) if weights is None else np.asarray(weights, dtype=float)
        self.scale = 1.0 / self.weights.sum() if reduction == "mean" else 1.0
        self.log_z = huber_log_normaliser(delta) if loss == "huber_likelihood" else 0.0
        self.n_evaluations = 0
        self.norm = 1.0  # the optimizer sees objective * norm (set per run; see TIGHT_OPTIONS)
        self.order = 4  # finite-difference order of the Jacobian (2 while screening)

    @property
    def n_x(self) -> int:
        return self.space.size + (1 if self.loss == "huber_likelihood" else 0)

    def log_pred(self, theta: np.ndarray, rows: slice = slice(None)) -> np.ndarray:
        """Predictions in the law's residual space (log L_hat by default, L_hat itself for a linear-space law) for
        parameter sets theta (K, P) at the data rows ``rows``: an array (K, m). The law is called on blocks of at
        most BLOCK_ELEMENTS (set, row) pairs, so only the (K, m) result grows with the table."""
        self.n_evaluations += theta.shape[0]
        log = self.space.law.residual_space == "log"
        params = self.space.natural(theta)
        first, stop, _ = rows.indices(self.log_y.size)
        stop = max(first, stop)
        step = max(1, BLOCK_ELEMENTS // max(1, theta.shape[0]))
        if stop - first <= step:
            return predict_many(self.space.law, params, {k: v[first:stop] for k, v in self.inputs.items()}, log=log)
        out = np.empty((theta.shape[0], stop - first))
        for a in range(first, stop, step):
            b = min(stop, a + step)
            out[:, a - first : b - first] = predict_many(self.space.law, params,
                                                         {k: v[a:b] for k, v in self.inputs.items()}, log=log)
        return out

    def _rho_psi(self, r: np.ndarray, sigma: np.ndarray | float = 0.0):
        """Per-point loss rho and its derivative psi = d rho / d r (rows = parameter sets).

        With ``asymmetry`` k != 1 an over-prediction (r > 0: the law above the observed loss) costs k times an
        under-prediction of the same size, so the curve settles on the lower envelope of the points (k > 1), as the
        OLMo-core ladder's ``overestimate_penalty`` does (a good loss is an upper bound on the achievable one).
        """
        d = self.delta
        if self.loss == "least_squares":
            rho, psi = r * r, 2.0 * r
        elif self.loss == "huber":
            rho, psi = huber(r, d), np.clip(r, -d, d)
        if self.loss != "huber_likelihood":
            if self.asymmetry != 1.0:
                k = np.where(r > 0, self.asymmetry, 1.0)
                rho, psi = rho * k, psi * k
            return rho, psi
        s = np.exp(sigma)
        u = r / s
        return huber(u, d) + self.log_z + sigma, np.clip(u, -d, d) / s

    def profile_sigma(self, r: np.ndarray) -> np.ndarray:
        """A good residual scale for given residuals: the Laplace MLE delta * mean|r| (Huber with small delta is
        linear almost everywhere), floored so that exact fits stay finite. Used for starts only."""
        mean_abs = (np.abs(r) * self.weights).sum(axis=-1) / self.weights.sum()
        return np.log(np.maximum(self.delta * mean_abs, 1e-300))

    def values(self, theta: np.ndarray, block: int | None = None) -> np.ndarray:
        """Objective at many theta rows (M, P); sigma is profiled for the likelihood. Non-finite -> inf.

        Parameter sets are scored ``block`` at a time (default: as many as fit BLOCK_ELEMENTS (set, row) pairs,
        at least one), so memory is bounded by the block, not by M x rows.
        """
        if block is None:
            block = max(1, BLOCK_ELEMENTS // max(1, self.log_y.size))
        out = np.empty(theta.shape[0])
        for start in range(0, theta.shape[0], block):
            sets = theta[start : start + block]
            with np.errstate(all="ignore"):
                r = self.log_pred(sets) - self.log_y
                sigma = self.profile_sigma(r)[:, None] if self.loss == "huber_likelihood" else 0.0
                rho, _ = self._rho_psi(r, sigma)
                out[start : start + block] = self.scale * (rho * self.weights).sum(axis=1)
        out[~np.isfinite(out)] = np.inf
        return out

    def start(self, theta: np.ndarray) -> np.ndarray:
        """theta -> an optimizer start x (appends a profiled sigma for the likelihood)."""
        if self.loss != "huber_likelihood":
            return np.array(theta, dtype=float)
        with np.errstate(all="ignore"):
            r = self.log_pred(theta[None, :])[0] - self.log_y
        return np.append(theta, self.profile_sigma(r))

    def _jacobian(self, theta: np.ndarray, rows: slice = slice(None)):
        """log-prediction at theta (m,) and its Jacobian (m, P) at the data rows ``rows``, from ONE broadcast call
        of the law.

        Central differences: 4th order with h = 1e-4 max(1, |theta|) (truncation ~h^4 and round-off ~eps/h, both
        ~1e-12 relative), or 2nd order with h = 6e-6 max(1, |theta|) (~1e-10, half the law evaluations) while
        screening. Near a bound the stencil turns one-sided, so the law is never evaluated outside it.
        """
        P = theta.size
        if self.order == 4:
            h = 1e-4 * np.maximum(1.0, np.abs(theta))
            offsets = np.array([-2.0, -1.0, 1.0, 2.0])
        else:
            h = 6e-6 * np.maximum(1.0, np.abs(theta))
            offsets = np.array([-1.0, 1.0])
        k = offsets.size
        stencil = np.repeat(theta[None, :], 1 + k * P, axis=0)
        for j in range(P):
            stencil[1 + k * j : 1 + k * (j + 1), j] += offsets * h[j]
        # One-sided near a bound: shift the whole stencil of that coordinate to the inside.
        for j in range(P):
            if theta[j] - offsets.max() * h[j] < self.space.lower[j]:
                stencil[1 + k * j : 1 + k * (j + 1), j] += offsets.max() * h[j]
            elif theta[j] + offsets.max() * h[j] > self.space.upper[j]:
                stencil[1 + k * j : 1 + k * (j + 1), j] -= offsets.max() * h[j]
        with np.errstate(all="ignore"):
            f = self.log_pred(stencil, rows)
        f0 = f[0]
        jac = np.empty((f0.size, P))
        for j in range(P):
            block = f[1 + k * j : 1 + k * (j + 1)]
            shift = stencil[1 + k * j, j] - (theta[j] + offsets[0] * h[j])
            if shift == 0.0:  # centred
                if k == 4:
                    jac[:, j] = (block[0] - 8 * block[1] + 8 * block[2] - block[3]) / (12 * h[j])
                else:
                    jac[:, j] = (block[1] - block[0]) / (2 * h[j])
            elif shift > 0:  # forward: points theta + (offsets + max) h, all >= theta
                jac[:, j] = _one_sided(f0, block, h[j], k, +1)
            else:
                jac[:, j] = _one_sided(f0, block, h[j], k, -1)
        return f0, jac

    def value(self, x: np.ndarray) -> float:
        """Objective at one optimizer vector x (theta, plus sigma for the likelihood)."""
        P = self.space.size
        with np.errstate(all="ignore"):
            r = self.log_pred(x[None, :P])[0] - self.log_y
            rho, _ = self._rho_psi(r, x[P] if self.loss == "huber_likelihood" else 0.0)
            value = float(np.sum(self.weights * self.scale * rho))
        return value if np.isfinite(value) else np.inf

    def value_and_grad(self, x: np.ndarray):
        """(objective, gradient) at x, times ``norm``, for L-BFGS-B with ``jac=True``.

        Accumulated over blocks of data rows, so the (rows x P) Jacobian never exists whole: memory stays within
        BLOCK_ELEMENTS (set, row) pairs for the stencil's 1 + 4P parameter sets.
        """
        P = self.space.size
        theta = x[:P]
        n = self.log_y.size
        step = max(1, BLOCK_ELEMENTS // (1 + 4 * P))
        value, grad = 0.0, np.zeros(self.n_x)
        for a in range(0, n, step):
            rows = slice(a, a + step)
            log_pred, jac = self._jacobian(theta, rows)
            r = log_pred - self.log_y[rows]
            w = self.weights[rows] * self.scale
            if self.loss == "huber_likelihood":
                sigma = x[P]
                rho, psi = self._rho_psi(r, sigma)
                u = r / np.exp(sigma)
                grad[:P] += jac.T @ (w * psi)
                grad[P] += np.sum(w * (1.0 - np.clip(u, -self.delta, self.delta) * u))
            else:
                rho, psi = self._rho_psi(r)
                grad += jac.T @ (w * psi)
            value += float(np.sum(w * rho))
        if not (np.isfinite(value) and np.all(np.isfinite(grad))):
            return np.inf, np.zeros_like(x)
        return value * self.norm, grad * self.norm

    def subset(self, index: np.ndarray) -> _Objective:
        """The same objective on the data rows ``index`` (for screening starts on a subsample)."""
        return _Objective(self.space, {k: v[index] for k, v in self.inputs.items()}, self.log_y[index],
                          loss=self.loss, delta=self.delta, reduction="mean" if self.scale != 1.0 else "sum",
                          weights=self.weights[index], asymmetry=self.asymmetry)

    def bounds(self) -> list[tuple[float | None, float | None]]:
        b = self.space.scipy_bounds()
        return b + [(None, None)] if self.loss == "huber_likelihood" else b

    def lower_upper(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.space.lower, self.space.upper
        if self.loss == "huber_likelihood":
            lo, hi = np.append(lo, -np.inf), np.append(hi, np.inf)
        return lo, hi


def _bfgs_warm(obj: _Objective, x0: np.ndarray, hess_inv: np.ndarray):
    """BFGS from a nearby optimum with its inverse Hessian as the first curvature model.

    A bootstrap resample's optimum is close to the full-data one. On the Epoch data this takes ~16 iterations and
    ~11 objective evaluations per resample, against ~31 evaluations for L-BFGS-B from the same point, and lands on
    the tightly converged resample optimum to 1e-14 relative (L-BFGS-B at screening tolerances stopped up to 4e-5
    above it). gtol applies to the objective normalised to 1 at x0. Unbounded: the caller checks the bounds.
    """
    obj.order, obj.norm = 2, 1.0
    f0 = obj.value(x0)
    obj.norm = 1.0 / max(abs(f0), 1e-300) if np.isfinite(f0) else 1.0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = minimize(obj.value_and_grad, x0, jac=True, method="BFGS",
                           options={"hess_inv0": hess_inv / obj.norm, "gtol": 1e-5, "maxiter": 2000})
        res.fun = float(res.fun) / obj.norm
    except ValueError:  # hess_inv0 not positive definite after scaling
        res = None
    finally:
        obj.norm, obj.order = 1.0, 4
    return res


def _lbfgsb(obj: _Objective, x0: np.ndarray, options: Mapping[str, Any], order: int = 4):
    """One L-BFGS-B run on the objective normalised to 1 at x0 (see TIGHT_OPTIONS); fun/jac are reported unscaled."""
    obj.order, obj.norm = order, 1.0
    f0 = obj.value(x0)
    obj.norm = 1.0 / max(abs(f0), 1e-300) if np.isfinite(f0) else 1.0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = minimize(obj.value_and_grad, x0, jac=True, method="L-BFGS-B", bounds=obj.bounds(), options=dict(options))
        res.fun = float(res.fun) / obj.norm
        res.jac = np.asarray(res.jac) / obj.norm
    finally:
        obj.norm, obj.order = 1.0, 4
    return res


def _gauss_newton_polish(obj: _Objective, best):
    """For the sum of squares: a bounded trust-region Gauss-Newton polish (scipy.optimize.least_squares) of the
    L-BFGS-B optimum, kept when it lowers the objective.

    Near an exact fit (noiseless data, a law fitted to its own curve) the sum of squares falls towards zero, where
    L-BFGS-B's relative-reduction test stops it well above the optimum (the m4 acceptance test A1 stopped with an
    extrapolation error of 6e-6 against 1e-6); Gauss-Newton converges quadratically there, as for any small-residual
    least-squares problem.
    """
    lo, hi = obj.lower_upper()
    w = np.sqrt(obj.weights * obj.scale)

    def residuals(x: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            r = w * (obj.log_pred(x[None, :])[0] - obj.log_y)
        return np.where(np.isfinite(r), r, 1e10)

    try:
        res = least_squares(residuals, np.clip(best.x, lo, hi), bounds=(lo, hi), method="trf", x_scale="jac",
                            xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=100 * (obj.space.size + 1))
    except ValueError:  # an infeasible start (a fixed point on a bound) or a singular problem: keep L-BFGS-B's
        return best
    value = obj.value(res.x)
    if value < best.fun:
        best.x, best.fun = res.x, value
    return best


# ---------------------------------------------------------------------------------------------------------------
# Convergence


def _check(obj: _Objective, x: np.ndarray, restart_gain: float | None = None) -> dict[str, Any]:
    """Scale-free convergence diagnostics at x (see :func:`convergence_check`).

    ``restart_gain``: the relative objective decrease of a tight restart from x, when the caller already knows it
    (the fitter's last polish); otherwise a restart is run here.
    """
    f, g = obj.value_and_grad(x)
    lo, hi = obj.lower_upper()
    span = 1e-8 * np.maximum(1.0, np.abs(x))
    at_lo = (x - lo <= span) & (g > 0)
    at_hi = (hi - x <= span) & (g < 0)
    active = at_lo | at_hi
    g_proj = np.where(active, 0.0, g)
    if not np.isfinite(f):
        return {"objective": f, "relative_gradient": np.inf, "newton_step": np.inf, "restart_gain": np.inf,
                "ok": False, "hessian": None}
    # Relative gradient: |g| / |f|, floored where f is at round-off level (an exact fit of noiseless data).
    floor = 1e-30 * obj.weights.sum()
    rel_grad = float(np.max(np.abs(g_proj), initial=0.0) / max(abs(f), floor))
    # Newton step over the inactive coordinates: the distance to the optimum of the local quadratic model,
    # in optimisation units. Hessian by central differences of the gradient.
    free = np.flatnonzero(~active)
    step = 0.0
    H = None
    if free.size:
        H = np.empty((free.size, free.size))
        for k, j in enumerate(free):
            e = np.zeros_like(x)
            e[j] = 1e-4 * max(1.0, abs(x[j]))
            _, gp = obj.value_and_grad(x + e)
            _, gm = obj.value_and_grad(x - e)
            H[:, k] = ((gp - gm) / (2 * e[j]))[free]
        H = 0.5 * (H + H.T)
        try:
            delta_x = np.linalg.lstsq(H, g_proj[free], rcond=1e-12)[0]
            step = float(np.max(np.abs(delta_x)))
        except np.linalg.LinAlgError:
            step = np.inf
        if not np.isfinite(step):
            step = np.inf
    if restart_gain is None:
        res = _lbfgsb(obj, x, TIGHT_OPTIONS, order=4)
        restart_gain = max(0.0, (f - res.fun) / max(abs(f), floor)) if np.isfinite(res.fun) else 0.0
    ok = step <= STEP_TOL or rel_grad <= GRAD_TOL or restart_gain <= RESTART_TOL
    return {"objective": float(f), "relative_gradient": rel_grad, "newton_step": step,
            "restart_gain": float(restart_gain), "ok": bool(ok), "hessian": H if free.size == x.size else None}


def convergence_verdict(check: Mapping[str, Any], optimizer_status: int, optimizer_message: str,
                        n_refined: int | None = None, n_points: int | None = None) -> tuple[str, str]:
    """One convergence status consistent with the optimizer's report and the scale-free checks of :func:`_check`.

    - ``converged``: the Newton step or the relative gradient is within its tolerance (the point is a stationary
      point to the precision asked) and the optimizer did not stop at its iteration limit. An abnormal line-search
      stop is then round-off at the optimum, and the message says which check confirms it. Also an exact fit
      (objective per point <= EXACT_FIT, noiseless data) that a tight restart cannot improve: a gradient relative
      to an objective at round-off level measures nothing.
    - ``stalled``: neither gradient-based check passes, but a tight restart cannot lower the objective (restart gain
      within tolerance): the optimizer is stuck on a kink or a flat valley and nothing shows the point is an
      optimum. Not counted as converged.
    - ``not_converged``: otherwise, or the optimizer ran out of iterations (status 1).

    Returns (status, message).
    """
    step, grad, gain = (float(check[k]) for k in ("newton_step", "relative_gradient", "restart_gain"))
    step_ok, grad_ok, gain_ok = step <= STEP_TOL, grad <= GRAD_TOL, gain <= RESTART_TOL

    def measure(name: str, value: float, tol: float) -> str:
        if value <= tol:
            return f"{name} {value:.1e} (tol {tol:.0e}, passes)"
        ratio = value / tol if tol > 0 else math.inf
        return f"{name} {value:.1e} ({ratio:.3g}x its tol {tol:.0e})"

    measures = ", ".join([measure("Newton step", step, STEP_TOL), measure("relative gradient", grad, GRAD_TOL),
                          measure("restart gain", gain, RESTART_TOL)])
    where = f" at the best of {n_refined} refined starts" if n_refined else ""
    if optimizer_status == 1:
        status = "not_converged"
        why = "the optimizer stopped at its iteration limit"
    elif step_ok or grad_ok:
        status = "converged"
        why = "the " + ("Newton step" if step_ok else "relative gradient") + " confirms a stationary point"
        if optimizer_status != 0:
            why += " (the optimizer's abnormal stop is round-off at the optimum)"
    elif gain_ok and n_points and abs(float(check.get("objective", np.inf))) <= EXACT_FIT * n_points:
        status = "converged"
        why = "the fit is exact (objective at round-off level) and a tight restart cannot improve it"
    elif gain_ok:
        status = "stalled"
        why = ("the optimizer cannot lower the objective, but neither the Newton step nor the gradient confirms an "
               "optimum (a kink or a flat valley)")
    else:
        status = "not_converged"
        why = "neither the Newton step nor the gradient is within tolerance and a restart still improves"
    advice = "" if status == "converged" else "; tighten optimizer_options, raise n_refine or fix parameters"
    return status, f"{status}: {why}; {measures}{where}; optimizer: {optimizer_message}{advice}"


def convergence_check(law: Law | str, data: pd.DataFrame, params: Mapping[str, float], *, loss: str = "huber",
                      delta: float = 1e-3, fix: Mapping[str, float] | None = None,
                      tie: Mapping[str, str] | None = None, sigma: float | None = None,
                      asymmetry: float = 1.0) -> dict[str, Any]:
    """Is ``params`` a converged optimum of the objective on ``data``? Works for parameters from anywhere.

    Two scale-free measures (both unchanged when the objective is multiplied by a constant, so a mean-reduced
    objective that stopped early is caught exactly like a sum-reduced one):

    - ``newton_step``: largest component of the Newton step H^-1 g (gradient and Hessian by finite differences),
      i.e. how far the optimum of the local quadratic model lies, in optimisation units (logs of scale constants,
      exponents as themselves);
    - ``relative_gradient``: largest projected-gradient component divided by the objective;
    - ``restart_gain``: relative objective decrease of a tight L-BFGS-B restart from ``params`` (robust where the
      objective has kinks, e.g. Huber with a tiny delta, and the first two are fragile).

    ``ok`` is True when newton_step <= 1e-4, relative_gradient <= 1e-6 or restart_gain <= 1e-9. Acceptance
    test C7 in docs/laws.md.
    """
    law = get_law(law) if isinstance(law, str) else law
    space = _Space(law, fix, tie, None)
    inputs, log_y = _arrays(law, data)
    obj = _Objective(space, inputs, log_y, loss=loss, delta=delta, asymmetry=asymmetry)
    x = space.theta_of(params)
    if loss == "huber_likelihood":
        if sigma is None:
            with np.errstate(all="ignore"):
                sigma = float(obj.profile_sigma(obj.log_pred(x[None, :])[0] - log_y))
        x = np.append(x, sigma)
    out = _check(obj, x)
    out.pop("hessian")
    return out


# ---------------------------------------------------------------------------------------------------------------
# The estimator


def _arrays(law: Law, data: pd.DataFrame) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The inputs and the target in the law's residual space (log y by default, y for ``residual_space="linear"``).

    The objective's attribute keeps the name ``log_y`` for the common case; it holds whatever space the law is
    fitted in, and ``_Objective.log_pred`` predicts in the same space.
    """
    inputs = {c: data[c].to_numpy(dtype=float) for c in law.inputs}
    y = data[law.output].to_numpy(dtype=float)
    return inputs, (np.log(y) if law.residual_space == "log" else y)


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
        space = _Space(law, self.fix, self.tie, self.bounds)
        if space.size == 0:  # scipy's minimize would fail on an empty bounds list with a bare ValueError
            raise ScalingError(f"law {law.name}: all parameters are fixed; nothing to fit")
        n = len(df)
        if n < space.size:
            raise ScalingError(
                f"{source}: {n} row{'s' if n != 1 else ''} but law {law.name} has {space.size} free parameters; "
                f"need at least {space.size} (fix some with fix=... / --fix)"
            )
        inputs, log_y = _arrays(law, df)
        obj = _Objective(space, inputs, log_y, loss=self.loss, delta=self.delta, reduction=self.reduction,
                         asymmetry=self.asymmetry)
        grid = space.grid()

        best, n_refined, other_optima = self._multistart(obj, grid)
        if best is None:
            raise ScalingError(f"{source}: law {law.name}: the objective is not finite at any start (check the data)")
        x_best = best.x
        check = _check(obj, x_best, restart_gain=best.restart_gain)
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

    def _multistart(self, obj: _Objective, grid: np.ndarray):
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
            res = _lbfgsb(screen_obj, screen_obj.start(grid[i]), screen, order=2)
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
            full = [_lbfgsb(obj, r.x, screen, order=2) for r in distinct[:2]]
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
            polished = _lbfgsb(obj, best.x, polish, order=4)
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
            best = _gauss_newton_polish(obj, best)
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

    def _bootstrap(self, obj: _Objective, space: _Space, df: pd.DataFrame, law: Law, x_best: np.ndarray,
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
                draw_spaces.append(_Space(law, {**self.fix, **row}, self.tie, self.bounds))
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
            sub = _Objective(sub_space, {k: v[rows_used] for k, v in obj.inputs.items()}, obj.log_y[rows_used],
                             loss=obj.loss, delta=obj.delta, reduction=self.reduction, weights=weights[rows_used],
                             asymmetry=obj.asymmetry)
            best = None
            if hess_inv is not None:
                res = _bfgs_warm(sub, x_best, hess_inv)
                if res is not None and np.isfinite(res.fun) and np.all(res.x >= lo) and np.all(res.x <= hi):
                    best = res
            if best is None:
                res = _lbfgsb(sub, x_best, options, order=2)
                best = res if np.isfinite(res.fun) else None
            for x0 in alternatives:
                f0 = sub.value(x0)
                if best is not None and not f0 < 2.0 * best.fun:
                    continue
                res = _lbfgsb(sub, x0, options, order=2)
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
