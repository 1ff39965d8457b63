"""Where a bad value is, said the way the user sees the file: the line (header = line 1), the column as written
(a mapped one under its own name), the cell's raw text, and the column the user most likely meant.

Only used when an error is being reported, so each may re-read the file: reading stays pandas-fast.
"""

from __future__ import annotations

import csv
import difflib
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from scaling.results.columns import FOREIGN_NAMES


def column_list(df: pd.DataFrame, limit: int = 12) -> str:
    """The columns as the user wrote them (mapped ones under their new name, derived ones left out)."""
    hidden = {*df.attrs.get("derived", {}), *df.attrs.get("renamed", {})}  # the file's own names are listed instead
    cols = [str(c) for c in df.columns if c not in hidden]
    shown = ", ".join(cols[:limit])
    return shown + (f", ... ({len(cols)} in all)" if len(cols) > limit else "")


def _normalise(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def suggest(name: str, candidates: Sequence[str]) -> str | None:
    """The candidate a user most likely meant: same name ignoring case/punctuation, else a close spelling."""
    by_norm = {_normalise(c): c for c in candidates}
    if _normalise(name) in by_norm:
        return by_norm[_normalise(name)]
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    if not close:  # compare lower-cased too: "LOSS" vs "loss" style differences beyond normalising
        lowered = {c.lower(): c for c in candidates}
        close = [lowered[m] for m in difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)]
    return close[0] if close else None


def _variants(name: str, candidates: Sequence[str]) -> list[str]:
    """Columns holding ``name`` as a whole word among others (``loss_c4_val``, ``eval/loss`` for ``loss``),
    held-out ones first: the usual case of a table that logs one loss per evaluation set."""
    pattern = re.compile(rf"(^|[^0-9A-Za-z]){re.escape(name)}($|[^0-9A-Za-z])", re.IGNORECASE)
    found = [c for c in candidates if c != name and pattern.search(c)]
    held_out = re.compile(r"val|valid|eval|test|held", re.IGNORECASE)
    return sorted(found, key=lambda c: (not held_out.search(c), len(c)))


def missing_column(df: pd.DataFrame, col: str, source: str) -> str:
    """The error for a missing column: the column the user probably meant (a close spelling, a well-known foreign
    name, or one of several variants such as ``loss_c4_val``) with the ``--map`` that uses it, and the columns."""
    columns = [str(c) for c in df.columns]
    candidate = suggest(col, columns)
    if candidate is None:  # a well-known foreign name for this canonical column?
        known = {_normalise(n) for n in FOREIGN_NAMES.get(col, ())}
        candidate = next((c for c in columns if _normalise(c) in known), None)
    variants = _variants(col, columns)
    if candidate is None and variants:  # loss_c4_val, eval/loss, train_loss: the same quantity, one of several
        quoted = [f'"{v}"' if not re.fullmatch(r"[A-Za-z0-9_.]+", v) else v for v in variants[:3]]
        more = f" (or {', '.join(variants[1:3])})" if len(variants) > 1 else ""
        return (
            f"{source}: missing column {col!r} (did you mean {variants[0]!r}{more}? "
            f"use --map {col}={quoted[0]}); columns are {column_list(df)}"
        )
    if candidate is not None:
        quoted = f'"{candidate}"' if not re.fullmatch(r"[A-Za-z0-9_.]+", candidate) else candidate
        hint = f" (did you mean {candidate!r}? use --map {col}={quoted})"
    elif col == "D" and "C" in df.columns:
        hint = " (D is derived as C/(6N) when N is present: map or add N)"
    else:
        hint = ""
    return f"{source}: missing column {col!r}{hint}; columns are {column_list(df)}"


def cell_location(df: pd.DataFrame, position: int, col: str) -> str:
    """``line 7, column 'Model Size' (N)``: the file's line (header = line 1) and the column as written."""
    foreign = df.attrs.get("renamed", {}).get(col)
    column = f"column {foreign!r} (mapped to {col})" if foreign else f"column {col!r}"
    line = _line_number(df, position)
    if line is not None:
        return f"line {line}, {column}"
    label = df.index[position]
    return f"row {label.item() if isinstance(label, np.generic) else label!r}, {column}"


def _line_number(df: pd.DataFrame, position: int) -> int | None:
    """The file line of a data row, counting the header as line 1 and skipping blank lines as pandas does.

    Computed only when an error is reported (one pass of the csv module over the file), so reading stays
    pandas-fast. ``None`` when the frame did not come straight from a file.
    """
    path, label = df.attrs.get("path"), df.index[position]
    if not path or not isinstance(label, (int, np.integer)):
        return None
    try:
        with open(path, newline="") as fh:
            reader = csv.reader(fh, delimiter=df.attrs.get("sep", ","))
            row = -1  # the header
            for record in reader:
                if not record:  # blank line: pandas skips it
                    continue
                if row == int(label):
                    return reader.line_num
                row += 1
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return None


def raw_cell(df: pd.DataFrame, position: int, col: str) -> str | None:
    """The cell's text exactly as written in the file (pandas has already turned ``nan`` and ``""`` into NaN)."""
    path, label = df.attrs.get("path"), df.index[position]
    if col in df.attrs.get("derived", {}) or not path or not isinstance(label, (int, np.integer)):
        return None
    foreign = df.attrs.get("renamed", {}).get(col, col)
    try:
        raw = pd.read_csv(path, sep=df.attrs.get("sep", ","), dtype=str, keep_default_na=False, usecols=[foreign])
        return str(raw[foreign].iloc[int(label)])
    except Exception:  # noqa: BLE001 - the message is right without the raw text; never fail while reporting
        return None


__all__ = ["cell_location", "column_list", "missing_column", "raw_cell", "suggest"]
