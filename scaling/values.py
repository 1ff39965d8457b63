"""Numbers as people write and read them: the grammar shared by the command line and sweep files (``7e10``,
``70B``, ``1.4T``, ``500M``, ``20k``), and the one way a value with its interval is written for people
(``0.3374 [0.3101, 0.3712]``), in the CLI's tables and the HTML report alike.

Suffixes: k = 1e3, M = 1e6, B or G = 1e9, T = 1e12, P = 1e15 (case as written: ``m`` is not a suffix, so that a
typo for milli is refused rather than read as mega). Underscores group digits (``1_000_000``) as in Python.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

SUFFIXES = {"k": 1e3, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12, "P": 1e15}
_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([kKMBGTP]?)\s*$")


def number_from_text(text: str) -> float | None:
    """The value of ``text`` in this grammar, or None when it is not a number here (the caller names the field).

    Infinite results (``1e400``) are returned as inf for the caller to refuse with its own message.
    """
    match = _NUMBER.match(text.replace("_", ""))
    if not match:
        return None
    value = float(match.group(1)) * SUFFIXES.get(match.group(2), 1.0)
    return value if not math.isnan(value) else None


def format_number(value: Any, digits: int = 5) -> str:
    """Five significant digits (exponents need four to be honest: Besiroglu et al. 2024); integers, and whole
    floats below 1e6, as integers; yes/no for booleans; ``inf``/``-inf``; nothing for a missing value."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return ""
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if v.is_integer() and abs(v) < 1e6:
            return str(int(v))
        return f"{v:.{digits}g}"
    return str(value)


def value_with_interval(value: Any, lower: Any, upper: Any, number: Callable[[Any], str] = format_number) -> str:
    """``value [lower, upper]`` with each number written by ``number``. A value that writes as nothing (missing)
    gives nothing; a bound that writes as nothing (missing, or infinite for a formatter that hides infinities)
    leaves the value alone: half an interval would read as a whole one."""
    text = number(value)
    if not text:
        return ""
    low, high = number(lower), number(upper)
    return f"{text} [{low}, {high}]" if low and high else text


def with_intervals(table: pd.DataFrame, names: Sequence[str], *, infix: str = "",
                   number: Callable[[Any], str] = format_number) -> pd.DataFrame:
    """``value [lower, upper]`` text columns for a table meant for people: each NAME in ``names`` is written with its
    NAME{infix}_lower / NAME{infix}_upper columns (:func:`value_with_interval`), which are dropped. The one formatter of
    intervals in tables: the CLI's (``number=format_number``) and the HTML report's (its own cell format)."""
    out = table.copy()
    for name in names:
        lo_col, hi_col = f"{name}{infix}_lower", f"{name}{infix}_upper"
        lower = table[lo_col] if lo_col in table.columns else [None] * len(table)
        upper = table[hi_col] if hi_col in table.columns else [None] * len(table)
        out[name] = [value_with_interval(v, a, b, number) for v, a, b in zip(table[name], lower, upper)]
        out = out.drop(columns=[c for c in (lo_col, hi_col) if c in out.columns])
    return out
