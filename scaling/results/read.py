"""Reading a results table: the file, ``--map`` to canonical names, derived columns, ``--where``, validation.

:func:`read_results` maps foreign column names (``mapping={"N": "Model Size"}``), derives ``D = C/(6N)`` when only
compute is given (and ``C = 6ND`` when only N and D are), selects rows with a condition in a safe grammar
(``where="final == 1"``, :mod:`scaling.where`) and validates the columns a law needs. Every error is one line
naming the file, the column and the line of the first bad value, as the user would find it in an editor
(:mod:`scaling.results.locate`).
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.errors import ScalingError
from scaling.results.columns import CANONICAL_COLUMNS, DERIVED, LAW_COLUMNS, POSITIVE_COLUMNS, UNIT_INTERVAL_COLUMNS
from scaling.results.locate import cell_location, column_list, missing_column, raw_cell, suggest
from scaling.where import select


def parse_mapping(items: Iterable[str], extra: Collection[str] = ()) -> dict[str, str]:
    """``["N=Model Size", "C=Training FLOP"]`` -> ``{"N": "Model Size", "C": "Training FLOP"}``.

    The left side must be a canonical column (``N``, ``D``, ``loss``, ... or an exact-case one like ``D_F``)
    or one of ``extra`` (the names a formula law reads, e.g. ``lr``); a near miss such as ``n`` is an error with
    the suggestion rather than a silently useless mapping.
    """
    mapping: dict[str, str] = {}
    for item in items:
        canonical, sep, foreign = item.partition("=")
        canonical, foreign = canonical.strip(), foreign.strip().strip("\"'")
        if not sep or not canonical or not foreign:
            raise ScalingError(f"--map {item!r}: expected CANONICAL=FOREIGN, e.g. N=\"Model Size\"")
        if canonical not in CANONICAL_COLUMNS and canonical not in LAW_COLUMNS and canonical not in extra:
            near = suggest(canonical, [*CANONICAL_COLUMNS, *LAW_COLUMNS, *extra])
            hint = f" (did you mean {near!r}?)" if near else ""
            raise ScalingError(
                f"--map {item!r}: {canonical!r} is not a canonical column"
                f"{' nor a name the formula uses' if extra else ''}{hint}; "
                f"canonical columns are {', '.join([*CANONICAL_COLUMNS, *LAW_COLUMNS])}"
                + (f"; the formula's names are {', '.join(extra)}" if extra else "")
            )
        if canonical in mapping and mapping[canonical] != foreign:
            raise ScalingError(f"--map {item!r}: {canonical} is already mapped to {mapping[canonical]!r}")
        mapping[canonical] = foreign
    return mapping


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV (or ``.tsv``) file with a clear one-line error when it is missing, empty or not a table."""
    path = Path(path)
    if not path.exists():
        raise ScalingError(f"{path}: no such file")
    if path.is_dir():
        raise ScalingError(f"{path}: is a folder, expected a CSV file")
    if not path.is_file():  # /dev/zero or a FIFO: reading would never end, or block
        raise ScalingError(f"{path}: not a regular file, expected a CSV file")
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with open(path, "rb") as fh:
            head = fh.read(512).lstrip()
    except OSError as exc:
        raise ScalingError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if head[:1] in (b"{", b"["):  # pandas would read a JSON document as a strange one-row CSV
        raise ScalingError(f"{path}: looks like JSON, not a CSV table (a fit file? use scaling forecast)")
    _check_first_row(path, sep)
    try:
        df = pd.read_csv(path, sep=sep)
    except pd.errors.EmptyDataError:
        raise ScalingError(f"{path}: the file is empty") from None
    except UnicodeDecodeError:
        raise ScalingError(f"{path}: not a text CSV file (it is not UTF-8 text)") from None
    except pd.errors.ParserError as exc:
        raise ScalingError(f"{path}: {_parser_error(exc)}") from None
    except OSError as exc:  # permission denied, I/O error
        raise ScalingError(f"{path}: cannot read ({exc.strerror or exc})") from None
    _check_shape(df, path, sep)
    if df.shape[1] < 2:
        raise ScalingError(
            f"{path}: not a CSV table (found {df.shape[1]} column: {', '.join(map(str, df.columns))[:80]})"
        )
    if len(df) == 0:
        raise ScalingError(f"{path}: has a header but no data rows")
    df.attrs["source"] = str(path)
    df.attrs["path"] = str(path)
    df.attrs["sep"] = sep
    return df


def _parser_error(exc: Exception) -> str:
    """pandas' "Error tokenizing data. C error: Expected 3 fields in line 4, saw 4" as a sentence about the file."""
    text = _first_line(exc)
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if match:
        want, line, got = match.groups()
        return f"line {line} has {got} fields but the header has {want} (a stray comma, or an unquoted text cell?)"
    return f"not a readable CSV file ({text.removeprefix('Error tokenizing data. C error: ')})"


def _check_first_row(path: Path, sep: str) -> None:
    """A first data row wider than the header, found before pandas reads it: pandas would make the extra leading
    fields a MultiIndex, built in quadratic time (a 6 MB single line took minutes), before _check_shape sees it."""
    try:
        with open(path, newline="") as fh:
            rows = [r for _, r in zip(range(2), (r for r in csv.reader(fh, delimiter=sep) if r))]
    except (OSError, UnicodeDecodeError, csv.Error):
        return  # pandas reports these
    if len(rows) == 2 and len(rows[1]) > len(rows[0]):
        _refuse_wide_first_row(path, sep, len(rows[0]))


def _refuse_wide_first_row(path: Path, sep: str, width: int) -> None:
    counts = _field_counts(path, sep)
    if counts and counts[0] > width:
        if all(c == counts[0] for c in counts[1:]):
            raise ScalingError(
                f"{path}: every row has {counts[0]} fields but the header has {width} "
                f"(a trailing {'tab' if sep == chr(9) else 'comma'} on each row?); remove it"
            )
        raise ScalingError(f"{path}: line 2 has {counts[0]} fields but the header has {width}")


def _check_shape(df: pd.DataFrame, path: Path, sep: str) -> None:
    """Refuse what pandas reads silently but wrongly: a repeated column name, extra fields on the first row."""
    if not df.index.equals(pd.RangeIndex(len(df))):
        # The first data row has more fields than the header: pandas takes the first column(s) as row labels and
        # shifts every column (N's values under D, ...). Nearly always a delimiter at the end of each row.
        _refuse_wide_first_row(path, sep, len(df.columns))
    if any(re.search(r"\.\d+$", str(c)) for c in df.columns):  # pandas renames a repeated "N" to "N.1"
        header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0]
        seen: set[str] = set()
        for position, name in enumerate(header.tolist(), start=1):
            if name in seen:
                raise ScalingError(f"{path}: line 1: column {name!r} appears twice in the header (field {position})")
            seen.add(name)


def _field_counts(path: Path, sep: str) -> list[int]:
    """Fields per non-blank data row, as the csv module splits them (only read when reporting an error)."""
    try:
        with open(path, newline="") as fh:
            return [len(r) for r in csv.reader(fh, delimiter=sep) if r][1:]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def canonicalize(df: pd.DataFrame, mapping: Mapping[str, str] | None = None, *, source: str = "table") -> pd.DataFrame:
    """Rename foreign columns to canonical ones and derive what can be derived (D from C and N, C from N and D).

    ``attrs["renamed"]`` records ``{canonical: foreign}`` and ``attrs["derived"]`` ``{column: formula}`` so
    errors can name the column the user wrote and the CLI can say what it derived.
    """
    attrs = dict(df.attrs)
    original = df
    df = df.copy()
    renamed: dict[str, str] = {}
    displaced: dict[str, str] = {}
    for canonical, foreign in (mapping or {}).items():
        if foreign not in original.columns:
            near = suggest(foreign, [str(c) for c in original.columns])
            hint = f" (did you mean {near!r}?)" if near else ""
            raise ScalingError(
                f"{source}: --map {canonical}={foreign!r}: no column {foreign!r}{hint}; "
                f"columns are {column_list(original)}"
            )
        if canonical == foreign:
            continue
        if canonical in original.columns and canonical not in displaced:
            # --map loss=loss_c4 on a table that has a loss column too: the old one stays, under a name that says
            # what happened, instead of vanishing (attrs["displaced"] lets the CLI say so).
            keep = f"{canonical}_unmapped"
            df = df.rename(columns={canonical: keep})
            displaced[canonical] = keep
        # The foreign column stays under its own name as well, so a --where can name it as written in the file.
        df[canonical] = original[foreign]
        renamed[canonical] = foreign
    derived: dict[str, str] = {}
    for column, (formula, sources) in DERIVED.items():
        if column not in df.columns and all(s in df.columns for s in sources):
            N = pd.to_numeric(df["N"], errors="coerce")
            if column == "D":
                df["D"] = pd.to_numeric(df["C"], errors="coerce") / (6.0 * N)
            else:
                df["C"] = 6.0 * N * pd.to_numeric(df["D"], errors="coerce")
            derived[column] = formula
    df.attrs = attrs
    df.attrs.update(source=source, renamed=renamed, derived=derived, displaced=displaced)
    return df


def select_rows(df: pd.DataFrame, where: str | None, *, source: str = "table") -> pd.DataFrame:
    """Keep the rows matching a ``--where`` condition (``final == 1 and N > 1e4``); see :mod:`scaling.where`.

    Column names that are not identifiers go in backticks: ``--where '`Model Size` > 1e9'``.
    """
    if not where or not where.strip():
        return df
    attrs = dict(df.attrs)
    out = df[select(df, where, source=source)]
    if len(out) == 0:
        raise ScalingError(f"{source}: --where {where[:80]!r} selects no rows (of {len(df)})")
    out.attrs = attrs
    return out


def validate_columns(df: pd.DataFrame, columns: Sequence[str], *, source: str = "table",
                     positive: Collection[str] | None = None) -> pd.DataFrame:
    """Check that ``columns`` exist and hold finite numbers (positive where that is required).

    ``positive``: the columns that must be positive (default :data:`POSITIVE_COLUMNS`); a formula law whose
    inputs may be zero or negative passes only its log-space target.

    Errors name the file, the column as the user wrote it and the line of the first bad value (header =
    line 1). A derived column (D = C/(6N)) is checked through the columns it comes from, so the error points
    at the cell that is actually wrong.
    """
    derived = df.attrs.get("derived", {})
    order: list[str] = []
    for col in columns:
        if col in derived:
            order.extend(s for s in DERIVED[col][1] if s not in order)
        if col not in order:
            order.append(col)
    for col in order:
        if col not in df.columns:
            raise ScalingError(missing_column(df, col, source))
    out = df.copy()
    out.attrs = dict(df.attrs)
    for col in order:
        values = pd.to_numeric(out[col], errors="coerce")
        array = values.to_numpy(dtype=float, na_value=np.nan)
        bad = ~np.isfinite(array)
        if bad.any():
            pos = int(bad.nonzero()[0][0])
            raw = raw_cell(out, pos, col)
            if raw is None:  # a DataFrame from a notebook: only the parsed value is known
                original = out[col].iloc[pos]
                raw = "" if original is None else str(original)
            if not raw.strip() or raw.strip().lower() in {"<na>", "none"}:
                what = "an empty cell"
            elif not _looks_like_number(raw):
                what = f"{raw!r}, not a number"
            else:
                what = f"{raw!r}, not a finite number"
            raise ScalingError(f"{source}: {cell_location(out, pos, col)} is {what}")
        if col in (POSITIVE_COLUMNS if positive is None else positive) and (array <= 0).any():
            pos = int((array <= 0).nonzero()[0][0])
            raw = raw_cell(out, pos, col)
            shown = raw if raw is not None else repr(float(array[pos]))
            raise ScalingError(f"{source}: {cell_location(out, pos, col)} is {shown}; {col} must be positive")
        if col in UNIT_INTERVAL_COLUMNS and ((array < 0) | (array > 1)).any():
            pos = int(((array < 0) | (array > 1)).nonzero()[0][0])
            raw = raw_cell(out, pos, col)
            shown = raw if raw is not None else repr(float(array[pos]))
            raise ScalingError(f"{source}: {cell_location(out, pos, col)} is {shown}; {col} must lie in [0, 1]")
        out[col] = array
    return out


def read_results(
    path_or_frame: str | os.PathLike | pd.DataFrame,
    *,
    mapping: Mapping[str, str] | None = None,
    where: str | None = None,
    require: Sequence[str] = (),
) -> pd.DataFrame:
    """Read a results table (path or DataFrame), map columns, select rows and validate ``require``.

    >>> df = read_results("svg_extracted_data.csv", mapping={"N": "Model Size", "C": "Training FLOP"},
    ...                   where="loss < 5", require=["N", "D", "loss"])   # D derived as C/(6N)

    The returned frame keeps the original row labels (so ``df.index`` points back into the file), holds the
    required columns as floats, and carries ``attrs`` ``source``, ``renamed`` and ``derived``.
    """
    if isinstance(path_or_frame, pd.DataFrame):
        df, source = path_or_frame, str(path_or_frame.attrs.get("source", "table"))
    else:
        df = read_table(path_or_frame)
        source = str(path_or_frame)
    df = canonicalize(df, mapping, source=source)
    df = select_rows(df, where, source=source)
    return validate_columns(df, require, source=source)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().strip("'\"")
    return text.splitlines()[0] if text else type(exc).__name__


def _looks_like_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


__all__ = ["canonicalize", "parse_mapping", "read_results", "read_table", "select_rows", "validate_columns"]
