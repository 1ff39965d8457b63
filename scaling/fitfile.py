"""Fit files: a :class:`~scaling.fitting.result.Fit` as versioned JSON, and the published laws in ``fits/`` found by name.

The format is documented in ``docs/fit-files.md``. Loading parses JSON and validates it against a pydantic schema;
nothing in a fit file is ever executed: the law is stored by its registry NAME (the formula text is for humans)
and re-bound with :func:`scaling.laws.get_law`. A file from a newer format version is refused with a clear error.
Non-finite numbers (an interval without draws) are stored as ``null`` so the files are strict JSON.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

import scaling
from scaling.errors import ScalingError
from scaling.fitting.result import Fit
from scaling.laws.base import get_law

FORMAT_VERSION = 1

Number = float | None  # null stands for NaN / not available


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
    params: dict[str, float]
    fixed: dict[str, float] = {}
    tied: dict[str, str] = {}
    derived: dict[str, Number] = {}
    ci: float = 0.95
    intervals: dict[str, tuple[Number, Number]] = {}
    draws: _Draws | None = None
    settings: dict[str, Any] = {}
    data_summary: dict[str, Any] | None = None
    quality: dict[str, Any] = {}
    created: str | None = None


def _jsonable(value: Any) -> Any:
    """numpy scalars -> Python, NaN/inf -> None, tuples -> lists (recursively)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


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
        "kind": meta.get("kind", "fitted"),
        "law": fit.law_name,
        "formula": law.formula,
        "reference": meta.get("reference") or law.reference,
        "inputs": list(law.inputs),
        "output": law.output,
        "param_def": fit.param_def,
        "units": dict(meta.get("units") or {}),
        "notes": meta.get("notes") or "",
        "params": fit.params,
        "fixed": fit.fixed,
        "tied": fit.tied,
        "derived": fit.derived,
        "ci": fit.ci,
        "intervals": {k: list(v) for k, v in fit.intervals.items()},
        "draws": draws,
        "settings": fit.settings,
        "data_summary": fit.data_summary,
        "quality": fit.quality,
        "created": meta.get("created") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return _jsonable(d)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "(top level)"
    return f"field {where}: {err.get('msg')}"


def fit_from_dict(d: Any, *, source: str = "fit") -> Fit:
    """Validate a fit-file dict and rebuild the :class:`Fit` (the law re-bound by name)."""
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
    return Fit(
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


def save_fit(fit: Fit, path: str | os.PathLike) -> Path:
    """Write ``fit`` to ``path`` as JSON; a failure leaves nothing behind (and never half a file)."""
    text = json.dumps(fit_to_dict(fit), indent=1, allow_nan=False) + "\n"
    return write_text_atomic(Path(path), text, example="myfit.json")


def write_text_atomic(path: Path, text: str, *, example: str = "out.json") -> Path:
    """Write ``text`` to a temporary file next to ``path`` and rename it over ``path`` in one step.

    The result files of this package (fits, backtests) go through here, so a crash or a full disk never leaves
    half a file; errors are one line naming the path.
    """
    if path.is_dir():
        raise ScalingError(f"{path}: is a folder; give a file name such as {path / example}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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


def load_fit(path_or_name: str | os.PathLike) -> Fit:
    """Load a fit file by path or by name (``load_fit("chinchilla")``). Never executes code from the file."""
    path = resolve(path_or_name)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScalingError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScalingError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    return fit_from_dict(d, source=str(path))


__all__ = ["FORMAT_VERSION", "fit_from_dict", "fit_to_dict", "load_fit", "published_names", "resolve", "save_fit"]
