"""How well a fit went: :class:`FitQuality`, the typed record behind ``Fit.quality`` and a fit file's ``quality``.

The fitter (:class:`scaling.fitting.estimate.LawFitter`) fills the fields of a direct fit; a published law carries
only its warnings; the chained downstream fit reports a subset and adds ``steps``. A field has a type and a meaning (below), so readers write
``fit.quality.rmse_log`` instead of looking up a string key in somebody else's dict.

A fit file holds the record as a JSON object (docs/fit-files.md). Re-saving a loaded file writes the same object:

- a field the file did not hold (an older file, a published law) is *not reported*: it reads ``None`` (or an empty
  list) and is not written; a field given as ``None`` is reported and written as ``null`` (for example
  ``bootstrap_failed_fraction`` of a fit without bootstrap). Only fields given to the constructor, or set to a value
  since, are written;
- keys this version does not know (written by a newer or foreign tool) are kept in :attr:`FitQuality.extra`, and
  so is a known key whose value has the wrong type (a hand-edited file): the field then reads ``None``, and the
  value is written back as it was. The quality record is free-form in a fit file: a wrong type is never an error.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from scaling.fitting.diagnostics import FitWarning, as_warnings


class _NotReported:
    """Default of every field: not given (so not written to a fit file), as opposed to given as None (null)."""

    def __repr__(self) -> str:
        return "<not reported>"


_NOT_REPORTED: Any = _NotReported()


@dataclass
class FitQuality:
    """The quality of one fit: its size, residuals, objective, convergence verdict, bootstrap health and warnings.

    Fields (in fit-file order; None when the fit did not report it):
    """

    n_points: int | None = _NOT_REPORTED
    """Rows of data the law was fitted to."""
    n_distinct_points: int | None = _NOT_REPORTED
    """Distinct input points among them (repeated seeds count once); the interpolation check compares it with
    ``n_params_free``."""
    n_params_free: int | None = _NOT_REPORTED
    """Parameters the optimiser moved (neither fixed nor tied)."""
    rmse_log: float | None = _NOT_REPORTED
    """Root mean square of the residuals in :attr:`residual_space`: log(measured / fitted) for most laws (so 0.01 is
    about 1%), measured - fitted for a law fitted in linear space (accuracy, calibration error)."""
    residual_space: str | None = _NOT_REPORTED
    """``log`` or ``linear``: the space of the residuals and of ``rmse_log``."""
    objective: float | None = _NOT_REPORTED
    """The minimised objective (the settings' loss and reduction) at the optimum; comparable between fits of the same
    data with the same loss only."""
    converged: bool | None = _NOT_REPORTED
    """``convergence == "converged"``."""
    convergence: str | None = _NOT_REPORTED
    """The one convergence verdict: ``converged``, ``stalled`` or ``not_converged`` (docs/fitting.md)."""
    message: str | None = _NOT_REPORTED
    """The verdict with its evidence, in words (starts with the verdict)."""
    optimizer_message: str | None = _NOT_REPORTED
    """What the last optimiser run said (scipy's message), kept for diagnosis."""
    newton_step: float | None = _NOT_REPORTED
    """Length of a Gauss-Newton step from the optimum, relative to the parameters (small: at a minimum)."""
    relative_gradient: float | None = _NOT_REPORTED
    """Gradient norm at the optimum relative to the objective's scale."""
    restart_gain: float | None = _NOT_REPORTED
    """Relative objective decrease a restart from the optimum still found (0: nothing left to gain)."""
    at_bound: list[str] = _NOT_REPORTED
    """Free parameters that ended at a bound of their range."""
    n_starts: int | None = _NOT_REPORTED
    """Start points of the multi-start grid that were scored."""
    n_refined: int | None = _NOT_REPORTED
    """Starts refined by the local optimiser."""
    bootstrap_failed_fraction: float | None = _NOT_REPORTED
    """Share of bootstrap resamples that failed (0..1); None for a fit without bootstrap. From 0.2 on, intervals are
    withheld (:func:`scaling.fitting.diagnostics.interval_status`)."""
    warnings: list[FitWarning] = _NOT_REPORTED
    """Coded warnings (:class:`~scaling.fitting.diagnostics.FitWarning`); always written, an empty list when none."""
    seconds: float | None = _NOT_REPORTED
    """Wall-clock time of the fit, bootstrap and calibration included."""
    calibration: dict[str, Any] | None = _NOT_REPORTED
    """The rollout backtest behind the prediction intervals (``axis``, ``cuts``, ``abs_error``, ``decades``,
    ``sigma``, ``d0``; :mod:`scaling.fitting.conformal`), or None when no cut could be fitted."""
    residual_scale: float | None = _NOT_REPORTED
    """The fitted noise scale of the ``huber_likelihood`` loss (that loss only)."""
    intervals_collapsed: bool | None = _NOT_REPORTED
    """True when every bootstrap draw landed on the point estimate, so intervals are withheld."""
    steps: dict[str, dict[str, Any]] | None = _NOT_REPORTED
    """Chained downstream fit: each step's own quality (``n_points``, ``n_params_free``, ``rmse_log``,
    ``residual_space``, ``objective``, ``converged``, ``message``) by step law name."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Keys this version does not know, and known keys of the wrong type, kept as the file held them."""
    _reported: frozenset[str] | None = field(default=None, repr=False, compare=False)
    """The fields reported, None included. An init field only so that ``dataclasses.replace`` hands the original's
    set to the copy (which receives every field, reported or not): the copy reports those plus any set to a value."""

    def __post_init__(self) -> None:
        copied = self._reported is not None
        reported = set(self._reported or ())
        for f in _record_fields():
            value = getattr(self, f.name)
            if value is _NOT_REPORTED:
                setattr(self, f.name, [] if f.name in _LISTS else None)
            elif not copied or (value is not None and value != []):
                reported.add(f.name)
        self.warnings = as_warnings(self.warnings)
        self._reported = frozenset(reported)

    def to_dict(self) -> dict[str, Any]:
        """The record as a fit file stores it: reported fields in order (warnings as ``{code, severity, message}``
        objects), then :attr:`extra`. Values are as held (numpy numbers included); ``fitfile.to_jsonable`` makes
        them JSON."""
        out: dict[str, Any] = {}
        for f in _record_fields():
            value = getattr(self, f.name)
            if f.name == "warnings":
                out["warnings"] = [w.to_dict() for w in as_warnings(value)]
            elif f.name in (self._reported or ()) or (value is not None and value != []):
                out[f.name] = list(value) if isinstance(value, list) else value
        out.update({key: value for key, value in self.extra.items() if key not in out})
        return out

    @classmethod
    def from_dict(cls, record: Mapping[str, Any] | FitQuality | None) -> FitQuality:
        """A record from a fit file's ``quality`` object (or a mapping written by code): each known key of the right
        type becomes its field, everything else goes to :attr:`extra` (see the module doc). Never raises on content."""
        if isinstance(record, FitQuality):
            return record
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in (record or {}).items():
            kind = _TYPES.get(str(key))
            if kind is None:
                extra[str(key)] = value
            elif key == "warnings":  # a non-list in an old or edited file was always read as no warnings
                known["warnings"] = value if isinstance(value, (list, tuple)) else []
            elif value is None or _has_type(value, kind):
                known[str(key)] = list(value) if isinstance(value, (list, tuple)) else value
            else:
                extra[str(key)] = value
        return cls(**known, extra=extra)


def _record_fields():
    return [f for f in fields(FitQuality) if f.name not in ("extra", "_reported")]


_LISTS = ("at_bound", "warnings")
# What from_dict accepts under each key (a file is JSON: int, float, bool, str, list, object); tests check that every
# field is listed.
_TYPES: dict[str, str] = {
    "n_points": "int", "n_distinct_points": "int", "n_params_free": "int", "n_starts": "int", "n_refined": "int",
    "rmse_log": "float", "objective": "float", "newton_step": "float", "relative_gradient": "float",
    "restart_gain": "float", "bootstrap_failed_fraction": "float", "seconds": "float", "residual_scale": "float",
    "converged": "bool", "intervals_collapsed": "bool",
    "residual_space": "str", "convergence": "str", "message": "str", "optimizer_message": "str",
    "at_bound": "names", "warnings": "list", "calibration": "mapping", "steps": "mapping",
}


def _has_type(value: Any, kind: str) -> bool:
    if kind == "int":  # numbers.*: numpy scalars from code count; JSON true is not a count
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "names":
        return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    return isinstance(value, Mapping)


__all__ = ["FitQuality"]
