"""The results table: canonical columns, reading foreign tables, validation, and safe appends.

One row per evaluation point. The fitter needs ``N``, ``D`` and ``loss`` (or whatever the law's inputs and
output are); everything else is optional and documented in ``docs/results.md``.

Reading: :func:`read_results` maps foreign column names (``mapping={"N": "Model Size"}``), derives ``D = C/(6N)``
when only compute is given, selects rows with a pandas query (``where="final == 1"``) and validates the columns
a law needs, naming the file, column and row of the first bad value.

Writing: :func:`append_rows` appends under a file lock, writes whole rows with one ``write`` call followed by
fsync, and refuses (never rewrites) a file whose header differs.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from scaling.errors import ScalingError

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

# Columns that must be strictly positive wherever a law uses them.
POSITIVE_COLUMNS = {"N", "D", "loss", "N_total", "C", "U", "epochs", "D_F"}


def parse_mapping(items: Iterable[str]) -> dict[str, str]:
    """``["N=Model Size", "C=Training FLOP"]`` -> ``{"N": "Model Size", "C": "Training FLOP"}``."""
    mapping: dict[str, str] = {}
    for item in items:
        canonical, sep, foreign = item.partition("=")
        if not sep or not canonical.strip() or not foreign.strip():
            raise ScalingError(f"--map {item!r}: expected CANONICAL=FOREIGN, e.g. N=\"Model Size\"")
        mapping[canonical.strip()] = foreign.strip().strip("\"'")
    return mapping


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV file with a clear one-line error when it is missing, empty or not CSV."""
    path = Path(path)
    if not path.exists():
        raise ScalingError(f"{path}: no such file")
    if path.is_dir():
        raise ScalingError(f"{path}: is a folder, expected a CSV file")
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ScalingError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ScalingError(f"{path}: not a readable CSV file ({str(exc).splitlines()[0]})") from None
    if df.shape[1] < 2:
        raise ScalingError(f"{path}: not a CSV table (found {df.shape[1]} column)")
    df.attrs["source"] = str(path)
    return df


def canonicalize(df: pd.DataFrame, mapping: Mapping[str, str] | None = None, *, source: str = "table") -> pd.DataFrame:
    """Rename foreign columns to canonical ones and derive what can be derived (D from C, C from N and D)."""
    df = df.copy()
    for canonical, foreign in (mapping or {}).items():
        if foreign not in df.columns:
            raise ScalingError(
                f"{source}: --map {canonical}={foreign!r}: no column {foreign!r}; columns are {', '.join(map(str, df.columns))}"
            )
        if canonical in df.columns and canonical != foreign:
            df = df.drop(columns=[canonical])
        df = df.rename(columns={foreign: canonical})
    if "D" not in df.columns and {"C", "N"} <= set(df.columns):
        df["D"] = pd.to_numeric(df["C"], errors="coerce") / (6.0 * pd.to_numeric(df["N"], errors="coerce"))
    return df


def select_rows(df: pd.DataFrame, where: str | None, *, source: str = "table") -> pd.DataFrame:
    """Keep the rows matching a pandas query expression (``final == 1 and N > 1e4``)."""
    if not where:
        return df
    try:
        out = df.query(where, engine="python")
    except Exception as exc:  # pandas raises many types for a bad expression; all are user errors here
        raise ScalingError(f"{source}: --where {where!r}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if len(out) == 0:
        raise ScalingError(f"{source}: --where {where!r} selects no rows (of {len(df)})")
    return out


def validate_columns(df: pd.DataFrame, columns: Sequence[str], *, source: str = "table") -> pd.DataFrame:
    """Check that ``columns`` exist and hold finite numbers (positive where that is required).

    Errors name the file, the column and the first bad row as it appears in the file (header = line 1,
    so data row i is line i + 2 of the CSV).
    """
    for col in columns:
        if col not in df.columns:
            hint = ""
            lower = {str(c).lower(): c for c in df.columns}
            if col.lower() in lower:
                hint = f" (did you mean {lower[col.lower()]!r}? use --map {col}={lower[col.lower()]})"
            raise ScalingError(
                f"{source}: missing column {col!r}{hint}; columns are {', '.join(map(str, df.columns))}"
            )
    out = df.copy()
    for col in columns:
        values = pd.to_numeric(out[col], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            idx = bad.to_numpy().nonzero()[0][0]
            raw = out[col].iloc[idx]
            what = "not a finite number" if pd.notna(values.iloc[idx]) or isinstance(raw, (int, float)) else "not a number"
            raise ScalingError(f"{source}: column {col!r}, row {_row_label(out, idx)}: {raw!r} is {what}")
        if col in POSITIVE_COLUMNS and (values <= 0).any():
            idx = (values <= 0).to_numpy().nonzero()[0][0]
            raise ScalingError(
                f"{source}: column {col!r}, row {_row_label(out, idx)}: {values.iloc[idx]!r} must be positive"
            )
        out[col] = values.astype(float)
    return out


def _row_label(df: pd.DataFrame, position: int) -> str:
    """Row as the user sees it: the CSV line number when the frame came straight from a file."""
    index = df.index[position]
    if isinstance(index, (int, np.integer)):
        return f"{int(index) + 2} (line in file)" if df.attrs.get("source") else str(int(index))
    return str(index)


def read_results(
    path_or_frame: str | os.PathLike | pd.DataFrame,
    *,
    mapping: Mapping[str, str] | None = None,
    where: str | None = None,
    require: Sequence[str] = (),
) -> pd.DataFrame:
    """Read a results table (path or DataFrame), map columns, select rows and validate ``require``."""
    if isinstance(path_or_frame, pd.DataFrame):
        df, source = path_or_frame, str(path_or_frame.attrs.get("source", "table"))
    else:
        df = read_table(path_or_frame)
        source = str(path_or_frame)
    df = canonicalize(df, mapping, source=source)
    df.attrs["source"] = source
    df = select_rows(df, where, source=source)
    df.attrs["source"] = source
    out = validate_columns(df, require, source=source)
    out.attrs["source"] = source
    return out


# ---------------------------------------------------------------------------------------------------------
# Appending rows safely (the trainer and the sweep runner write through here)


def append_rows(path: str | os.PathLike, rows: Sequence[Mapping[str, object]], header: Sequence[str]) -> None:
    """Append ``rows`` to a CSV at ``path`` atomically with respect to other writers.

    - A file lock (``PATH.lock``) serialises writers across processes and machines sharing a filesystem.
    - A new file gets ``header``; an existing file must have exactly ``header`` or the append is refused.
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
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n", extrasaction="raise")
    for row in rows:
        writer.writerow({k: _format_cell(row.get(k)) for k in header})
    payload = buf.getvalue().encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path) + ".lock", timeout=120)
        with lock:
            _append_locked(path, header, payload)
    except Timeout:
        raise ScalingError(f"{path}: could not lock {path}.lock within 120 s (another writer is stuck?)") from None
    except PermissionError:
        raise ScalingError(f"{path}: not writable") from None


def check_writable(path: str | os.PathLike, header: Sequence[str]) -> None:
    """Fail early (before any training) if ``path`` cannot take rows with ``header``."""
    path = Path(path)
    if path.exists():
        existing = read_header(path)
        if existing is not None and existing != list(header):
            raise ScalingError(_header_mismatch(path, existing, header))
        if not os.access(path, os.W_OK):
            raise ScalingError(f"{path}: not writable")
    else:
        parent = path.parent if str(path.parent) else Path(".")
        probe = parent
        while not probe.exists():
            probe = probe.parent
        if not os.access(probe, os.W_OK):
            raise ScalingError(f"{path}: cannot create the file ({probe} is not writable)")


def read_header(path: Path) -> list[str] | None:
    with open(path, newline="") as fh:
        first = fh.readline()
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


def _append_locked(path: Path, header: list[str], payload: bytes) -> None:
    exists = path.exists() and path.stat().st_size > 0
    if exists:
        existing = read_header(path)
        if existing != header:
            raise ScalingError(_header_mismatch(path, existing or [], header))
        buf = b""
        with open(path, "rb") as fh:  # make sure the file ends with a newline before appending
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                buf = b"\n"
        payload = buf + payload
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
