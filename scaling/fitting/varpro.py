"""Variable projection starts for laws that are linear in some of their parameters.

L = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022, Eq. 2, arXiv 2203.15556) is linear in (E, A, B) once the
exponents (alpha, beta) are fixed. Variable projection (Golub & Pereyra 1973, "The differentiation of
pseudo-inverses and nonlinear least squares problems whose variables separate", SIAM J. Numer. Anal. 10(2)) solves
for the linear parameters in closed form at each value of the nonlinear ones, so a search over 5 parameters whose
scales differ by ~10 decades (A ~ 1e2-1e8 next to exponents ~0.3) becomes a search over the 2 exponents.

What this module does, exactly. The engine's objective is a Huber loss of LOG residuals, log L_hat - log L, which is
not linear in (E, A, B); only its first-order form (L_hat - L)/L is. So for every point of a fine grid of the
exponents (40 values per exponent), the linear parameters are solved by non-negative least squares (scipy's
``nnls``; ``lsq_linear`` with the law's bounds when they are not [0, inf)) on the relative residuals, with the
Huber (and asymmetry) weights applied by iteratively reweighted least squares (IRLS, 4 rounds). The resulting
parameter sets are STARTS: the fitter scores them with the exact objective and refines the best ones with
L-BFGS-B over all parameters, exactly as it refines Hoffmann's grid (``LawFitter(method="varpro")``). The answer is
therefore an optimum of the same objective; what changes is where the local searches begin (a 1600-point
exponent grid with the best linear parameters for each, instead of a 4500-point grid in all five parameters).

Laws with a linear form: chinchilla (E, A, B | alpha, beta), saturating (E, A | a), power (A | a),
calibration (ECE_inf, a | b). Others raise a ScalingError when varpro is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import lsq_linear, nnls

from scaling.errors import ScalingError

if TYPE_CHECKING:  # pragma: no cover
    from scaling.fitting.objective import Objective

# Grid values per free exponent, and IRLS rounds for the Huber weights (the weights settle in 2-3 rounds: only
# points moving across |r| = delta change weight, and the starts need not be exact: L-BFGS-B refines them).
POINTS_PER_EXPONENT = 40
IRLS_ROUNDS = 4


@dataclass(frozen=True)
class LinearForm:
    """L = floor + SUM_k scale_k * input_k^(-exponent_k): the parameters entering linearly are floor and scales."""

    floor: str | None
    terms: tuple[tuple[str, str, str | None], ...]  # (scale, exponent, input; None = the law's single input)

    @property
    def linear(self) -> tuple[str, ...]:
        return ((self.floor,) if self.floor else ()) + tuple(t[0] for t in self.terms)


LINEAR_FORMS: dict[str, LinearForm] = {
    "chinchilla": LinearForm("E", (("A", "alpha", "N"), ("B", "beta", "D"))),
    "saturating": LinearForm("E", (("A", "a", None),)),
    "power": LinearForm(None, (("A", "a", None),)),
    "calibration": LinearForm("ECE_inf", (("a", "b", None),)),
}


def linear_form(law_name: str) -> LinearForm | None:
    return LINEAR_FORMS.get(law_name)


def _exponent_axis(lo_grid: float, hi_grid: float, lo: float, hi: float) -> np.ndarray:
    """POINTS_PER_EXPONENT values over the law's start-grid range, inside the bounds; 0 itself is left out (an
    exponent of 0 makes the term a second constant, collinear with the floor)."""
    a, b = max(lo_grid, lo), min(hi_grid, hi)
    if not b > a:
        return np.array([a])
    if a <= 0:
        return np.linspace(a, b, POINTS_PER_EXPONENT + 1)[1:]
    return np.linspace(a, b, POINTS_PER_EXPONENT)


def varpro_starts(obj: Objective, asymmetry: float = 1.0) -> np.ndarray:
    """Starts theta (M, P) for the fitter: the exponent grid with each point's IRLS/NNLS linear parameters."""
    space, law = obj.space, obj.space.law
    form = linear_form(law.name)
    if form is None:
        raise ScalingError(f"method varpro: law {law.name} has no linear parameters to project out "
                           f"(varpro supports {', '.join(sorted(LINEAR_FORMS))}); use method grid")
    for name in form.linear:
        if name in space.tied or any(m == name for m in space.tied.values()):
            raise ScalingError(f"method varpro: {name} is tied (--tie); varpro needs its linear parameters untied")
    exps = [t[1] for t in form.terms]
    free_exps = [e for e in exps if e in space.free]
    axes = []
    for e in free_exps:
        p = law.param(e)
        lo, hi = space.bounds_natural[e]
        axes.append(_exponent_axis(float(min(p.grid)), float(max(p.grid)), lo, hi))
    mesh = np.array(np.meshgrid(*axes, indexing="ij")).reshape(len(axes), -1).T if axes else np.zeros((1, 0))
    log_space = law.residual_space == "log"
    y = np.exp(obj.log_y) if log_space else obj.log_y
    inv = 1.0 / y if log_space else np.ones_like(y)  # relative residuals approximate log residuals
    out = []
    for row in mesh:
        values = dict(zip(free_exps, row))
        for e in exps:
            if e not in values:
                values[e] = space.fixed[e] if e in space.fixed else values[space.tied[e]]
        linear = _solve_linear(obj, form, values, y, inv, asymmetry)
        if linear is None:
            continue
        params = {**space.fixed, **values, **linear}
        out.append(space.theta_of({n: params[n] for n in space.free}))
    if not out:
        raise ScalingError(f"method varpro: no exponent value gives a finite fit of law {law.name}")
    return np.array(out)


def _solve_linear(obj: Objective, form: LinearForm, exps: dict[str, float], y: np.ndarray, inv: np.ndarray,
                  asymmetry: float) -> dict[str, float] | None:
    """The free linear parameters at fixed exponents: IRLS over (bounded) non-negative least squares."""
    space = obj.space
    columns, names, rhs = [], [], y.copy()
    single = next(iter(obj.inputs.values()))
    with np.errstate(all="ignore"):
        if form.floor:
            columns.append(np.ones_like(y))
            names.append(form.floor)
        for scale, exponent, column in form.terms:
            x = obj.inputs[column] if column else single
            columns.append(x ** (-exps[exponent]))
            names.append(scale)
    keep = [i for i, n in enumerate(names) if n not in space.fixed]
    for i, n in enumerate(names):
        if n in space.fixed:
            rhs = rhs - space.fixed[n] * columns[i]
    if not keep:
        return {}
    Phi = np.stack([columns[i] for i in keep], axis=1)
    names = [names[i] for i in keep]
    if not np.all(np.isfinite(Phi)):
        return None
    norms = np.linalg.norm(Phi, axis=0)
    norms[norms == 0] = 1.0
    Phi = Phi / norms  # unit columns: N^-2 ~ 1e-20 next to a column of ones would wreck the solve
    lo = np.array([space.bounds_natural[n][0] for n in names]) * norms
    hi = np.array([space.bounds_natural[n][1] for n in names]) * norms
    plain = bool(np.all(lo == 0) and np.all(np.isinf(hi)))
    w = np.sqrt(obj.weights) * inv
    robust = obj.loss == "huber"
    c = np.zeros(len(names))
    for _ in range(IRLS_ROUNDS if (robust or asymmetry != 1.0) else 1):
        A, b = Phi * w[:, None], rhs * w
        try:
            c = nnls(A, b)[0] if plain else lsq_linear(A, b, bounds=(lo, hi), method="bvls").x
        except (ValueError, RuntimeError, np.linalg.LinAlgError):
            return None
        r = (Phi @ c - rhs) * inv
        u = np.ones_like(r)
        if robust:  # Huber IRLS weight rho'(r)/r = min(1, delta/|r|)
            u = np.minimum(1.0, obj.delta / np.maximum(np.abs(r), 1e-300))
        if asymmetry != 1.0:
            u = u * np.where(r > 0, asymmetry, 1.0)
        w = np.sqrt(obj.weights * u) * inv
    c = c / norms
    out = {}
    for i, n in enumerate(names):
        v = float(c[i])
        if space.law.param(n).log_scale and not v > 0:
            # a scale constant at 0 has log -inf: start it where its term is 1e-6 of the target instead
            v = 1e-6 * float(np.mean(y)) / max(float(np.mean(Phi[:, i] * norms[i])), 1e-300)
        out[n] = v
    return out


__all__ = ["LINEAR_FORMS", "LinearForm", "linear_form", "varpro_starts"]
