"""The results table: canonical columns, reading foreign tables, validation, and safe appends.

One row per evaluation point. The fitter needs ``N``, ``D`` and ``loss`` (or whatever the law's inputs and
output are); everything else is optional and documented in ``docs/results.md``.

Reading: :func:`read_results` maps foreign column names (``mapping={"N": "Model Size"}``), derives ``D = C/(6N)``
when only compute is given (and ``C = 6ND`` when only N and D are), selects rows with a condition in a safe
grammar (``where="final == 1"``, :mod:`scaling.where`) and validates the columns a law needs. Every error is one
line naming the file, the column and the line of the first bad value, as the user would find it in an editor.

Writing: :func:`append_rows` appends under a file lock, writes whole rows with one ``write`` call followed by
fsync, and refuses (never rewrites) a file whose header differs.
"""

from __future__ import annotations

import csv
import difflib
import io
import os
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from scaling.errors import ScalingError
from scaling.where import select

# Canonical columns and what they mean (docs/results.md is the long form).
CANONICAL_COLUMNS: dict[str, str] = {
    "N": "non-embedding parameters (Kaplan et al. 2020 convention)",
    "D": "training tokens seen",
    "loss": "held-out loss, nats/token",
    "N_total": "all parameters, embeddings included (Hoffmann et al. 2022 convention)",
    "C": "training FLOPs (defaults to 6 N D when absent)",
    "U": "unique training tokens (data-constrained runs)",
    "epochs": "D / U",
    "D_F": "fine-tuning tokens (transfer runs)",
    "ece": "expected calibration error of next-token predictions",
    "run_id": "identifier of the training run (several rows per run: one per evaluation)",
    "step": "optimizer step of the evaluation",
    "final": "1 for the run's last evaluation, else 0",
    "seed": "random seed",
}

# Columns that catalogue laws read or predict but the trainer never writes. Kept apart from CANONICAL_COLUMNS,
# which is the head of the trainer's results.csv header (scaling/train/record.py): adding there would reorder that
# header and make existing results files refuse new rows. --map accepts both.
LAW_COLUMNS: dict[str, str] = {
    "error": "average top-1 error on downstream tasks, in [0, 1] (gadre-error)",
    "task_loss": "loss of the correct answers of one downstream task (nats or bits per byte; task-loss, downstream)",
    "accuracy": "accuracy on one downstream task, in [0, 1] (task-accuracy, downstream)",
    "N_v": "vocabulary parameters, V x d (vocabulary size times embedding width; vocab law)",
    "loss_u": "unigram-normalised loss: loss minus the unigram model's loss, nats/token, usually negative (vocab law)",
    "lr_opt": "optimal (lowest-loss) peak learning rate at the row's N, D or C (hyperparameter laws)",
    "batch_opt": "optimal batch size in tokens at the row's N, D or C (hyperparameter laws)",
}

# Columns that must be strictly positive wherever a law uses them.
POSITIVE_COLUMNS = {"N", "D", "loss", "N_total", "C", "U", "epochs", "D_F", "lr_opt", "batch_opt", "task_loss", "N_v"}
# Probabilities and error rates (calibration, downstream error): a value outside [0, 1] is a column or unit mix-up.
UNIT_INTERVAL_COLUMNS = {"ece", "brier", "error", "accuracy"}

# Names other people's tables use for the canonical columns, so a missing column can be answered with
# "use --map N=params_N" instead of only listing the columns. Compared after normalising (lower case,
# letters and digits only). The Epoch Chinchilla and datablations tables are the first two entries.
FOREIGN_NAMES: dict[str, tuple[str, ...]] = {
    "N": ("Model Size", "params_N", "params", "parameters", "n_params", "num_params", "model_size",
          "non_embedding_params", "nonemb_params", "n_nonemb", "N_nonemb"),
    "D": ("tokens_D", "tokens", "n_tokens", "num_tokens", "tokens_seen", "training_tokens", "train_tokens",
          "data_size", "dataset_size"),
    "loss": ("val_loss", "eval_loss", "test_loss", "validation_loss", "valid_loss", "heldout_loss", "nll"),
    "C": ("Training FLOP", "training_flops", "flops", "FLOPs", "compute"),
    "U": ("unique_tokens_U", "unique_tokens", "unique"),
    "epochs": ("epochs_D_over_U", "num_epochs", "n_epochs"),
    "N_total": ("total_params", "params_total", "n_params_total"),
}

# Derivations applied when the left column is absent and the right ones are present (docs/results.md).
DERIVED: dict[str, tuple[str, tuple[str, ...]]] = {
    "D": ("C/(6N)", ("C", "N")),
    "C": ("6ND", ("N", "D")),
}


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
            near = _suggest(canonical, [*CANONICAL_COLUMNS, *LAW_COLUMNS, *extra])
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
            near = _suggest(foreign, [str(c) for c in original.columns])
            hint = f" (did you mean {near!r}?)" if near else ""
            raise ScalingError(
                f"{source}: --map {canonical}={foreign!r}: no column {foreign!r}{hint}; "
                f"columns are {_column_list(original)}"
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
            raise ScalingError(_missing_column(df, col, source))
    out = df.copy()
    out.attrs = dict(df.attrs)
    for col in order:
        values = pd.to_numeric(out[col], errors="coerce")
        array = values.to_numpy(dtype=float, na_value=np.nan)
        bad = ~np.isfinite(array)
        if bad.any():
            pos = int(bad.nonzero()[0][0])
            raw = _raw_cell(out, pos, col)
            if raw is None:  # a DataFrame from a notebook: only the parsed value is known
                original = out[col].iloc[pos]
                raw = "" if original is None else str(original)
            if not raw.strip() or raw.strip().lower() in {"<na>", "none"}:
                what = "an empty cell"
            elif not _looks_like_number(raw):
                what = f"{raw!r}, not a number"
            else:
                what = f"{raw!r}, not a finite number"
            raise ScalingError(f"{source}: {_where(out, pos, col)} is {what}")
        if col in (POSITIVE_COLUMNS if positive is None else positive) and (array <= 0).any():
            pos = int((array <= 0).nonzero()[0][0])
            raw = _raw_cell(out, pos, col)
            shown = raw if raw is not None else repr(float(array[pos]))
            raise ScalingError(f"{source}: {_where(out, pos, col)} is {shown}; {col} must be positive")
        if col in UNIT_INTERVAL_COLUMNS and ((array < 0) | (array > 1)).any():
            pos = int(((array < 0) | (array > 1)).nonzero()[0][0])
            raw = _raw_cell(out, pos, col)
            shown = raw if raw is not None else repr(float(array[pos]))
            raise ScalingError(f"{source}: {_where(out, pos, col)} is {shown}; {col} must lie in [0, 1]")
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


# ---------------------------------------------------------------------------------------------------------
# Error helpers: name the cell the way the user sees it


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().strip("'\"")
    return text.splitlines()[0] if text else type(exc).__name__


def _column_list(df: pd.DataFrame, limit: int = 12) -> str:
    """The columns as the user wrote them (mapped ones under their new name, derived ones left out)."""
    hidden = {*df.attrs.get("derived", {}), *df.attrs.get("renamed", {})}  # the file's own names are listed instead
    cols = [str(c) for c in df.columns if c not in hidden]
    shown = ", ".join(cols[:limit])
    return shown + (f", ... ({len(cols)} in all)" if len(cols) > limit else "")


def _normalise(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _suggest(name: str, candidates: Sequence[str]) -> str | None:
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


def _missing_column(df: pd.DataFrame, col: str, source: str) -> str:
    columns = [str(c) for c in df.columns]
    candidate = _suggest(col, columns)
    if candidate is None:  # a well-known foreign name for this canonical column?
        known = {_normalise(n) for n in FOREIGN_NAMES.get(col, ())}
        candidate = next((c for c in columns if _normalise(c) in known), None)
    variants = _variants(col, columns)
    if candidate is None and variants:  # loss_c4_val, eval/loss, train_loss: the same quantity, one of several
        quoted = [f'"{v}"' if not re.fullmatch(r"[A-Za-z0-9_.]+", v) else v for v in variants[:3]]
        more = f" (or {', '.join(variants[1:3])})" if len(variants) > 1 else ""
        return (
            f"{source}: missing column {col!r} (did you mean {variants[0]!r}{more}? "
            f"use --map {col}={quoted[0]}); columns are {_column_list(df)}"
        )
    if candidate is not None:
        quoted = f'"{candidate}"' if not re.fullmatch(r"[A-Za-z0-9_.]+", candidate) else candidate
        hint = f" (did you mean {candidate!r}? use --map {col}={quoted})"
    elif col == "D" and "C" in df.columns:
        hint = " (D is derived as C/(6N) when N is present: map or add N)"
    else:
        hint = ""
    return f"{source}: missing column {col!r}{hint}; columns are {_column_list(df)}"


def _where(df: pd.DataFrame, position: int, col: str) -> str:
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


def _raw_cell(df: pd.DataFrame, position: int, col: str) -> str | None:
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


def _looks_like_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------------
# Appending rows safely (the trainer and the sweep runner write through here)


def append_rows(path: str | os.PathLike, rows: Sequence[Mapping[str, object]], header: Sequence[str]) -> None:
    """Append ``rows`` to a CSV at ``path`` atomically with respect to other writers.

    - A file lock (``PATH.lock``) serialises writers across processes and machines sharing a filesystem.
    - A new file gets ``header``; an existing file must have exactly ``header``, or an older header that is a
      prefix of it (columns added since go at the end: the rows then leave them out, the file is never
      rewritten); anything else is refused.
    - All rows go out in one ``write`` followed by ``fsync``; a short write (disk full) is truncated back so
      no half row is ever left behind.
    """
    path = Path(path)
    header = list(header)
    if not rows:
        return
    unknown = sorted({k for row in rows for k in row} - set(header))
    if unknown:
        raise ValueError(f"rows have columns not in the header: {unknown}")
    cells = [{k: _format_cell(row.get(k)) for k in header} for row in rows]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path) + ".lock", timeout=120)
        with lock:
            _append_locked(path, header, cells)
    except Timeout:
        raise ScalingError(f"{path}: could not lock {path}.lock within 120 s (another writer is stuck?)") from None
    except PermissionError:
        raise ScalingError(f"{path}: not writable") from None


def check_writable(path: str | os.PathLike, header: Sequence[str]) -> list[str]:
    """Fail early (before any training) if ``path`` cannot take rows with ``header``.

    Returns the columns an older file (its header a prefix of ``header``) will leave out of new rows; [] otherwise.
    """
    path = Path(path)
    if path.is_dir():
        raise ScalingError(f"{path}: is a folder, expected a CSV file")
    if path.exists() and not path.is_file():  # a FIFO would block the trainer, a device swallow its rows
        raise ScalingError(f"{path}: not a regular file, expected a CSV file")
    left_out: list[str] = []
    if path.exists():
        existing = read_header(path)
        if existing is not None and existing != list(header):
            if not _is_older_header(existing, header):
                raise ScalingError(_header_mismatch(path, existing, header))
            left_out = list(header)[len(existing) :]
        if not os.access(path, os.W_OK):
            raise ScalingError(f"{path}: not writable")
    else:
        parent = path.parent if str(path.parent) else Path(".")
        probe = parent
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir():
            raise ScalingError(f"{path}: cannot create the file ({probe} is not a folder)")
        if not os.access(probe, os.W_OK):
            raise ScalingError(f"{path}: cannot create the file ({probe} is not writable)")
    return left_out


def _is_older_header(existing: Sequence[str], header: Sequence[str]) -> bool:
    """A file written before columns were added at the end of ``header``.

    It must hold ``run_id`` when ``header`` has one: a table of only ``N,D,loss`` is a prefix of the trainer's
    header too, but rows appended to it would lose their run id, so no resume or sweep could ever find them.
    """
    return (
        0 < len(existing) < len(header)
        and list(header[: len(existing)]) == list(existing)
        and ("run_id" not in header or "run_id" in existing)
    )


def read_header(path: Path) -> list[str] | None:
    """The first line of a CSV as a list of names, ``None`` for an empty file."""
    try:
        with open(path, newline="") as fh:
            first = fh.readline(1 << 20)  # a header, not a whole binary file read as one line
    except UnicodeDecodeError:
        raise ScalingError(f"{path}: not a text CSV file (it is not UTF-8 text); refusing to append") from None
    except OSError as exc:
        raise ScalingError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not first.strip():
        return None
    return next(csv.reader([first]))


def _header_mismatch(path: Path, existing: Sequence[str], header: Sequence[str]) -> str:
    missing = [c for c in header if c not in existing]
    extra = [c for c in existing if c not in header]
    detail = []
    if missing:
        detail.append(f"lacks {', '.join(missing[:5])}")
    if extra:
        detail.append(f"has extra {', '.join(extra[:5])}")
    if not detail:
        detail.append("has the same columns in another order")
    return f"{path}: its header differs from this writer's ({'; '.join(detail)}); refusing to append. Write to another --results file."


def _append_locked(path: Path, header: list[str], cells: list[dict[str, object]]) -> None:
    exists = path.exists() and path.stat().st_size > 0
    columns = header
    if exists:
        existing = read_header(path)
        if existing != header:
            if not _is_older_header(existing or [], header):
                raise ScalingError(_header_mismatch(path, existing or [], header))
            columns = list(existing or [])  # an older file: its rows keep its columns
    text = io.StringIO()
    csv.DictWriter(text, fieldnames=columns, lineterminator="\n", extrasaction="ignore").writerows(cells)
    payload = text.getvalue().encode()
    if exists:
        lead = b""
        with open(path, "rb") as fh:  # make sure the file ends with a newline before appending
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                lead = b"\n"
        payload = lead + payload
    else:
        hbuf = io.StringIO()
        csv.writer(hbuf, lineterminator="\n").writerow(header)
        payload = hbuf.getvalue().encode() + payload
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            written = os.write(fd, payload)
            if written != len(payload):
                raise OSError(f"short write ({written} of {len(payload)} bytes)")
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, start)  # leave no half row behind
            raise
    finally:
        os.close(fd)


def _format_cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return ""
        return repr(float(value))
    if isinstance(value, np.integer):
        return int(value)
    return value


# ---------------------------------------------------------------------------------------------------------
# What a row belongs to and what it cost: one definition each for every module


def run_key(df: pd.DataFrame) -> pd.Series:
    """One key per training run (curve): ``run_id`` when present, else the model size with the other inputs that
    tell runs apart (N_total, U, D_F, seed); a table with none of them is one curve."""
    if "run_id" in df.columns:
        return df["run_id"].astype(str)
    cols = [c for c in ("N", "N_total", "U", "D_F", "seed") if c in df.columns]
    if not cols:
        return pd.Series("all", index=df.index)
    return df[cols].astype(str).agg("|".join, axis=1)


def training_compute(df: pd.DataFrame) -> np.ndarray:
    """Training FLOPs per row: the table's C column when every value is a positive number, else C = 6 N D (Kaplan
    et al. 2020's approximation, as the trainer writes it)."""
    if "C" in df.columns:
        C = pd.to_numeric(df["C"], errors="coerce").to_numpy(float)
        if np.all(np.isfinite(C) & (C > 0)):
            return C
    if not {"N", "D"} <= set(df.columns):
        raise ScalingError(f"{df.attrs.get('source', 'table')}: training compute needs a C column or both N and D")
    return 6.0 * pd.to_numeric(df["N"]).to_numpy(float) * pd.to_numeric(df["D"]).to_numpy(float)
