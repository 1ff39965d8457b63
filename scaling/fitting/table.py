"""A law meets a results table: which law and input column, whether the rows can identify it, what the fit records.

The first step of every fit (:class:`scaling.fitting.estimate.LawFitter`), before any objective exists:

- :func:`default_law` picks a law from the columns when none is given (``scaling fit results.csv``);
- :func:`bind_law` and :func:`single_input_column` point a single-input law at the column the table has
  (``saturating`` over D is ``saturating:D``, the name the fit file records);
- :func:`prepare_table` validates the columns the law reads and refuses tables that cannot identify it
  (:func:`min_distinct`: e.g. chinchilla needs two distinct N and two distinct D);
- :func:`data_summary` is what the fit keeps about its data (ranges, source file hash, input moments), which the
  extrapolation checks and fit-file provenance read later.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scaling.errors import ScalingError
from scaling.fitting.extrapolation import input_moments
from scaling.laws.base import Law, get_law, law_names
from scaling.results import validate_columns

# Inputs a single-input law (power, saturating, bnsl, ...) is commonly fitted over.
SINGLE_INPUT_CANDIDATES = ("N", "D", "C")


def _registered(name: str) -> Law | None:
    return get_law(name) if name in law_names() else None


def bind_law(law: Law | str, x: str | None) -> tuple[str, Law]:
    """Registry name (``saturating:D`` for a re-targeted single-input law) and the bound law."""
    if isinstance(law, str):
        key = law.strip()
        bound = get_law(key)
    else:
        bound = law
        base = _registered(law.name)
        key = law.name
        if base is not None and base.inputs != law.inputs and len(law.inputs) == 1:
            key = f"{law.name}:{law.inputs[0]}"
    if x is not None:
        bound = bound.with_input(x)
        base_name = key.partition(":")[0]
        base = _registered(base_name)
        key = base_name if base is not None and base.inputs == (x,) else f"{base_name}:{x}"
    return key, bound


def single_input_column(law: Law, columns: Sequence[str], *, source: str = "table") -> str | None:
    """The column a single-input law should read when the table lacks the law's default input.

    ``saturating`` reads N; on a table with D but no N it is fitted over D (returns ``"D"``). None when the law's
    own input is present (or it has several inputs). Raises when the table offers several candidates, naming the
    choices (``saturating:D``), and when it offers none.
    """
    if len(law.inputs) != 1 or law.inputs[0] in columns or law.output != "loss":  # ece(N) over D means nothing
        return None
    present = [c for c in SINGLE_INPUT_CANDIDATES if c in columns]
    base = law.name
    if len(present) == 1:
        return present[0]
    if present:
        choices = " or ".join(f"{base}:{c}" for c in present)
        raise ScalingError(
            f"{source}: law {base} reads {law.inputs[0]}, which the table lacks; it has {', '.join(present)}: "
            f"choose with --law {choices} (or --x)"
        )
    raise ScalingError(
        f"{source}: law {base} reads {law.inputs[0]}, which the table lacks, and none of "
        f"{', '.join(SINGLE_INPUT_CANDIDATES)} either; map a column (--map {law.inputs[0]}=COLUMN) or name one with "
        f"--law {base}:COLUMN"
    )


def default_law(data: pd.DataFrame) -> str:
    """Pick a law from the columns present (used when no law is given).

    N, D and U with some row repeating data (epochs > 1) -> ``data-constrained`` when registered (else
    ``chinchilla``); N and D with at least 2 distinct values each -> ``chinchilla``; only N varies ->
    ``saturating:N``; only D varies -> ``saturating:D``.
    """
    def distinct(col: str) -> int:
        if col not in data.columns:
            return 0
        return int(pd.to_numeric(data[col], errors="coerce").dropna().nunique())

    n_distinct, d_distinct = distinct("N"), distinct("D")
    if {"N", "D", "U"} <= set(data.columns):
        if "epochs" in data.columns:
            epochs = pd.to_numeric(data["epochs"], errors="coerce")
        else:
            epochs = pd.to_numeric(data["D"], errors="coerce") / pd.to_numeric(data["U"], errors="coerce")
        if (epochs > 1).any():
            return "data-constrained" if "data-constrained" in law_names() else "chinchilla"
    if n_distinct >= 2 and d_distinct >= 2:
        return "chinchilla"
    if n_distinct >= 2:
        return "saturating:N"
    if d_distinct >= 2:
        return "saturating:D"
    source = data.attrs.get("source", "table")
    raise ScalingError(
        f"{source}: cannot pick a law: need at least 2 distinct values of N or D (columns: "
        f"{', '.join(map(str, data.columns))}); name one with law=... / --law"
    )


def min_distinct(law: Law) -> dict[str, int]:
    """The law's identifiability requirement, following a single-input law re-targeted to another column."""
    out = {}
    for col, k in law.min_distinct.items():
        if col not in law.inputs and len(law.inputs) == 1:
            col = law.inputs[0]
        out[col] = k
    return out


def prepare_table(data: pd.DataFrame, law: Law, *, source: str, param_def: str = "nonemb") -> pd.DataFrame:
    """The rows to fit: the law's columns validated (positive where the law takes logs), N_total as N under
    ``param_def="total"``, and enough distinct values of each input to identify the law."""
    if not isinstance(data, pd.DataFrame):
        raise ScalingError(f"expected a pandas DataFrame or a CSV path, got {type(data).__name__}")
    df = data
    if param_def == "total" and "N_total" in df.columns and "N" in law.inputs:
        df = df.assign(N=df["N_total"])
    positive = None
    if not law.positive_inputs:  # a formula law: inputs may be <= 0; a log-space target must still be > 0
        positive = {law.output} if law.residual_space == "log" else set()
    df = validate_columns(df, list(law.inputs) + [law.output], source=source, positive=positive)
    if len(df) == 0:
        raise ScalingError(f"{source}: no rows to fit")
    for col, k in min_distinct(law).items():
        if col in df.columns:
            m = int(df[col].nunique())
            if m < k:
                raise ScalingError(
                    f"{source}: column {col!r} has {m} distinct value{'s' if m != 1 else ''}; "
                    f"law {law.name} needs at least {k}"
                )
    return df


def _file_sha256(path: str | None) -> str | None:
    if not path:
        return None
    p = Path(path)
    if not p.is_file():
        return None
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def data_summary(df: pd.DataFrame, law: Law, source: str, group: str | None) -> dict[str, Any]:
    """What a fit keeps about its data: row count, each column's range, the source file's SHA-256, the input
    moments the extrapolation distance is measured with (:mod:`scaling.fitting.extrapolation`)."""
    ranges = {}
    for col in list(law.inputs) + [law.output]:
        v = df[col].to_numpy(dtype=float)
        ranges[col] = {"min": float(v.min()), "max": float(v.max()), "distinct": int(np.unique(v).size)}
    return {
        "rows": len(df),
        "ranges": ranges,
        "source": source,
        "sha256": _file_sha256(source),
        "groups": int(df[group].nunique()) if group else None,
        "columns": [str(c) for c in df.columns],
        "input_moments": input_moments(df, list(law.inputs)),
    }


__all__ = ["SINGLE_INPUT_CANDIDATES", "bind_law", "data_summary", "default_law", "min_distinct", "prepare_table",
           "single_input_column"]
