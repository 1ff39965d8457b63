"""Structured warnings (code, severity, message) and the reasons an interval is withheld.

A :class:`FitWarning` is what a fit, a forecast row, a backtest and the HTTP service carry instead of a bare sentence,
so that a program can act on ``code`` (``not_converged``, ``extrapolating_far``, ...) while a person reads
``message``. Fit files store them as ``{"code", "severity", "message"}`` objects inside ``quality.warnings``
(:class:`scaling.fitting.quality.FitQuality`); fit
files written before this structure held plain strings, which :meth:`FitWarning.coerce` classifies by their wording.

An interval that carries no information (as many free parameters as distinct points, most bootstrap resamples
failed, or a collapsed spread) is never shown as a number: :func:`interval_status` names the reason instead
(``no_uncertainty_information``, ``bootstrap_failed_94%``, ...).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from scaling.fitting.quality import FitQuality

Severity = Literal["info", "warning", "error"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "error")

# Bootstrap failure fraction from which intervals are withheld: the resamples that succeed are then a biased
# subset (those that happened to keep enough distinct points), so their spread is not the fit's uncertainty.
BOOTSTRAP_FAIL_MAX = 0.2
# Relative width below which an interval counts as collapsed (every successful draw landed on one point).
COLLAPSE_REL_WIDTH = 1e-9

# How plain-text warnings of older fit files map to codes (first match wins).
_LEGACY_CODES: tuple[tuple[str, str, str], ...] = (
    (r"distinct input point", "interpolating_fit", "error"),
    (r"did NOT converge", "not_converged", "error"),
    (r"is driven to 0", "param_driven_to_zero", "warning"),
    (r"is at a bound", "param_at_bound", "warning"),
    (r"far outside its start grid", "param_outside_start_grid", "warning"),
    (r"bootstrap resamples failed", "bootstrap_failed", "warning"),
    (r"resampled rows instead of runs", "bootstrap_rows_not_runs", "info"),
    (r"distinct .* values to resample", "few_resampling_units", "warning"),
    (r"not separately identifiable", "not_identifiable", "warning"),
    (r"poorly determined", "poorly_determined", "warning"),
)


@dataclass(frozen=True)
class FitWarning:
    """One warning: a stable ``code`` for programs, a ``severity`` and a ``message`` for people.

    ``str(w)`` is the message, and ``"text" in w`` searches it, so code that treated warnings as strings keeps
    working.
    """

    code: str
    message: str
    severity: Severity = "warning"

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r}: expected one of {', '.join(SEVERITIES)}")

    def __str__(self) -> str:
        return self.message

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and text in self.message

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def coerce(cls, value: Any) -> FitWarning:
        """A FitWarning from a FitWarning, a ``{code, severity, message}`` mapping or a legacy plain string."""
        if isinstance(value, FitWarning):
            return value
        if isinstance(value, Mapping):
            severity = str(value.get("severity", "warning"))
            return cls(code=str(value.get("code", "unclassified")), message=str(value.get("message", "")),
                       severity=severity if severity in SEVERITIES else "warning")  # type: ignore[arg-type]
        text = str(value)
        for pattern, code, severity in _LEGACY_CODES:
            if re.search(pattern, text):
                return cls(code=code, message=text, severity=severity)  # type: ignore[arg-type]
        return cls(code="unclassified", message=text)


def as_warnings(items: Iterable[Any] | None) -> list[FitWarning]:
    """Every item as a :class:`FitWarning` (strings from older files and other modules included)."""
    return [FitWarning.coerce(w) for w in (items or [])]


def warnings_to_dicts(items: Iterable[Any] | None) -> list[dict[str, str]]:
    return [w.to_dict() for w in as_warnings(items)]


def interval_status(quality: FitQuality, n_draws: int) -> str | None:
    """Why a fit's bootstrap intervals carry no information, as a code; None when they can be shown.

    - ``no_uncertainty_information``: as many free parameters as distinct input points (the law passes through
      every point, so resampling only reshuffles an exact interpolation);
    - ``bootstrap_failed_NN%``: at least ``BOOTSTRAP_FAIL_MAX`` of the resamples failed;
    - ``no_bootstrap_draws``: the fit has no draws (``--bootstrap 0``, published laws).
    """
    n_free = quality.n_params_free
    n_distinct = quality.n_distinct_points if quality.n_distinct_points is not None else quality.n_points
    if n_free is not None and n_distinct is not None and n_distinct <= n_free:
        return "no_uncertainty_information"
    if any(w.code == "interpolating_fit" for w in quality.warnings):  # older files without n_distinct_points
        return "no_uncertainty_information"
    failed = quality.bootstrap_failed_fraction
    if failed is not None and failed >= BOOTSTRAP_FAIL_MAX:
        return f"bootstrap_failed_{round(100 * failed)}%"
    if n_draws == 0:
        return "no_bootstrap_draws"
    return None


def describe_status(status: str) -> str:
    """A sentence for an interval status code (for CLI notes and reports)."""
    if status == "no_uncertainty_information":
        return ("no_uncertainty_information: the law has as many free parameters as distinct points, so it passes "
                "through every one and its spread says nothing; add points or fix parameters")
    if status.startswith("bootstrap_failed_"):
        share = status.removeprefix("bootstrap_failed_")
        return (f"{status}: {share} of the bootstrap resamples failed, so the rest are a biased subset; "
                "intervals withheld")
    if status == "interval_collapsed":
        return "interval_collapsed: every bootstrap draw gave the same value; intervals withheld"
    if status == "no_bootstrap_draws":
        return "no_bootstrap_draws: this fit carries no bootstrap draws (fitted with --bootstrap 0, or published)"
    return status


__all__ = ["BOOTSTRAP_FAIL_MAX", "FitWarning", "as_warnings", "describe_status", "interval_status",
           "warnings_to_dicts"]
