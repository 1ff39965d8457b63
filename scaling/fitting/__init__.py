"""Fitting: from a results table to a fitted law with its uncertainty, and what a fit answers.

- ``estimate``: the engine (``LawFitter``, ``scaling.fit``): parameter space, objectives, multi-start, optimiser,
  convergence verdict, bootstrap; ``varpro``: variable-projection starts; ``formula_fit``: per-group parameters
  and several targets for formula laws; ``bootstrap``: the one resampling loop and percentile interval that every
  uncertainty in the package uses;
- ``result``: :class:`Fit`, the learned state (parameters, draws, quality) with ``predict``, ``optimal``,
  ``summary`` and ``to_frame``;
- ``forecast``: predictions with confidence and prediction intervals, compute-optimal allocation;
  ``conformal``: the rollout calibration of prediction intervals; ``extrapolation``: how far a forecast lies
  outside the fitted range; ``diagnostics``: structured warnings and interval status;
- ``fitfile``: fits as versioned JSON (validated on load); ``scoring``: a fit scored on explicit rows.

(The module that defines ``Fit`` is not called ``scaling/fit.py``: a submodule named ``fit`` would replace the
function ``scaling.fit`` as an attribute of the package the moment anything imported it.)
"""
