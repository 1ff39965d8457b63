"""Appending rows to a results table safely: the trainer and the sweep runner write through here.

:func:`append_rows` appends under a file lock, writes whole rows with one ``write`` call followed by fsync, and
refuses (never rewrites) a file whose header differs; :func:`check_writable` runs the same checks before any
training starts.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from scaling.errors import ScalingError


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


__all__ = ["append_rows", "check_writable", "read_header"]
