"""Fit files: the versioned JSON format of a fit, atomic writes, and the published laws in ``fits/`` found by name.

The format is documented in ``docs/fit-files.md``. This module knows the format and the files, not the
:class:`~scaling.fitting.result.Fit` class: :func:`fit_to_dict` reads a fit's attributes, :func:`fit_arguments`
turns a validated file back into the arguments of ``Fit(...)``, and ``Fit.to_dict``, ``Fit.from_dict``,
``Fit.save`` and :func:`scaling.fitting.result.load_fit` use them (one import direction: result -> fitfile).

Loading parses JSON and validates it against a pydantic schema; nothing in a fit file is ever executed: the law is
stored by its registry NAME (the formula text is for humans) and re-bound with :func:`scaling.laws.get_law`. A file
from a newer format version is refused with a clear error. Non-finite numbers (an interval without draws) are
stored as ``null`` so the files are strict JSON.
"""

from __future__ import annotations

import glob
import json
import math
import os
import stat
import tempfile
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Strict, ValidationError

import scaling
from scaling.fitting.diagnostics import FitWarning
from scaling.errors import ScalingError
from scaling.laws.base import get_law, law_names

if TYPE_CHECKING:
    from scaling.fitting.result import Fit

FORMAT_VERSION = 1
# A fit with 10,000 bootstrap draws of 10 parameters is about 2 MiB; anything far larger is not a fit file, and
# reading it whole (the service reads fits on request) would only cost memory.
MAX_FIT_BYTES = 64 * 2**20

# Strict: a number in a fit file is a JSON number; "1.5" or true is a broken file, not a value to coerce.
Real = Annotated[float, Strict()]
Number = Real | None  # null stands for NaN / not available


class _Draws(BaseModel):
    model_config = ConfigDict(extra="forbid")
    columns: list[str]
    rows: list[list[Number]]


class FitFileV1(BaseModel):
    """Schema of format version 1 (docs/fit-files.md)."""

    model_config = ConfigDict(extra="forbid")
    format_version: Literal[1]
    scaling_version: str
    kind: Literal["fitted", "published"] = "fitted"
    law: str
    formula: str
    reference: str
    inputs: list[str]
    output: str
    param_def: Literal["nonemb", "total"]
    units: dict[str, str] = {}
    notes: str = ""
    params: dict[str, Real]
    fixed: dict[str, Real] = {}
    tied: dict[str, str] = {}
    derived: dict[str, Number] = {}
    ci: Real = 0.95
    intervals: dict[str, tuple[Number, Number]] = {}
    draws: _Draws | None = None
    settings: dict[str, Any] = {}
    data_summary: dict[str, Any] | None = None
    quality: dict[str, Any] = {}
    created: str | None = None
    law_spec: dict[str, Any] | None = None  # formula laws: the spec they are rebuilt from (scaling.laws.formula)


def to_jsonable(value: Any) -> Any:
    """The one JSON encoding of library values, used by fit files, the CLI's JSON and the HTTP service: numpy and
    pandas values become plain JSON types, NaN and inf become None (JSON has neither), tuples and sets lists, a
    DataFrame its records, a FitWarning its dict; anything else its text."""
    if isinstance(value, FitWarning):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, pd.DataFrame):
        return [to_jsonable(r) for r in value.to_dict(orient="records")]
    if isinstance(value, pd.Series):
        return to_jsonable(value.to_dict())
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if value is None or isinstance(value, str):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


def _nan(value: Number) -> float:
    return math.nan if value is None else float(value)


def fit_to_dict(fit: Fit) -> dict:
    """The fit as a JSON-ready dict (format version 1)."""
    law = fit.law
    draws = None
    if len(fit.draws):
        cols = list(law.param_names)
        draws = {"columns": cols, "rows": fit.draws[cols].to_numpy(dtype=float).tolist()}
    meta = fit.meta
    d = {
        "format_version": FORMAT_VERSION,
        "scaling_version": scaling.__version__,
        "kind": fit.kind,
        "law": fit.law_name,
        "formula": law.formula,
        "reference": fit.reference,
        "inputs": list(law.inputs),
        "output": law.output,
        "param_def": fit.param_def,
        "units": dict(meta.get("units") or {}),
        "notes": fit.notes,
        "params": fit.params,
        "fixed": fit.fixed,
        "tied": fit.tied,
        "derived": fit.derived,
        "ci": fit.ci,
        "intervals": {k: list(v) for k, v in fit.intervals.items()},
        "draws": draws,
        "settings": fit.settings,
        "data_summary": fit.data_summary,
        "quality": fit.quality.to_dict(),
        "created": meta.get("created") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    spec = _law_spec(fit)
    if spec is not None:
        d["law_spec"] = spec
    return to_jsonable(d)


def _law_spec(fit: Fit) -> dict | None:
    """The formula spec to store for a law outside the catalogue (None for catalogue laws, stored by name).

    A :class:`~scaling.laws.formula.FormulaLaw` stores its spec. A law made in a script with ``scaling.Law`` is
    rebuilt from its formula text when that text reproduces its function (checked numerically); otherwise
    saving is refused, since the file could not be loaded again.
    """
    from scaling.laws.formula import FormulaLaw, law_from_plain

    law = fit.law
    if isinstance(law, FormulaLaw) and law.spec is not None:
        return law.spec.model_dump()
    if fit.law_name.partition(":")[0] in law_names():
        return None
    ranges = (fit.data_summary or {}).get("ranges")
    rebuilt = law_from_plain(law, fit.params, ranges)
    if rebuilt is None:
        raise ScalingError(
            f"law {law.name!r} is not in the catalogue and its formula {law.formula!r} does not reproduce its "
            "function, so a saved fit could not be loaded again; write the law as a formula "
            "(scaling.laws.formula.formula_law or --formula) or register it (scaling.laws.register) before saving"
        )
    return rebuilt.spec.model_dump()


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "(top level)"
    return f"field {where}: {err.get('msg')}"


def fit_arguments(d: Any, *, source: str = "fit") -> dict[str, Any]:
    """Validate a fit-file dict; return the keyword arguments of ``Fit(...)`` that rebuild it (the law re-bound by
    name). Every problem is a one-line :class:`ScalingError` naming ``source`` and the field."""
    if not isinstance(d, Mapping):
        raise ScalingError(f"{source}: not a fit file (expected a JSON object, found {type(d).__name__})")
    version = d.get("format_version")
    if version is None:
        raise ScalingError(f"{source}: not a fit file (no format_version field)")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ScalingError(f"{source}: format_version {version!r} is not a whole number")
    if version > FORMAT_VERSION:
        raise ScalingError(
            f"{source}: fit file format version {version} is newer than this scaling {scaling.__version__} reads "
            f"(up to {FORMAT_VERSION}); upgrade scaling"
        )
    try:
        f = FitFileV1.model_validate(d)
    except ValidationError as exc:
        raise ScalingError(f"{source}: invalid fit file: {_first_error(exc)}") from None
    try:
        if f.law_spec is not None:  # a formula law: rebuilt from its re-validated formula text, nothing else runs
            from scaling.laws.formula import build_law, spec_from_dict

            law = build_law(spec_from_dict(f.law_spec, source=f"{source}: law_spec"))
        else:
            law = get_law(f.law)
    except ScalingError as exc:
        raise ScalingError(f"{source}: {exc}") from None
    names = set(law.param_names)
    if set(f.params) != names:
        missing, extra = sorted(names - set(f.params)), sorted(set(f.params) - names)
        detail = "; ".join(x for x in (f"missing {', '.join(missing)}" if missing else "",
                                        f"unknown {', '.join(extra)}" if extra else "") if x)
        raise ScalingError(f"{source}: field params does not match law {f.law} ({detail})")
    if tuple(f.inputs) != law.inputs:
        raise ScalingError(f"{source}: field inputs {f.inputs} does not match law {f.law} ({list(law.inputs)})")
    _check_values(f, law, source)
    draws = None
    if f.draws is not None:
        if sorted(f.draws.columns) != sorted(names):
            raise ScalingError(f"{source}: field draws.columns {f.draws.columns} does not match law {f.law}")
        if any(len(r) != len(f.draws.columns) for r in f.draws.rows):
            raise ScalingError(f"{source}: field draws.rows: every row needs {len(f.draws.columns)} values")
        arr = np.array([[_nan(v) for v in r] for r in f.draws.rows], dtype=float).reshape(-1, len(f.draws.columns))
        draws = pd.DataFrame(arr, columns=f.draws.columns)[list(law.param_names)]
    settings = dict(f.settings)
    settings["law"] = f.law
    settings["ci"] = f.ci
    settings["param_def"] = f.param_def
    return dict(
        law=law,
        params=f.params,
        fixed=f.fixed,
        tied=f.tied,
        draws=draws,
        intervals={k: (_nan(a), _nan(b)) for k, (a, b) in f.intervals.items()},
        derived={k: _nan(v) for k, v in f.derived.items()},
        settings=settings,
        data_summary=f.data_summary,
        quality=f.quality,
        meta={"kind": f.kind, "reference": f.reference, "units": f.units, "notes": f.notes, "created": f.created,
              "scaling_version": f.scaling_version},
    )


def _check_values(f: FitFileV1, law, source: str) -> None:
    """Refuse values no fit can have: non-finite numbers, parameters outside the law's bounds, a bad level.

    A fit file is edited by hand or truncated now and then; without these checks ``forecast`` would print inf, an
    empty interval or a loss of -6e304 with exit status 0. Each error names the file and the field.
    """
    if not (math.isfinite(f.ci) and 0 < f.ci < 1):
        raise ScalingError(f"{source}: field ci is {f.ci!r}; an interval level must lie strictly between 0 and 1")
    names = law.param_names
    for field_name, values in (("params", f.params), ("fixed", f.fixed)):
        for name, value in values.items():
            if name not in names:
                raise ScalingError(f"{source}: field {field_name}.{name}: law {f.law} has no such parameter")
            _check_param(law.param(name), value, f"{source}: field {field_name}.{name}")
    for name, other in f.tied.items():
        if name not in names or other not in names:
            bad = name if name not in names else other
            raise ScalingError(f"{source}: field tied.{name}: law {f.law} has no parameter {bad!r}")
    for name, value in f.derived.items():
        if value is not None and not math.isfinite(value):
            raise ScalingError(f"{source}: field derived.{name} is {value!r}, not a finite number (use null)")
    for name, (lower, upper) in f.intervals.items():
        for end, value in (("lower", lower), ("upper", upper)):
            if value is not None and not math.isfinite(value):
                raise ScalingError(f"{source}: field intervals.{name} {end} end is {value!r}, not a finite number")
        if lower is not None and upper is not None and lower > upper:
            raise ScalingError(f"{source}: field intervals.{name}: lower end {lower:g} is above upper end {upper:g}")
    if f.draws is not None:
        for column, params in ((c, law.param(c)) for c in f.draws.columns if c in names):
            i = f.draws.columns.index(column)
            for r, row in enumerate(f.draws.rows):
                if i < len(row) and row[i] is not None:
                    _check_param(params, row[i], f"{source}: field draws.rows[{r}] {column}")


def _check_param(param, value: float, where: str) -> None:
    if not math.isfinite(value):
        raise ScalingError(f"{where} is {value!r}, not a finite number")
    if not param.lower <= value <= param.upper:
        raise ScalingError(f"{where} is {value:g}, outside the law's range [{param.lower:g}, {param.upper:g}]")


def save_fit(fit: Fit, path: str | os.PathLike) -> Path:
    """Write ``fit`` to ``path`` as JSON; a failure leaves nothing behind (and never half a file)."""
    text = json.dumps(fit_to_dict(fit), indent=1, allow_nan=False) + "\n"
    return write_text_atomic(Path(path), text, example="myfit.json")


def output_problem(path: Path, *, example: str = "out.json") -> str | None:
    """Why ``path`` cannot take an output file, or ``None``: it must be a regular file or not exist yet.

    An atomic write renames a new file over the path, so a character device (``-o /dev/null`` run as root), a
    FIFO or a socket would be replaced by a regular file; those are refused instead. Symlinks are followed.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:  # a symlink loop, a path through a file
        return f"cannot use it ({exc.strerror or exc})"
    if stat.S_ISDIR(mode):
        return f"is a folder; give a file name such as {path / example}"
    if not stat.S_ISREG(mode):
        kinds = {stat.S_ISCHR: "character device", stat.S_ISBLK: "block device", stat.S_ISFIFO: "FIFO",
                 stat.S_ISSOCK: "socket"}
        kind = next((name for test, name in kinds.items() if test(mode)), "special file")
        return f"is a {kind}, not a regular file; refusing to replace it (give a file name)"
    return None


# A temporary file ``.NAME.PID.XXXXXXXX.tmp`` whose writer is gone (killed mid-write) is removed by the next write
# to NAME. One whose process may still be running is kept, unless it is older than this (a writer on another
# machine sharing the folder, or a PID reused since).
ORPHAN_AGE_S = 3600.0


def write_text_atomic(path: Path, text: str, *, example: str = "out.json") -> Path:
    """Write ``text`` to a temporary file next to ``path`` and rename it over ``path`` in one step.

    The result files of this package (fits, backtests) go through here, so a crash or a full disk never leaves
    half a file; errors are one line naming the path. Only regular files or new paths are written
    (:func:`output_problem`), and temporary files that killed writers left beside ``path`` are cleaned up.
    """
    problem = output_problem(path, example=example)
    if problem:
        raise ScalingError(f"{path}: {problem}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_orphans(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    except OSError as exc:
        raise ScalingError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; result files are meant to be shared like any other
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ScalingError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path


def _remove_orphans(path: Path) -> None:
    """Remove ``.NAME.*.tmp`` files beside ``path`` left by writers that died before their rename."""
    now = time.time()
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        middle = tmp.name[len(path.name) + 2 : -len(".tmp")]
        pid = middle.split(".", 1)[0]
        try:
            old = now - tmp.lstat().st_mtime > ORPHAN_AGE_S
            if old or (pid.isdigit() and "." in middle and not _process_alive(int(pid))):
                tmp.unlink()
        except OSError:  # gone already (another writer cleaned it), or not ours to remove: leave it
            continue


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process; a number too large to be a PID
        return False
    except PermissionError:  # another user's process
        return True
    return True


def published_dir() -> Path:
    """The published fits: ``scaling/published``, a link to the repository's ``fits/`` that a wheel copies in.

    From a checkout (editable install) the link resolves to ``fits/``; an installed wheel holds the files
    themselves. Where the link could not be made (a Windows checkout without symlinks) it is a one-line text
    file, and the repository's ``fits/`` is used directly.
    """
    package = Path(scaling.__file__).resolve().parent
    linked = package / "published"
    return linked if linked.is_dir() else package.parent / "fits"


def published_names() -> list[str]:
    folder = published_dir()
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def resolve(path_or_name: str | os.PathLike) -> Path:
    """An existing path, else ``./fits/NAME.json``, else the repository's ``fits/NAME.json``."""
    p = Path(path_or_name)
    if p.is_file():
        return p
    if p.is_dir():
        raise ScalingError(f"{p}: is a folder, expected a fit file (.json) or a fit name")
    name = str(path_or_name)
    if os.sep not in name and "/" not in name:
        stem = name.removesuffix(".json")
        for candidate in (Path("fits") / f"{stem}.json", published_dir() / f"{stem}.json"):
            if candidate.is_file():
                return candidate
    known = ", ".join(published_names()) or "none found"
    raise ScalingError(f"{name}: no such fit file, and no fit of that name in ./fits or the published fits ({known})")


def read_fit_json(path: Path) -> Any:
    """The parsed JSON of a fit file (not yet validated), with one-line errors for a file too large, not text or not
    JSON."""
    try:
        size = path.stat().st_size
        if size > MAX_FIT_BYTES:
            raise ScalingError(f"{path}: {size:,} bytes, too large for a fit file (at most {MAX_FIT_BYTES:,})")
        text = path.read_text()
    except UnicodeDecodeError:
        raise ScalingError(f"{path}: not a fit file (not UTF-8 text)") from None
    except OSError as exc:
        raise ScalingError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return parse_json(text, source=str(path))


def parse_json(text: str, *, source: str) -> Any:
    """``json.loads`` with one-line errors for what it raises on hostile input, not only on malformed JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScalingError(f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise ScalingError(f"{source}: not usable JSON (nested too deeply)") from None
    except ValueError as exc:  # an integer of more than 4300 digits (Python's int-parsing limit)
        raise ScalingError(f"{source}: not usable JSON ({_first_line_of(exc)})") from None


def _first_line_of(exc: BaseException) -> str:
    text = str(exc).split(";")[0].strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = ["FORMAT_VERSION", "fit_arguments", "fit_to_dict", "published_names", "read_fit_json", "resolve", "save_fit",
           "to_jsonable", "write_text_atomic"]
