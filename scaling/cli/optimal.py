"""``scaling optimal``: the compute-optimal model size and tokens of a fit (C = 6ND), the optimal learning rate and
batch size of hyperparameter fits, the compute-optimal vocabulary, or Chinchilla's three approaches side by side
from a results table (``--approach``; ``docs/planning.md``).

The answers come from :meth:`Fit.optimal <scaling.fitting.result.Fit.optimal>`,
:func:`scaling.analysis.hyperparameters.optimal_hyperparameters`, :func:`scaling.laws.vocabulary.optimal_vocabulary_table`
and :mod:`scaling.analysis.optimal`; this module reads the options and prints.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import pandas as pd
import typer

from scaling.cli import app
from scaling.cli.files import read_selected_results
from scaling.cli.forecast_output import ci_caption, extrapolation_text, fit_label, note_intervals
from scaling.cli.options import CiOption, FormatOption, ValuesOption
from scaling.cli.output import Format, blank_line, emit, note, print_json, print_table, quiet_numerics, warn
from scaling.values import format_number, with_intervals
from scaling.cli.parsing import (
    check_bootstrap_options,
    check_grid_size,
    check_level,
    parse_at,
    parse_grid,
    parse_values,
)
from scaling.errors import ScalingError
from scaling.fitting.result import load_fit

if TYPE_CHECKING:  # pragma: no cover
    from scaling.fitting.result import Fit


FitsArgument = Annotated[
    list[str],
    typer.Argument(
        help="A fit file or a published law name; or a results CSV (see --approach). Several hyperparameter fits "
        "(e.g. steplaw2025-lr steplaw2025-batch) are answered side by side.",
        metavar="FIT_OR_NAME...",
    ),
]
ComputeOption = Annotated[
    ValuesOption,
    typer.Option("--compute", "-C", metavar="FLOPS", help="Training FLOPs: 5.76e23, several, or a grid 1e18:1e24:7."),
]
SizesOption = Annotated[
    ValuesOption,
    typer.Option("--N", metavar="VALUES", help="Hyperparameter laws: model size(s), e.g. 1e9 or 1e8:1e10:3."),
]
TokensOption = Annotated[
    ValuesOption, typer.Option("--D", metavar="VALUES", help="Hyperparameter laws: training tokens.")
]
AtOption = Annotated[
    ValuesOption,
    typer.Option(
        "--at",
        metavar="COL=VALUES",
        help="The law's other inputs, e.g. U=25e9 (data-constrained: only 25e9 unique tokens); several values "
        "give one allocation each.",
    ),
]
# From a results table (_approaches_from_results below; docs/planning.md): Chinchilla's approaches side by side.
ApproachOption = Annotated[
    str | None,
    typer.Option(
        "--approach", help="With a results CSV: 1 (envelope), 2 (isoFLOP), 3 (parametric) or all [default: all]."
    ),
]
TableBootstrapOption = Annotated[
    int, typer.Option("--bootstrap", "-b", help="With a results CSV: bootstrap resamples.")
]
TableSeedOption = Annotated[int, typer.Option("--seed", help="With a results CSV: bootstrap seed.")]
TableMapOption = Annotated[
    list[str] | None, typer.Option("--map", "-m", help="With a results CSV: column mapping CANONICAL=FOREIGN.")
]
TableWhereOption = Annotated[str | None, typer.Option("--where", "-w", help="With a results CSV: row selection.")]
EnsembleOption = Annotated[
    int | None,
    typer.Option("--ensemble", help="With a results CSV: compare one model with K smaller ones.", metavar="K"),
]
NearMinOption = Annotated[
    float | None,
    typer.Option(
        "--near-min",
        metavar="FACTOR",
        help="With a results CSV, approach 2: keep per budget only sizes within FACTOR of its lowest-loss size.",
    ),
]


@app.command("optimal")
def optimal_command(
    fits: FitsArgument,
    compute: ComputeOption = None,
    N: SizesOption = None,
    D: TokensOption = None,
    at: AtOption = None,
    ci: CiOption = None,
    fmt: FormatOption = Format.table,
    approach: ApproachOption = None,
    bootstrap: TableBootstrapOption = 200,
    seed: TableSeedOption = 0,
    map_: TableMapOption = None,
    where: TableWhereOption = None,
    ensemble: EnsembleOption = None,
    near_min: NearMinOption = None,
) -> None:
    """Compute-optimal model size and tokens (C = 6ND), or optimal learning rate and batch size; with intervals.

    A hyperparameter law (steplaw-lr, deepseek-batch, ...) is answered at --N, --D or --compute; several such fits
    side by side."""
    held = parse_at(at or [])
    fit = fits[0]
    from_table = approach is not None or fit.lower().endswith(".csv")
    if not from_table:
        loaded = [load_fit(f) for f in fits]
        if any(r.law.kind == "hyperparameter" for r in loaded):
            return _hyperparameter_optima(fits, loaded, compute=compute, N=N, D=D, at=held, ci=ci, fmt=fmt)
        if loaded[0].law.name == "vocab" and N:  # Tao et al. 2024: the compute-optimal vocabulary for a model
            return _vocabulary_optimum(fits, loaded, compute=compute, N=N, at=held, ci=ci, fmt=fmt)
    if len(fits) > 1:
        raise ScalingError(f"one fit at a time (got {len(fits)}); several are for hyperparameter laws only")
    if N or D:
        raise ScalingError("--N and --D apply to hyperparameter laws (e.g. steplaw2025-lr); give --compute")
    if not compute:
        raise ScalingError("--compute is required: the training FLOPs to allocate, e.g. -C 1e21")
    values = parse_values(compute, "--compute")
    if from_table:
        if held:
            raise ScalingError("--at applies to a fit file or a published law, not to a results table (--approach)")
        return _approaches_from_results(fit, values, approach or "all", ci=ci, bootstrap=bootstrap, seed=seed, map_=map_,
                                    where=where, ensemble=ensemble, near_min=near_min, fmt=fmt)
    if near_min is not None:
        raise ScalingError("--near-min applies to a results table (approach 2), not to a fit file")
    result = loaded[0]
    with quiet_numerics():
        table = _allocations(result, values, held, ci)
    note_intervals(table, result)
    caption = ci_caption(result, ci)
    emit(
        _allocation_text(table) if fmt is Format.table else table,
        fmt,
        title=f"{fit_label(fit, result)}: compute-optimal allocation under C = 6ND",
        caption=caption and caption.replace("confidence =", "[lower, upper] = confidence interval,"),
    )


def _allocations(result: Fit, compute: list[float], held: dict[str, list[float]], ci: float | None) -> pd.DataFrame:
    """The allocation at each budget, once per combination of the --at values (the law's other inputs)."""
    points = [dict(zip(held, combo)) for combo in itertools.product(*held.values())] if held else [None]
    return pd.concat([result.optimal(np.array(compute), ci=ci, at=p) for p in points], ignore_index=True)


def _allocation_text(table: pd.DataFrame) -> pd.DataFrame:
    """Allocations for people: one column per quantity, ``value [lower, upper]`` (13 numeric columns do not fit),
    the loss's prediction interval as text and the extrapolation with its distance."""
    shown = ["N_opt", "D_opt", "loss", "tokens_per_param"] + (["epochs"] if "epochs" in table.columns else [])
    pred = [
        "withheld" if not (np.isfinite(a) and np.isfinite(b)) else f"[{format_number(a)}, {format_number(b)}]"
        for a, b in zip(table["loss_pred_lower"].astype(float), table["loss_pred_upper"].astype(float))
    ]
    where = extrapolation_text(table)
    out = with_intervals(table, shown, infix="_conf")
    out = out.drop(columns=["loss_pred_lower", "loss_pred_upper", "extrap_decades", "extrap_distance", "warning"])
    out.insert(out.columns.get_loc("loss") + 1, "loss_prediction", pred)
    out["extrapolation"] = where
    out["interval_status"] = out.pop("interval_status")
    return out


# ---------------------------------------------------------------------------------------------------------
# scaling optimal RESULTS.csv --approach 1|2|3|all


def parse_approaches(text: str) -> tuple[int, ...]:
    """``1``, ``2,3``, ``all`` -> approach numbers."""
    if text.strip().lower() == "all":
        return (1, 2, 3)
    out = []
    for part in text.split(","):
        part = part.strip()
        if part not in ("1", "2", "3"):
            raise ScalingError(
                f"--approach {text!r}: expected 1 (envelope), 2 (isoFLOP), 3 (parametric), a list such as 1,2, or all"
            )
        out.append(int(part))
    return tuple(dict.fromkeys(out))


def _approaches_from_results(
    results: str,
    compute: list[float],
    approach: str = "all",
    *,
    ci: float | None = None,
    bootstrap: int = 200,
    seed: int = 0,
    map_: list[str] | None = None,
    where: str | None = None,
    ensemble: int | None = None,
    near_min: float | None = None,
    fmt: Format = Format.table,
) -> None:
    """Approaches 1-3 side by side from one results table, with bootstrap intervals (``docs/planning.md``)."""
    from scaling.analysis.ensemble import ensemble_plan
    from scaling.analysis.optimal import compare

    level = 0.95 if ci is None else ci
    if not 0 < level < 1:
        raise ScalingError(f"--ci {level:g}: must lie strictly between 0 and 1")
    check_bootstrap_options(bootstrap, seed)
    approaches = parse_approaches(approach)
    bad = [c for c in compute if not (np.isfinite(c) and c > 6.0)]
    if bad:  # the same rule as optimal FIT --compute: C = 6 N D with N, D >= 1
        raise ScalingError(f"--compute {bad[0]:g}: must be a finite number of FLOPs above 6 (e.g. 5.76e23)")
    if ensemble is not None and 3 not in approaches:
        raise ScalingError("--ensemble needs approach 3 (the parametric fit predicts the members' losses)")
    df = read_selected_results(results, map_, where)
    if near_min is not None and 2 not in approaches:
        raise ScalingError("--near-min applies to approach 2 (isoFLOP profiles)")
    isoflop_options = {"near_min": near_min} if near_min is not None else None
    table, fitted = compare(
        df, compute, approaches=approaches, n_bootstrap=bootstrap, ci=level, seed=seed, isoflop_options=isoflop_options
    )
    verdicts = []
    if ensemble is not None:
        fit3 = fitted.get(3)
        if isinstance(fit3, str):
            raise ScalingError(f"--ensemble: approach 3 could not be fitted: {fit3}")
        verdicts = [ensemble_plan(df, fit3.fit, c, k=ensemble, ci=level) for c in compute]
    _print_approaches(table, fitted, verdicts, fmt, title=f"compute-optimal allocation from {results}: Chinchilla "
                      "approaches side by side", caption=f"[lower, upper]: {level:.0%} bootstrap intervals "
                      f"({bootstrap} resamples)", level=level)


def _print_approaches(table: pd.DataFrame, fitted: dict[int, Any], verdicts: list[Any], fmt: Format, *, title: str,
                      caption: str, level: float) -> None:
    """The allocations of each approach, then (a warning) why an approach did not apply, then the ensemble
    verdicts."""
    if fmt is Format.json:
        payload: dict[str, Any] = {"ci": level, "allocations": table}
        if verdicts:
            payload["ensembles"] = [
                {"compute": v.compute, "k": v.k, "verdict": v.verdict, "reason": v.reason, "options": v.table}
                for v in verdicts
            ]
        print_json(payload)
        return
    if fmt is Format.csv:
        emit(table, fmt)
    else:
        shown = with_intervals(table, ["a", "b", "N_opt", "D_opt", "tokens_per_param"])
        shown = shown.drop(columns=["warnings", "n_rows", "n_frontier_points", "bootstrap_failed_fraction"])
        print_table(shown, title=title, caption=caption)
    for k, res in fitted.items():
        if isinstance(res, str):
            warn(f"approach {k}: not applicable: {res}")
        else:
            for w in res.warnings:
                warn(f"approach {k}: {w}")
    for v in verdicts:
        if fmt is Format.table:
            blank_line()
            print_table(v.table, title=f"one model or an ensemble of {v.k}? compute {v.compute:.3g} FLOPs")
        note(f"ensemble at {v.compute:.3g}: {v.verdict}: {v.reason}")


# ---------------------------------------------------------------------------------------------------------
# scaling optimal FIT... for hyperparameter laws (optimal learning rate / batch size)


def _hyperparameter_optima(
    names: list[str],
    fits: list[Fit],
    *,
    compute: list[str] | None,
    N: list[str] | None,
    D: list[str] | None,
    at: dict[str, list[float]],
    ci: float | None,
    fmt: Format,
) -> None:
    """The optimum each hyperparameter fit predicts on the grid of --N, --D, --compute and --at values."""
    from scaling.analysis.hyperparameters import optimal_hyperparameters

    check_level(ci)
    given = parse_grid({"N": ("--N", N), "D": ("--D", D), "C": ("--compute", compute)}, at)
    check_grid_size(given)
    table = optimal_hyperparameters(fits, ci=ci, **given)
    outputs = [f.law.output for f in fits]
    drawn = [f for f in fits if len(f.draws)]
    if not drawn:
        note("no intervals: " + ("this fit carries" if len(fits) == 1 else "these fits carry") + " no bootstrap draws")
    caption = None
    if drawn:
        level = ci if ci is not None else drawn[0].ci
        caption = f"[lower, upper]: {level:.0%} interval from the bootstrap draws of " + ", ".join(
            f"{n} ({len(f.draws)})" for n, f in zip(names, fits) if len(f.draws))
    if "C" in table.columns and "C" not in given:
        note("C derived as 6ND for " + ", ".join(n for n, f in zip(names, fits) if "C" in f.law.inputs))
    if fmt is Format.table:
        table = with_intervals(table, outputs)
    laws = "; ".join(f"{n}: {f.law.formula}" for n, f in zip(names, fits))
    emit(table, fmt, title=f"optimal hyperparameters ({laws})", caption=caption)


def _vocabulary_optimum(names: list[str], fits: list[Fit], *, compute: list[str] | None, N: list[str],
                               at: dict[str, list[float]], ci: float | None, fmt: Format) -> None:
    """``scaling optimal tao2024-vocab --N 7e9 -C 7e21 --at d=4096``: the compute-optimal vocabulary size."""
    from scaling.laws.vocabulary import optimal_vocabulary_table

    if len(fits) > 1:
        raise ScalingError("one vocab fit at a time")
    if not compute:
        raise ScalingError("the optimal vocabulary needs --compute (training FLOPs) besides --N")
    if set(at) != {"d"}:
        raise ScalingError("the optimal vocabulary needs the embedding width: --at d=4096 (and no other --at)")
    check_level(ci)
    fit = fits[0]
    level = fit.ci if ci is None else ci
    draws = fit.draws.to_dict("records") if len(fit.draws) else []
    rows = optimal_vocabulary_table(fit.params, draws, parse_values(N, "--N"), parse_values(compute, "--compute"),
                                    at["d"], ci=level)
    table = pd.DataFrame(rows)
    if not draws:
        note("no intervals: this fit carries no bootstrap draws")
    if fmt is Format.table:
        table = with_intervals(table, ["V_opt"])
    emit(table, fmt, title=f"{names[0]} (vocab): compute-optimal vocabulary, dL_u/dV = 0 at D = C/(6(N + V d))",
         caption=f"[lower, upper]: {level:.0%} interval from {len(draws)} bootstrap draws" if draws else None)
