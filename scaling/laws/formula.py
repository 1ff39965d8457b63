"""Laws written by the user as a formula: ``L = E + A/N^alpha + B/D^beta`` -> a :class:`Law`.

The text is checked and turned into a sympy expression by :mod:`scaling.laws.formula_syntax` (a whitelisted AST,
never ``eval``), and ``sympy.lambdify`` turns that expression into a vectorised numpy function. So nothing a user
writes is ever executed as Python: what runs is code sympy printed from an expression built only of whitelisted
pieces.

A :class:`FormulaSpec` holds everything needed to rebuild the law: the formula text, which symbols are inputs and
which are parameters (bounds, optional starts, log scale), the output column, the residual space and, for
per-group fits, the grouping column and its values. Fit files store the spec (``law_spec``) and rebuild the law
from it on load, re-validating the text the same way.

Per-group parameters (``per_group``): the named parameters get one copy per value of the ``by`` column, named
``E[c4]``, ``E[pile]``, ...; the other parameters are shared. The law then reads one more input, the 0-based
index of each row's group (column ``<by>_index``, see :func:`add_group_index`), and each row uses its group's
copy: a sum of copies times one-hot indicators, so it stays one broadcast numpy expression.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sympy
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from scaling.errors import ScalingError
from scaling.laws.base import LAW_KINDS, RESIDUAL_SPACES, Law, Param
from scaling.laws.formula_syntax import parse_rhs, split_formula

# ---------------------------------------------------------------------------------------------------------------
# The spec: what a formula law is, as data (YAML law files, fit files)


class ParamSpec(BaseModel):
    """One parameter: bounds, optional starting values, whether it is optimised as a log (a positive scale)."""

    model_config = ConfigDict(extra="forbid")
    lower: float = -math.inf
    upper: float = math.inf
    start: list[float] | None = None
    log: bool | None = None  # None: decided from the bounds (see default_log)
    description: str = ""

    @field_validator("lower", mode="before")
    @classmethod
    def _no_lower(cls, v: Any) -> Any:
        return -math.inf if v is None else v  # fit files store infinite bounds as null (strict JSON)

    @field_validator("upper", mode="before")
    @classmethod
    def _no_upper(cls, v: Any) -> Any:
        return math.inf if v is None else v


class FormulaSpec(BaseModel):
    """A formula law as data: the contents of a YAML law file and the ``law_spec`` of a fit file."""

    model_config = ConfigDict(extra="forbid")
    name: str = "formula"
    formula: str
    inputs: list[str] | None = None
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    output: str | None = None
    residual_space: str = "log"
    kind: str = "loss"
    reference: str = "user-defined formula"
    notes: str = ""
    by: str | None = None
    per_group: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)


def default_log(p: ParamSpec) -> bool:
    """A parameter bounded below by 0 and spanning many decades (upper/lower >= 1e3, or no upper bound) is a
    positive scale constant, fitted as log(value) like Hoffmann et al.'s A, B, E. A range from 0 to a finite
    upper bound (an exponent, alpha=0:2) is fitted as itself."""
    if p.log is not None:
        return p.log
    if p.lower < 0 or not math.isfinite(p.lower):
        return False
    if not math.isfinite(p.upper):
        return True
    return p.lower > 0 and p.upper >= 1e3 * p.lower


def default_grid(p: ParamSpec, log: bool) -> tuple[float, ...]:
    """Starting values from the bounds: 5 evenly spaced values (geometric for a log-scale parameter) on a finite
    range; for a positive scale without an upper bound e^-1 ... e^25 (covering Hoffmann et al.'s grids for E and
    for A, B); for an unbounded parameter -2 ... 2."""
    if p.start:
        return tuple(float(v) for v in p.start)
    lo, hi = p.lower, p.upper
    if log:
        lo_pos = lo if lo > 0 else None
        if lo_pos is not None and math.isfinite(hi):
            return tuple(np.geomspace(lo_pos, hi, 5))
        values = np.exp(np.array([-1.0, 0.0, 1.0, 5.0, 10.0, 15.0, 20.0, 25.0]))
        return tuple(v for v in values if (lo_pos is None or v >= lo_pos) and v <= hi) or (lo_pos or 1.0,)
    if math.isfinite(lo) and math.isfinite(hi):
        return tuple(np.linspace(lo, hi, 5))
    if math.isfinite(lo):
        return tuple(lo + np.array([0.0, 0.5, 1.0, 2.0, 4.0]))
    if math.isfinite(hi):
        return tuple(hi - np.array([0.0, 0.5, 1.0, 2.0, 4.0]))
    return tuple(np.linspace(-2.0, 2.0, 5))


def parse_param_option(text: str) -> tuple[str, ParamSpec]:
    """``alpha=0:2``, ``A=0:inf:log``, ``E=0:10@1,2,3`` (starts after @), ``c=-1:1:linear``."""
    name, sep, rest = (s.strip() for s in text.partition("="))
    example = "--param alpha=0:2 (or A=0:inf:log, E=0:10@1,2)"
    if not sep or not name.isidentifier() or not rest:
        raise ScalingError(f"--param {text!r}: expected NAME=LOWER:UPPER, e.g. {example}")
    bounds, _, starts = rest.partition("@")
    fields = [f.strip() for f in bounds.split(":")]
    log = None
    if len(fields) == 3:
        if fields[2] not in ("log", "linear"):
            raise ScalingError(f"--param {text!r}: the third field is log or linear, got {fields[2]!r}")
        log = fields[2] == "log"
        fields = fields[:2]
    if len(fields) != 2:
        raise ScalingError(f"--param {text!r}: expected NAME=LOWER:UPPER, e.g. {example}")

    def number(s: str, what: str) -> float:
        try:
            return float(s) if s else (-math.inf if what == "lower" else math.inf)
        except ValueError:
            raise ScalingError(f"--param {text!r}: {what} {s!r} is not a number") from None

    lo, hi = number(fields[0], "lower"), number(fields[1], "upper")
    start = [number(s, "start") for s in starts.split(",")] if starts.strip() else None
    try:
        return name, ParamSpec(lower=lo, upper=hi, start=start, log=log)
    except ValidationError as exc:
        raise ScalingError(f"--param {text!r}: {exc.errors()[0]['msg']}") from None


def read_law_file(path: str) -> FormulaSpec:
    """A YAML (or JSON) law file -> :class:`FormulaSpec` (``yaml.safe_load``: plain data, no tags, no code)."""
    import yaml

    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ScalingError(f"{path}: no such law file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScalingError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ScalingError(f"{path}: not valid YAML{where}") from None
    if not isinstance(data, Mapping):
        raise ScalingError(f"{path}: a law file is a mapping with at least 'formula:'")
    return spec_from_dict(data, source=path)


def spec_from_dict(data: Mapping[str, Any], *, source: str) -> FormulaSpec:
    try:
        return FormulaSpec.model_validate(dict(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "(top level)"
        raise ScalingError(f"{source}: field {where}: {err.get('msg')}") from None


# ---------------------------------------------------------------------------------------------------------------
# Building the law


@dataclass(frozen=True)
class FormulaLaw(Law):
    """A :class:`Law` built from a formula; ``spec`` rebuilds it (fit files store the spec, not the function)."""

    spec: FormulaSpec | None = field(default=None, compare=False)
    expression: Any = field(default=None, compare=False)


def resolve_spec(spec: FormulaSpec, columns: Sequence[str] | None = None) -> FormulaSpec:
    """Decide inputs, parameters and output for a spec written loosely (the CLI's ``--formula``).

    Inputs: ``spec.inputs`` when given; otherwise every symbol that is not a declared parameter and is a column of
    the table (``columns``). Every other symbol is a parameter (default bounds when undeclared). The output is
    ``spec.output``, else the formula's left side (``L`` means the ``loss`` column), else ``loss``.
    """
    lhs, rhs = split_formula(spec.formula)
    expr = parse_rhs(spec.formula, rhs)
    names = {str(s) for s in expr.free_symbols}
    # in order of first appearance, so parameters list as the formula reads (E, A, alpha, B, beta)
    symbols = list(dict.fromkeys(t for t in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", rhs) if t in names))
    declared = set(spec.params)
    unknown = sorted(declared - set(symbols))
    if unknown:
        raise ScalingError(f"parameter {unknown[0]!r} does not appear in the formula {spec.formula!r}")
    if spec.inputs is not None:
        inputs = list(spec.inputs)
        missing = [c for c in inputs if c not in symbols]
        if missing:
            raise ScalingError(f"input {missing[0]!r} does not appear in the formula {spec.formula!r}")
        clash = sorted(set(inputs) & declared)
        if clash:
            raise ScalingError(f"{clash[0]!r} is declared both as an input and as a parameter")
    else:
        cols = set(columns or ())
        inputs = [s for s in symbols if s not in declared and s in cols]
    if not inputs:
        raise ScalingError(f"formula {spec.formula!r}: no input column among its names ({', '.join(symbols)}); "
                           "name the table's columns in the formula, or map them with --map NAME=COLUMN")
    others = [s for s in symbols if s not in inputs]
    if set(others) == declared:  # every parameter declared (law files, fit files): keep the declared order
        others = list(spec.params)
    params = {s: spec.params.get(s, ParamSpec()) for s in others}
    if not params:
        raise ScalingError(f"formula {spec.formula!r}: no parameters to fit")
    output = spec.output or ("loss" if lhs in (None, "L") else lhs)
    if spec.residual_space not in RESIDUAL_SPACES:
        raise ScalingError(f"residual space {spec.residual_space!r}: expected one of {', '.join(RESIDUAL_SPACES)}")
    if spec.kind not in LAW_KINDS:
        raise ScalingError(f"kind {spec.kind!r}: expected one of {', '.join(LAW_KINDS)}")
    for name in spec.per_group:
        if name not in params:
            raise ScalingError(f"--per-group {name}: not a parameter of the formula (parameters: {', '.join(params)})")
    return spec.model_copy(update={"inputs": inputs, "params": params, "output": output})


def _param(name: str, p: ParamSpec) -> Param:
    log = default_log(p)
    if not p.lower < p.upper:
        raise ScalingError(f"parameter {name}: lower {p.lower:g} must be below upper {p.upper:g}")
    grid = default_grid(p, log)
    bad = [v for v in grid if not p.lower <= v <= p.upper]
    if bad:
        raise ScalingError(f"parameter {name}: start {bad[0]:g} lies outside [{p.lower:g}, {p.upper:g}]")
    return Param(name, p.lower, p.upper, grid, log_scale=log, description=p.description)


def group_index_column(by: str) -> str:
    """The input column holding each row's group number (0-based, in ``spec.groups`` order)."""
    return f"{by}_index"


def build_law(spec: FormulaSpec, columns: Sequence[str] | None = None) -> FormulaLaw:
    """The :class:`FormulaLaw` of a spec (resolved against ``columns`` when its inputs are not listed)."""
    spec = resolve_spec(spec, columns)
    lhs, rhs = split_formula(spec.formula)
    expr = parse_rhs(spec.formula, rhs)
    inputs = list(spec.inputs or [])
    base_params = list(spec.params)
    symbols = {str(s): s for s in expr.free_symbols}
    compiled = sympy.lambdify([symbols[n] for n in inputs + base_params], expr, modules="numpy")

    def function(**kw):
        values = [kw[n] for n in inputs + base_params]
        # A formula that ignores some arguments (y = a) returns a smaller array or a scalar; the fitter needs the
        # full broadcast shape (K parameter sets x m rows), so the result is broadcast to it.
        return compiled(*values) + np.zeros(np.broadcast_shapes(*(np.shape(v) for v in values)))

    params = [_param(n, spec.params[n]) for n in base_params]
    law_inputs = tuple(inputs)
    if spec.per_group:
        function, params, law_inputs = _per_group(spec, function, params, law_inputs)
    formula = spec.formula if lhs is not None else f"{spec.output} = {spec.formula}"
    return FormulaLaw(
        name=spec.name,
        formula=formula,
        reference=spec.reference,
        inputs=law_inputs,
        params=tuple(params),
        function=function,
        output=str(spec.output),
        notes=spec.notes,
        residual_space=spec.residual_space,
        kind=spec.kind,
        positive_inputs=False,
        spec=spec,
        expression=expr,
    )


def _per_group(spec: FormulaSpec, function, params: list[Param], inputs: tuple[str, ...]):
    """One copy of each ``per_group`` parameter per group; rows pick their group's copy by one-hot indicators."""
    if not spec.by or not spec.groups:
        raise ScalingError("per-group parameters need a grouping column (--by) with at least one group")
    index = group_index_column(spec.by)
    names = set(spec.per_group)
    copies = {n: [f"{n}[{g}]" for g in spec.groups] for n in spec.per_group}
    out_params = []
    for p in params:
        if p.name in names:
            out_params.extend(Param(c, p.lower, p.upper, p.grid, p.log_scale, p.description) for c in copies[p.name])
        else:
            out_params.append(p)

    def grouped(**kw):
        code = np.asarray(kw.pop(index), dtype=float)
        for n, names_ in copies.items():
            kw[n] = sum(np.asarray(kw.pop(c), dtype=float) * (code == i) for i, c in enumerate(names_))
        return function(**kw)

    return grouped, out_params, inputs + (index,)


def formula_law(formula: str, *, inputs: Sequence[str], params: Mapping[str, Mapping[str, Any]] | None = None,
                **options: Any) -> FormulaLaw:
    """A law from a formula in a notebook; its fits save and reload like the catalogue's.

    >>> law = formula_law("L = E + A/N^alpha", inputs=["N"], params={"alpha": {"lower": 0, "upper": 2}})
    >>> law.param_names
    ('E', 'A', 'alpha')
    """
    spec = spec_from_dict({"formula": formula, "inputs": list(inputs), "params": dict(params or {}), **options},
                          source="formula_law")
    return build_law(spec)


def add_group_index(df: pd.DataFrame, spec: FormulaSpec, *, source: str = "table") -> pd.DataFrame:
    """``df`` with the ``<by>_index`` column of a per-group law (rows of an unknown group are an error)."""
    if not spec.per_group:
        return df
    by = str(spec.by)
    if by not in df.columns:
        raise ScalingError(f"{source}: no column {by!r}; the law has per-group parameters by {by!r}")
    lookup = {g: i for i, g in enumerate(spec.groups)}
    keys = df[by].astype(str)
    unknown = ~keys.isin(list(lookup))
    if unknown.any():
        first = keys[unknown].iloc[0]
        raise ScalingError(f"{source}: {by} = {first!r} is not one of the fitted groups ({', '.join(spec.groups)})")
    out = df.assign(**{group_index_column(by): keys.map(lookup).astype(float).to_numpy()})
    out.attrs = dict(df.attrs)
    return out


def law_from_plain(law: Law, params: Mapping[str, float], ranges: Mapping[str, Any] | None) -> FormulaLaw | None:
    """Rebuild a script-made :class:`Law` from its formula text, or None when the text is not a formula that
    reproduces ``law.function`` (checked at ``params`` on the corners of the data ranges, relative 1e-8)."""
    try:
        spec = FormulaSpec(
            name=law.name, formula=law.formula, inputs=list(law.inputs), output=law.output,
            residual_space=law.residual_space, kind=law.kind, reference=law.reference, notes=law.notes,
            params={p.name: ParamSpec(lower=p.lower, upper=p.upper, start=list(p.grid), log=p.log_scale)
                    for p in law.params},
        )
        rebuilt = build_law(spec)
    except (ScalingError, ValidationError, ValueError, TypeError):
        return None
    if rebuilt.param_names != law.param_names:
        return None
    points = []
    for col in law.inputs:
        r = (ranges or {}).get(col) or {}
        lo, hi = r.get("min", 1.0), r.get("max", 1.0)
        points.append(np.array([lo, hi, 0.5 * (lo + hi)], dtype=float))
    grid = dict(zip(law.inputs, (a.ravel() for a in np.meshgrid(*points))))
    with np.errstate(all="ignore"):
        try:
            a = law.predict(params, **grid)
            b = rebuilt.predict(params, **grid)
        except Exception:  # noqa: BLE001 - any failure of the user's own function means "cannot verify"
            return None
    same = np.allclose(a, b, rtol=1e-8, atol=1e-12, equal_nan=True) and np.isfinite(b).any()
    return rebuilt if same else None


__all__ = ["FormulaLaw", "FormulaSpec", "ParamSpec", "add_group_index", "build_law", "formula_law",
           "group_index_column", "parse_param_option", "read_law_file", "resolve_spec"]
