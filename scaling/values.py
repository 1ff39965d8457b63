"""The number grammar shared by the command line and sweep files: ``7e10``, ``70B``, ``1.4T``, ``500M``, ``20k``.

Suffixes: k = 1e3, M = 1e6, B or G = 1e9, T = 1e12, P = 1e15 (case as written: ``m`` is not a suffix, so that a
typo for milli is refused rather than read as mega). Underscores group digits (``1_000_000``) as in Python.
"""

from __future__ import annotations

import math
import re

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
