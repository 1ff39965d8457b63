"""``scaling fit --formula/--law-file`` (formula laws), ``scaling predict`` and ``scaling evaluate``.

The work happens in :mod:`scaling.laws.formula` (parsing and building laws), :mod:`scaling.fitting.formula_fit` (fitting
them, per group and per target) and :mod:`scaling.fitting.scoring` (predictions on rows, error measures); this module
turns command-line text into arguments for them and prints the answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from scaling.cli import app
from scaling.cli.fitting import (
    CiOption,
    FormatOption,
    _check_can_write,
    _quiet_numerics,
    parse_assignments,
    print_fit,
)
from scaling.cli.output import Format, emit, note, print_csv
from scaling.errors import ScalingError


@dataclass
class FormulaOptions:
    """What ``scaling fit`` passes on when given --formula or --law-file (the rest of its options are shared)."""

    formula: str | None
    law_file: str | None
    params: list[str]
    residual: str | None
    by: str | None
    per_group: str | None
    target: str | None

    @property
    def wanted(self) -> bool:
        return self.formula is not None or self.law_file is not None


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def build_spec(options: FormulaOptions):
    """The spec from --formula or --law-file, with --param and --residual applied on top."""
    from scaling.fitting.formula_fit import make_spec
    from scaling.laws.formula import parse_param_option, read_law_file

    if options.formula is not None and options.law_file is not None:
        raise ScalingError("--formula and --law-file: give one (a law file holds its formula)")
    base = read_law_file(options.law_file) if options.law_file is not None else options.formula
    params = dict(parse_param_option(item) for item in options.params)
    if options.residual is not None and options.residual not in ("log", "linear"):
        raise ScalingError(f"--residual {options.residual!r}: expected log or linear")
    return make_spec(base, params, residual_space=options.residual)


def _output_path(output: Path | None, results: str, name: str, target: str, several: bool) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{name}-{target}" if several else name)
    if output is None:
        return Path("fits") / f"{Path(results).stem}-{safe}.json"
    if several:  # one file per target next to the one named: out.json -> out-loss_english.json
        return output.with_name(f"{output.stem}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', target)}{output.suffix or '.json'}")
    return output


def fit_formula_command(results: str, options: FormulaOptions, *, map_items: list[str], where: str | None,
                        fix: list[str], tie: list[str], fitter: dict, output: Path | None, fmt: Format) -> None:
    """``scaling fit RESULTS --formula ...``: one fit per --target (default: the formula's output)."""
    from scaling.fitting.fitfile import save_fit
    from scaling.fitting.formula_fit import fit_prepared, law_for_table
    from scaling.laws.formula import parse_rhs, split_formula
    from scaling.results import parse_mapping, read_results

    spec = build_spec(options)
    parse_rhs(spec.formula, split_formula(spec.formula)[1])  # a bad formula fails before the table is read
    names = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", split_formula(spec.formula)[1])
    targets = _split(options.target)
    mapping = parse_mapping(map_items, extra=sorted(set(names) | set(targets) | {spec.output or "loss"}))
    data = read_results(results, mapping=mapping, where=where)
    per_group = _split(options.per_group)
    plans = []
    for target in targets or [None]:
        spec_t = spec.model_copy(update={"output": target}) if target else spec
        law, table = law_for_table(data, spec_t, by=options.by, per_group=per_group, source=results)
        fixed = parse_assignments(fix, "--fix", law, numeric=True)
        tied = parse_assignments(tie, "--tie", law, numeric=False)
        out_path = _output_path(output, results, law.name, law.output, len(targets) > 1)
        _check_can_write(out_path, results)
        plans.append((law, table, fixed, tied, out_path))
    for law, table, fixed, tied, out_path in plans:
        settings = {**fitter, "fix": fixed, "tie": tied}
        with _quiet_numerics():
            result = fit_prepared(table, law, results, settings)
        save_fit(result, out_path)
        if len(plans) > 1 and fmt is Format.table:
            note(f"target {law.output}:")
        for column, how in data.attrs.get("derived", {}).items():
            if column in law.inputs:
                note(f"{column} derived as {how}")
        print_fit(result, fmt, out_path)


# ---------------------------------------------------------------------------------------------------------
# scaling predict / evaluate

FitArgument = Annotated[str, typer.Argument(help="A fit file (fits/NAME.json) or a published law name.",
                                             metavar="FIT", show_default=False)]
RowsArgument = Annotated[str, typer.Argument(help="CSV with the law's input columns (one row per point).",
                                              metavar="ROWS.csv", show_default=False)]
MapOption = Annotated[list[str] | None, typer.Option("--map", "-m", metavar="NAME=COLUMN",
                                                     help="Read input NAME from COLUMN (repeatable).")]
WhereOption = Annotated[str | None, typer.Option("--where", "-w", metavar="EXPR",
                                                 help='Row selection, e.g. "C >= 1e21" (mapped names).')]


def _rows(path: str, map_items: list[str] | None, where: str | None, fit, extra: tuple[str, ...] = ()):
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
    map_: MapOption = None,
    where: WhereOption = None,
    ci: CiOption = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="PATH",
                                                help="Write the CSV here instead of stdout.")] = None,
) -> None:
    """The rows with the fit's prediction and interval appended (prediction, prediction_lower, prediction_upper)."""
    from scaling.fitting.fitfile import load_fit, write_text_atomic
    from scaling.fitting.fitfile import resolve as resolve_fit
    from scaling.fitting.scoring import predict_rows

    result = load_fit(fit)
    table, mapping = _rows(rows, map_, where, result)
    with _quiet_numerics():
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
    map_: MapOption = None,
    where: WhereOption = None,
    target: Annotated[str | None, typer.Option("--target", metavar="COL",
                                               help="Column to score against (default: the law's output).")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """R^2, NMSE, NMAE, log-RMSE and mean relative error of a fit on a test table (docs/cli.md)."""
    from scaling.fitting.fitfile import load_fit
    from scaling.fitting.scoring import evaluate

    result = load_fit(fit)
    table, mapping = _rows(test, map_, where, result, extra=(target,) if target else ())
    with _quiet_numerics():
        scores = evaluate(result, table, target=target, mapping=mapping, source=test)
    emit(pd.DataFrame([scores]), fmt, title=f"{fit} on {test}")
