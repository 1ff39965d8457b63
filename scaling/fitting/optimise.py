"""Local optimisation and the convergence verdict: L-BFGS-B and BFGS runs on a normalised objective, a
Gauss-Newton polish for least squares, and scale-free convergence diagnostics (:func:`convergence_check`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import least_squares, minimize

from scaling.fitting.objective import Objective, ParamSpace, law_arrays
from scaling.laws.base import Law, get_law

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
GRAD_TOL = 1e-6
RESTART_TOL = 1e-9
# Objective per point below which a fit counts as exact (noiseless data): residuals ~1e-7 in log space.
EXACT_FIT = 1e-14


def bfgs_warm(obj: Objective, x0: np.ndarray, hess_inv: np.ndarray):
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


def lbfgsb(obj: Objective, x0: np.ndarray, options: Mapping[str, Any], order: int = 4):
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


def gauss_newton_polish(obj: Objective, best):
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


def convergence_diagnostics(obj: Objective, x: np.ndarray, restart_gain: float | None = None) -> dict[str, Any]:
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
        res = lbfgsb(obj, x, TIGHT_OPTIONS, order=4)
        restart_gain = max(0.0, (f - res.fun) / max(abs(f), floor)) if np.isfinite(res.fun) else 0.0
    ok = step <= STEP_TOL or rel_grad <= GRAD_TOL or restart_gain <= RESTART_TOL
    return {"objective": float(f), "relative_gradient": rel_grad, "newton_step": step,
            "restart_gain": float(restart_gain), "ok": bool(ok), "hessian": H if free.size == x.size else None}


def convergence_verdict(check: Mapping[str, Any], optimizer_status: int, optimizer_message: str,
                        n_refined: int | None = None, n_points: int | None = None) -> tuple[str, str]:
    """One convergence status consistent with the optimizer's report and the scale-free checks of :func:`convergence_diagnostics`.

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
    space = ParamSpace(law, fix, tie, None)
    inputs, log_y = law_arrays(law, data)
    obj = Objective(space, inputs, log_y, loss=loss, delta=delta, asymmetry=asymmetry)
    x = space.theta_of(params)
    if loss == "huber_likelihood":
        if sigma is None:
            with np.errstate(all="ignore"):
                sigma = float(obj.profile_sigma(obj.log_pred(x[None, :])[0] - log_y))
        x = np.append(x, sigma)
    out = convergence_diagnostics(obj, x)
    out.pop("hessian")
    return out
