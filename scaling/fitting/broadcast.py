"""A law evaluated for many parameter sets at once: the one array operation behind multi-start, bootstrap and bands.

Law functions are plain numpy functions of scalar parameters (``scaling.laws``). Scoring a 4500-point start grid,
refitting 200 bootstrap resamples or drawing a confidence band needs the law for K parameter sets at m points;
calling it K times costs K Python calls. Most laws broadcast when each parameter is a (K, 1) column, so
:func:`predict_many` finds out, once per law function, whether that call reproduces the per-set calls, and falls
back (the log of the plain function, then a loop) when it does not: any law works, only slower.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping

import numpy as np

from scaling.laws.base import Law

# How each law function can be evaluated for many parameter sets at once, found on first use and keyed by the
# function object (weakly, so re-targeted laws made on the fly do not pile up):
# "log"/"function" = broadcast call with parameters shaped (K, 1); "loop" = one call per parameter set.
_BROADCAST_MODE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def predict_many(law: Law, params: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray], *,
                 log: bool = False) -> np.ndarray:
    """The law (or its log) for K parameter sets at m input points: returns an array (K, m).

    ``params`` maps each parameter name to an array (K,); ``inputs`` maps each input to an array (m,). Law
    functions are plain numpy functions of scalar parameters; most broadcast when the parameters are (K, 1)
    columns, which is what makes a 4500-start grid or 200 bootstrap draws one array operation. The first call
    checks that the broadcast result matches per-set calls and otherwise falls back (log of the plain function, then a
    loop), so any law works, only slower.
    """
    K = len(next(iter(params.values()))) if params else 1
    modes = _BROADCAST_MODE.setdefault(law.function, {})
    mode = modes.get(log)
    if mode is None:
        mode = modes[log] = _probe(law, params, inputs, log)
    columns = {k: np.asarray(v, dtype=float)[:, None] for k, v in params.items()}
    with np.errstate(all="ignore"):
        if mode == "log":
            out = law.log_predict(columns, **inputs)
        elif mode == "function":
            out = law.predict(columns, **inputs)
            out = np.log(out) if log else out
        else:
            out = np.stack([_one(law, {k: v[i] for k, v in params.items()}, inputs, log) for i in range(K)])
    m = len(next(iter(inputs.values()))) if inputs else 1
    return np.broadcast_to(np.asarray(out, dtype=float), (K, m))


def _one(law: Law, params: Mapping[str, float], inputs: Mapping[str, np.ndarray], log: bool) -> np.ndarray:
    return law.log_predict(params, **inputs) if log else law.predict(params, **inputs)


def _probe(law: Law, params: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray], log: bool) -> str:
    """Which broadcast mode reproduces per-set calls for this law (checked on two parameter sets)."""
    K = len(next(iter(params.values())))
    pick = [0, K - 1] if K > 1 else [0]
    sample = {k: np.asarray(v, dtype=float)[pick] for k, v in params.items()}
    # Perturb the second set so that a law that ignores the broadcast axis is caught.
    if len(pick) == 2:
        sample = {k: v * np.array([1.0, 1.0 + 1e-3]) + np.array([0.0, 1e-3]) for k, v in sample.items()}
    with np.errstate(all="ignore"):
        reference = np.stack([_one(law, {k: v[i] for k, v in sample.items()}, inputs, log) for i in range(len(pick))])
        columns = {k: v[:, None] for k, v in sample.items()}
        candidates = ["log", "function"] if log else ["function"]
        for mode in candidates:
            try:
                if mode == "log":
                    out = law.log_predict(columns, **inputs)
                else:
                    out = law.predict(columns, **inputs)
                    out = np.log(out) if log else out
                out = np.asarray(out, dtype=float)
                if out.shape == reference.shape and np.allclose(out, reference, rtol=1e-10, atol=1e-12, equal_nan=True):
                    return mode
            except Exception:  # noqa: BLE001, S112 -- any failure means "this law does not broadcast": try the next mode
                continue
    return "loop"


__all__ = ["predict_many"]
