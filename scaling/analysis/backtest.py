"""Backtesting: fit each law on the small end of a results table, predict the held-out large end, rank the laws.

Alabdulmohsin et al. 2022 ("Revisiting Neural Scaling Laws in Language and Vision", arXiv:2209.06640) argue that
scaling-law estimators must be judged by how well they *extrapolate*, not by how well they fit the points they saw;
this module does that for any laws in the catalogue:

    result = backtest(df, ["chinchilla", "kaplan-nd", "bnsl:D", "m4:D"], holdout="largest-N")
    result.table      # one row per law, ranked by held-out RMSE of log loss

The steps: choose the held-out rows and prepare the training rows (:mod:`scaling.analysis.holdout`: ``largest-N``,
``largest-C``, ``last-fraction``, with an optional size after a colon), refit each law on the training rows and
predict the held-out ones with intervals, score and rank the laws; :class:`BacktestResult` holds the outcome and
its JSON file.

Options from Choshen et al. 2024 ("A Hitchhiker's Guide to Scaling Law Estimation", arXiv:2410.11840), which
found each of them to matter: ``min_tokens`` drops checkpoints before a token count (early training is off the law),
``curve_fraction`` keeps only the last fraction of each training curve (by tokens) for fitting, and
``average_seeds`` averages the seeds of one (N, D, ...) configuration before fitting instead of keeping each seed as
a point.

Per law the table reports the absolute relative error ``mean |L - L_hat| / L``, the RMSE of log loss, the coverage
of the 80% and 95% intervals (the fraction of held-out points inside them), the in-sample RMSE (for contrast: the
ranking never uses it) and whether the held-out error is within twice the seed-to-seed noise (the project's
bar for a law that holds on real runs, docs/planning.md).

Intervals: by default *prediction* intervals (``Fit.predict``'s ``pred_lower``/``pred_upper``): the bootstrap spread
of the fitted curve plus the residual scatter of the fit, widened by the training fit's own rollout calibration with
the distance extrapolated (:mod:`scaling.fitting.conformal`), since a held-out point is one noisy run, not the
expected loss.
``intervals="band"`` uses the confidence interval of the mean law alone (``conf_lower``/``conf_upper``); its coverage
of single runs is expected to be low. Intervals a fit withholds (``interval_status``) count as missing: the
coverage is then NaN and the notes name the reason. Each prediction row carries its ``interval_status``,
``extrapolation`` label, ``extrap_decades`` and ``warning``; the table's ``warnings`` column lists the codes of the
fits' structured warnings.

Single-input laws (``bnsl:D``, ``saturating:N``, ``m4:D``, ...) describe one curve with everything else fixed, so
they are fitted per curve: separately for each combination of the table's other varying inputs (e.g. per model
size for ``bnsl:D``), the Alabdulmohsin protocol. Held-out rows whose curve has too few training points are not
predicted, and the table says how many were.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from scaling.analysis.holdout import CURVE_INPUTS, Holdout, keep_last_fraction, prepare, split_train_test
from scaling.errors import ScalingError
from scaling.fitting.fitfile import parse_json, to_jsonable, write_text_atomic
from scaling.laws import get_law, law_names
from scaling.laws.base import Law

if TYPE_CHECKING:  # pragma: no cover
    from scaling.fitting.result import Fit

LEVELS = (0.8, 0.95)
TABLE_COLUMNS = [
    "rank",
    "law",
    "formula",
    "n_train",
    "n_test",
    "n_predicted",
    "abs_rel_error",
    "rmse_log",
    "coverage_80",
    "coverage_95",
    "in_sample_rmse_log",
    "within_2x_noise",
    "converged",
    "warnings",
    "notes",
]


@dataclass
class BacktestResult:
    """What :func:`backtest` returns: the ranked table, every held-out prediction, and how it was made."""

    table: pd.DataFrame
    predictions: pd.DataFrame
    settings: dict[str, Any]
    noise_floor: float = math.nan
    fits: dict[str, dict[str, Fit]] = field(default_factory=dict)  # law -> {group ('all' when pooled): Fit}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "scaling-backtest",
            "format_version": 1,
            "settings": self.settings,
            "noise_floor": to_jsonable(self.noise_floor),
            "table": to_jsonable(self.table),
            "predictions": to_jsonable(self.predictions),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write JSON (``scaling serve`` shows files in ``FITS/backtests/``); nothing is written on failure."""
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"
        return write_text_atomic(Path(path), text, example="backtest.json")


def load_backtest(path: str | os.PathLike) -> BacktestResult:
    """Read a file written by :meth:`BacktestResult.save` (for ``scaling report``)."""
    path = Path(path)
    if not path.is_file():  # a FIFO would block the read
        what = "is a folder" if path.is_dir() else "no such file" if not path.exists() else "not a regular file"
        raise ScalingError(f"{path}: {what}, expected a backtest file (scaling backtest -o)")
    try:
        data = parse_json(path.read_text(), source=str(path))
    except UnicodeDecodeError:
        raise ScalingError(f"{path}: not a backtest file (not UTF-8 text)") from None
    except OSError as exc:
        raise ScalingError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not isinstance(data, dict) or data.get("format") != "scaling-backtest":
        raise ScalingError(f"{path}: not a backtest file (written by `scaling backtest -o`)")
    version = data.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ScalingError(f"{path}: field format_version {version!r} is not a whole number")
    if version > 1:
        raise ScalingError(f"{path}: backtest format version {data['format_version']} is newer than this scaling")
    return BacktestResult(
        table=pd.DataFrame(data.get("table", [])).astype(object).fillna(np.nan).infer_objects(),
        predictions=pd.DataFrame(data.get("predictions", [])).astype(object).fillna(np.nan).infer_objects(),
        settings=dict(data.get("settings", {})),
        noise_floor=float(data["noise_floor"]) if data.get("noise_floor") is not None else math.nan,
    )


# ---------------------------------------------------------------------------------------------------------
# Which laws, and the noise they are judged against


def seed_noise(df: pd.DataFrame, output: str = "loss") -> float:
    """Median seed-to-seed standard deviation of log loss at a fixed configuration (NaN without seeds)."""
    if "seed" not in df.columns or output not in df.columns:
        return math.nan
    keys = [c for c in (*CURVE_INPUTS, "step") if c in df.columns]
    if not keys:
        return math.nan
    sd = np.log(pd.to_numeric(df[output])).groupby([df[k] for k in keys]).std(ddof=1).dropna()
    return float(sd.median()) if len(sd) else math.nan


def default_laws(df: pd.DataFrame, holdout: Holdout) -> list[str]:
    """Two-input laws when N and D both vary; the single-input laws over the hold-out axis otherwise too."""

    def varies(c: str) -> bool:
        return c in df.columns and pd.to_numeric(df[c], errors="coerce").nunique() >= 2

    laws: list[str] = []
    if varies("N") and varies("D"):
        laws += ["chinchilla", "kaplan-nd"]
    axis = {"largest-N": "N", "last-fraction": "D"}.get(holdout.kind)
    if axis and varies(axis):
        laws += [f"{name}:{axis}" for name in ("power", "saturating", "bnsl", "m4") if name in law_names()]
    if not laws:
        raise ScalingError(
            f"{df.attrs.get('source', 'table')}: no default laws for this table and hold-out; name them with --law"
        )
    return laws


# ---------------------------------------------------------------------------------------------------------
# Refitting each law and predicting the held-out rows with intervals


def _intervals(fit: Fit, inputs: dict[str, np.ndarray], kind: str) -> dict[str, np.ndarray]:
    """Point forecast and 80%/95% intervals at ``inputs`` from :func:`scaling.fitting.forecast.predict` (prediction or
    confidence kind, see the module docstring), with the interval status and extrapolation of each row."""
    out: dict[str, np.ndarray] = {}
    lo_col, hi_col = ("pred_lower", "pred_upper") if kind == "prediction" else ("conf_lower", "conf_upper")
    for level in LEVELS:
        tag = round(level * 100)
        table = fit.predict(ci=level, **inputs)
        out["point"] = table["point"].to_numpy(float)
        out[f"lower{tag}"], out[f"upper{tag}"] = table[lo_col].to_numpy(float), table[hi_col].to_numpy(float)
    for col in ("interval_status", "extrapolation", "extrap_decades", "warning"):
        out[col] = table[col].to_numpy()
    return out


def _law_groups(law: Law, df: pd.DataFrame, per_curve: bool = False) -> list[str]:
    """Columns that fix one curve for a single-input law fitted per curve: the table's other varying inputs.

    Only with ``per_curve``: by default a single-input law is fitted once on all training rows. One fit per
    distinct value of the other input breaks down on digitised or random-search tables, where nearly every row
    has its own D (hundreds of one-row "curves", none predictable)."""
    if len(law.inputs) != 1 or not per_curve:
        return []
    return [
        c
        for c in CURVE_INPUTS
        if c in df.columns and c != law.inputs[0] and pd.to_numeric(df[c], errors="coerce").nunique() > 1
    ]


def _fit_and_predict(
    law: Law,
    train: pd.DataFrame,
    test: pd.DataFrame,
    fit_kwargs: dict,
    intervals: str,
    per_curve: bool = False,
) -> tuple[pd.DataFrame, dict[str, Fit], list[str]]:
    """Fit on ``train`` (per curve for single-input laws when asked) and predict ``test``; returns (predictions,
    fits, notes)."""
    from scaling.analysis import fit as fit_law

    groups = _law_groups(law, pd.concat([train, test]), per_curve)
    pieces, fits, notes = [], {}, []
    if len(law.inputs) == 1 and not per_curve:
        others = [c for c in CURVE_INPUTS if c in train.columns and c != law.inputs[0]
                  and pd.to_numeric(train[c], errors="coerce").nunique() > 1]
        if others:
            notes.append(f"one fit over all {', '.join(others)} (per_curve / --per-curve: one fit per curve)")
    if groups:
        tkeys = train[groups].astype(float).apply(tuple, axis=1) if len(train) else pd.Series(dtype=object)
        ekeys = test[groups].astype(float).apply(tuple, axis=1)
        units = [(k, train[tkeys == k], test[ekeys == k]) for k in pd.unique(ekeys)]
    else:
        units = [(None, train, test)]
    for key, tr, te in units:
        label = "all" if key is None else ", ".join(f"{g}={v:.4g}" for g, v in zip(groups, key))
        if len(tr) == 0:
            notes.append(f"{label}: no training rows")
            continue
        try:
            fitted = fit_law(tr, law=law, **fit_kwargs)
        except ScalingError as exc:
            notes.append(f"{label}: {exc}")
            continue
        fits[label] = fitted
        if fitted.quality.converged is False:
            notes.append(f"{label}: the fit did not converge")
        inputs = {c: te[c].to_numpy(float) for c in law.inputs}
        pred = _intervals(fitted, inputs, intervals)
        piece = te.reset_index(drop=True).copy()
        for k, v in pred.items():
            piece[k] = v
        piece["in_sample_rmse_log"] = fitted.quality.rmse_log if fitted.quality.rmse_log is not None else np.nan
        pieces.append(piece)
    preds = pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame()
    return preds, fits, notes


# ---------------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------------
# The backtest


def backtest(
    data: pd.DataFrame,
    laws: Sequence[str | Law] | None = None,
    holdout: Holdout | str = "largest-N",
    *,
    min_tokens: float | None = None,
    curve_fraction: float | None = None,
    average_seeds: bool = False,
    intervals: str = "prediction",
    n_bootstrap: int = 100,
    seed: int = 0,
    fit_options: dict[str, Any] | None = None,
    per_curve: bool | None = None,
) -> BacktestResult:
    """Fit every law on the training part, predict the held-out part, rank laws by held-out RMSE of log loss.

    ``per_curve``: fit a single-input law once per curve (per value of the table's other inputs); default: per
    run for ``last-fraction``, one pooled fit for ``largest-N``/``largest-C``. Laws that predicted only part of the
    held-out rows rank after every law that predicted all of them.

    Columns of ``result.table``: rank, law, formula, n_train, n_test, n_predicted, abs_rel_error, rmse_log,
    coverage_80, coverage_95, in_sample_rmse_log, within_2x_noise, converged, warnings (codes), notes.
    """
    holdout = Holdout.parse(holdout) if isinstance(holdout, str) else holdout
    if per_curve is None:
        # last-fraction extrapolates each training run along its own tokens: a single-input law over D is a law of
        # one run, fitted per run. Across sizes (largest-N/C) one law is fitted on all training rows.
        per_curve = holdout.kind == "last-fraction"
    if intervals not in ("prediction", "band"):
        raise ScalingError(f"--intervals {intervals!r}: expected prediction or band")
    source = str(data.attrs.get("source", "table"))
    if laws is None or len(laws) == 0:
        laws = default_laws(data, holdout)
    resolved = [(get_law(l) if isinstance(l, str) else l, l if isinstance(l, str) else l.name) for l in laws]
    outputs = {law.output for law, _ in resolved}
    df = _training_table(data, resolved, source, min_tokens=min_tokens, average_seeds=average_seeds)
    train_mask, test_mask = split_train_test(df, holdout)
    train, test = df[train_mask], df[test_mask]
    if curve_fraction is not None:
        train = keep_last_fraction(train, curve_fraction)
    noise = seed_noise(data, next(iter(outputs)))
    fit_kwargs = {"n_bootstrap": n_bootstrap, "seed": seed, **(fit_options or {})}
    rows, all_preds, fits = [], [], {}
    for law, name in resolved:
        preds, fits[name], notes = _fit_and_predict(law, train, test, fit_kwargs, intervals, per_curve)
        rows.append(_score(law, name, preds, fits[name], notes, n_train=len(train), n_test=len(test), noise=noise))
        if len(preds):
            all_preds.append(preds.assign(law=name))
    settings = {
        "source": source,
        "holdout": str(holdout),
        "laws": [n for _, n in resolved],
        "min_tokens": min_tokens,
        "curve_fraction": curve_fraction,
        "per_curve": per_curve,
        "average_seeds": average_seeds,
        "intervals": intervals,
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "n_rows": len(df),
        "n_train": len(train),
        "n_test": len(test),
        "held_out": _describe(test),
    }
    return BacktestResult(_ranked(rows), _prediction_table(all_preds, outputs), settings, noise, fits)


def _training_table(
    data: pd.DataFrame, resolved: list[tuple[Law, str]], source: str, *, min_tokens: float | None, average_seeds: bool
) -> pd.DataFrame:
    """The table validated for every law's inputs and output, then prepared (:func:`~.holdout.prepare`)."""
    from scaling.results import validate_columns

    outputs = {law.output for law, _ in resolved}
    needed = sorted({c for law, _ in resolved for c in law.inputs} | outputs)
    df = validate_columns(data, needed, source=source)
    df.attrs["source"] = source
    return prepare(df, min_tokens=min_tokens, average_seeds=average_seeds, columns=sorted(outputs))


# ---------------------------------------------------------------------------------------------------------
# Scoring and ranking


def _score(
    law: Law,
    name: str,
    preds: pd.DataFrame,
    law_fits: dict[str, Any],
    notes: list[str],
    *,
    n_train: int,
    n_test: int,
    noise: float,
) -> dict[str, Any]:
    """One law's row of the table: errors on the held-out rows, interval coverage, convergence and notes."""
    row: dict[str, Any] = {"law": name, "formula": law.formula, "n_train": n_train, "n_test": n_test,
                           "n_predicted": len(preds)}
    if len(preds):
        row.update(_errors(preds, law.output))
        row["in_sample_rmse_log"] = float(np.nanmean(preds["in_sample_rmse_log"]))
        row["converged"] = all(f.quality.converged is not False for f in law_fits.values())
        withheld = sorted({str(v) for v in preds["interval_status"]} - {"ok", "small_calibration", "uncalibrated"})
        if withheld:
            notes.append(f"intervals withheld: {', '.join(withheld)}")
        far = preds["warning"] == "extrapolating_far"
        if far.any():
            notes.append(f"{int(far.sum())} held-out rows extrapolate far (up to "
                         f"{float(preds.loc[far, 'extrap_decades'].max()):.2g} decades)")
    else:
        row["converged"] = False
    row["warnings"] = ",".join(sorted({w.code for f in law_fits.values() for w in f.warnings}))
    row["within_2x_noise"] = (
        bool(row["rmse_log"] <= 2 * noise)
        if math.isfinite(noise) and math.isfinite(row.get("rmse_log", math.nan))
        else None
    )
    if len(preds) and row["n_predicted"] < n_test:
        notes.insert(0, f"skipped {n_test - row['n_predicted']} of {n_test} held-out rows (not predicted)")
    row["notes"] = "; ".join(notes)
    return row


def _errors(preds: pd.DataFrame, output: str) -> dict[str, Any]:
    """Held-out accuracy: rows predicted (finite positive point), mean absolute relative error, RMSE of log loss,
    and the share of held-out values inside the 80% and 95% intervals (NaN when any interval is withheld)."""
    y = preds[output].to_numpy(float)
    yhat = preds["point"].to_numpy(float)
    ok = np.isfinite(yhat) & (yhat > 0)
    err = np.log(yhat[ok]) - np.log(y[ok])
    out: dict[str, Any] = {
        "n_predicted": int(ok.sum()),
        "abs_rel_error": float(np.mean(np.abs(y[ok] - yhat[ok]) / y[ok])) if ok.any() else math.nan,
        "rmse_log": float(np.sqrt(np.mean(err**2))) if ok.any() else math.nan,
    }
    for level in LEVELS:
        tag = round(level * 100)
        lo, hi = preds[f"lower{tag}"].to_numpy(float), preds[f"upper{tag}"].to_numpy(float)
        has = np.isfinite(lo) & np.isfinite(hi)
        out[f"coverage_{tag}"] = float(np.mean((y >= lo) & (y <= hi))) if has.all() and len(y) else math.nan
    return out


def _ranked(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The table ranked by extrapolation error among the laws that predicted every held-out row; laws that
    predicted only part of them rank after all of those (an error on the easy half of a test is not comparable),
    and a law that predicted nothing goes last. Notes say what a partial law left out."""
    table = pd.DataFrame(rows).reindex(columns=TABLE_COLUMNS)
    partial = (table["n_predicted"] < table["n_test"]).to_numpy()
    table = (
        table.assign(_partial=partial)
        .sort_values(["_partial", "rmse_log", "abs_rel_error"], na_position="last", kind="stable")
        .drop(columns="_partial")
        .reset_index(drop=True)
    )
    table["rank"] = np.where(table["rmse_log"].notna(), np.arange(1, len(table) + 1), np.nan)
    return table


def _prediction_table(all_preds: list[pd.DataFrame], outputs: set[str]) -> pd.DataFrame:
    """Every law's held-out predictions in one table: the row's identity, the measured value, the forecast with
    its intervals and what the fit said about them."""
    columns = ("law", "run_id", "seed", *CURVE_INPUTS, "C", *sorted(outputs), "point", "lower80", "upper80",
               "lower95", "upper95", "interval_status", "extrapolation", "extrap_decades", "warning")
    if not all_preds:
        return pd.DataFrame(columns=[])
    joined = pd.concat(all_preds, ignore_index=True)
    return joined[[c for c in columns if c in joined.columns]]


def _describe(test: pd.DataFrame) -> str:
    parts = []
    for c in ("N", "D", "C"):
        if c in test.columns and len(test):
            v = pd.to_numeric(test[c])
            parts.append(f"{c} {v.min():.3g}..{v.max():.3g}")
    return ", ".join(parts)


__all__ = ["BacktestResult", "backtest", "default_laws", "load_backtest", "seed_noise"]
