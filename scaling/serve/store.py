"""The service's fits folder: which files may be read, reading them safely, and refusing fits that cannot be used.

The folder is untrusted input: anyone who can drop a file there can make it a symlink loop, a link to
``/etc/passwd``, a FIFO, a 10 GB file, JSON nested 100,000 deep, a 5000-digit integer, a NaN parameter or a
negative scale constant. Each of those must cost only that one entry (listed as unreadable, with why), never the
service. The rules:

- A name is one path component (letters, digits, ``._-``, not starting with a dot).
- Every path is resolved (symlinks followed) and must sit directly in the folder, or directly in
  ``FOLDER/backtests/`` for backtest summaries: a link that leaves the folder, a ``backtests`` folder that is itself
  a link elsewhere, a loop, are refused before anything is read.
- Only regular files up to :data:`MAX_FILE_BYTES` are read, opened without following a last-moment symlink.
- JSON deeper than :data:`MAX_JSON_DEPTH` is refused (the fit-file format needs 4 levels).
- A fit is used only if :meth:`scaling.fitting.result.Fit.from_dict` accepts it, values included (finite, within the
  law's bounds, an interval level in (0, 1)): a negative ``A`` in ``E + A/N^alpha + ...`` would forecast -6e304.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import threading
from pathlib import Path
from typing import Any


from scaling.errors import ScalingError
from scaling.fitting.result import Fit

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
_NAME_RE = re.compile(NAME_PATTERN)
MAX_FILE_BYTES = 32 * 2**20  # a fit with 10,000 bootstrap draws is ~1 MB; nothing legitimate comes close
MAX_JSON_DEPTH = 32
BACKTESTS = "backtests"


def read_json(path: Path, *, max_bytes: int = MAX_FILE_BYTES) -> Any:
    """Parse the JSON file at ``path`` (already resolved), or raise :class:`ScalingError` saying why not.

    Opened with O_NOFOLLOW (a symlink swapped in after resolving is refused) and O_NONBLOCK (a FIFO never blocks
    the open), then checked to be a regular file of at most ``max_bytes`` before a byte is read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ScalingError(f"cannot read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ScalingError("not a regular file")
        if st.st_size > max_bytes:
            raise ScalingError(f"{st.st_size} bytes, over the {max_bytes}-byte limit for a fit or backtest file")
        raw = fh.read(max_bytes + 1)
    try:
        data = json.loads(raw.decode("utf-8"))  # fit files are UTF-8 (json.loads would guess UTF-16/32 from bytes)
    except UnicodeDecodeError:
        raise ScalingError("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ScalingError(f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise ScalingError(f"JSON nested too deeply (over {MAX_JSON_DEPTH} levels)") from None
    except ValueError as exc:  # integers over Python's 4300-digit conversion limit
        raise ScalingError(f"unreadable JSON number ({str(exc).split(';')[0]})") from None
    if _depth(data) > MAX_JSON_DEPTH:
        raise ScalingError(f"JSON nested too deeply (over {MAX_JSON_DEPTH} levels)")
    return data


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion (it is what deep input would exhaust)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if d > MAX_JSON_DEPTH:
            break
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
    return deepest


class FitStore:
    """Fit files in one folder, loaded on demand and cached until the file changes (mtime, size)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            raise ScalingError(f"--fits {folder}: no such folder")
        self._cache: dict[str, tuple[tuple[int, int, int], Any]] = {}
        self._lock = threading.Lock()

    def _dir(self, sub: str | None) -> Path:
        return self.folder / sub if sub else self.folder

    def resolve(self, name: str, sub: str | None = None) -> Path:
        """The file for ``name`` inside the folder, or :class:`ScalingError` (never a path outside it)."""
        if not _NAME_RE.match(name):
            raise ScalingError("not a fit name (letters, digits and ._- only, not starting with a dot)")
        stem = name.removesuffix(".json")
        if sub and (self.folder / sub).is_symlink():
            raise KeyError(name)  # FOLDER/backtests linked elsewhere is not part of the folder: nothing in it exists
        # self.folder is resolved, so the expected parent is compared as text: a `backtests` folder that is a
        # symlink to elsewhere resolves to a different parent and is refused like any other escape.
        expected = self._dir(sub)
        try:
            path = (expected / f"{stem}.json").resolve(strict=True)
        except RuntimeError:  # Python < 3.13 raises it for a loop
            raise ScalingError("a symbolic link loop") from None
        except FileNotFoundError:
            raise KeyError(name) from None
        except OSError as exc:
            loop = exc.errno == errno.ELOOP
            raise ScalingError("a symbolic link loop" if loop else f"cannot resolve ({exc.strerror})") from None
        if path.parent != expected:
            raise ScalingError("a link to a file outside the fits folder (never read)")
        if not path.is_file():
            raise ScalingError("not a regular file")
        return path

    def entries(self, sub: str | None = None) -> dict[str, Path | ScalingError]:
        """Every ``*.json`` entry with a valid name: its resolved path, or why it cannot be read."""
        folder = self._dir(sub)
        if sub and (folder.is_symlink() or not folder.is_dir()):
            return {}  # a backtests folder that is a link is not part of the fits folder
        try:
            names = sorted(e.name[:-5] for e in os.scandir(folder) if e.name.endswith(".json"))
        except OSError:
            return {}
        out: dict[str, Path | ScalingError] = {}
        for name in names:
            if name.startswith("."):
                continue  # hidden files, temporary files: not entries (and no request can name them)
            if not _NAME_RE.match(name):  # "my fit.json", "café.json": listed as unreadable rather than vanishing
                out[name] = ScalingError(
                    "this file name cannot be served: a name is letters, digits and ._- (at most 128); rename it"
                )
                continue
            try:
                out[name] = self.resolve(name, sub)
            except KeyError:
                continue  # removed since the listing
            except ScalingError as exc:
                out[name] = exc
        return out

    def names(self, sub: str | None = None) -> list[str]:
        """Names of the readable files (inside the folder, regular); not yet parsed."""
        return [n for n, p in self.entries(sub).items() if isinstance(p, Path)]

    def load(self, name: str) -> Fit:
        """The usable fit called ``name``; KeyError if there is none, ScalingError saying why it cannot be used."""
        path = self.resolve(name)
        try:
            st = path.stat()
        except OSError:
            raise KeyError(name) from None  # removed since it was resolved
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            hit = self._cache.get(name)
        if hit and hit[0] == key:
            if isinstance(hit[1], ScalingError):
                raise hit[1]
            return hit[1]
        try:
            # Fit.from_dict validates values too (finite, within the law's bounds, ci in (0, 1)): no NaN
            # parameter or negative A ever reaches a forecast
            fit = Fit.from_dict(read_json(path), source="fit file")
        except ScalingError as exc:
            result: Any = ScalingError(str(exc).removeprefix("fit file: "))
        except Exception as exc:  # noqa: BLE001 -- a file in the folder is untrusted input: whatever it makes the
            # loader raise is that file's problem, reported like any other unreadable file, never a 500
            result = ScalingError(f"cannot be loaded ({type(exc).__name__}: {exc})")
        else:
            result = fit
        with self._lock:
            self._cache[name] = (key, result)  # refusals are cached too: a bad file is parsed once, not per request
        if isinstance(result, ScalingError):
            raise result
        return result

    def read_backtest(self, name: str) -> dict:
        """The backtest summary ``FOLDER/backtests/NAME.json`` (a JSON object); KeyError / ScalingError."""
        path = self.resolve(name, sub=BACKTESTS)
        data = read_json(path)
        if not isinstance(data, dict):
            raise ScalingError("not a backtest summary (expected a JSON object)")
        return data


__all__ = ["MAX_FILE_BYTES", "MAX_JSON_DEPTH", "NAME_PATTERN", "FitStore", "read_json"]
