"""Fitting: from a results table to a fitted law with its uncertainty, and what a fit answers.

- the estimator, one module per step of its pipeline: ``table`` (the law bound to the table, rows checked,
  ``default_law``), ``objective`` (parameter space, losses; ``broadcast``: a law for many parameter sets in one
  call), ``multistart`` (starts, screening, polish; ``varpro``: variable-projection starts), ``optimise`` (local
  runs, convergence verdict), ``draws`` (the fit's bootstrap draws), ``conformal`` (the rollout calibration of
  prediction intervals) and ``estimate`` (``LawFitter``: settings in, ``Fit`` out). The dispatching
  ``scaling.fit`` is :func:`scaling.analysis.fit`, above both this package and the analyses built on it; nothing
  here imports ``scaling.analysis``;
- ``bootstrap``: the one resampling loop and percentile interval that every uncertainty in the package uses;
  ``formula_fit``: per-group parameters and several targets for formula laws;
- ``result``: :class:`Fit`, the learned state (parameters, draws, quality) with ``predict``, ``optimal``,
  ``summary`` and ``to_frame``; ``quality``: :class:`FitQuality`, the typed record of how the fit went;
- ``forecast``: predictions with confidence and prediction intervals, compute-optimal allocation;
  ``extrapolation``: how far a forecast lies outside the fitted range; ``diagnostics``: structured warnings and
  interval status;
- ``fitfile``: fits as versioned JSON (validated on load); ``scoring``: a fit scored on explicit rows; ``stages``:
  what a law shares with an earlier fit, frozen from it (``--fix-from``).

(The module that defines ``Fit`` is not called ``scaling/fit.py``: a submodule named ``fit`` would replace the
function ``scaling.fit`` as an attribute of the package the moment anything imported it.)
"""
