"""Optimal hyperparameters from fitted (or published) hyperparameter laws, and the rows such laws are fitted to.

A hyperparameter law (``Law.kind == "hyperparameter"``: ``deepseek-lr``, ``steplaw-batch``, ...) predicts the optimum
itself, so "the optimal learning rate and batch size at N, D" is a prediction of each law at that point, with the
interval of its bootstrap draws. :func:`optimal_hyperparameters` answers several such fits at once (one learning-rate
law, one batch law) on one grid of inputs, deriving C = 6 N D for a law of compute when only N and D are given.

:func:`optimum_table` turns a sweep (runs at several learning rates / batch sizes for each N, D) into the rows these
laws are fitted to: per scale, the setting with the lowest loss (Li et al. 2025 take the grid minimum; DeepSeek-AI
2024 fit the near-optimal band, which the lowest-loss run approximates).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from scaling.errors import ScalingError

if TYPE_CHECKING:  # pragma: no cover
    from scaling.fitting.result import Fit
    from scaling.laws.base import Law


def optimum_table(runs: pd.DataFrame, *, settings: Sequence[str] = ("lr", "batch"), by: Sequence[str] = ("N", "D"),
                  loss: str = "loss") -> pd.DataFrame:
    """One row per ``by`` group: the ``settings`` of its lowest-``loss`` run, as ``<setting>_opt`` columns.

    >>> optimum_table(sweep, settings=["lr"], by=["N", "D"])   # doctest: +SKIP
    columns N, D, lr_opt, loss, runs (how many runs the group had)
    """
    needed = [*by, *settings, loss]
    missing = [c for c in needed if c not in runs.columns]
    if missing:
        raise ScalingError(f"optimum table: column {missing[0]!r} is missing (columns: {', '.join(map(str, runs.columns))})")
    table = runs[needed].apply(pd.to_numeric, errors="coerce")
    bad = table.isna().any(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        col = next(c for c in needed if pd.isna(table[c].iloc[row]))
        raise ScalingError(f"optimum table: row {row + 1}, column {col!r} is not a number")
    best = table.loc[table.groupby(list(by), sort=True)[loss].idxmin()]
    counts = table.groupby(list(by), sort=True).size().to_numpy()
    out = best.rename(columns={s: f"{s}_opt" for s in settings}).reset_index(drop=True)
    out["runs"] = counts
    return out


# The sweep column each hyperparameter law's output is the optimum of (the trainer writes lr and batch_tokens).
SETTING_COLUMNS = {"lr_opt": ("lr",), "batch_opt": ("batch_tokens", "batch")}


def optima_from_sweep(runs: pd.DataFrame, law: Law, *, source: str = "table",
                      loss: str = "loss") -> tuple[pd.DataFrame, str]:
    """The rows a hyperparameter ``law`` is fitted to, built from a sweep over its setting (``lr``, ``batch_tokens``).

    Per scale (N and D; C for a law of compute without N, D) the setting of the lowest-``loss`` run, from the
    ``final == 1`` rows when the table has that column (one evaluation per run). Returns the table (with C = 6 N D
    added for a law of C) and a one-line description of what was done.
    """
    candidates = SETTING_COLUMNS.get(law.output, ())
    setting = next((c for c in candidates if c in runs.columns), None)
    if setting is None:
        wanted = " or ".join(repr(c) for c in (law.output, *candidates))
        raise ScalingError(f"{source}: law {law.name} needs a column {wanted} (the optimum per scale, or a sweep over "
                           f"it with a {loss!r} column); columns: {', '.join(map(str, runs.columns))}")
    table = runs
    if "final" in runs.columns:
        table = runs[pd.to_numeric(runs["final"], errors="coerce") == 1]
    if "C" in law.inputs and not {"N", "D"} <= set(table.columns):
        by = ["C"]
    else:  # per (N, D) even for a law of D alone: Step Law's batch optimum is taken per model and budget
        by = [c for c in ("N", "D") if c in table.columns]
    out = optimum_table(table, settings=[setting], by=by, loss=loss)
    out = out.rename(columns={f"{setting}_opt": law.output})
    if "C" in law.inputs and "C" not in out.columns:
        out["C"] = 6.0 * out["N"] * out["D"]
    scope = "final rows" if "final" in runs.columns else "rows"
    what = (f"{law.output}: the {setting} of the lowest-{loss} run at each ({', '.join(by)}), {len(out)} scales from "
            f"{len(table)} {scope}" + (" (C = 6ND)" if "C" in law.inputs and by != ["C"] else ""))
    return out, what


def _required_inputs(fits: Sequence[Fit]) -> list[str]:
    return list(dict.fromkeys(c for f in fits for c in f.law.inputs))


def optimal_hyperparameters(fits: Sequence[Fit], *, ci: float | None = None,
                            **inputs: Any) -> pd.DataFrame:
    """The optimum each hyperparameter fit predicts over the grid of ``inputs`` (cartesian product).

    Columns: the inputs, then per fit ``<output>``, ``<output>_lower``, ``<output>_upper`` (NaN bounds for a fit
    without bootstrap draws). ``C`` is derived as 6 N D for a law of compute when N and D are given and C is not.

    >>> optimal_hyperparameters([load_fit("steplaw2025-lr"), load_fit("steplaw2025-batch")], N=1e9, D=1e11)  # doctest: +SKIP
    """
    if not fits:
        raise ScalingError("no fit given")
    outputs: dict[str, str] = {}
    for f in fits:
        if f.law.kind != "hyperparameter":
            raise ScalingError(f"law {f.law_name} predicts {f.law.output}, not an optimal hyperparameter; "
                               "give only hyperparameter fits (e.g. steplaw2025-lr, deepseek2024-batch)")
        if f.law.output in outputs:
            raise ScalingError(f"two fits predict {f.law.output} ({outputs[f.law.output]} and {f.law_name}); give one")
        outputs[f.law.output] = f.law_name
    required = _required_inputs(fits)
    given = {k: np.atleast_1d(np.asarray(v, dtype=float)).ravel() for k, v in inputs.items() if v is not None}
    derive_c = "C" in required and "C" not in given and {"N", "D"} <= set(given)
    missing = [c for c in required if c not in given and not (c == "C" and derive_c)]
    if missing:
        hint = " (or N and D, for C = 6ND)" if missing == ["C"] else ""
        raise ScalingError(f"{', '.join(outputs.values())} need{'s' if len(fits) == 1 else ''} "
                           f"{', '.join(missing)}{hint}")
    unknown = [c for c in given if c not in required and not (derive_c and c in ("N", "D"))]
    if unknown:
        raise ScalingError(f"{unknown[0]} is not an input of {', '.join(outputs.values())} "
                           f"(inputs: {', '.join(required)})")
    columns = list(given)
    grid = pd.DataFrame(list(itertools.product(*given.values())), columns=columns)
    if derive_c:
        grid["C"] = 6.0 * grid["N"] * grid["D"]
    out = grid.copy()
    for f in fits:
        pred = f.predict(ci=ci, **{c: grid[c].to_numpy() for c in f.law.inputs})
        name = f.law.output
        out[name] = pred["point"].to_numpy()
        out[f"{name}_lower"] = pred["conf_lower"].to_numpy()  # confidence interval of the fitted optimum
        out[f"{name}_upper"] = pred["conf_upper"].to_numpy()
    return out


__all__ = ["optima_from_sweep", "optimal_hyperparameters", "optimum_table"]
