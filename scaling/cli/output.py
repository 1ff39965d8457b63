"""How every command prints: a rich table for people, JSON or CSV for pipes (``--format table|json|csv``).

Only data goes to stdout, so ``scaling forecast chinchilla --N 7e10 --D 1.4e12 --format csv | ...`` and
``--format json | jq`` work; notes (which law was picked, where a fit was saved, warnings) go to stderr in
every format. JSON has ``null`` where a number is missing or not finite (JSON has no NaN).
"""

from __future__ import annotations

import contextlib
import enum
import json
import shutil
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from scaling.fitting.fitfile import to_jsonable  # the one JSON encoding (fit files, CLI, HTTP)
from scaling.values import format_number


class Format(str, enum.Enum):
    table = "table"
    json = "json"
    csv = "csv"


def _console(stderr: bool = False) -> Console:
    # Built per call so it writes to the current sys.stdout/sys.stderr (pytest's capsys swaps them). A pipe gets
    # a wide console: rich would otherwise wrap tables at 80 columns.
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else max(shutil.get_terminal_size((160, 24)).columns, 160)
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def note(message: str, *, style: str | None = None) -> None:
    """A status line for people, on stderr (never mixed into piped data)."""
    _console(stderr=True).print(message, style=style, markup=False)


def warn(message: str) -> None:
    note(f"warning: {message}", style="yellow")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(data), indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


def print_csv(df: pd.DataFrame) -> None:
    # Full precision (pandas writes repr of floats), no index, empty cell for a missing value.
    df.to_csv(sys.stdout, index=False, lineterminator="\n")
    sys.stdout.flush()


def print_table(df: pd.DataFrame, *, title: str | None = None, caption: str | None = None, digits: int = 5) -> None:
    """A DataFrame as a rich table: numbers right-aligned with ``digits`` significant digits.

    Title and caption are printed as their own lines: rich would wrap them to the table's width.
    """
    console = _console()
    if title:
        console.print(title, style="bold", markup=False)
    table = Table(show_edge=False)
    for col in df.columns:
        numeric = pd.api.types.is_numeric_dtype(df[col]) and not pd.api.types.is_bool_dtype(df[col])
        table.add_column(str(col), justify="right" if numeric else "left", overflow="fold")
    for row in df.itertuples(index=False):
        table.add_row(*(format_number(v, digits) for v in row))
    console.print(table)
    if caption:
        console.print(caption, style="dim", markup=False)


def print_fields(fields: Sequence[tuple[str, Any]], *, title: str | None = None) -> None:
    """``name  value`` lines (a two-column table without header) for a record such as fit quality.

    A list value shows one item per line (``none`` when empty).
    """
    console = _console()
    if title:
        console.print(title, style="bold", markup=False)
    table = Table(show_header=False, show_edge=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in fields:
        if isinstance(value, (list, tuple)):
            value = "\n".join(map(str, value)) if value else "none"
        table.add_row(name, format_number(value))
    console.print(table)


def blank_line() -> None:
    _console().print()


def emit(df: pd.DataFrame, fmt: Format | str, *, title: str | None = None, caption: str | None = None) -> None:
    """Print one DataFrame in the chosen format (the common case: forecast, optimal, laws)."""
    fmt = Format(fmt)
    if fmt is Format.json:
        print_json(df)
    elif fmt is Format.csv:
        print_csv(df)
    else:
        print_table(df, title=title, caption=caption)


_DEVELOPER_WARNINGS = (RuntimeWarning, DeprecationWarning, PendingDeprecationWarning)


@contextlib.contextmanager
def quiet_numerics() -> Iterator[None]:
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
