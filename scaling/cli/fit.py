"""``scaling fit``: read a results table, fit a law (from the catalogue, or your own with ``--formula`` or
``--law-file``), save the fit file and print it.

The work happens in :mod:`scaling.results` (reading and validating tables), :mod:`scaling.fitting` (the fit;
:mod:`scaling.fitting.formula_fit` for formula laws, :mod:`scaling.fitting.stages` for ``--fix-from``) and
:mod:`scaling.analysis` (laws fitted through an analysis of runs); this module turns options into arguments for
them, and :mod:`scaling.cli.fit_output` prints the answer. Notes (which law was picked, columns derived) are
printed only after the fit succeeded, so that a failure prints exactly one line: the error.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import pandas as pd
import typer

from scaling.analysis.calibration import INFORMATIVE_RATIO, CalibrationAnalysis
from scaling.cli import app
from scaling.cli.files import check_can_write
from scaling.cli.fit_output import print_fit, print_repetition_analysis, print_transfer_analysis
from scaling.cli.options import (
    BootstrapOption,
    FormatOption,
    MapOption,
    ResultsArgument,
    SeedOption,
    ValuesOption,
    WhereOption,
)
from scaling.cli.output import Format, note, quiet_numerics
from scaling.cli.parsing import check_bootstrap_options, parse_assignments, parse_names
from scaling.errors import ScalingError
from scaling.laws import Law, get_law

if TYPE_CHECKING:  # pragma: no cover
    from scaling.fitting.result import Fit
    from scaling.laws.formula import FormulaSpec

LawOption = Annotated[
    str | None,
    typer.Option(
        "--law", "-l", metavar="NAME", help="Law to fit (see `scaling laws`); default: picked from the columns."
    ),
]
FixOption = Annotated[
    ValuesOption, typer.Option("--fix", metavar="NAME=VALUE", help="Hold a parameter fixed, NAME=VALUE (repeatable).")
]
TieOption = Annotated[
    ValuesOption,
    typer.Option("--tie", metavar="NAME=OTHER", help="Make a parameter equal to another, NAME=OTHER, e.g. beta=alpha."),
]
FixFromOption = Annotated[
    str | None,
    typer.Option(
        "--fix-from",
        metavar="FIT",
        help="Freeze every parameter this law shares with a fit file or name (a stage-1 base, e.g. "
        "fits/epochs-chinchilla.json); its bootstrap draws carry into the intervals. --fix overrides.",
    ),
]
LossOption = Annotated[
    str, typer.Option("--loss", metavar="NAME", help="Objective: huber | least_squares | huber_likelihood.")
]
DeltaOption = Annotated[float, typer.Option("--delta", metavar="FLOAT", help="Huber delta on log residuals.")]
MethodOption = Annotated[
    str,
    typer.Option("--method", metavar="grid|varpro", help="Starts of the local searches: the law's grid, or "
                 "variable projection (exponent grid, linear parameters by NNLS; chinchilla, saturating, power)."),
]
AsymmetryOption = Annotated[
    float,
    typer.Option("--asymmetry", metavar="K", help="Over-predictions cost K times under-predictions (K > 1: "
                 "fit the lower envelope of the points; 1: symmetric)."),
]
CalibrateOption = Annotated[
    int | None,
    typer.Option("--calibrate", metavar="K", help="Rollout cuts that calibrate the prediction interval "
                 "(docs/fitting.md); 0: off, bootstrap plus noise only. Default: 4 (0 with --bootstrap 0)."),
]
LevelOption = Annotated[float, typer.Option("--ci", metavar="LEVEL", help="Interval level.")]
XOption = Annotated[
    str | None,
    typer.Option("--x", metavar="COL", help="Input column of a single-input law (power, saturating), e.g. D."),
]
GroupOption = Annotated[
    str, typer.Option("--group", metavar="COL", help="Column naming the runs the bootstrap resamples (rows if absent).")
]
ParamDefOption = Annotated[
    str,
    typer.Option(
        "--param-def", metavar="nonemb|total", help="N convention: nonemb (N) or total (use the N_total column)."
    ),
]
OutputOption = Annotated[
    Path | None,
    typer.Option("--output", "-o", metavar="PATH", help="Fit file to write (default fits/<csv stem>-<law>.json)."),
]
FormulaOption = Annotated[
    str | None,
    typer.Option("--formula", metavar="TEXT", help='Fit your own law, e.g. "L = E + A/N^alpha + B/D^beta" '
                 "(docs/laws.md, Write your own law)."),
]
LawFileOption = Annotated[
    str | None, typer.Option("--law-file", metavar="PATH", help="A YAML law file (formula, params, ...).")
]
ParamOption = Annotated[
    ValuesOption,
    typer.Option("--param", metavar="NAME=LO:HI", help="Formula parameter bounds, e.g. alpha=0:2, A=0:inf:log, "
                 "E=0:10@1,2 (starts after @; repeatable)."),
]
ResidualOption = Annotated[
    str | None, typer.Option("--residual", metavar="log|linear", help="Formula laws: residual space (log).")
]
ByOption = Annotated[
    str | None, typer.Option("--by", metavar="COL", help="Formula laws: the column naming each row's group.")
]
PerGroupOption = Annotated[
    str | None, typer.Option("--per-group", metavar="NAMES", help="Formula laws: parameters fitted once per "
                             "--by group, e.g. E,A (the others are shared).")
]
TargetOption = Annotated[
    str | None, typer.Option("--target", metavar="COLS", help="Formula laws: output column(s) to fit, one fit "
                             "each, e.g. loss_english,loss_python.")
]


@dataclass
class FitterOptions:
    """The fitter's settings as given on the command line (:class:`~scaling.fitting.estimate.LawFitter` keyword
    arguments), checked before the table is read: a typo should not cost a read of the table, let alone a fit."""

    loss: str
    delta: float
    method: str
    asymmetry: float
    n_bootstrap: int
    ci: float
    seed: int
    group: str
    param_def: str
    calibrate: int | None = None  # None: LawFitter's default (4 cuts with a bootstrap, else 0)

    def check(self) -> None:
        from scaling.fitting.multistart import METHODS
        from scaling.fitting.objective import LOSSES

        if self.loss not in LOSSES:
            raise ScalingError(f"--loss {self.loss!r}: expected one of {', '.join(LOSSES)}")
        if not 0 < self.ci < 1:
            raise ScalingError(f"--ci {self.ci:g}: must lie strictly between 0 and 1, e.g. 0.95")
        check_bootstrap_options(self.n_bootstrap, self.seed)
        if self.calibrate is not None and self.calibrate < 0:
            raise ScalingError(f"--calibrate {self.calibrate}: must be a whole number >= 0 (rollout cuts; 0: off)")
        if self.calibrate and not self.n_bootstrap:
            raise ScalingError(f"--calibrate {self.calibrate}: calibrates the prediction interval, which needs "
                               "bootstrap draws; --bootstrap 0 gives none (drop --calibrate, or --bootstrap N)")
        if not self.delta > 0:
            raise ScalingError(f"--delta {self.delta:g}: must be positive")
        if self.method not in METHODS:
            raise ScalingError(f"--method {self.method!r}: expected one of {', '.join(METHODS)}")
        if not (self.asymmetry > 0 and np.isfinite(self.asymmetry)):
            raise ScalingError(f"--asymmetry {self.asymmetry:g}: must be a positive number (1 = symmetric)")
        if self.param_def not in ("nonemb", "total"):
            raise ScalingError(f"--param-def {self.param_def!r}: expected nonemb or total")

    def kwargs(self) -> dict[str, Any]:
        return asdict(self)


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

    def check(self, *, catalogue_options_given: bool) -> bool:
        """Whether a formula law is to be fitted; options of the other kind given with it are errors."""
        if not (self.wanted or self.params or any(v is not None for v in (self.residual, self.by, self.per_group,
                                                                             self.target))):
            return False
        if not self.wanted:
            raise ScalingError("--param, --residual, --by, --per-group and --target are for formula laws: "
                               "add --formula TEXT or --law-file PATH")
        if catalogue_options_given:
            raise ScalingError("--formula/--law-file replace --law; --x, --fix-from and --param-def do not apply")
        return True


@app.command("fit")
def fit_command(
    results: ResultsArgument,
    law: LawOption = None,
    map_: MapOption = None,
    where: WhereOption = None,
    fix: FixOption = None,
    tie: TieOption = None,
    fix_from: FixFromOption = None,
    loss: LossOption = "huber",
    delta: DeltaOption = 1e-3,
    method: MethodOption = "grid",
    asymmetry: AsymmetryOption = 1.0,
    bootstrap: BootstrapOption = 200,
    seed: SeedOption = 0,
    ci: LevelOption = 0.95,
    calibrate: CalibrateOption = None,
    x: XOption = None,
    group: GroupOption = "run_id",
    param_def: ParamDefOption = "nonemb",
    output: OutputOption = None,
    formula: FormulaOption = None,
    law_file: LawFileOption = None,
    param: ParamOption = None,
    residual: ResidualOption = None,
    by: ByOption = None,
    per_group: PerGroupOption = None,
    target: TargetOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Fit a scaling law to a results table; print parameters with intervals and fit quality; save the fit."""
    fitter = FitterOptions(loss, delta, method, asymmetry, bootstrap, ci, seed, group, param_def, calibrate)
    fitter.check()
    own = FormulaOptions(formula, law_file, param or [], residual, by, per_group, target)
    catalogue_options = law is not None or x is not None or fix_from is not None or param_def != "nonemb"
    if own.check(catalogue_options_given=catalogue_options):
        _fit_formula_law(results, own, map_items=map_ or [], where=where, fix=fix or [], tie=tie or [],
                            fitter=fitter, output=output, fmt=fmt)
        return
    _fit_catalogue_law(results, law, x, map_items=map_ or [], where=where, fix=fix or [], tie=tie or [],
                       fix_from=fix_from, fitter=fitter, output=output, fmt=fmt)


@dataclass
class _LawChoice:
    """The law to fit and how it was chosen (for the notes printed once the fit succeeded)."""

    name: str  # as given or picked, e.g. "saturating"
    law: Law  # with its input column set: --x, or the one input column the table has
    x: str | None
    picked: bool  # by the engine, from the columns
    retargeted: bool  # to the table's one input column, without --x


def _choose_law(table: pd.DataFrame, name: str | None, x: str | None, source: str) -> _LawChoice:
    """--law (or the law the engine picks from the columns) over --x, or over the one input column the table has
    (``--law saturating`` on a table of D: the law over D; docs/cli.md)."""
    from scaling.fitting.table import default_law, single_input_column

    picked = name is None
    name = default_law(table) if name is None else name
    law = get_law(name)
    if x is not None:
        return _LawChoice(name, law.with_input(x) if x else law, x, picked, retargeted=False)
    x = single_input_column(law, [str(c) for c in table.columns], source=source)
    return _LawChoice(name, law if x is None else law.with_input(x), x, picked, retargeted=x is not None)


@dataclass
class _Constraints:
    """--fix, --tie and --fix-from, read against the law: LawFitter's fix, tie and fix_draws."""

    fix: dict[str, float]
    tie: dict[str, str]
    fix_draws: pd.DataFrame | None = None
    frozen: list[str] | None = None  # the parameters --fix-from froze (None without it)


def _read_constraints(law: Law, fix: list[str], tie: list[str], fix_from: str | None, param_def: str) -> _Constraints:
    from scaling.fitting.result import load_fit
    from scaling.fitting.stages import frozen_from

    out = _Constraints(parse_assignments(fix, "--fix", law, numeric=True),
                       parse_assignments(tie, "--tie", law, numeric=False))
    if fix_from is not None:
        frozen, out.fix_draws = frozen_from(load_fit(fix_from), law, exclude={*out.fix, *out.tie},
                                            param_def=param_def, label=f"--fix-from {fix_from}")
        out.fix, out.frozen = {**frozen, **out.fix}, list(frozen)
    clash = sorted(set(out.fix) & set(out.tie))
    if clash:
        raise ScalingError(f"--fix and --tie both set {clash[0]}; choose one")
    return out


def _fit_catalogue_law(results: str, law: str | None, x: str | None, *, map_items: list[str], where: str | None,
                       fix: list[str], tie: list[str], fix_from: str | None, fitter: FitterOptions,
                       output: Path | None, fmt: Format) -> None:
    """``scaling fit RESULTS [--law NAME]``: a law of the catalogue, directly or through its analysis of runs."""
    from scaling.analysis import analysis_for
    from scaling.analysis import fit as fit_law
    from scaling.fitting.fitfile import save_fit
    from scaling.results import parse_mapping, read_results

    mapping = parse_mapping(map_items)
    table = read_results(results, mapping=mapping, where=where)
    if fitter.group not in ("", "run_id") and fitter.group not in table.columns:  # run_id: absent in many tables
        raise ScalingError(f"{results}: --group {fitter.group!r}: no such column; columns are "
                           f"{', '.join(map(str, table.columns))}")
    choice = _choose_law(table, law, x, results)
    constraints = _read_constraints(choice.law, fix, tie, fix_from, fitter.param_def)
    kind = analysis_for(choice.law, table)
    if kind in ("transfer", "repetition"):  # fitted on what their analysis derives from the runs; printed apart
        out_path = output if output is not None else _default_output(results, choice.name)
        check_can_write(out_path, results)
        options = {**fitter.kwargs(), "fix": constraints.fix, "tie": constraints.tie}
        with quiet_numerics():
            result = fit_law(table, law=choice.law, source=results, **options)
        save_fit(result, out_path)
        (print_transfer_analysis if kind == "transfer" else print_repetition_analysis)(result.analysis, out_path, fmt)
        return
    data, swept = _fit_data(table, choice.law, fitter.param_def, results)
    out_path = output if output is not None else _default_output(
        results, choice.name if choice.x is None else f"{choice.name}-{choice.x}")
    check_can_write(out_path, results)
    with quiet_numerics():
        result = fit_law(data, law=choice.name, x=choice.x, fix=constraints.fix, fix_draws=constraints.fix_draws,
                         tie=constraints.tie, **fitter.kwargs())
    save_fit(result, out_path)
    for line in _notes(result, choice, swept, fix_from, constraints, data):
        note(line)
    sections, warnings_ = _calibration_floor(result.analysis) if kind == "calibration" else ([], [])
    print_fit(result, fmt, out_path, sections, warnings_)


def _fit_data(table: pd.DataFrame, law: Law, param_def: str, source: str) -> tuple[pd.DataFrame, str | None]:
    """The rows the law is fitted on, validated; a hyperparameter sweep becomes its optimum per scale (with the
    note saying so)."""
    from scaling.results import validate_columns

    swept = None
    if law.kind == "hyperparameter" and law.output not in table.columns:  # a sweep: its optimum per scale
        from scaling.analysis.hyperparameters import optima_from_sweep

        table, swept = optima_from_sweep(table, law, source=source)
    require = [*law.inputs, law.output]
    if param_def == "total" and "N" in law.inputs:
        require.append("N_total")
    return validate_columns(table, require, source=source), swept


def _notes(result: Fit, choice: _LawChoice, swept: str | None, fix_from: str | None, constraints: _Constraints,
           data: pd.DataFrame) -> list[str]:
    """What the user did not say but the fit assumed: the law picked, the sweep reduced, the input column, the
    frozen base, columns derived or kept aside by --map."""
    lines = []
    if choice.picked:
        lines.append(f"law: {result.law_name} ({choice.law.formula}), picked from the columns; "
                     "choose another with --law")
    if swept is not None:
        lines.append(swept)
    if choice.retargeted:
        lines.append(f"law {choice.name} reads {get_law(choice.name).inputs[0]}; the table has {choice.x}: "
                     f"fitted {result.law_name}")
    if fix_from is not None:
        carried = (f"its {len(constraints.fix_draws)} bootstrap draws carried into the intervals"
                   if constraints.fix_draws is not None else
                   "it has no bootstrap draws, so the intervals treat them as exact")
        lines.append(f"frozen from {fix_from}: {', '.join(constraints.frozen)}; {carried}")
    for column, formula in data.attrs.get("derived", {}).items():
        if column in choice.law.inputs:
            lines.append(f"{column} derived as {formula}")
    for column, kept in data.attrs.get("displaced", {}).items():
        renamed = data.attrs["renamed"][column]
        lines.append(f"--map {column}={renamed}: the table's own {column} column is kept as {kept}")
    return lines


def _default_output(csv_path: str, law_name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", law_name)
    return Path("fits") / f"{Path(csv_path).stem}-{safe}.json"


def _calibration_floor(analysis: CalibrationAnalysis) -> tuple[list, list[str]]:
    """The calibration analysis's floor table as a section to print beside the ECE(N) fit, and its notes."""
    if analysis.floor is None:
        return [], analysis.notes
    title = f"finite-sample ECE floor (informative: ece >= {INFORMATIVE_RATIO:g} x floor)"
    return [("floor", title, analysis.floor)], analysis.notes


def _formula_spec(options: FormulaOptions) -> FormulaSpec:
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


def _fit_formula_law(results: str, options: FormulaOptions, *, map_items: list[str], where: str | None,
                     fix: list[str], tie: list[str], fitter: FitterOptions, output: Path | None, fmt: Format) -> None:
    """``scaling fit RESULTS --formula ...``: one fit per --target (default: the formula's output)."""
    from scaling.fitting.fitfile import save_fit
    from scaling.fitting.formula_fit import fit_prepared, law_for_table
    from scaling.laws.formula_syntax import parse_rhs, split_formula
    from scaling.results import parse_mapping, read_results

    spec = _formula_spec(options)
    parse_rhs(spec.formula, split_formula(spec.formula)[1])  # a bad formula fails before the table is read
    names = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", split_formula(spec.formula)[1])
    targets = parse_names(options.target)
    mapping = parse_mapping(map_items, extra=sorted(set(names) | set(targets) | {spec.output or "loss"}))
    data = read_results(results, mapping=mapping, where=where)
    per_group = parse_names(options.per_group)
    plans = []
    for target in targets or [None]:
        spec_t = spec.model_copy(update={"output": target}) if target else spec
        law, table = law_for_table(data, spec_t, by=options.by, per_group=per_group, source=results)
        fixed = parse_assignments(fix, "--fix", law, numeric=True)
        tied = parse_assignments(tie, "--tie", law, numeric=False)
        out_path = _output_path(output, results, law.name, law.output, len(targets) > 1)
        check_can_write(out_path, results)
        plans.append((law, table, fixed, tied, out_path))
    for law, table, fixed, tied, out_path in plans:
        settings = {**fitter.kwargs(), "fix": fixed, "tie": tied}
        del settings["param_def"]  # formula laws have no N convention
        with quiet_numerics():
            result = fit_prepared(table, law, results, settings)
        save_fit(result, out_path)
        if len(plans) > 1 and fmt is Format.table:
            note(f"target {law.output}:")
        for column, how in data.attrs.get("derived", {}).items():
            if column in law.inputs:
                note(f"{column} derived as {how}")
        print_fit(result, fmt, out_path)
