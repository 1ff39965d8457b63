"""``scaling predict`` and ``scaling evaluate``: a fit applied to a table of rows, as predictions appended to the
rows or as error measures (:mod:`scaling.fitting.scoring`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pandas as pd
import typer

from scaling.cli import app
from scaling.cli.options import CiOption, FormatOption
from scaling.cli.output import Format, emit, note, print_csv, quiet_numerics
from scaling.errors import ScalingError

if TYPE_CHECKING:  # pragma: no cover
    from scaling.fitting.result import Fit

FitArgument = Annotated[str, typer.Argument(help="A fit file (fits/NAME.json) or a published law name.",
                                             metavar="FIT", show_default=False)]
RowsArgument = Annotated[str, typer.Argument(help="CSV with the law's input columns (one row per point).",
                                              metavar="ROWS.csv", show_default=False)]
# A table of rows to score has the law's names, not a results table's canonical columns: its own --map and --where.
RowsMapOption = Annotated[list[str] | None, typer.Option("--map", "-m", metavar="NAME=COLUMN",
                                                         help="Read input NAME from COLUMN (repeatable).")]
RowsWhereOption = Annotated[str | None, typer.Option("--where", "-w", metavar="EXPR",
                                                     help='Row selection, e.g. "C >= 1e21" (mapped names).')]


def _rows(path: str, map_items: list[str] | None, where: str | None, fit: Fit,
          extra: tuple[str, ...] = ()) -> tuple[pd.DataFrame, dict[str, str]]:
    """The rows as read (those matching --where, which sees the mapped names) and the mapping of the law's names
    to the table's columns."""
    from scaling.results import canonicalize, parse_mapping, read_table, select_rows

    law = fit.law
    mapping = parse_mapping(map_items or [], extra=[*law.inputs, law.output, *extra])
    table = read_table(path)
    if where:
        table = table.loc[select_rows(canonicalize(table, mapping, source=path), where, source=path).index]
    return table, mapping


@app.command("predict")
def predict_command(
    fit: FitArgument,
    rows: RowsArgument,
    map_: RowsMapOption = None,
    where: RowsWhereOption = None,
    ci: CiOption = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="PATH",
                                                help="Write the CSV here instead of stdout.")] = None,
) -> None:
    """The rows with the fit's prediction and interval appended (prediction, prediction_lower, prediction_upper)."""
    from scaling.fitting.fitfile import write_text_atomic
    from scaling.fitting.result import load_fit
    from scaling.fitting.fitfile import resolve as resolve_fit
    from scaling.fitting.scoring import predict_rows

    result = load_fit(fit)
    table, mapping = _rows(rows, map_, where, result)
    with quiet_numerics():
        out = predict_rows(result, table, mapping=mapping, ci=ci, source=rows)
    if output is None:
        print_csv(out)
        return
    if output.exists() and output.resolve() == Path(rows).resolve():
        raise ScalingError(f"-o {output}: is the input table; write the predictions to another file")
    if output.exists() and output.resolve() == resolve_fit(fit).resolve():  # a CSV over the fit would lose it
        raise ScalingError(f"-o {output}: is the fit file; write the predictions to another file")
    write_text_atomic(output, out.to_csv(index=False, lineterminator="\n"), example="predictions.csv")
    note(f"saved {output} ({len(out)} rows)")


@app.command("evaluate")
def evaluate_command(
    fit: FitArgument,
    test: Annotated[str, typer.Argument(help="CSV with the law's inputs and its output column.",
                                        metavar="TEST.csv", show_default=False)],
    map_: RowsMapOption = None,
    where: RowsWhereOption = None,
    target: Annotated[str | None, typer.Option("--target", metavar="COL",
                                               help="Column to score against (default: the law's output).")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """R^2, NMSE, NMAE, log-RMSE and mean relative error of a fit on a test table (docs/cli.md)."""
    from scaling.fitting.result import load_fit
    from scaling.fitting.scoring import evaluate

    result = load_fit(fit)
    table, mapping = _rows(test, map_, where, result, extra=(target,) if target else ())
    with quiet_numerics():
        scores = evaluate(result, table, target=target, mapping=mapping, source=test)
    emit(pd.DataFrame([scores]), fmt, title=f"{fit} on {test}")
