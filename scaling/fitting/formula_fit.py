"""Fitting formula laws: resolving a formula against a table, per-group parameters, several targets.

    fit = fit_formula("runs.csv", "L = E + A/N^alpha + B/D^beta", params={"alpha": {"lower": 0, "upper": 2}})
    fits = fit_formula(df, spec, by="dataset", per_group=["E", "A"])      # shared exponents, per-dataset E, A

Per-group fits run in two stages. Stage 1 fits the pooled law (every group shares every parameter) by the usual
multi-start; stage 2 fits the per-group law (one copy of each named parameter per group, see
:mod:`scaling.laws.formula`) started from the pooled optimum, with every copy at its pooled value. Starting there
instead of a grid over all copies keeps the search small (a 5-point grid over 2 parameters x 6 groups would be
5^12 starts) and puts every group in the right basin. The bootstrap resamples runs within each group (the
fitter's ``strata``), so a resample never loses a group whose parameters then could not be fitted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scaling.errors import ScalingError
from scaling.fitting.estimate import LawFitter
from scaling.fitting.result import Fit
from scaling.laws.formula import (
    FormulaLaw,
    FormulaSpec,
    ParamSpec,
    add_group_index,
    build_law,
    group_index_column,
    resolve_spec,
    spec_from_dict,
)
from scaling.results import read_results


def make_spec(formula: str | FormulaSpec, params: Mapping[str, Any] | None = None, **options: Any) -> FormulaSpec:
    """A :class:`FormulaSpec` from a formula text (or a spec), with ``params`` and other fields merged in."""
    if isinstance(formula, FormulaSpec):
        base = formula.model_dump()
    else:
        base = {"formula": formula}
    merged = {**base.get("params", {}), **{k: (v.model_dump() if isinstance(v, ParamSpec) else dict(v))
                                          for k, v in (params or {}).items()}}
    base.update({k: v for k, v in options.items() if v is not None})
    base["params"] = merged
    return spec_from_dict(base, source="formula")


def law_for_table(data: pd.DataFrame, spec: FormulaSpec, *, by: str | None = None,
                  per_group: Sequence[str] = (), source: str = "table") -> tuple[FormulaLaw, pd.DataFrame]:
    """The law of ``spec`` resolved against the table's columns, and the table ready to fit (group index added).

    Checks what the fitter cannot say as well: a log-space fit of a target with values <= 0 (use a linear one).
    """
    spec = resolve_spec(spec, [str(c) for c in data.columns])
    output = str(spec.output)
    if output not in data.columns:
        raise ScalingError(f"{source}: no column {output!r} (the formula's output); columns are "
                           f"{', '.join(map(str, data.columns))}; name another with --target or --map")
    if spec.residual_space == "log":
        y = pd.to_numeric(data[output], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(np.isfinite(y) & (y <= 0))
        if bad.size:
            raise ScalingError(f"{source}: {output} = {y[bad[0]]:g} (row {bad[0] + 1}): a log-space fit needs a positive "
                               f"target; fit a signed target with --residual linear")
    if per_group:
        if not by:
            raise ScalingError("--per-group needs --by COLUMN (the column naming each row's group)")
        if by not in data.columns:
            raise ScalingError(f"{source}: --by {by!r}: no such column; columns are {', '.join(map(str, data.columns))}")
        if data[by].isna().any():
            raise ScalingError(f"{source}: column {by!r} has empty cells; every row needs a group")
        groups = sorted(data[by].astype(str).unique())
        spec = spec.model_copy(update={"by": by, "per_group": list(per_group), "groups": groups})
        spec = resolve_spec(spec, [str(c) for c in data.columns])  # checks the per-group names
        data = add_group_index(data, spec, source=source)
    elif by:
        raise ScalingError("--by needs --per-group NAMES (the parameters fitted per group), e.g. --per-group E,A")
    return build_law(spec), data


def fit_formula(data: pd.DataFrame | str | Path, formula: str | FormulaSpec, *,
                params: Mapping[str, Any] | None = None, by: str | None = None, per_group: Sequence[str] = (),
                mapping: Mapping[str, str] | None = None, where: str | None = None, source: str | None = None,
                **fitter_options: Any) -> Fit:
    """Fit a formula law to a results table; ``by``/``per_group`` fit the named parameters once per group.

    ``fitter_options`` go to :class:`~scaling.fitting.estimate.LawFitter` (``n_bootstrap``, ``loss``, ``fix``, ...).
    ``output`` and ``residual_space`` may be given there too and are moved into the spec.
    """
    if isinstance(data, (str, Path)):
        source = source or str(data)
        data = read_results(data, mapping=mapping, where=where)
    elif mapping or where:
        data = read_results(data, mapping=mapping, where=where)
    source = source or str(data.attrs.get("source", "table"))
    spec_options = {k: fitter_options.pop(k) for k in ("output", "residual_space", "name", "inputs")
                    if k in fitter_options}
    spec = make_spec(formula, params, **spec_options)
    law, table = law_for_table(data, spec, by=by, per_group=per_group, source=source)
    return fit_prepared(table, law, source, fitter_options)


def fit_prepared(table: pd.DataFrame, law: FormulaLaw, source: str, fitter_options: Mapping[str, Any]) -> Fit:
    """Fit a law from :func:`law_for_table` to its table: directly, or in two stages for per-group parameters."""
    if not law.spec.per_group:
        return LawFitter(law, **fitter_options).fit(table, source=source)
    return _fit_per_group(table, law, source, dict(fitter_options))


def _fit_per_group(table: pd.DataFrame, law: FormulaLaw, source: str, options: dict[str, Any]) -> Fit:
    spec = law.spec
    pooled_spec = spec.model_copy(update={"by": None, "per_group": [], "groups": []})
    pooled_law = build_law(pooled_spec)
    shared_fix = {k: v for k, v in (options.get("fix") or {}).items() if k in pooled_law.param_names}
    shared_tie = {k: v for k, v in (options.get("tie") or {}).items()
                  if k in pooled_law.param_names and v in pooled_law.param_names}
    stage1 = {**options, "n_bootstrap": 0, "calibrate": 0, "fix": shared_fix, "tie": shared_tie}  # starts only
    pooled = LawFitter(pooled_law, **stage1).fit(table, source=source)
    starts = {name: p.model_copy(update={"start": [pooled.params[name]]}) for name, p in spec.params.items()}
    grouped = build_law(spec.model_copy(update={"params": starts}))
    options = {**options, "strata": group_index_column(str(spec.by))}
    fit = LawFitter(grouped, **options).fit(table, source=source)
    # The saved law keeps the user's starts, not the pooled values used here (a refit would start from them).
    fit.law = law
    fit.settings["per_group"] = {"by": spec.by, "params": list(spec.per_group), "groups": list(spec.groups),
                                 "pooled_params": pooled.params}
    return fit


def fit_targets(data: pd.DataFrame, formula: str | FormulaSpec, targets: Sequence[str], **options: Any) -> dict[str, Fit]:
    """One fit per output column (``--target loss_english,loss_python``), same formula and settings."""
    return {t: fit_formula(data, formula, output=t, **options) for t in targets}


__all__ = ["fit_formula", "fit_prepared", "fit_targets", "law_for_table", "make_spec"]
