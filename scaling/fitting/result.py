"""A fitted law: the learned state (parameters, bootstrap draws, quality), forecasts and a readable report.

A :class:`Fit` is what :class:`scaling.fitting.estimate.LawFitter` returns and what a fit file holds
(:func:`load_fit`, :meth:`Fit.save`; the format itself is ``fitfile.py``). It carries everything needed to reproduce
its forecasts and their intervals: the law (by registry name), the parameters, the bootstrap draws and the settings
that produced them.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scaling.fitting import forecast
from scaling.fitting.bootstrap import percentile_interval
from scaling.fitting.diagnostics import COLLAPSE_REL_WIDTH, FitWarning, describe_status, interval_status
from scaling.fitting.quality import FitQuality
from scaling.laws.base import Law

# The fields of Fit.to_record that summarise a fit in one line (the HTTP service's list of fits).
SUMMARY_FIELDS = ("law", "formula", "inputs", "output", "kind", "n_points", "rmse_log", "converged", "convergence",
                  "interval_status", "n_draws")
CORR_WARN = 0.95  # |correlation| between two exponents across draws above which they are called non-identifiable
REL_WIDTH_WARN = 1.0  # interval width / |value| above which an exponent-like parameter is called poorly determined
FACTOR_WARN = 10.0  # upper/lower above which a scale constant is called poorly determined


class Fit:
    """A law with learned parameters and their uncertainty.

    Attributes:
        law: the :class:`~scaling.laws.base.Law` (re-bound by name when loaded from a file).
        params: every parameter of the law (fixed and tied ones included), natural units.
        fixed: parameters held at a value; tied: ``{name: master}`` parameters equal to another.
        draws: bootstrap parameter draws, one row per successful resample (empty for published fits).
        intervals: ``{name: (lower, upper)}`` at level ``ci`` for parameters and derived quantities.
        derived: derived quantities at the point estimate (``law.derived``, plus ``tokens_per_param`` at
            ``settings["ref_compute"]`` for laws with a closed-form optimum).
        quality: a :class:`~scaling.fitting.quality.FitQuality` (n_points, rmse_log, objective, convergence,
            at_bound, bootstrap_failed_fraction, warnings, ...); the constructor also takes a mapping of those keys.
        settings: how it was fitted (law name, loss, delta, fix, tie, bounds, n_bootstrap, ci, seed, ...).
        data_summary: rows, ranges of each input, source file and its sha256.
        meta: for fit files: kind ("fitted"/"published"), reference, units, notes, created, scaling_version.
    """

    def __init__(
        self,
        law: Law,
        params: Mapping[str, float],
        *,
        fixed: Mapping[str, float] | None = None,
        tied: Mapping[str, str] | None = None,
        draws: pd.DataFrame | None = None,
        intervals: Mapping[str, tuple[float, float]] | None = None,
        derived: Mapping[str, float] | None = None,
        settings: Mapping[str, Any] | None = None,
        data_summary: Mapping[str, Any] | None = None,
        quality: FitQuality | Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
    ):
        self.law = law
        self.params = {name: float(params[name]) for name in law.param_names}
        self.fixed = dict(fixed or {})
        self.tied = dict(tied or {})
        self.draws = draws if draws is not None else pd.DataFrame(columns=list(law.param_names), dtype=float)
        self.settings = dict(settings or {})
        self.settings.setdefault("law", law.name)
        self.settings.setdefault("ci", 0.95)
        self.data_summary = dict(data_summary) if data_summary is not None else None
        self.quality = FitQuality.from_dict(quality)
        self.meta = dict(meta or {})
        self.derived = dict(derived) if derived is not None else self.derived_values(self.params)
        self.intervals = {k: (float(v[0]), float(v[1])) for k, v in (intervals or {}).items()}
        # The analysis behind a fit made through one (scaling.analysis: transfer's per-run D_T table, repetition's
        # N_eff and regions, calibration's ECE floor); None for a direct fit and for a fit loaded from a file (it is not saved).
        self.analysis: Any = None

    @property
    def quality(self) -> FitQuality:
        """How the fit went (:class:`~scaling.fitting.quality.FitQuality`). Assigning a mapping converts it, as the
        constructor does, so code written when this was a dict keeps working."""
        return self._quality

    @quality.setter
    def quality(self, value: FitQuality | Mapping[str, Any] | None) -> None:
        self._quality = FitQuality.from_dict(value)

    # -- identity --------------------------------------------------------------------------------------------

    @property
    def law_name(self) -> str:
        """Registry name, e.g. ``chinchilla`` or ``saturating:D``."""
        return str(self.settings.get("law", self.law.name))

    @property
    def ci(self) -> float:
        return float(self.settings.get("ci", 0.95))

    @property
    def param_def(self) -> str:
        """What N counts: ``nonemb`` (non-embedding parameters) or ``total`` (embeddings included)."""
        return str(self.settings.get("param_def", "nonemb"))

    @property
    def n_bootstrap(self) -> int:
        """Bootstrap resamples asked for (0: none; published fits have none)."""
        return int(self.settings.get("n_bootstrap") or 0)

    @property
    def seed(self) -> int:
        """The seed of the fit's bootstrap, reused for forecast noise so a forecast is reproducible."""
        return int(self.settings.get("seed") or 0)

    @property
    def ref_compute(self) -> float | None:
        """The compute (FLOPs) at which ``tokens_per_param`` is reported; None for laws without an optimum."""
        ref = self.settings.get("ref_compute")
        return float(ref) if ref else None

    @property
    def kind(self) -> str:
        """``fitted`` (by this package) or ``published`` (a paper's law in ``fits/``)."""
        return str(self.meta.get("kind", "fitted"))

    @property
    def reference(self) -> str:
        """Where the fit's numbers come from: the paper of a published fit, else the law's reference."""
        return str(self.meta.get("reference") or self.law.reference)

    @property
    def notes(self) -> str:
        return str(self.meta.get("notes") or "")

    @property
    def warnings(self) -> list[FitWarning]:
        """The fit's warnings as :class:`~scaling.fitting.diagnostics.FitWarning` (code, severity, message)."""
        return list(self.quality.warnings)

    @property
    def convergence(self) -> str:
        """``converged``, ``stalled`` or ``not_converged`` (older fit files: from their converged flag)."""
        status = self.quality.convergence
        if status in ("converged", "stalled", "not_converged"):
            return str(status)
        if self.quality.converged is None:
            return "not_fitted" if self.meta.get("kind") == "published" else "unknown"
        return "converged" if self.quality.converged else "not_converged"

    @property
    def interval_status(self) -> str | None:
        """Why this fit's bootstrap intervals are withheld (a code such as ``no_uncertainty_information`` or
        ``bootstrap_failed_94%``), or None when they carry information. See :mod:`scaling.fitting.diagnostics`."""
        status = interval_status(self.quality, len(self.draws))
        if status is None and self.quality.intervals_collapsed:
            return "interval_collapsed"
        return status

    def __repr__(self) -> str:
        values = ", ".join(f"{k}={v:.4g}" for k, v in self.params.items())
        return f"<Fit {self.law_name}: {values}; {len(self.draws)} draws>"

    # -- derived quantities and intervals ------------------------------------------------------------------------

    def derived_values(self, params: Mapping[str, float]) -> dict[str, float]:
        """``law.derived`` at ``params``, plus tokens per parameter at the reference compute where the law has a
        closed-form optimum."""
        out = {}
        for name, fn in self.law.derived.items():
            try:
                out[name] = float(fn(params))
            except (ArithmeticError, ValueError):
                out[name] = math.nan
        ref = self.settings.get("ref_compute")
        if self.law.optimal is not None and ref:
            try:  # a bootstrap draw with alpha = beta = 0 divides a Python float by zero (no errstate for those)
                with np.errstate(all="ignore"):
                    n_opt, d_opt = self.law.optimal(params, np.asarray(float(ref)))
                    out["tokens_per_param"] = float(np.asarray(d_opt) / np.asarray(n_opt))
            except (ArithmeticError, ValueError):
                out["tokens_per_param"] = math.nan
        return out

    def recompute_intervals(self) -> None:
        """Percentile intervals at level ``ci`` from the draws, for parameters and derived quantities.

        None are kept when the draws carry no information (:attr:`interval_status`): an interval printed from
        3 surviving resamples of a 5-point, 5-parameter fit is a zero-width number that excludes its own point.
        """
        self.quality.intervals_collapsed = None
        if not len(self.draws) or self.interval_status is not None:
            self.intervals = {}
            return
        table = self.draws[list(self.law.param_names)].copy()
        derived = pd.DataFrame([self.derived_values(row) for row in table.to_dict("records")], index=table.index)
        table = pd.concat([table, derived], axis=1)
        intervals = {}
        for col in table.columns:
            lo, hi = percentile_interval(table[col].to_numpy(dtype=float), self.ci)
            if not math.isnan(lo):  # a quantity no draw could compute has no interval
                intervals[str(col)] = (lo, hi)
        free = [n for n in self.law.param_names if n not in self.fixed and n not in self.tied and n in intervals]
        if free and all(intervals[n][1] - intervals[n][0] <= COLLAPSE_REL_WIDTH * max(abs(self.params[n]), 1e-300)
                        for n in free):
            self.quality.intervals_collapsed = True
            self.intervals = {}
            return
        self.intervals = intervals

    def identifiability_warnings(self) -> list[FitWarning]:
        """Warnings for parameters the data do not pin down, judged on the bootstrap draws."""
        out: list[FitWarning] = []
        if len(self.draws) < 10:
            return out
        free = [p for p in self.law.params if p.name not in self.fixed and p.name not in self.tied]
        exponents = [p.name for p in free if not p.log_scale]
        for a, b in itertools.combinations(exponents, 2):
            x, y = self.draws[a].to_numpy(float), self.draws[b].to_numpy(float)
            if np.std(x) > 0 and np.std(y) > 0:
                r = float(np.corrcoef(x, y)[0, 1])
                if abs(r) > CORR_WARN:
                    out.append(FitWarning(
                        "not_identifiable",
                        f"{a} and {b} are not separately identifiable: correlation {r:+.3f} across bootstrap draws "
                        f"(they trade off; consider tie={{'{b}': '{a}'}} or more varied data)"))
        level = f"{round(100 * self.ci)}%"
        for p in free:
            if p.name not in self.intervals:
                continue
            lo, hi = self.intervals[p.name]
            value = self.params[p.name]
            if p.log_scale and lo > 0:
                if hi / lo > FACTOR_WARN:
                    out.append(FitWarning("poorly_determined",
                                          f"{p.name} is poorly determined: its {level} interval spans a factor {hi / lo:.3g}"))
            elif value != 0 and (hi - lo) / abs(value) > REL_WIDTH_WARN:
                out.append(FitWarning("poorly_determined",
                                      f"{p.name} is poorly determined: its {level} interval [{lo:.4g}, {hi:.4g}] is "
                                      f"wider than |{p.name}| = {abs(value):.4g}"))
        return out

    # -- forecasts -----------------------------------------------------------------------------------------

    def predict(self, ci: float | None = None, grid: bool = False, **inputs: Any) -> pd.DataFrame:
        """Predicted output with bootstrap interval: columns inputs..., point, lower, upper.

        ``fit.predict(N=70e9, D=1.4e12)``; arrays broadcast, ``grid=True`` takes the cartesian product.
        """
        return forecast.predict(self, ci=ci, grid=grid, **inputs)

    def optimal(self, compute: Any, ci: float | None = None, at: Mapping[str, float] | None = None) -> pd.DataFrame:
        """Compute-optimal N, D, loss and tokens per parameter under C = 6 N D, with ``*_lower``/``*_upper``.

        ``at``: the law's other inputs, e.g. ``{"U": 25e9}`` for the data-constrained optimum.
        """
        return forecast.compute_optimal(self, compute, ci=ci, at=at)

    # -- reporting -------------------------------------------------------------------------------------------

    def summary(self) -> str:
        """A plain-text report in the spirit of lmfit's ``fit_report``."""
        s, q, lines = self.settings, self.quality, []
        level = f"{round(100 * self.ci)}%"
        lines.append(f"[[Fit]] {self.law_name}: {self.law.formula}")
        lines.append(f"    reference: {self.meta.get('reference') or self.law.reference}")
        lines.append(f"    N convention: {'non-embedding' if self.param_def == 'nonemb' else 'total (embeddings included)'}")
        if self.data_summary:
            d = self.data_summary
            src = d.get("source") or "table"
            sha = f" (sha256 {d['sha256'][:12]})" if d.get("sha256") else ""
            lines.append("[[Data]]")
            rows = f", {d['rows']} rows" if d.get("rows") is not None else ""
            lines.append(f"    source: {src}{sha}{rows}")
            for col, r in (d.get("ranges") or {}).items():
                lines.append(f"    {col}: {r['min']:.4g} .. {r['max']:.4g} ({r['distinct']} distinct)")
        if q.n_points is not None:
            lines.append("[[Fit Statistics]]")
            reduction = s.get("reduction", "sum")
            loss = s.get("loss", "huber")
            detail = f" (delta {s.get('delta')}, {reduction})" if loss != "least_squares" else f" ({reduction})"
            lines.append(f"    objective: {loss}{detail} = {q.objective:.6g}")
            lines.append(f"    # data points = {q.n_points}, # free params = {q.n_params_free}")
            lines.append(f"    RMSE of {q.residual_space or 'log'} residuals = {q.rmse_log:.4g}")
            lines.append(f"    convergence = {q.message or self.convergence}")
            if s.get("n_bootstrap"):
                unit = f"groups of {s['group']!r}" if s.get("group") else "rows"
                if s.get("bootstrap_units_per_resample"):
                    unit += f", {s['bootstrap_units_per_resample']} drawn per resample (m-out-of-n, rescaled)"
                lines.append(f"    bootstrap: {s['n_bootstrap']} resamples over {unit} (seed {s.get('seed')}), "
                             f"{100 * (q.bootstrap_failed_fraction or 0):.1f}% failed")
        status = self.interval_status
        # standard errors from draws that carry no information would be as misleading as their intervals
        errors = self.standard_errors() if len(self.draws) > 1 and status is None else {}
        if self.intervals:
            lines.append(f"[[Variables]] (point, {level} interval, bootstrap standard error)")
        elif status is not None and status != "no_bootstrap_draws":
            lines.append(f"[[Variables]] (no intervals: {describe_status(status)})")
        else:
            lines.append("[[Variables]]")
        width = max(len(n) for n in list(self.params) + list(self.derived) or ["x"])
        for name, value in self.params.items():
            note = ""
            if name in self.fixed:
                note = " (fixed)"
            elif name in self.tied:
                note = f" (tied to {self.tied[name]})"
            elif name in q.at_bound:
                note = " (at bound)"
            lines.append(f"    {name:<{width}} = {value:<12.6g}{self._interval_text(name, errors)}{note}")
        if self.derived:
            lines.append("[[Derived]]")
            for name, value in self.derived.items():
                extra = f" at C = {s['ref_compute']:.3g}" if name == "tokens_per_param" and s.get("ref_compute") else ""
                lines.append(f"    {name:<{width}} = {value:<12.6g}{self._interval_text(name, errors)}{extra}")
        strong = self._strong_correlations()
        if strong:
            lines.append("[[Correlations]] (bootstrap, |r| > 0.1)")
            lines.extend(f"    C({a}, {b}) = {r:+.3f}" for a, b, r in strong)
        if self.meta.get("notes"):
            lines.append("[[Notes]]")
            lines.append(f"    {self.meta['notes']}")
        if q.warnings:
            lines.append("[[Warnings]]")
            lines.extend(f"    - {w.code} ({w.severity}): {w.message}" for w in self.warnings)
        return "\n".join(lines)

    def _interval_text(self, name: str, errors: Mapping[str, float] | None = None) -> str:
        if name not in self.intervals:
            return ""
        lo, hi = self.intervals[name]
        se = (errors or {}).get(name, float("nan"))
        return f" [{lo:.6g}, {hi:.6g}]" + (f" +/- {se:.3g} (se)" if np.isfinite(se) else "")

    def _strong_correlations(self, threshold: float = 0.1) -> list[tuple[str, str, float]]:
        """Pairs of free parameters with |r| > threshold, strongest first (as lmfit's fit_report lists them)."""
        corr = self.correlation()
        pairs = [(a, b, float(corr.loc[a, b])) for i, a in enumerate(corr.index) for b in corr.columns[i + 1:]
                 if np.isfinite(corr.loc[a, b]) and abs(corr.loc[a, b]) > threshold]
        return sorted(pairs, key=lambda t: -abs(t[2]))

    def to_lmfit(self):
        """The parameters as ``lmfit.Parameters`` (value, bounds, vary=False for fixed, expr for tied, stderr = the
        standard deviation of the bootstrap draws), for users who work with lmfit: ``fit.to_lmfit().pretty_print()``.
        """
        import lmfit

        out = lmfit.Parameters()
        for p in self.law.params:
            out.add(p.name, value=self.params[p.name], min=p.lower, max=p.upper, vary=p.name not in self.fixed)
        for name, master in self.tied.items():
            out[name].expr = master
        for name in self.params:
            if len(self.draws) > 1 and name not in self.fixed and name not in self.tied:
                out[name].stderr = float(np.std(self.draws[name].to_numpy(float), ddof=1))
        return out

    def standard_errors(self) -> dict[str, float]:
        """Bootstrap standard error of each free parameter and derived quantity: the standard deviation of its draws
        (NaN without at least two draws, or when the draws carry no information: :attr:`interval_status`). Fixed
        and tied parameters have none."""
        out: dict[str, float] = {}
        draws = self.draws if self.interval_status is None else self.draws.iloc[:0]
        if len(draws) > 1 and self.derived and set(self.law.param_names) <= set(draws.columns):
            rows = draws[list(self.law.param_names)].astype(float).to_dict("records")
            derived = pd.DataFrame([self.derived_values(r) for r in rows], index=draws.index)
            draws = pd.concat([draws, derived[[c for c in derived.columns if c not in draws.columns]]], axis=1)
        names = [n for n in self.params if n not in self.fixed and n not in self.tied] + list(self.derived)
        for name in names:
            values = draws[name].to_numpy(float) if name in draws.columns else np.array([])
            values = values[np.isfinite(values)]
            out[name] = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
        return out

    def correlation(self) -> pd.DataFrame:
        """Correlation matrix of the free parameters over the bootstrap draws (empty without draws).

        Strongly correlated parameters (|r| > 0.9, e.g. A and alpha of a power law) are pinned down as a pair, not
        one by one: their separate intervals overstate what is unknown about the curve.
        """
        free = [n for n in self.law.param_names if n not in self.fixed and n not in self.tied and n in self.draws]
        draws = self.draws[free].astype(float).dropna() if free else pd.DataFrame()
        if self.interval_status is not None:  # draws without information (see interval_status)
            draws = draws.iloc[:0]
        if len(draws) < 3:
            return pd.DataFrame(index=free, columns=free, dtype=float)
        return draws.corr()

    def to_frame(self) -> pd.DataFrame:
        """Parameters and derived quantities as a table for notebooks: one row each, columns ``kind`` (free, fixed,
        tied, derived), ``value``, ``stderr`` (bootstrap), ``lower``, ``upper`` (the fit's interval level)."""
        errors = self.standard_errors()
        rows = []
        for name, value in [*self.params.items(), *self.derived.items()]:
            if name in self.derived and name not in self.params:
                kind = "derived"
            else:
                kind = "fixed" if name in self.fixed else ("tied" if name in self.tied else "free")
            lo, hi = self.intervals.get(name, (np.nan, np.nan))
            rows.append({"name": name, "kind": kind, "value": value, "stderr": errors.get(name, np.nan),
                         "lower": lo, "upper": hi})
        return pd.DataFrame(rows).set_index("name")

    def parameter_table(self) -> pd.DataFrame:
        """Parameters and derived quantities with their intervals as the command line prints them: columns name,
        kind, value, lower, upper. kind spells out each one's role: ``free``, ``free, at bound``, ``fixed``,
        ``tied to X``, ``derived``, or ``derived, C = ...`` (tokens per parameter at :attr:`ref_compute`)."""
        return pd.DataFrame(self._parameter_rows(), columns=["name", "kind", "value", "lower", "upper"])

    def _parameter_rows(self) -> list[dict[str, Any]]:
        rows = []
        for name, value in self.params.items():
            kind = "fixed" if name in self.fixed else (f"tied to {self.tied[name]}" if name in self.tied else "free")
            if name in self.quality.at_bound:
                kind = "free, at bound"
            lo, hi = self.intervals.get(name, (np.nan, np.nan))
            rows.append({"name": name, "kind": kind, "value": value, "lower": lo, "upper": hi})
        ref = self.ref_compute
        for name, value in self.derived.items():
            lo, hi = self.intervals.get(name, (np.nan, np.nan))
            kind = f"derived, C = {ref:.3g}" if name == "tokens_per_param" and ref else "derived"
            rows.append({"name": name, "kind": kind, "value": value, "lower": lo, "upper": hi})
        return rows

    def to_record(self) -> dict[str, Any]:
        """The fit's one JSON summary record: what ``scaling fit --format json`` prints and what the HTTP service
        serves (``GET /fits`` lists the fields of :data:`SUMMARY_FIELDS`). JSON-ready: NaN is None.

        Keys: law, formula, reference, inputs, output, kind, ci, interval_status (``ok`` or why intervals are
        withheld), convergence, n_points, rmse_log, converged, n_draws, params (name -> kind, value, lower, upper,
        as :meth:`parameter_table`), quality (as a fit file stores it) and data (the data summary). The fit file
        (:meth:`to_dict`) is the complete state, draws included; this record is what people and programs read.
        """
        from scaling.fitting.fitfile import to_jsonable  # the one JSON encoding (fit files, CLI, HTTP)

        q = self.quality
        return to_jsonable({
            "law": self.law_name,
            "formula": self.law.formula,
            "reference": self.reference,
            "inputs": list(self.law.inputs),
            "output": self.law.output,
            "kind": self.kind,
            "ci": self.ci,
            "interval_status": self.interval_status or "ok",
            "convergence": self.convergence,
            "n_points": q.n_points,
            "rmse_log": q.rmse_log,
            "converged": q.converged,
            "n_draws": len(self.draws),
            "params": {r["name"]: {k: r[k] for k in ("kind", "value", "lower", "upper")} for r in self._parameter_rows()},
            "quality": q.to_dict(),
            "data": self.data_summary,
        })

    # -- persistence -----------------------------------------------------------------------------------------

    # The format module is imported when a fit is saved or loaded: it brings pydantic, which fitting does not need.

    def to_dict(self) -> dict:
        """The fit-file representation (format version 1; see docs/fit-files.md)."""
        from scaling.fitting import fitfile

        return fitfile.fit_to_dict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "fit") -> Fit:
        """Rebuild a fit from :meth:`to_dict` output (validated, errors name ``source``; the law is re-bound by its
        registry name)."""
        from scaling.fitting import fitfile

        return cls(**fitfile.fit_arguments(d, source=source))

    def save(self, path: str | Path) -> Path:
        """Write the fit as JSON (atomically; nothing is written on failure). Returns the path written."""
        from scaling.fitting import fitfile

        return fitfile.save_fit(self, path)


def load_fit(path_or_name: str | os.PathLike) -> Fit:
    """Load a fit file by path or by name (``load_fit("chinchilla")``: ``./fits/chinchilla.json``, else the published
    fit). Validated on load; never executes code from the file."""
    from scaling.fitting import fitfile

    path = fitfile.resolve(path_or_name)
    return Fit.from_dict(fitfile.read_fit_json(path), source=str(path))
