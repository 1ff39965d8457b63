"""Which rows a backtest fits on and which it holds out (:func:`scaling.analysis.backtest.backtest`).

Hold-out schemes (``Holdout.parse("largest-N:2")``, the command line's ``--holdout``):

- ``largest-N[:k]``: the rows of the k largest model sizes (default 1);
- ``largest-C[:f]``: the rows with the largest compute (C column or 6ND), the top fraction f (default 0.2), or
  the k largest isoFLOP budgets when the size is a whole number >= 1;
- ``last-fraction[:f]``: the last fraction f (default 0.2) of every training curve (run), by tokens seen.

With a ``tail`` the held-out curves keep only their last fraction (GPT-3's protocol). The training side takes the
options Choshen et al. 2024 (arXiv:2410.11840) found to matter: :func:`prepare` drops checkpoints before a token
count and averages seeds, :func:`keep_last_fraction` keeps only the end of each training curve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scaling.analysis.isoflop import assign_budgets
from scaling.errors import ScalingError
from scaling.results import run_key, training_compute

HOLDOUTS = ("largest-N", "largest-C", "last-fraction")
DEFAULT_SIZE = {"largest-N": 1.0, "largest-C": 0.2, "last-fraction": 0.2}
CURVE_INPUTS = ("N", "D", "U", "D_F")  # columns that define one curve for a single-input law


@dataclass(frozen=True)
class Holdout:
    """A hold-out scheme: ``kind`` in HOLDOUTS and its size (count of largest values, or a fraction)."""

    kind: str
    size: float
    tail: float | None = None  # held-out curves keep only this last fraction of their tokens (GPT-3's protocol)

    @classmethod
    def parse(cls, text: str, tail: float | None = None) -> Holdout:
        """``KIND[:SIZE]`` as the command line writes it; a ScalingError naming the option when it is not one."""
        kind, _, size = str(text).strip().partition(":")
        if kind not in HOLDOUTS:
            raise ScalingError(f"--holdout {text!r}: expected one of {', '.join(HOLDOUTS)} (optionally :SIZE)")
        if tail is not None:
            if not (isinstance(tail, (int, float)) and 0 < tail <= 1):
                raise ScalingError(f"--tail {tail!r}: a fraction of the held-out curve in (0, 1], e.g. 0.3")
            if kind == "last-fraction":
                raise ScalingError("--tail applies to largest-N and largest-C; last-fraction already holds out tails")
        if not size:
            return cls(kind, DEFAULT_SIZE[kind], tail)
        try:
            value = float(size)
        except ValueError:
            raise ScalingError(f"--holdout {text!r}: the size after ':' must be a number") from None
        if not math.isfinite(value) or value <= 0:
            raise ScalingError(f"--holdout {text!r}: the size must be positive")
        if kind == "last-fraction" and value >= 1:
            raise ScalingError(f"--holdout {text!r}: last-fraction takes a fraction below 1, e.g. last-fraction:0.25")
        if value >= 1 and not value.is_integer():
            raise ScalingError(f"--holdout {text!r}: a size >= 1 counts distinct values and must be whole")
        return cls(kind, value, tail)

    def __str__(self) -> str:
        size = int(self.size) if self.size >= 1 else self.size
        return f"{self.kind}:{size}" + (f" tail {self.tail:g}" if self.tail is not None else "")


def split(df: pd.DataFrame, holdout: Holdout | str) -> np.ndarray:
    """Boolean mask of the held-out rows."""
    holdout = Holdout.parse(holdout) if isinstance(holdout, str) else holdout
    source = df.attrs.get("source", "table")
    if holdout.kind == "largest-N":
        if "N" not in df.columns:
            raise ScalingError(f"{source}: --holdout largest-N needs an N column")
        values = pd.to_numeric(df["N"]).to_numpy(float)
        mask = _largest(values, holdout.size)
    elif holdout.kind == "largest-C":
        C = training_compute(df)
        if holdout.size >= 1:  # whole isoFLOP budgets: the rows of one budget differ by rounding
            mask = _largest(assign_budgets(C), holdout.size)
        else:
            mask = _largest(C, holdout.size)
    else:
        if "D" not in df.columns:
            raise ScalingError(f"{source}: --holdout last-fraction needs a D column (tokens seen)")
        mask = np.zeros(len(df), bool)
        D = pd.to_numeric(df["D"]).to_numpy(float)
        for _, idx in pd.Series(np.arange(len(df))).groupby(run_key(df).to_numpy()):
            rows = idx.to_numpy()
            if len(rows) < 2:
                continue
            order = rows[np.argsort(D[rows], kind="stable")]
            n_test = min(len(rows) - 1, max(1, math.ceil(holdout.size * len(rows))))
            mask[order[-n_test:]] = True
    if mask.all() or not mask.any():
        what = "every" if mask.all() else "no"
        raise ScalingError(f"{source}: --holdout {holdout} holds out {what} row ({len(df)} rows); choose another size")
    return mask


def split_train_test(df: pd.DataFrame, holdout: Holdout | str) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) boolean masks. Without a tail they are complements. With ``holdout.tail`` the test keeps only
    the last ``tail`` of each held-out curve (by tokens D) and the rest of those curves is used by neither side:
    training on a held-out model's early checkpoints would leak its identity into the fit."""
    holdout = Holdout.parse(holdout) if isinstance(holdout, str) else holdout
    held = split(df, holdout)
    if holdout.tail is None:
        return ~held, held
    if "D" not in df.columns:
        raise ScalingError(f"{df.attrs.get('source', 'table')}: --tail needs a D column (tokens seen)")
    D = pd.to_numeric(df["D"]).to_numpy(float)
    dmax = pd.Series(D).groupby(run_key(df).to_numpy()).transform("max").to_numpy()
    test = held & (D >= (1 - holdout.tail) * dmax)
    return ~held, test


def _largest(values: np.ndarray, size: float) -> np.ndarray:
    """Rows among the ``size`` largest distinct values (a whole number) or in the top fraction ``size``."""
    if size >= 1:
        distinct = np.unique(values)
        if len(distinct) <= size:
            return np.ones(len(values), bool)
        return values >= distinct[-int(size)]
    return values >= np.quantile(values, 1 - size)


def prepare(
    df: pd.DataFrame, *, min_tokens: float | None = None, average_seeds: bool = False, columns: Sequence[str] = ()
) -> pd.DataFrame:
    """Drop checkpoints before ``min_tokens`` and optionally average seeds of the same configuration."""
    source = df.attrs.get("source", "table")
    out = df
    if min_tokens is not None:
        if "D" not in df.columns:
            raise ScalingError(f"{source}: --min-tokens needs a D column (tokens seen)")
        out = out[pd.to_numeric(out["D"]) >= min_tokens]
        if out.empty:
            raise ScalingError(
                f"{source}: --min-tokens {min_tokens:g} drops every row (largest D is {pd.to_numeric(df['D']).max():g})"
            )
    if average_seeds:
        if "seed" not in out.columns:
            raise ScalingError(f"{source}: --average-seeds needs a seed column")
        keys = [c for c in (*CURVE_INPUTS, "N_total", "C", "step") if c in out.columns]
        values = [c for c in columns if c not in keys and c in out.columns]
        grouped = out.groupby(keys, as_index=False)
        n_seeds = grouped.size()["size"].to_numpy()
        out = grouped[values].mean()
        out["n_seeds"] = n_seeds
    out = out.reset_index(drop=True)
    out.attrs["source"] = source
    return out


def keep_last_fraction(df: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """Keep, of every training curve, the rows whose tokens seen are in the last ``fraction`` of its run."""
    if not 0 < fraction <= 1:
        raise ScalingError(f"--curve-fraction {fraction:g}: must be in (0, 1]")
    D = pd.to_numeric(df["D"]).to_numpy(float)
    dmax = pd.Series(D).groupby(run_key(df).to_numpy()).transform("max").to_numpy()
    out = df[D >= (1 - fraction) * dmax]
    out.attrs["source"] = df.attrs.get("source", "table")
    return out


__all__ = [
    "CURVE_INPUTS",
    "DEFAULT_SIZE",
    "HOLDOUTS",
    "Holdout",
    "keep_last_fraction",
    "prepare",
    "split",
    "split_train_test",
]
