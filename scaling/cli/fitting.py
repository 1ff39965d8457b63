"""``scaling fit``, ``forecast``, ``optimal`` and ``laws``: parse options, call the library, print.

The work happens in :mod:`scaling.results` (reading and validating tables), :mod:`scaling.fitting.estimate` (the fit)
and the :class:`Fit` object (predict, optimal); this module only turns command-line text into arguments for
them and their answers into tables, JSON or CSV (:mod:`scaling.cli.output`). Syntax of values (``--N 7e10``,
``--N 1e9,1e10``, ``--N 1e9:1e11:5``, ``--N 70B``) is documented in ``docs/cli.md``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import warnings
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

from scaling.cli import app
from scaling.cli.output import (
    Format,
    blank_line,
    emit,
    format_number,
    note,
    print_csv,
    print_fields,
    print_json,
    print_table,
    warn,
    with_intervals,
)
from scaling.fitting.diagnostics import describe_status
from scaling.fitting.extrapolation import far_message
from scaling.errors import ScalingError
from scaling.values import number_from_text
from scaling.laws import Law, get_law, law_names

FormatOption = Annotated[
    Format,
    typer.Option("--format", "-f", metavar="table|json|csv", help="table (for people), json or csv (for pipes)."),
]
CiOption = Annotated[
    float | None,
    typer.Option(
        "--ci", metavar="LEVEL", help="Interval level in (0, 1), e.g. 0.9. Default: the level the fit was made with."
    ),
]
ValuesOption = list[str] | None

# ---------------------------------------------------------------------------------------------------------
# Parsing command-line values

def parse_number(text: str, what: str) -> float:
    """``7e10``, ``70B``, ``1.4T``, ``500M``, ``20k`` -> float (the grammar of :mod:`scaling.values`, which sweep
    files share)."""
    value = number_from_text(text)
    if value is None:
        raise ScalingError(f"{what}: {text!r} is not a number (examples: 7e10, 70B, 1.4T)")
    if not np.isfinite(value):
        raise ScalingError(f"{what}: {text!r} is not a finite number")
    return value


def parse_values(items: list[str], what: str, *, positive: bool = True) -> list[float]:
    """Repeatable values: ``--N 1e9 --N 1e10``, ``--N 1e9,1e10``, or a log-spaced grid ``--N 1e9:1e11:5``.

    ``START:STOP:COUNT`` gives COUNT values from START to STOP inclusive, evenly spaced in log.
    """
    values: list[float] = []
    for item in items:
        for part in item.split(","):
            if not part.strip():
                continue
            if ":" in part:
                fields = part.split(":")
                if len(fields) != 3:
                    raise ScalingError(f"{what}: {part!r}: a grid is START:STOP:COUNT, e.g. 1e9:1e11:5")
                start, stop = parse_number(fields[0], what), parse_number(fields[1], what)
                try:
                    count = int(fields[2])
                except ValueError:
                    raise ScalingError(f"{what}: {part!r}: COUNT {fields[2]!r} must be a whole number") from None
                if count < 1 or count > 100_000:
                    raise ScalingError(f"{what}: {part!r}: COUNT must be between 1 and 100000")
                if start <= 0 or stop <= 0:
                    raise ScalingError(f"{what}: {part!r}: a log-spaced grid needs positive START and STOP")
                values.extend(np.geomspace(start, stop, count).tolist())
            else:
                values.append(parse_number(part, what))
    if positive:
        bad = [v for v in values if v <= 0]
        if bad:
            raise ScalingError(f"{what}: {format(bad[0], 'g')} must be positive")
    return values


def parse_assignments(items: list[str], option: str, law: Law, *, numeric: bool) -> dict[str, Any]:
    """``--fix alpha=0.35`` (numeric) or ``--tie beta=alpha`` (a parameter name on the right)."""
    out: dict[str, Any] = {}
    example = "alpha=0.35" if numeric else "beta=alpha"
    for item in items:
        for part in item.split(","):
            name, sep, value = (s.strip() for s in part.partition("="))
            if not sep or not name or not value:
                raise ScalingError(f"{option} {part!r}: expected NAME=VALUE, e.g. {option} {example}")
            law.param(name)  # raises: law X has no parameter 'name'; it has ...
            if numeric:
                out[name] = parse_number(value, f"{option} {name}")
                p = law.param(name)
                if not (p.lower <= out[name] <= p.upper):
                    raise ScalingError(f"{option} {part!r}: {name} must lie in [{p.lower:g}, {p.upper:g}]")
            else:
                law.param(value)
                if value == name:
                    raise ScalingError(f"{option} {part!r}: a parameter cannot be tied to itself")
                out[name] = value
    return out


_DEVELOPER_WARNINGS = (RuntimeWarning, DeprecationWarning, PendingDeprecationWarning)


@contextlib.contextmanager
def _quiet_numerics():
    """Library warnings as ``warning: ...`` lines, without numpy's floating-point noise.

    A multi-start search evaluates the law far from the optimum, where exp() overflows by design; numpy's
    RuntimeWarnings about it (with a source line) say nothing about the result, which the fit-quality report
    judges. Deprecation warnings are for developers (the test suite shows them). Any other warning is shown,
    as one line.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    seen = set()
    for w in caught:
        if issubclass(w.category, _DEVELOPER_WARNINGS) or str(w.message) in seen:
            continue
        seen.add(str(w.message))
        warn(" ".join(str(w.message).split()))


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


def _check_can_write(path: Path, table: str | None = None) -> None:
    """Fail before the (possibly long) fit rather than after it."""
    from scaling.fitting.fitfile import output_problem

    problem = output_problem(path, example="fit.json")  # a folder, a device, a FIFO
    if problem:
        raise ScalingError(f"-o {path}: {problem}")
    if table is not None and path.exists() and path.resolve() == Path(table).resolve():  # JSON over the user's data
        raise ScalingError(f"-o {path}: is the input table; give the fit another name such as fit.json")
    probe = path.parent if str(path.parent) else Path(".")
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ScalingError(f"-o {path}: cannot create it ({probe} is a file)")
    if not os.access(probe, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ScalingError(f"-o {path}: not writable")


# ---------------------------------------------------------------------------------------------------------
# scaling fit


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
    from scaling.fitting.estimate import LOSSES, METHODS, default_law, single_input_column
    from scaling.fitting.estimate import fit as fit_law
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
    from scaling.cli.formula import FormulaOptions, fit_formula_command

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
        _check_can_write(out_path, results)
        with _quiet_numerics():
            result = fit_law(
                table, law=chosen, source=results, n_bootstrap=bootstrap, ci=ci, seed=seed, fix=fixed, tie=tied,
                loss=loss, delta=delta, group=group, param_def=param_def, method=method, asymmetry=asymmetry,
            )
        save_fit(result, out_path)
        (_print_transfer if kind == "transfer" else _print_repetition)(result.analysis, out_path, fmt)
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
    _check_can_write(out_path, results)

    with _quiet_numerics():
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


# ---------------------------------------------------------------------------------------------------------
# Laws fitted through an analysis of runs (scaling.analysis.transfer, scaling.analysis.repetition) and the calibration floor

def _print_transfer(a: Any, out_path: Path, fmt: Format) -> None:
    """A transfer analysis (scaling.analysis.transfer): the from-scratch fit, the per-run table, the transfer fit."""
    runs = a.runs[
        ["N", "D_F", "loss", "D_E", "D_E_interp", "D_T", "D_T_lower", "D_T_upper", "f_T", "multiplier", "class"]
    ]
    counts = ", ".join(f"{c} {n}" for c, n in a.counts.items())
    if fmt is Format.json:
        print_json(
            {
                **fit_record(a.fit),
                "saved": str(out_path),
                "scratch": fit_record(a.scratch_fit),
                "counts": a.counts,
                "runs": runs,
            }
        )
    elif fmt is Format.csv:
        print_csv(runs)
    else:
        _print_fit_tables(
            a.scratch_fit,
            title=f"from-scratch fit on the target, {a.scratch_fit.law_name}: {a.scratch_fit.law.formula}",
            quality=False,
        )
        print_fields(_quality_fields(dict(a.scratch_fit.quality))[:5], title="from-scratch fit quality")
        blank_line()
        print_table(
            with_intervals(runs, ["D_T"]),
            title=f"fine-tuned runs (runs per class: {counts})",
            caption="D_E: from-scratch data reaching the run's loss; D_T = D_E - D_F [interval from the from-scratch "
            "fit's draws]; f_T = D_T/D_E; multiplier = D_E/D_F; D_E_interp: interpolated between measured "
            "from-scratch runs (cross-check). Only 'ok' runs enter the transfer fit.",
        )
        blank_line()
        _print_fit_tables(a.fit, title=f"transfer fit on the {a.counts.get('ok', 0)} ok runs: {a.fit.law.formula}")
    _warn_quality(a.scratch_fit, fmt)
    _warn_quality(a.fit, fmt)
    left_out = len(a.runs) - a.counts.get("ok", 0)
    if left_out:
        note(f"skipped {left_out} of {len(a.runs)} fine-tuned runs in the transfer fit: {counts}")
    note(f"saved {out_path}")


def _print_repetition(a: Any, out_path: Path, fmt: Format) -> None:
    """A repetition analysis (scaling.analysis.repetition): the baseline fit, N_eff per run, the regions and their
    edge fits."""
    from scaling.laws.repetition import PUBLISHED_BOUNDARIES

    edges = pd.DataFrame(
        [
            {
                "repeat_fraction": f,
                "edge": edge,
                **{name: fit.params[name] for name in ("k", "alpha")},
                **{
                    f"{name}_{end}": fit.intervals.get(name, (np.nan, np.nan))[i]
                    for name in ("k", "alpha")
                    for i, end in enumerate(("lower", "upper"))
                },
            }
            for (f, edge), fit in a.boundaries.items()
        ],
        columns=["repeat_fraction", "edge", "k", "alpha", "k_lower", "k_upper", "alpha_lower", "alpha_upper"],
    )
    runs = a.runs[
        ["N", "repeat_fraction", "repeat_count", "loss", "N_eff", "N_eff_lower", "N_eff_upper", "m", "lost"]
        + ["extrapolated", "N_eff_interp"]
    ]
    if fmt is Format.json:
        print_json(
            {**fit_record(a.baseline), "saved": str(out_path), "runs": runs, "regions": a.regions, "edges": edges}
        )
    elif fmt is Format.csv:
        print_csv(runs)
    else:
        _print_fit_tables(a.baseline, title=f"unique-data baseline, {a.baseline.law_name}: {a.baseline.law.formula}")
        blank_line()
        print_table(
            with_intervals(runs, ["N_eff"]),
            title="runs with repeated data",
            caption="N_eff: unique-data model size with the same loss [interval from the baseline's draws]; "
            "m = N_eff/N; lost = 1 - m; extrapolated: N_eff outside the baseline's sizes; N_eff_interp: the same "
            "read off the measured unique-data runs (blank outside their losses)",
        )
        blank_line()
        regions = a.regions.copy()
        for edge, sign in (("left", "<="), ("right", ">=")):
            regions[edge] = [
                (sign if o else "") + format_number(v) for v, o in zip(regions[edge], regions[f"{edge}_open"])
            ]
        print_table(
            regions.drop(columns=["left_open", "right_open"]),
            title="poor-performance regions: repeat counts losing >= half the worst fraction of parameters",
            caption="<= / >=: the edge reaches the end of the measured repeat counts (only a bound)",
        )
        blank_line()
        published = ", ".join(f"{e} {p['k']:.2g} N^{p['alpha']:g}" for e, p in PUBLISHED_BOUNDARIES.items())
        if len(edges):
            print_table(
                with_intervals(edges, ["k", "alpha"]),
                title="region edges across sizes: E = k N^alpha",
                caption=f"published (Hernandez et al. 2022): {published}",
            )
    _warn_quality(a.baseline, fmt)
    if not len(edges):
        note("no edge fit E = k N^alpha: it needs a closed edge at 2 or more sizes")
    note(f"saved {out_path}")


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


def fit_table(result: Any) -> pd.DataFrame:
    """Parameters and derived quantities with their intervals: columns name, kind, value, lower, upper.

    kind is ``free``, ``fixed``, ``tied to X`` or ``derived``.
    """
    rows = []
    for name, value in result.params.items():
        kind = "fixed" if name in result.fixed else (f"tied to {result.tied[name]}" if name in result.tied else "free")
        if name in (result.quality.get("at_bound") or []):
            kind = "free, at bound"
        lo, hi = result.intervals.get(name, (np.nan, np.nan))
        rows.append({"name": name, "kind": kind, "value": value, "lower": lo, "upper": hi})
    ref = result.settings.get("ref_compute")
    for name, value in result.derived.items():
        lo, hi = result.intervals.get(name, (np.nan, np.nan))
        kind = f"derived, C = {ref:.3g}" if name == "tokens_per_param" and ref else "derived"
        rows.append({"name": name, "kind": kind, "value": value, "lower": lo, "upper": hi})
    return pd.DataFrame(rows, columns=["name", "kind", "value", "lower", "upper"])


def fit_record(result: Any) -> dict[str, Any]:
    """A fit as a JSON record: law, formula, reference, ci, params (with kind and interval), quality, data."""
    return {
        "law": result.law_name,
        "formula": result.law.formula,
        "reference": result.law.reference,
        "ci": result.ci,
        "interval_status": result.interval_status or "ok",
        "convergence": result.convergence,
        "params": {
            r["name"]: {k: r[k] for k in ("kind", "value", "lower", "upper")}
            for r in fit_table(result).to_dict(orient="records")
        },
        "quality": dict(result.quality),
        "data": result.data_summary,
    }


def _print_fit_tables(result: Any, *, title: str | None = None, quality: bool = True) -> None:
    """Parameter table with its interval caption, then (``quality``) the fit-quality fields."""
    status = result.interval_status
    if status is None:
        caption = f"lower/upper: {result.ci:.0%} confidence interval from {len(result.draws)} bootstrap draws"
    elif status == "no_bootstrap_draws":
        caption = "no intervals (--bootstrap 0)"
    else:
        caption = f"no intervals: {describe_status(status)}"
    print_table(fit_table(result), title=title or f"{result.law_name}: {result.law.formula}", caption=caption)
    if quality:
        blank_line()
        print_fields(_quality_fields(dict(result.quality)), title="fit quality")


def _warn_quality(result: Any, fmt: Format) -> None:
    """Convergence and fit warnings on stderr (the table format prints them in the quality fields)."""
    if fmt is not Format.table:  # JSON carries these in "quality", the table prints them; CSV users get stderr
        for w in result.warnings:
            warn(f"{w.code}: {w.message}")
    elif not result.quality.get("converged", True):
        warn(f"the fit did NOT converge ({result.convergence}; see fit quality above)")
    status = result.interval_status
    if status is not None and status != "no_bootstrap_draws":
        warn(f"no intervals: {describe_status(status)}")


def print_fit(
    result: Any,
    fmt: Format,
    saved: Path,
    sections: list[tuple[str, str, pd.DataFrame]] = (),
    warnings_: list[str] = (),
) -> None:
    """The fit in ``fmt``; ``sections`` (key, title, table) follow it in the table format and are extra keys of
    the JSON record (CSV stays the parameter table); ``warnings_`` go to stderr after it."""
    if fmt is Format.json:
        print_json({**fit_record(result), "saved": str(saved), **{key: df for key, _, df in sections}})
    elif fmt is Format.csv:
        print_csv(fit_table(result))
    else:
        _print_fit_tables(result)
        for _, title, df in sections:
            blank_line()
            print_table(df, title=title)
    _warn_quality(result, fmt)
    for message in warnings_:
        warn(message)
    note(f"saved {saved}")


def _quality_fields(quality: dict[str, Any]) -> list[tuple[str, Any]]:
    from scaling.fitting.diagnostics import as_warnings

    failed = quality.get("bootstrap_failed_fraction")
    status = quality.get("convergence") or ("converged" if quality.get("converged") else "not_converged")
    return [
        ("points", quality.get("n_points")),
        ("free parameters", quality.get("n_params_free")),
        ("RMSE of log residuals", quality.get("rmse_log")),
        ("objective", quality.get("objective")),
        ("convergence", quality.get("message", "") or status),
        ("at a bound", list(quality.get("at_bound", []) or [])),
        ("bootstrap failed", "-" if failed is None else f"{float(failed):.1%}"),
        ("seconds", quality.get("seconds")),
        ("warnings", [f"{w.code} ({w.severity}): {w.message}" for w in as_warnings(quality.get("warnings"))]),
    ]


# ---------------------------------------------------------------------------------------------------------
# scaling forecast / optimal


def _load(fit_or_name: str):
    from scaling.fitting.fitfile import load_fit

    return load_fit(fit_or_name)


@app.command("forecast")
def forecast_command(
    fit: Annotated[
        str,
        typer.Argument(
            help="A fit file (fits/NAME.json) or a published law (chinchilla, kaplan2020, ...).", metavar="FIT_OR_NAME"
        ),
    ],
    N: Annotated[
        ValuesOption,
        typer.Option("--N", metavar="VALUES", help="Parameters: 7e10, 70B, 1e9,1e10 or a log grid 1e9:1e11:5."),
    ] = None,
    D: Annotated[
        ValuesOption, typer.Option("--D", metavar="VALUES", help="Training tokens, same syntax as --N.")
    ] = None,
    at: Annotated[
        ValuesOption,
        typer.Option("--at", metavar="COL=VALUES", help="Any other input, COL=VALUES, e.g. U=25e9 or D_F=1e6:1e8:3."),
    ] = None,
    points: Annotated[
        ValuesOption,
        typer.Option(
            "--points",
            metavar="COL=V,...|FILE.csv",
            help="Paired points instead of a grid: N=1e9,D=2e10 (repeatable), or a CSV with one row per point.",
        ),
    ] = None,
    ci: CiOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Predicted loss with its interval at given inputs; several values per input give their full grid."""
    result = _load(fit)
    law = result.law
    if points:
        if N or D or at:
            raise ScalingError("--points gives whole points; use it without --N, --D and --at")
        paired = parse_points(points, law)
        with _quiet_numerics():
            table = result.predict(ci=ci, grid=False, **paired)
        _note_intervals(table, result)
        caption = _ci_caption(result, ci)
        if law.name == "downstream":
            table, caption = _chained_task_loss(result, table, ci, fmt, caption)
        elif fmt is Format.table:
            table = _interval_text(table)
        emit(table, fmt, title=f"{_describe(fit, result)}: {law.formula}", caption=caption)
        return
    given: dict[str, list[float]] = {}
    if N:
        given["N"] = parse_values(N, "--N")
    if D:
        given["D"] = parse_values(D, "--D")
    for column, values in parse_at(at or [], positive=law.positive_inputs).items():
        if column in given:
            raise ScalingError(f"--at {column}: {column} is given twice")
        given[column] = values
    unknown = [c for c in given if c not in law.inputs]
    if unknown:
        raise ScalingError(f"law {law.name} has no input {unknown[0]!r}; its inputs are {', '.join(law.inputs)}")
    missing = [c for c in law.inputs if c not in given]
    if missing:
        flags = " ".join(f"--{c} VALUE" if c in ("N", "D") else f"--at {c}=VALUE" for c in missing)
        raise ScalingError(f"law {law.name} ({law.formula}) needs {', '.join(missing)}: add {flags}")
    size = int(np.prod([len(v) for v in given.values()]))
    if size > 1_000_000:
        raise ScalingError(f"the grid has {size} points; at most 1000000")
    with _quiet_numerics():
        table = result.predict(ci=ci, grid=True, **{c: np.array(v) for c, v in given.items()})
    _note_intervals(table, result)
    caption = _ci_caption(result, ci)
    if law.name == "transfer":
        table, caption = _effective_data(table, fmt, caption, result, ci)
    elif law.name == "downstream":
        table, caption = _chained_task_loss(result, table, ci, fmt, caption)
    elif fmt is Format.table:  # "[lower, upper]" text per kind; JSON/CSV keep every column for a stable schema
        table = _interval_text(table)
    emit(table, fmt, title=f"{_describe(fit, result)}: {law.formula}", caption=caption)


def parse_points(items: list[str], law: Law, *, limit: int = 1_000_000) -> dict[str, np.ndarray]:
    """``--points N=1e9,D=2e10 --points N=7e10,D=1.4T`` or ``--points rows.csv``: one value per input per point.

    Unlike --N/--D (every combination), each point is taken as given, e.g. the (N, D) of a planned run.
    """
    from scaling.results import read_results, validate_columns

    rows: list[dict[str, float]] = []
    frames: list[pd.DataFrame] = []
    for item in items:
        if "=" not in item:  # a file of points
            table = validate_columns(read_results(item), list(law.inputs), source=item)
            frames.append(table[list(law.inputs)])
            continue
        point: dict[str, float] = {}
        for part in item.split(","):
            column, sep, value = (t.strip() for t in part.partition("="))
            if not sep or not column or not value:
                raise ScalingError(f"--points {item!r}: expected COL=VALUE,COL=VALUE, e.g. N=1e9,D=2e10")
            if column not in law.inputs:
                raise ScalingError(
                    f"--points {item!r}: law {law.name} has no input {column!r}; its inputs are {', '.join(law.inputs)}"
                )
            if column in point:
                raise ScalingError(f"--points {item!r}: {column} is given twice")
            point[column] = parse_number(value, f"--points {column}")
        missing = [c for c in law.inputs if c not in point]
        if missing:
            raise ScalingError(f"--points {item!r}: law {law.name} needs {', '.join(missing)} in every point")
        rows.append(point)
    table = pd.concat([*frames, pd.DataFrame(rows, columns=list(law.inputs))], ignore_index=True)
    if len(table) > limit:
        raise ScalingError(f"--points: {len(table)} points; at most {limit}")
    return {c: table[c].to_numpy(dtype=float) for c in law.inputs}


def _chained_task_loss(result: Any, table: pd.DataFrame, ci: float | None, fmt: Format,
                       caption: str | None) -> tuple[pd.DataFrame, str | None]:
    """A two-step downstream forecast also shows the step-1 task loss it goes through, with its interval."""
    from scaling.analysis.downstream import chain_forecast

    chained = chain_forecast(result, ci=ci, grid=False, N=table["N"].to_numpy(), D=table["D"].to_numpy())
    out = table.copy()
    for c in ("task_loss", "task_loss_lower", "task_loss_upper"):  # before the accuracy's point
        out.insert(int(out.columns.get_loc("point")), c, chained[c].to_numpy())
    if fmt is not Format.table:
        return out, caption
    where = _extrapolation_text(out)
    out = out.rename(columns={"point": "accuracy", "conf_lower": "accuracy_lower", "conf_upper": "accuracy_upper"})
    out = out.drop(columns=["pred_lower", "pred_upper", "extrap_decades", "extrap_distance", "warning", "extrapolation"])
    out["extrapolation"] = where
    out["interval_status"] = out.pop("interval_status")
    if out["accuracy_lower"].isna().all():
        return out.drop(columns=[c for c in out.columns if c.endswith(("_lower", "_upper"))]), caption
    out = with_intervals(out, ["task_loss", "accuracy"])
    return out, caption and caption + " ([lower, upper]: confidence intervals of both steps)"


INTERVAL_COLUMNS = ("conf_lower", "conf_upper", "pred_lower", "pred_upper")


def _interval_text(table: pd.DataFrame) -> pd.DataFrame:
    """Forecast rows for people: ``confidence`` and ``prediction`` as ``[lower, upper]`` (``withheld`` when null),
    and the extrapolation as ``far (3.7 decades)``."""
    out = table.drop(columns=[*INTERVAL_COLUMNS, "extrap_decades", "extrap_distance", "warning"])
    for kind, lo, hi in (("confidence", "conf_lower", "conf_upper"), ("prediction", "pred_lower", "pred_upper")):
        out[kind] = [
            "withheld" if not (np.isfinite(a) and np.isfinite(b)) else f"[{format_number(a)}, {format_number(b)}]"
            for a, b in zip(table[lo].astype(float), table[hi].astype(float))
        ]
    out = out.drop(columns=["extrapolation", "interval_status"])
    out["extrapolation"] = _extrapolation_text(table)
    out["interval_status"] = table["interval_status"].to_numpy()
    return out


def _extrapolation_text(table: pd.DataFrame) -> list[str]:
    """``inside``, ``near (0.64 decades)``, ``far (1.8 decades)``: the label with its distance."""
    return [
        label if label in ("inside", "unknown") else f"{label} ({d:.2g} decades)"
        for label, d in zip(table["extrapolation"], table["extrap_decades"].astype(float))
    ]


def _note_intervals(table: pd.DataFrame, result: Any) -> None:
    """On stderr: why intervals are withheld or limited, and a warning when a point extrapolates far."""
    statuses = [s for s in pd.unique(table["interval_status"]) if s != "ok"]
    for status in statuses:
        if status == "no_bootstrap_draws":
            note("no intervals: this fit carries no bootstrap draws")
        elif status == "small_calibration":
            note("small_calibration: the rollout backtest has too few points for this level; the prediction "
                 "interval uses its largest error (below the conformal guarantee)")
        elif status == "uncalibrated":
            note("uncalibrated: too few sizes for a rollout backtest; the prediction interval is bootstrap plus "
                 "residual noise only and does not cover misspecification")
        else:
            warn(f"no intervals: {describe_status(str(status))}")
    far = table["warning"] == "extrapolating_far"
    if far.any():
        warn(far_message(float(table.loc[far, "extrap_decades"].max())))


def parse_at(items: list[str], *, positive: bool = True) -> dict[str, list[float]]:
    """``--at U=25e9 --at D_F=1e6:1e8:3`` -> ``{"U": [25e9], "D_F": [1e6, 1e7, 1e8]}``.

    ``positive=False`` for a law whose inputs may be zero or negative (``Law.positive_inputs``: formula laws)."""
    given: dict[str, list[float]] = {}
    for item in items:
        column, sep, values = (s.strip() for s in item.partition("="))
        if not sep or not column or not values:
            raise ScalingError(f"--at {item!r}: expected COLUMN=VALUES, e.g. --at U=25e9")
        if column in given:
            raise ScalingError(f"--at {item!r}: {column} is given twice")
        given[column] = parse_values([values], f"--at {column}", positive=positive)
    return given


def _effective_data(table: pd.DataFrame, fmt: Format, caption: str | None, result: Any = None,
                    ci: float | None = None) -> tuple[pd.DataFrame, str | None]:
    """A transfer forecast also answers "how much data is that worth": D_E = D_F + D_T, the multiplier D_E/D_F
    and f_T = D_T/D_E, each with the interval of D_T mapped through it (all three increase with D_T > 0, so the
    quantiles map exactly)."""
    from scaling.laws.transfer import effective_data_columns

    out = pd.concat([table, effective_data_columns(table)], axis=1)
    if fmt is not Format.table:
        return out, caption
    where = _extrapolation_text(out)
    out = out.rename(columns={"point": "D_T", "conf_lower": "D_T_lower", "conf_upper": "D_T_upper"})
    out = out.drop(columns=["pred_lower", "pred_upper", "extrap_decades", "extrap_distance", "warning", "extrapolation"])
    out = with_intervals(out, ["D_T", "D_E", "multiplier", "f_T"])
    out["extrapolation"] = where
    out["interval_status"] = out.pop("interval_status")
    note_ = "D_T: effective data transferred; D_E = D_F + D_T, the from-scratch data it is worth; multiplier = D_E/D_F"
    if not caption or result is None:
        return out, note_
    level = ci if ci is not None else result.ci
    return out, note_ + f"; [lower, upper]: {level:.0%} interval from {len(result.draws)} bootstrap draws (confidence)"


@app.command("optimal")
def optimal_command(
    fits: Annotated[
        list[str],
        typer.Argument(
            help="A fit file or a published law name; or a results CSV (see --approach). Several hyperparameter fits "
            "(e.g. steplaw2025-lr steplaw2025-batch) are answered side by side.",
            metavar="FIT_OR_NAME...",
        ),
    ],
    compute: Annotated[
        ValuesOption,
        typer.Option(
            "--compute", "-C", metavar="FLOPS", help="Training FLOPs: 5.76e23, several, or a grid 1e18:1e24:7."
        ),
    ] = None,
    N: Annotated[
        ValuesOption,
        typer.Option("--N", metavar="VALUES", help="Hyperparameter laws: model size(s), e.g. 1e9 or 1e8:1e10:3."),
    ] = None,
    D: Annotated[
        ValuesOption, typer.Option("--D", metavar="VALUES", help="Hyperparameter laws: training tokens.")
    ] = None,
    at: Annotated[
        ValuesOption,
        typer.Option(
            "--at",
            metavar="COL=VALUES",
            help="The law's other inputs, e.g. U=25e9 (data-constrained: only 25e9 unique tokens); several values "
            "give one allocation each.",
        ),
    ] = None,
    ci: CiOption = None,
    fmt: FormatOption = Format.table,
    # From a results table (scaling.cli.planning; docs/planning.md): Chinchilla approaches side by side.
    approach: Annotated[
        str | None,
        typer.Option(
            "--approach", help="With a results CSV: 1 (envelope), 2 (isoFLOP), 3 (parametric) or all [default: all]."
        ),
    ] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", "-b", help="With a results CSV: bootstrap resamples.")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="With a results CSV: bootstrap seed.")] = 0,
    map_: Annotated[
        list[str] | None, typer.Option("--map", "-m", help="With a results CSV: column mapping CANONICAL=FOREIGN.")
    ] = None,
    where: Annotated[str | None, typer.Option("--where", "-w", help="With a results CSV: row selection.")] = None,
    ensemble: Annotated[
        int | None,
        typer.Option("--ensemble", help="With a results CSV: compare one model with K smaller ones.", metavar="K"),
    ] = None,
    near_min: Annotated[
        float | None,
        typer.Option(
            "--near-min",
            metavar="FACTOR",
            help="With a results CSV, approach 2: keep per budget only sizes within FACTOR of its lowest-loss size.",
        ),
    ] = None,
) -> None:
    """Compute-optimal model size and tokens (C = 6ND), or optimal learning rate and batch size; with intervals.

    A hyperparameter law (steplaw-lr, deepseek-batch, ...) is answered at --N, --D or --compute; several such fits
    side by side."""
    held = parse_at(at or [])
    fit = fits[0]
    if approach is None and not fit.lower().endswith(".csv"):
        loaded = [_load(f) for f in fits]
        if any(r.law.kind == "hyperparameter" for r in loaded):
            from scaling.cli.planning import optimal_hyperparameters_command

            return optimal_hyperparameters_command(fits, loaded, compute=compute, N=N, D=D, at=held, ci=ci, fmt=fmt)
        if loaded[0].law.name == "vocab" and N:  # Tao et al. 2024: the compute-optimal vocabulary for a model
            from scaling.cli.planning import optimal_vocabulary_command

            return optimal_vocabulary_command(fits, loaded, compute=compute, N=N, at=held, ci=ci, fmt=fmt)
    if len(fits) > 1:
        raise ScalingError(f"one fit at a time (got {len(fits)}); several are for hyperparameter laws only")
    if N or D:
        raise ScalingError("--N and --D apply to hyperparameter laws (e.g. steplaw2025-lr); give --compute")
    if not compute:
        raise ScalingError("--compute is required: the training FLOPs to allocate, e.g. -C 1e21")
    values = parse_values(compute, "--compute")
    if approach is not None or fit.lower().endswith(".csv"):
        if held:
            raise ScalingError("--at applies to a fit file or a published law, not to a results table (--approach)")
        from scaling.cli.planning import optimal_from_results

        return optimal_from_results(
            fit,
            values,
            approach or "all",
            ci=ci,
            bootstrap=bootstrap,
            seed=seed,
            map_=map_,
            where=where,
            ensemble=ensemble,
            near_min=near_min,
            fmt=fmt,
        )
    if near_min is not None:
        raise ScalingError("--near-min applies to a results table (approach 2), not to a fit file")
    result = loaded[0]
    points = [dict(zip(held, combo)) for combo in itertools.product(*held.values())] if held else [None]
    with _quiet_numerics():
        table = pd.concat([result.optimal(np.array(values), ci=ci, at=p) for p in points], ignore_index=True)
    _note_intervals(table, result)
    if fmt is Format.table:  # one column per quantity, "value [lower, upper]": 13 numeric columns do not fit
        shown = ["N_opt", "D_opt", "loss", "tokens_per_param"] + (["epochs"] if "epochs" in table.columns else [])
        pred = [
            "withheld" if not (np.isfinite(a) and np.isfinite(b)) else f"[{format_number(a)}, {format_number(b)}]"
            for a, b in zip(table["loss_pred_lower"].astype(float), table["loss_pred_upper"].astype(float))
        ]
        where = _extrapolation_text(table)
        table = with_intervals(table, shown, infix="_conf")
        table = table.drop(columns=["loss_pred_lower", "loss_pred_upper", "extrap_decades", "extrap_distance", "warning"])
        table.insert(table.columns.get_loc("loss") + 1, "loss_prediction", pred)
        table["extrapolation"] = where
        table["interval_status"] = table.pop("interval_status")
    caption = _ci_caption(result, ci)
    emit(
        table,
        fmt,
        title=f"{_describe(fit, result)}: compute-optimal allocation under C = 6ND",
        caption=caption and caption.replace("confidence =", "[lower, upper] = confidence interval,"),
    )


def _describe(name: str, result: Any) -> str:
    return name if name == result.law_name else f"{name} ({result.law_name})"


def _ci_caption(result: Any, ci: float | None) -> str | None:
    if result.interval_status is not None:
        return None
    level = f"{(ci if ci is not None else result.ci):.0%}"
    return (f"{level} intervals: confidence = where the mean law lies ({len(result.draws)} bootstrap draws); "
            f"prediction = where one new run lands (plus residual noise, widened by the fit's rollout backtest "
            f"with the distance extrapolated): plan on the prediction interval")


# ---------------------------------------------------------------------------------------------------------
# scaling laws


@app.command("laws")
def laws_command(
    name: Annotated[
        str | None, typer.Argument(help="Show one law in full (e.g. chinchilla, power:D).", metavar="[NAME]")
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """The law catalogue: name, formula, inputs, parameters and paper; or one law in full."""
    if name is None:
        rows = [_law_row(get_law(n), short=fmt is Format.table) for n in law_names()]
        table = pd.DataFrame(rows, columns=["name", "formula", "inputs", "params", "paper"])
        if fmt is Format.json:
            print_json([_law_record(get_law(n)) for n in law_names()])
        else:
            emit(
                table, fmt, title="scaling laws", caption="scaling laws NAME shows one in full; fit one with --law NAME"
            )
        return
    law = get_law(name)
    params = pd.DataFrame(
        [
            {
                "param": p.name,
                "lower": p.lower,
                "upper": p.upper,
                "log scale": p.log_scale,
                "description": p.description,
            }
            for p in law.params
        ]
    )
    if fmt is Format.json:
        print_json(_law_record(law))
    elif fmt is Format.csv:
        print_csv(params)
    else:
        print_fields(
            [
                ("law", law.name),
                ("formula", law.formula),
                ("paper", law.reference),
                ("inputs", ", ".join(law.inputs)),
                ("output", law.output),
                ("needs", ", ".join(f"{k}: {v} distinct values" for k, v in law.min_distinct.items()) or "-"),
                ("derived", ", ".join(law.derived) or "-"),
                ("compute-optimal", "closed form" if law.optimal is not None else
                 ("numeric" if law.kind == "loss" else f"- ({law.kind} law)")),
                ("notes", law.notes or "-"),
            ]
        )
        blank_line()
        print_table(params, title="parameters")


def _law_row(law: Law, short: bool) -> dict[str, str]:
    return {
        "name": law.name,
        "formula": law.formula,
        "inputs": ", ".join(law.inputs),
        "params": ", ".join(law.param_names),
        "paper": _short_reference(law.reference) if short else law.reference,
    }


def _short_reference(reference: str) -> str:
    """``Hoffmann et al. 2022, Training ..., arXiv:2203.15556 (Eq. 2)`` -> ``Hoffmann et al. 2022, arXiv:2203.15556``."""
    head = re.match(r"^(.*?\b(19|20)\d\d)\b", reference)
    arxiv = re.search(r"arXiv:\s*[\d.]+", reference)
    if not head:
        return reference
    return head.group(1) + (f", {arxiv.group(0)}" if arxiv else "")


def _law_record(law: Law) -> dict[str, Any]:
    return {
        "name": law.name,
        "formula": law.formula,
        "reference": law.reference,
        "inputs": list(law.inputs),
        "output": law.output,
        "params": [
            {"name": p.name, "lower": p.lower, "upper": p.upper, "log_scale": p.log_scale, "description": p.description}
            for p in law.params
        ],
        "derived": list(law.derived),
        "min_distinct": dict(law.min_distinct),
        "closed_form_optimal": law.optimal is not None,
        "notes": law.notes,
    }
