"""What a scaling law is, for the fitter, the forecaster and the fit files.

A law is a plain function with named parameters (the lmfit idea): ``function(**inputs, **params)`` returns the
predicted quantity (held-out loss, ECE, ...) for arrays of inputs. Everything the fitter needs to know about a
parameter (bounds, whether it is a positive scale constant best optimised as a log, the multi-start grid) lives
in a :class:`Param`. Learned values never live on the law: they live on a fit.

Adding a law is one small module in ``scaling/laws/`` that builds a :class:`Law` and calls :func:`register`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scaling.errors import ScalingError

RESIDUAL_SPACES = ("log", "linear")
LAW_KINDS = ("loss", "hyperparameter", "downstream")
ANALYSES = (None, "transfer", "repetition", "calibration")  # the analyses of runs in scaling.analysis


@dataclass(frozen=True)
class Param:
    """One named parameter of a law.

    ``log_scale`` marks a positive scale constant (A, B, E, N_c, ...) that spans decades: the fitter optimises
    log(value), as Hoffmann et al. 2022 do (a = log A). ``grid`` holds the starting values of the multi-start
    search, in natural units (the fitter takes logs itself where ``log_scale`` is set).
    """

    name: str
    lower: float = -np.inf
    upper: float = np.inf
    grid: tuple[float, ...] = ()
    log_scale: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if self.log_scale and self.lower < 0:
            raise ValueError(f"parameter {self.name}: a log-scale parameter needs lower >= 0")
        if not self.grid:
            raise ValueError(f"parameter {self.name}: give at least one starting value in grid")


@dataclass(frozen=True)
class Law:
    """A scaling law: formula, paper, parameters and the inputs it needs.

    Attributes:
        name: registry name (``chinchilla``, ``kaplan-nd``, ...).
        formula: the formula as text, e.g. ``L = E + A/N^alpha + B/D^beta``.
        reference: the paper (authors, year, title, arXiv id).
        inputs: the results-table columns the law reads, in order (e.g. ``("N", "D")``).
        params: the parameters, in a fixed order.
        function: ``function(**inputs, **params) -> ndarray`` of predictions (same units as ``output``).
        output: the column the law predicts (``loss`` unless said otherwise, e.g. ``ece``).
        log_function: optional numerically stable ``log(function(...))`` (e.g. a logsumexp); the fitter works
            on log predictions and uses it when present.
        optimal: optional ``optimal(params, compute) -> (N_opt, D_opt)`` under C = 6 N D (closed form where it
            exists; laws without one get a numeric optimum from the forecaster).
        derived: named quantities computed from the parameters (``a = beta/(alpha+beta)`` ...); the fitter
            reports bootstrap intervals for them too.
        min_distinct: minimum number of distinct values per input needed to identify the law
            (e.g. ``{"N": 2}``); checked before fitting.
        notes: units, conventions, caveats shown with the law.
        residual_space: where the fitter compares prediction and target. ``"log"`` (the default: losses and other
            positive quantities spanning decades; r = log y_hat - log y, Hoffmann et al. 2022) or ``"linear"``
            (r = y_hat - y: signed targets such as a unigram-normalised loss, or accuracies and error rates in
            [0, 1] whose absolute errors matter, as Bhagia et al. 2024 and Gadre et al. 2024 fit them).
        kind: what the output is, for the forecasting commands: ``"loss"`` (default), ``"hyperparameter"`` (the
            output is an optimal setting such as the learning rate: its prediction *is* the optimum, see
            :mod:`scaling.analysis.hyperparameters`) or ``"downstream"`` (a metric predicted from a loss, the second step of
            a chained forecast, see :mod:`scaling.analysis.downstream`).
        positive_inputs: True (the catalogue's laws of counts N, D, U, ...): inputs must be positive, in tables and
            forecasts. False for laws whose formula takes zero or negative inputs (formula laws of log learning
            rate, mixture proportions, ...): the inputs need only be finite.
        analysis: the analysis of runs ``scaling.fit`` runs for this law instead of (or beside) a plain fit:
            ``"transfer"`` (D_T from paired runs), ``"repetition"`` (the unique-data baseline and N_eff) or
            ``"calibration"`` (the finite-sample ECE floor beside the fit); None for a plain fit. See
            :func:`scaling.analysis.analysis_for`.
    """

    name: str
    formula: str
    reference: str
    inputs: tuple[str, ...]
    params: tuple[Param, ...]
    function: Callable[..., np.ndarray]
    output: str = "loss"
    log_function: Callable[..., np.ndarray] | None = None
    optimal: Callable[[Mapping[str, float], np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
    derived: Mapping[str, Callable[[Mapping[str, float]], float]] = field(default_factory=dict)
    min_distinct: Mapping[str, int] = field(default_factory=dict)
    notes: str = ""
    residual_space: str = "log"
    kind: str = "loss"
    positive_inputs: bool = True
    analysis: str | None = None

    def __post_init__(self) -> None:
        if self.residual_space not in RESIDUAL_SPACES:
            raise ValueError(f"law {self.name}: residual_space must be one of {RESIDUAL_SPACES}")
        if self.kind not in LAW_KINDS:
            raise ValueError(f"law {self.name}: kind must be one of {LAW_KINDS}")
        if self.analysis not in ANALYSES:
            raise ValueError(f"law {self.name}: analysis must be one of {ANALYSES}")

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise ScalingError(f"law {self.name} has no parameter {name!r}; it has {', '.join(self.param_names)}")

    def _call(self, fn: Callable[..., np.ndarray], params: Mapping[str, float], inputs: Mapping[str, Any]):
        missing = [c for c in self.inputs if c not in inputs]
        if missing:
            raise ScalingError(f"law {self.name} needs input(s) {', '.join(missing)}")
        args = {c: np.asarray(inputs[c], dtype=float) for c in self.inputs}
        return fn(**args, **{p: params[p] for p in self.param_names})

    def predict(self, params: Mapping[str, float], **inputs: Any) -> np.ndarray:
        """Predicted ``output`` at the given inputs (arrays broadcast)."""
        return np.asarray(self._call(self.function, params, inputs), dtype=float)

    def log_predict(self, params: Mapping[str, float], **inputs: Any) -> np.ndarray:
        """log of :meth:`predict`, through ``log_function`` when the law has a stable one."""
        if self.log_function is not None:
            return np.asarray(self._call(self.log_function, params, inputs), dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(self.predict(params, **inputs))

    def with_input(self, column: str) -> Law:
        """For single-input laws (``power``, ``saturating``): the same law over another column.

        ``get_law("saturating").with_input("D")`` fits L = E + A D^-a.
        """
        if len(self.inputs) != 1:
            raise ScalingError(f"law {self.name} has inputs {self.inputs}; only single-input laws can be re-targeted")
        if column == self.inputs[0]:
            return self
        old = self.inputs[0]

        def renamed(fn):
            if fn is None:
                return None
            return lambda **kw: fn(**{(old if k == column else k): v for k, v in kw.items()})

        return dataclasses.replace(
            self,
            inputs=(column,),
            function=renamed(self.function),
            log_function=renamed(self.log_function),
            # whole-word rename only: "N" -> "D" must not turn "N_c" into "D_c"
            formula=re.sub(rf"\b{re.escape(old)}\b", column, self.formula),
            min_distinct={(column if k == old else k): v for k, v in self.min_distinct.items()},
        )


_REGISTRY: dict[str, Law] = {}


def register(law: Law) -> Law:
    """Add a law to the catalogue (called once by the law's own module)."""
    if law.name in _REGISTRY:
        raise ValueError(f"law {law.name} registered twice")
    _REGISTRY[law.name] = law
    return law


def get_law(name: str) -> Law:
    """The law called ``name``; ``power:D`` / ``saturating:N`` pick the input of a single-input law."""
    base, _, column = name.partition(":")
    law = _REGISTRY.get(base)
    if law is None:
        raise ScalingError(f"unknown law {base!r}; known laws: {', '.join(sorted(_REGISTRY))}")
    return law.with_input(column) if column else law


def law_names() -> list[str]:
    return sorted(_REGISTRY)
