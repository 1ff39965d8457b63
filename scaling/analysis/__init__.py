"""Analyses built on fits: laws fitted through an analysis of runs (``transfer``, ``repetition``), the two-step
``downstream`` forecast, optimal learning rate and batch (``hyperparameters``), Chinchilla's three compute-optimal
approaches (``envelope``, ``isoflop``, ``parametric``, the frontier they share in ``allocation``, side by side in
``optimal``), one model against an ensemble (``ensemble``), backtests (``backtest``, with the hold-out schemes in
``holdout``) and monotone interpolation of measured curves (``interpolate``).

Laws fitted through an analysis of runs, not only a fit of one column of the table:

A transfer table holds from-scratch and fine-tuned runs, not the effective data D_T: D_T comes from inverting a
from-scratch law at each fine-tuned run's loss (:mod:`scaling.analysis.transfer`, Hernandez et al. 2021). A
repetition table with repeated-data runs needs the unique-data baseline fitted on the unique runs only, then an
effective size per repeated run (:mod:`scaling.analysis.repetition`, Hernandez et al. 2022). A table that already
holds D_T, or has no repeated-data columns, is fitted directly like any other law. A calibration fit is a plain
fit with the finite-sample ECE floor of every run beside it (:mod:`scaling.analysis.calibration`, Kadavath et al.
2022): runs near the floor say nothing about how calibration scales.

A law declares its analysis (``Law.analysis``); :func:`analysis_for` says whether a (law, table) pair needs it;
:func:`run_analysis` runs it and returns the :class:`~scaling.fitting.result.Fit` to save (the transfer law, the
repetition baseline, the ECE(N) fit) with the whole analysis on ``fit.analysis``. :func:`fit` (``scaling.fit``) is the one call that reads a table, picks a law and either fits
it with :class:`~scaling.fitting.estimate.LawFitter` or dispatches here, so Python, the CLI and the service share one
path. It lives in this package, above both the fitting engine and the analyses, so that neither imports the other
in a cycle: analyses use the engine, the engine knows nothing of analyses.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from scaling.errors import ScalingError

if TYPE_CHECKING:  # pragma: no cover
    from scaling.fitting.result import Fit
    from scaling.laws.base import Law

REPEAT_COLUMNS = ("repeat_fraction", "repeat_count")


def analysis_for(law: Law, table: pd.DataFrame) -> str | None:
    """The analysis ``law`` declares (:attr:`Law.analysis <scaling.laws.base.Law>`) when ``table`` calls for it, else
    None (fit the law directly).

    ``"transfer"`` on a table without D_T (it is computed from the runs), ``"repetition"`` on a table with
    repeated-data runs (:data:`REPEAT_COLUMNS`), ``"calibration"`` always (the fit is a plain fit; the floor rides
    along).
    """
    if law.analysis == "transfer" and law.output not in table.columns:
        return "transfer"
    if law.analysis == "repetition" and any(c in table.columns for c in REPEAT_COLUMNS):
        return "repetition"
    if law.analysis == "calibration":
        return "calibration"
    return None


def refuse_unused_options(kind: str, options: Mapping[str, Any]) -> None:
    """Fitter options the analysis has no use for are errors, not silently ignored.

    ``options`` are :class:`~scaling.fitting.estimate.LawFitter` keyword arguments; each is compared with its default.
    """
    unsupported = {
        "tie": bool(options.get("tie")),
        "param_def": options.get("param_def", "nonemb") != "nonemb",  # every run's N is the N column
        "x": options.get("x") is not None,
        "fix_draws": options.get("fix_draws") is not None,
        # start method and asymmetric loss: the analyses fit with the engine's defaults
        "method": options.get("method", "grid") != "grid",
        "asymmetry": options.get("asymmetry", 1.0) != 1.0,
    }
    if kind == "transfer":  # the transfer law is fitted by least squares on ln D_T, all three parameters free
        unsupported["fix"] = bool(options.get("fix"))
        # its fit has no rollout calibration of its own (a two-stage bootstrap, not a LawFitter bootstrap)
        unsupported["calibrate"] = options.get("calibrate") is not None
    else:  # the baseline is fitted with the engine's defaults (Huber, delta 1e-3, runs by run_id)
        unsupported.update(
            loss=options.get("loss", "huber") != "huber",
            delta=options.get("delta", 1e-3) != 1e-3,
            group=options.get("group", "run_id") != "run_id",
        )
    known = {"n_bootstrap", "ci", "seed", "fix", "tie", "param_def", "x", "fix_draws", "loss", "delta", "group",
             "method", "asymmetry", "calibrate"}
    unknown = sorted(set(options) - known)
    for option in [*(o for o, used in unsupported.items() if used), *unknown]:
        flag = "--" + option.replace("_", "-")
        raise ScalingError(
            f"{flag} does not apply to the {kind} analysis ({option}= in Python; "
            f"scaling.analysis.{kind}.analyze_{kind}); see docs/transfer-repetition-calibration.md"
        )


def run_analysis(kind: str, table: pd.DataFrame, *, law: str | Law | None = None, source: str | None = None,
                 **options: Any) -> Fit:
    """Run the analysis ``kind`` on ``table``; the returned fit carries it as ``fit.analysis``.

    ``options`` are fitter keyword arguments. Transfer and repetition take n_bootstrap, ci, seed (fix and
    calibrate for the repetition baseline; loss, delta and group for transfer's from-scratch fit) and fit their own
    law; others are refused by :func:`refuse_unused_options`. Calibration fits ``law`` (default: the catalogue's calibration law)
    with every fitter option, as a plain fit would.
    """
    if source is not None:
        table = table.copy()
        table.attrs["source"] = source
    if kind == "calibration":
        from scaling.analysis.calibration import analyze_calibration

        result = analyze_calibration(table, source=source, **({"law": law} if law is not None else {}), **options)
        result.fit.analysis = result
        return result.fit
    refuse_unused_options(kind, options)
    common = {k: options[k] for k in ("n_bootstrap", "ci", "seed") if k in options}
    if kind == "transfer":
        from scaling.analysis.transfer import analyze_transfer

        scratch = {k: options[k] for k in ("loss", "delta", "group") if k in options}
        result = analyze_transfer(table, scratch_options=scratch, **common)
        fit = result.fit
    elif kind == "repetition":
        from scaling.analysis.repetition import analyze_repetition

        result = analyze_repetition(table, baseline_fix=options.get("fix") or None,
                                    calibrate=options.get("calibrate"), **common)
        fit = result.baseline
    else:
        raise ScalingError(f"unknown analysis {kind!r}: expected transfer, repetition or calibration")
    fit.analysis = result
    return fit


def fit(data: pd.DataFrame | str | Path, law: str | Law | None = None, *, mapping: Mapping[str, str] | None = None,
        where: str | None = None, source: str | None = None, **kwargs: Any) -> Fit:
    """Fit a law to a results table (a DataFrame or a CSV path); ``law=None`` picks one from the columns.

    >>> fit = scaling.fit("results.csv", law="chinchilla", n_bootstrap=200)   # doctest: +SKIP

    ``mapping``/``where`` are applied when reading a path (see :func:`scaling.read_results`); other keyword
    arguments go to :class:`~scaling.fitting.estimate.LawFitter`. ``law="downstream"`` is the two-step task
    forecast (Bhagia et al. 2024): both steps are fitted from the table's N, D, task_loss and accuracy
    (:func:`scaling.analysis.downstream.fit_downstream`). ``law="transfer"`` on a table of from-scratch and
    fine-tuned runs, and ``law="repetition"`` on a table with repeated-data runs, run their analysis
    (:func:`run_analysis`): the returned fit (the transfer law; the unique-data baseline) carries it as
    ``fit.analysis``.
    """
    # imported at call time: the light analyses (hyperparameters, interpolate) import this package without the engine
    from scaling.fitting.estimate import LawFitter
    from scaling.fitting.table import default_law
    from scaling.laws.base import get_law
    from scaling.results import read_results

    if isinstance(data, (str, Path)):
        source = source or str(data)
        data = read_results(data, mapping=mapping, where=where)
    elif isinstance(data, pd.DataFrame):
        if mapping or where:
            data = read_results(data, mapping=mapping, where=where)
    else:
        raise ScalingError(f"expected a pandas DataFrame or a CSV path, got {type(data).__name__}")
    if law is None:
        law = default_law(data)
    if (law.strip() if isinstance(law, str) else getattr(law, "name", None)) == "downstream":
        from scaling.analysis.downstream import fit_downstream  # the chained law is fitted step by step, not in one go

        return fit_downstream(data, source=source, **kwargs)
    kind = analysis_for(get_law(law) if isinstance(law, str) else law, data)
    if kind is not None:  # transfer from runs, repetition with repeated-data runs, calibration with its floor
        return run_analysis(kind, data, law=law, source=source, **kwargs)
    return LawFitter(law, **kwargs).fit(data, source=source)


__all__ = ["REPEAT_COLUMNS", "analysis_for", "fit", "refuse_unused_options", "run_analysis"]
