"""``scaling forecast``: the predicted output of a fit (or a published law) with its intervals, on a grid of
inputs (``--N``, ``--D``, ``--at``) or at paired points (``--points``).

The predictions come from :meth:`Fit.predict <scaling.fitting.result.Fit.predict>`; a transfer forecast adds the
effective data it is worth (:func:`scaling.laws.transfer.effective_data_columns`), a two-step downstream forecast
the task loss it goes through (:func:`scaling.analysis.downstream.chain_forecast`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import numpy as np
import pandas as pd
import typer

from scaling.cli import app
from scaling.cli.forecast_output import ci_caption, extrapolation_text, fit_label, interval_text, note_intervals
from scaling.cli.options import CiOption, FormatOption, ValuesOption
from scaling.cli.output import Format, emit, quiet_numerics
from scaling.values import with_intervals
from scaling.cli.parsing import check_grid_size, parse_at, parse_grid, parse_points
from scaling.errors import ScalingError
from scaling.fitting.result import load_fit

if TYPE_CHECKING:  # pragma: no cover
    from scaling.fitting.result import Fit
    from scaling.laws.base import Law


FitArgument = Annotated[
    str,
    typer.Argument(
        help="A fit file (fits/NAME.json) or a published law (chinchilla, kaplan2020, ...).", metavar="FIT_OR_NAME"
    ),
]
SizesOption = Annotated[
    ValuesOption,
    typer.Option("--N", metavar="VALUES", help="Parameters: 7e10, 70B, 1e9,1e10 or a log grid 1e9:1e11:5."),
]
TokensOption = Annotated[
    ValuesOption, typer.Option("--D", metavar="VALUES", help="Training tokens, same syntax as --N.")
]
AtOption = Annotated[
    ValuesOption,
    typer.Option("--at", metavar="COL=VALUES", help="Any other input, COL=VALUES, e.g. U=25e9 or D_F=1e6:1e8:3."),
]
PointsOption = Annotated[
    ValuesOption,
    typer.Option(
        "--points",
        metavar="COL=V,...|FILE.csv",
        help="Paired points instead of a grid: N=1e9,D=2e10 (repeatable), or a CSV with one row per point.",
    ),
]


@app.command("forecast")
def forecast_command(
    fit: FitArgument,
    N: SizesOption = None,
    D: TokensOption = None,
    at: AtOption = None,
    points: PointsOption = None,
    ci: CiOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Predicted loss with its interval at given inputs; several values per input give their full grid."""
    result = load_fit(fit)
    law = result.law
    if points:
        if N or D or at:
            raise ScalingError("--points gives whole points; use it without --N, --D and --at")
        inputs = parse_points(points, law)
    else:
        inputs = {c: np.array(v) for c, v in _grid(law, N, D, at).items()}
    with quiet_numerics():
        table = result.predict(ci=ci, grid=not points, **inputs)
    note_intervals(table, result)
    caption = ci_caption(result, ci)
    if law.name == "transfer" and not points:
        table, caption = _effective_data(result, table, ci, fmt, caption)
    elif law.name == "downstream":
        table, caption = _chained_task_loss(result, table, ci, fmt, caption)
    elif fmt is Format.table:  # "[lower, upper]" text per kind; JSON/CSV keep every column for a stable schema
        table = interval_text(table)
    emit(table, fmt, title=f"{fit_label(fit, result)}: {law.formula}", caption=caption)


def _grid(law: Law, N: list[str] | None, D: list[str] | None, at: list[str] | None) -> dict[str, list[float]]:
    """The values of every input of the law from --N, --D and --at; the forecast is made at each combination."""
    given = parse_grid({"N": ("--N", N), "D": ("--D", D)}, parse_at(at or [], positive=law.positive_inputs))
    unknown = [c for c in given if c not in law.inputs]
    if unknown:
        raise ScalingError(f"law {law.name} has no input {unknown[0]!r}; its inputs are {', '.join(law.inputs)}")
    missing = [c for c in law.inputs if c not in given]
    if missing:
        flags = " ".join(f"--{c} VALUE" if c in ("N", "D") else f"--at {c}=VALUE" for c in missing)
        raise ScalingError(f"law {law.name} ({law.formula}) needs {', '.join(missing)}: add {flags}")
    check_grid_size(given)
    return given


def _chained_task_loss(result: Fit, table: pd.DataFrame, ci: float | None, fmt: Format,
                       caption: str | None) -> tuple[pd.DataFrame, str | None]:
    """A two-step downstream forecast also shows the step-1 task loss it goes through, with its interval."""
    from scaling.analysis.downstream import chain_forecast

    chained = chain_forecast(result, ci=ci, grid=False, N=table["N"].to_numpy(), D=table["D"].to_numpy())
    out = table.copy()
    for c in ("task_loss", "task_loss_lower", "task_loss_upper"):  # before the accuracy's point
        out.insert(int(out.columns.get_loc("point")), c, chained[c].to_numpy())
    if fmt is not Format.table:
        return out, caption
    where = extrapolation_text(out)
    out = out.rename(columns={"point": "accuracy", "conf_lower": "accuracy_lower", "conf_upper": "accuracy_upper"})
    out = out.drop(columns=["pred_lower", "pred_upper", "extrap_decades", "extrap_distance", "warning", "extrapolation"])
    out["extrapolation"] = where
    out["interval_status"] = out.pop("interval_status")
    if out["accuracy_lower"].isna().all():
        return out.drop(columns=[c for c in out.columns if c.endswith(("_lower", "_upper"))]), caption
    out = with_intervals(out, ["task_loss", "accuracy"])
    return out, caption and caption + " ([lower, upper]: confidence intervals of both steps)"


def _effective_data(result: Fit, table: pd.DataFrame, ci: float | None, fmt: Format,
                    caption: str | None) -> tuple[pd.DataFrame, str | None]:
    """A transfer forecast also answers "how much data is that worth": D_E = D_F + D_T, the multiplier D_E/D_F
    and f_T = D_T/D_E, each with the interval of D_T mapped through it (all three increase with D_T > 0, so the
    quantiles map exactly)."""
    from scaling.laws.transfer import effective_data_columns

    out = pd.concat([table, effective_data_columns(table)], axis=1)
    if fmt is not Format.table:
        return out, caption
    where = extrapolation_text(out)
    out = out.rename(columns={"point": "D_T", "conf_lower": "D_T_lower", "conf_upper": "D_T_upper"})
    out = out.drop(columns=["pred_lower", "pred_upper", "extrap_decades", "extrap_distance", "warning", "extrapolation"])
    out = with_intervals(out, ["D_T", "D_E", "multiplier", "f_T"])
    out["extrapolation"] = where
    out["interval_status"] = out.pop("interval_status")
    note_ = "D_T: effective data transferred; D_E = D_F + D_T, the from-scratch data it is worth; multiplier = D_E/D_F"
    if not caption:  # no intervals
        return out, note_
    level = ci if ci is not None else result.ci
    return out, note_ + f"; [lower, upper]: {level:.0%} interval from {len(result.draws)} bootstrap draws (confidence)"
