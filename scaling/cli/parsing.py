"""Command-line text to values: numbers (``7e10``, ``70B``), repeatable values and log grids (``1e9:1e11:5``),
``NAME=VALUE`` assignments (``--fix``, ``--tie``, ``--at``) and paired points (``--points``); and the checks of
option values that need no file (``--bootstrap``, ``--seed``, ``--ci``, ``--workers``, the size of a grid).

Each parser raises a :class:`~scaling.errors.ScalingError` naming the option and the text it could not read. The
number grammar itself is :mod:`scaling.values` (shared with sweep files); the syntax is documented in
``docs/cli.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from scaling.errors import ScalingError
from scaling.laws import Law
from scaling.values import number_from_text


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


def parse_names(items: list[str] | str | None) -> list[str]:
    """Names given comma-separated, repeated or both (``--law chinchilla,bnsl:D --law kaplan``), blanks dropped."""
    if isinstance(items, str):
        items = [items]
    return [name.strip() for item in items or [] for name in item.split(",") if name.strip()]


def check_bootstrap_options(bootstrap: int, seed: int) -> None:
    """``--bootstrap`` and ``--seed`` before any work: neither may be negative."""
    if bootstrap < 0:
        raise ScalingError(f"--bootstrap {bootstrap}: must be 0 or more")
    if seed < 0:  # numpy's generators take only non-negative seeds
        raise ScalingError(f"--seed {seed}: must be 0 or more")


def check_level(ci: float | None, example: str = "0.9") -> None:
    """``--ci LEVEL`` (when given) lies strictly between 0 and 1."""
    if ci is not None and not 0 < ci < 1:
        raise ScalingError(f"--ci {ci:g}: must lie strictly between 0 and 1, e.g. {example}")


def parse_grid(named: dict[str, tuple[str, list[str] | None]], at: dict[str, list[float]]) -> dict[str, list[float]]:
    """The values of each input from options such as ``{"N": ("--N", ["1e9,1e10"])}`` and the ``--at`` values
    (:func:`parse_at`); an input may be given once."""
    given = {column: parse_values(items, option) for column, (option, items) in named.items() if items}
    for column, values in at.items():
        if column in given:
            raise ScalingError(f"--at {column}: {column} is given twice")
        given[column] = values
    return given


def check_grid_size(given: dict[str, list[float]], limit: int = 1_000_000) -> None:
    """Every combination of the given values is a point: at most ``limit`` of them."""
    size = int(np.prod([len(v) for v in given.values()])) if given else 0
    if size > limit:
        raise ScalingError(f"the grid has {size} points; at most {limit}")


def check_workers(workers: int | None) -> None:
    """``--workers`` is at least 1 when given (0 must not quietly mean the default)."""
    if workers is not None and workers < 1:
        raise ScalingError(f"--workers {workers}: must be at least 1")
