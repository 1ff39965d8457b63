"""The objective the fitter minimises: parameter space and loss on log (or linear) residuals.

:class:`ParamSpace` maps a law's named natural parameters to the free vector theta the optimiser sees (logs of
positive scale constants, fixed and tied parameters removed). :class:`Objective` is the sum over rows of a loss of
the residuals r_i = log L_hat(x_i) - log L_i (Hoffmann et al. 2022, Eq. 3): Huber (delta 1e-3), least squares, or
the Huber likelihood with a learned scale (Besiroglu et al. 2024), evaluated for many parameter sets at once in
bounded blocks, with its exact gradient in the loss and a finite-difference Jacobian of the law.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.stats import norm, qmc

from scaling.errors import ScalingError
from scaling.fitting.broadcast import predict_many
from scaling.laws.base import Law

LOSSES = ("huber", "least_squares", "huber_likelihood")

# Memory. A law evaluation for K parameter sets at n rows allocates K x n arrays, several of them (chinchilla's
# logsumexp keeps about 8 temporaries of that size), so scoring 4500 starts at once on 1e6 rows needed tens of GB
# (issue 13). Every evaluation here is therefore split into blocks of at most BLOCK_ELEMENTS (parameter set, row)
# pairs: 2e6, i.e. 16 MB a temporary and roughly 150 MB at peak for chinchilla, whatever the table size. Blocks
# this large keep the per-block Python overhead negligible (measured in benchmarks/fit_memory.py).
BLOCK_ELEMENTS = 2_000_000

# Multi-start: a full grid up to MAX_GRID starts (Hoffmann's chinchilla grid has 4500), else SOBOL_STARTS Sobol points.
MAX_GRID = 50_000
SOBOL_STARTS = 4096


# ---------------------------------------------------------------------------------------------------------------
# Parameter space: named natural parameters <-> the free vector theta the optimizer sees


class ParamSpace:
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


class Objective:
    """The fitting objective for one (weighted) data set, vectorised over parameter sets.

    ``x`` is theta, plus a trailing log residual scale sigma for "huber_likelihood".
    Weights are bootstrap counts (1 for the full data); "mean" divides by their sum (only to reproduce the
    Hoffmann et al. trap: never use it for real fits).
    """

    def __init__(self, space: ParamSpace, inputs: Mapping[str, np.ndarray], log_y: np.ndarray, *, loss: str,
                 delta: float, reduction: str = "sum", weights: np.ndarray | None = None, asymmetry: float = 1.0):
        self.space = space
        self.asymmetry = float(asymmetry)
        self.inputs = inputs
        self.log_y = log_y
        self.loss = loss
        self.delta = delta
        self.reduction = reduction
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

    def subset(self, index: np.ndarray) -> Objective:
        """The same objective on the data rows ``index`` (for screening starts on a subsample)."""
        return self.resampled(self.weights[index], index)

    def resampled(self, weights: np.ndarray, rows: np.ndarray | slice = slice(None),
                  space: ParamSpace | None = None) -> Objective:
        """The same objective on the data rows ``rows`` with ``weights`` (a bootstrap resample: each row's count),
        optionally over another parameter space (a resample's draw of the frozen parameters)."""
        return Objective(self.space if space is None else space, {k: v[rows] for k, v in self.inputs.items()},
                         self.log_y[rows], loss=self.loss, delta=self.delta, reduction=self.reduction,
                         weights=weights, asymmetry=self.asymmetry)

    def bounds(self) -> list[tuple[float | None, float | None]]:
        b = self.space.scipy_bounds()
        return b + [(None, None)] if self.loss == "huber_likelihood" else b

    def lower_upper(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.space.lower, self.space.upper
        if self.loss == "huber_likelihood":
            lo, hi = np.append(lo, -np.inf), np.append(hi, np.inf)
        return lo, hi


def law_arrays(law: Law, data: pd.DataFrame) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The inputs and the target in the law's residual space (log y by default, y for ``residual_space="linear"``).

    The objective's attribute keeps the name ``log_y`` for the common case; it holds whatever space the law is
    fitted in, and ``Objective.log_pred`` predicts in the same space.
    """
    inputs = {c: data[c].to_numpy(dtype=float) for c in law.inputs}
    y = data[law.output].to_numpy(dtype=float)
    return inputs, (np.log(y) if law.residual_space == "log" else y)
