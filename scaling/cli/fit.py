"""``scaling fit``: read a results table, fit a law (from the catalogue, or your own with ``--formula`` or
``--law-file``), save the fit file and print it.

The work happens in :mod:`scaling.results` (reading and validating tables), :mod:`scaling.fitting` (the fit, and
:mod:`scaling.fitting.formula_fit` for formula laws) and :mod:`scaling.analysis` (laws fitted through an analysis of
runs); this module turns options into arguments for them, and :mod:`scaling.cli.fit_output` prints the answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from scaling.cli import app
from scaling.cli.files import check_can_write
from scaling.cli.fit_output import print_fit, print_repetition_analysis, print_transfer_analysis
from scaling.cli.options import FormatOption, ValuesOption
from scaling.cli.output import Format, format_number, note, quiet_numerics
from scaling.cli.parsing import parse_assignments
from scaling.errors import ScalingError
from scaling.laws import Law, get_law


def _resolve_law(name: str | None, x: str | None) -> Law | None:
    """The law object for --law/--x, or None to let the engine pick from the columns."""
    if name is None:
        return None
    law = get_law(name)
    if x:
        law = law.with_input(x)
    return law


def _default_output(csv_path: str, law_name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", law_name)
    return Path("fits") / f"{Path(csv_path).stem}-{safe}.json"


@app.command("fit")
def fit_command(
    results: Annotated[
        str,
        typer.Argument(
            help="Results table (CSV) with one row per evaluation.", metavar="RESULTS.csv", show_default=False
        ),
    ],
    law: Annotated[
        str | None,
        typer.Option(
            "--law", "-l", metavar="NAME", help="Law to fit (see `scaling laws`); default: picked from the columns."
        ),
    ] = None,
    map_: Annotated[
        ValuesOption,
        typer.Option(
            "--map",
            "-m",
            metavar="COL=FOREIGN",
            help='Column mapping CANONICAL=FOREIGN, e.g. N="Model Size" (repeatable).',
        ),
    ] = None,
    where: Annotated[
        str | None,
        typer.Option("--where", "-w", metavar="EXPR", help='Row selection, e.g. "final == 1" (grammar: docs/cli.md).'),
    ] = None,
    fix: Annotated[
        ValuesOption,
        typer.Option("--fix", metavar="NAME=VALUE", help="Hold a parameter fixed, NAME=VALUE (repeatable)."),
    ] = None,
    tie: Annotated[
        ValuesOption,
        typer.Option(
            "--tie", metavar="NAME=OTHER", help="Make a parameter equal to another, NAME=OTHER, e.g. beta=alpha."
        ),
    ] = None,
    fix_from: Annotated[
        str | None,
        typer.Option(
            "--fix-from",
            metavar="FIT",
            help="Freeze every parameter this law shares with a fit file or name (a stage-1 base, e.g. "
            "fits/epochs-chinchilla.json); its bootstrap draws carry into the intervals. --fix overrides.",
        ),
    ] = None,
    loss: Annotated[
        str, typer.Option("--loss", metavar="NAME", help="Objective: huber | least_squares | huber_likelihood.")
    ] = "huber",
    delta: Annotated[float, typer.Option("--delta", metavar="FLOAT", help="Huber delta on log residuals.")] = 1e-3,
    method: Annotated[
        str,
        typer.Option("--method", metavar="grid|varpro", help="Starts of the local searches: the law's grid, or "
                     "variable projection (exponent grid, linear parameters by NNLS; chinchilla, saturating, power)."),
    ] = "grid",
    asymmetry: Annotated[
        float,
        typer.Option("--asymmetry", metavar="K", help="Over-predictions cost K times under-predictions (K > 1: "
                     "fit the lower envelope of the points; 1: symmetric)."),
    ] = 1.0,
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", "-b", metavar="INT", help="Bootstrap resamples (0: no intervals).")
    ] = 200,
    seed: Annotated[int, typer.Option("--seed", metavar="INT", help="Seed of the bootstrap.")] = 0,
    ci: Annotated[float, typer.Option("--ci", metavar="LEVEL", help="Interval level.")] = 0.95,
    x: Annotated[
        str | None,
        typer.Option("--x", metavar="COL", help="Input column of a single-input law (power, saturating), e.g. D."),
    ] = None,
    group: Annotated[
        str,
        typer.Option("--group", metavar="COL", help="Column naming the runs the bootstrap resamples (rows if absent)."),
    ] = "run_id",
    param_def: Annotated[
        str,
        typer.Option(
            "--param-def", metavar="nonemb|total", help="N convention: nonemb (N) or total (use the N_total column)."
        ),
    ] = "nonemb",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="PATH", help="Fit file to write (default fits/<csv stem>-<law>.json)."),
    ] = None,
    formula: Annotated[
        str | None,
        typer.Option("--formula", metavar="TEXT", help='Fit your own law, e.g. "L = E + A/N^alpha + B/D^beta" '
                     "(docs/laws.md, Write your own law)."),
    ] = None,
    law_file: Annotated[
        str | None, typer.Option("--law-file", metavar="PATH", help="A YAML law file (formula, params, ...).")
    ] = None,
    param: Annotated[
        ValuesOption,
        typer.Option("--param", metavar="NAME=LO:HI", help="Formula parameter bounds, e.g. alpha=0:2, A=0:inf:log, "
                     "E=0:10@1,2 (starts after @; repeatable)."),
    ] = None,
    residual: Annotated[
        str | None, typer.Option("--residual", metavar="log|linear", help="Formula laws: residual space (log).")
    ] = None,
    by: Annotated[
        str | None, typer.Option("--by", metavar="COL", help="Formula laws: the column naming each row's group.")
    ] = None,
    per_group: Annotated[
        str | None, typer.Option("--per-group", metavar="NAMES", help="Formula laws: parameters fitted once per "
                                 "--by group, e.g. E,A (the others are shared).")
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", metavar="COLS", help="Formula laws: output column(s) to fit, one fit "
                                 "each, e.g. loss_english,loss_python.")
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Fit a scaling law to a results table; print parameters with intervals and fit quality; save the fit."""
    from scaling.analysis import analysis_for
    from scaling.analysis import fit as fit_law
    from scaling.fitting.multistart import METHODS
    from scaling.fitting.objective import LOSSES
    from scaling.fitting.table import default_law, single_input_column
    from scaling.fitting.fitfile import save_fit
    from scaling.results import parse_mapping, read_results, validate_columns

    # Option checks first: a typo should not cost a read of the table, let alone a fit.
    if loss not in LOSSES:
        raise ScalingError(f"--loss {loss!r}: expected one of {', '.join(LOSSES)}")
    if not 0 < ci < 1:
        raise ScalingError(f"--ci {ci:g}: must lie strictly between 0 and 1, e.g. 0.95")
    if bootstrap < 0:
        raise ScalingError(f"--bootstrap {bootstrap}: must be 0 or more")
    if seed < 0:  # numpy's generators take only non-negative seeds
        raise ScalingError(f"--seed {seed}: must be 0 or more")
    if not delta > 0:
        raise ScalingError(f"--delta {delta:g}: must be positive")
    if method not in METHODS:
        raise ScalingError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    if not (asymmetry > 0 and np.isfinite(asymmetry)):
        raise ScalingError(f"--asymmetry {asymmetry:g}: must be a positive number (1 = symmetric)")
    if param_def not in ("nonemb", "total"):
        raise ScalingError(f"--param-def {param_def!r}: expected nonemb or total")
    own = FormulaOptions(formula, law_file, param or [], residual, by, per_group, target)
    if own.wanted or any(v is not None for v in (residual, by, per_group, target)) or param:
        if not own.wanted:
            raise ScalingError("--param, --residual, --by, --per-group and --target are for formula laws: "
                               "add --formula TEXT or --law-file PATH")
        if law is not None or x is not None or fix_from is not None or param_def != "nonemb":
            raise ScalingError("--formula/--law-file replace --law; --x, --fix-from and --param-def do not apply")
        fitter = {"loss": loss, "delta": delta, "n_bootstrap": bootstrap, "ci": ci, "seed": seed, "group": group,
                  "method": method, "asymmetry": asymmetry}
        fit_formula_command(results, own, map_items=map_ or [], where=where, fix=fix or [], tie=tie or [],
                            fitter=fitter, output=output, fmt=fmt)
        return
    mapping = parse_mapping(map_ or [])
    table = read_results(results, mapping=mapping, where=where)
    if group not in ("", "run_id") and group not in table.columns:  # run_id: the default, absent in many tables
        raise ScalingError(f"{results}: --group {group!r}: no such column; columns are {', '.join(map(str, table.columns))}")
    if law is None:
        # The engine owns the rule for picking a law from the columns; it looks at the (mapped, selected) table.
        law = default_law(table)
        picked = True
    else:
        picked = False
    chosen = _resolve_law(law, x)
    retargeted = None
    if x is None:  # `--law saturating` on a table of D: the law over D (docs/cli.md)
        x = retargeted = single_input_column(chosen, [str(c) for c in table.columns], source=results)
        if x is not None:
            chosen = chosen.with_input(x)
    fixed = parse_assignments(fix or [], "--fix", chosen, numeric=True)
    tied = parse_assignments(tie or [], "--tie", chosen, numeric=False)
    fix_draws, from_base = None, []
    if fix_from is not None:
        from_base, fix_draws = _fixed_from_fit(fix_from, chosen, fixed, tied, param_def)
        fixed = {**from_base, **fixed}
    clash = sorted(set(fixed) & set(tied))
    if clash:
        raise ScalingError(f"--fix and --tie both set {clash[0]}; choose one")
    kind = analysis_for(chosen, table)
    if kind is not None:  # fitted through its analysis (scaling.analysis); the CLI prints what it found
        out_path = output if output is not None else _default_output(results, law)
        check_can_write(out_path, results)
        with quiet_numerics():
            result = fit_law(
                table, law=chosen, source=results, n_bootstrap=bootstrap, ci=ci, seed=seed, fix=fixed, tie=tied,
                loss=loss, delta=delta, group=group, param_def=param_def, method=method, asymmetry=asymmetry,
            )
        save_fit(result, out_path)
        (print_transfer_analysis if kind == "transfer" else print_repetition_analysis)(result.analysis, out_path, fmt)
        return
    swept = None
    if chosen.kind == "hyperparameter" and chosen.output not in table.columns:  # a sweep: its optimum per scale
        from scaling.analysis.hyperparameters import optima_from_sweep

        table, swept = optima_from_sweep(table, chosen, source=results)
    require = [*chosen.inputs, chosen.output]
    if param_def == "total" and "N" in chosen.inputs:
        require.append("N_total")
    data = validate_columns(table, require, source=results)
    out_path = output if output is not None else _default_output(results, law if x is None else f"{law}-{x}")
    check_can_write(out_path, results)

    with quiet_numerics():
        result = fit_law(
            data,
            law=law,
            x=x,
            loss=loss,
            delta=delta,
            method=method,
            asymmetry=asymmetry,
            fix=fixed,
            fix_draws=fix_draws,
            tie=tied,
            n_bootstrap=bootstrap,
            ci=ci,
            seed=seed,
            group=group,
            param_def=param_def,
        )
    save_fit(result, out_path)
    # Notes only after success, so that a failure prints exactly one line (the error).
    if picked:
        note(f"law: {result.law_name} ({chosen.formula}), picked from the columns; choose another with --law")
    if swept is not None:
        note(swept)
    if retargeted is not None:
        note(f"law {law} reads {get_law(law).inputs[0]}; the table has {retargeted}: fitted {result.law_name}")
    if fix_from is not None:
        carried = f"its {len(fix_draws)} bootstrap draws carried into the intervals" if fix_draws is not None else (
            "it has no bootstrap draws, so the intervals treat them as exact")
        note(f"frozen from {fix_from}: {', '.join(from_base)}; {carried}")
    for column, formula in data.attrs.get("derived", {}).items():
        if column in chosen.inputs:
            note(f"{column} derived as {formula}")
    for column, kept in data.attrs.get("displaced", {}).items():
        note(f"--map {column}={data.attrs['renamed'][column]}: the table's own {column} column is kept as {kept}")
    sections, warnings_ = _calibration_floor(data, mapping) if chosen.name == "calibration" else ([], [])
    print_fit(result, fmt, out_path, sections, warnings_)


def _fixed_from_fit(
    name: str, law: Law, fixed: dict[str, float], tied: dict[str, str], param_def: str
) -> tuple[dict[str, float], pd.DataFrame | None]:
    """``--fix-from FIT``: the parameters ``law`` shares with FIT at FIT's values (those set by --fix or --tie are
    left out), and FIT's draws of them for the bootstrap (None when FIT has none, e.g. a published fit)."""
    from scaling.fitting.fitfile import load_fit

    base = load_fit(name)
    # Parameter names alone do not make a base (transfer's alpha is not chinchilla's): the fit must model the same
    # output from some of this law's inputs, as chinchilla's L(N, D) is the base of data-constrained L(N, D, U).
    if base.law.output != law.output or not set(base.law.inputs) <= set(law.inputs):
        raise ScalingError(
            f"--fix-from {name}: law {base.law_name} models {base.law.output} from {', '.join(base.law.inputs)}; "
            f"not a stage 1 of law {law.name} ({law.output} from {', '.join(law.inputs)})"
        )
    shared = [n for n in law.param_names if n in base.params and n not in fixed and n not in tied]
    if not shared:
        raise ScalingError(
            f"--fix-from {name}: law {base.law_name} shares no free parameter with law {law.name} "
            f"({', '.join(law.param_names)})"
        )
    if "N" in law.inputs and base.param_def != param_def:
        raise ScalingError(
            f"--fix-from {name}: that fit counts N as {base.param_def}, this one as {param_def} (--param-def)"
        )
    frozen = {n: float(base.params[n]) for n in shared}
    draws = base.draws[shared].dropna() if len(base.draws) and set(shared) <= set(base.draws.columns) else None
    return frozen, (draws if draws is not None and len(draws) else None)


def _calibration_floor(data: pd.DataFrame, mapping: dict[str, str]) -> tuple[list, list[str]]:
    """floor_table beside the ECE(N) fit, as a section to print, and the warning naming the sizes near the floor."""
    from scaling.laws.calibration import floor_table

    if "brier" in mapping.get("ece", "").lower():  # --map ece=brier: the floor is ECE's, not Brier's
        return [], ["no finite-sample floor for the Brier score (the floor is ECE's)"]
    try:
        floor = floor_table(data)
    except ScalingError as exc:  # the fit stands; only the floor cannot be reported
        return [], [str(exc)]
    near = sorted(floor.loc[~floor["informative"], "N"].unique())
    messages = []
    if near:
        messages.append(
            f"ECE is within 2x of the finite-sample floor at N = {', '.join(format_number(n) for n in near)}: "
            "those sizes say little about how calibration scales (more eval predictions lower the floor)"
        )
    title = "finite-sample ECE floor (informative: ece >= 2 x floor)"
    return [("floor", title, floor.reset_index(drop=True))], messages


# ---------------------------------------------------------------------------------------------------------
# scaling fit --formula / --law-file


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
    from scaling.laws.formula_syntax import parse_rhs, split_formula
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
        check_can_write(out_path, results)
        plans.append((law, table, fixed, tied, out_path))
    for law, table, fixed, tied, out_path in plans:
        settings = {**fitter, "fix": fixed, "tie": tied}
        with quiet_numerics():
            result = fit_prepared(table, law, results, settings)
        save_fit(result, out_path)
        if len(plans) > 1 and fmt is Format.table:
            note(f"target {law.output}:")
        for column, how in data.attrs.get("derived", {}).items():
            if column in law.inputs:
                note(f"{column} derived as {how}")
        print_fit(result, fmt, out_path)
