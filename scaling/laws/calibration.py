"""Calibration versus model size, and the metrics it is measured with.

The law (fitted in log space like every other law; Kadavath et al. 2022, "Language Models (Mostly) Know What They
Know", arXiv 2207.05221, report calibration improving with size; the functional form is this project's, see
docs/transfer-repetition-calibration.md):

    ECE(N) = ECE_inf + a N^-b

Output column ``ece`` (expected calibration error of next-token predictions, or of multiple-choice answers). The
same form fits the Brier score: map it onto the output column (``--map ece=brier``) or, from Python, use
``dataclasses.replace(get_law("calibration"), output="brier")``.

Why a floor matters. ECE measured on n predictions is biased upward: even a perfectly calibrated model scores
about sqrt(2/pi) * sum_m (n_m/n) sqrt(sum_{i in m} c_i (1 - c_i)) / n_m (each bin's accuracy-minus-confidence gap is
a sum of independent Bernoulli deviations with that variance, and E|X| = sqrt(2/pi) sd for a normal X). With 10
bins this is at most sqrt(n_bins / (2 pi n)) (Cauchy-Schwarz, with c (1 - c) <= 1/4): 0.040 at n = 1e3, 0.013 at
1e4, 0.0028 at 2e5. For confidences uniform on [0.05, 1] it is 0.032 and 0.010 (docs/laws.md, 'Acceptance
tests', E4). Sizes whose ECE is near the floor carry no information about the trend, which is why
:func:`calibration_floor` is reported beside every calibration fit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling.errors import ScalingError
from scaling.laws.base import Law, Param, register


def calibration_error(N, *, ECE_inf, a, b):
    """ECE(N) = ECE_inf + a N^-b."""
    return ECE_inf + a * np.asarray(N, dtype=float) ** -b


def _check_predictions(conf, correct):
    conf = np.asarray(conf, dtype=float).ravel()
    correct = np.asarray(correct, dtype=float).ravel()
    if conf.shape != correct.shape or conf.size == 0:
        raise ScalingError(
            f"calibration: need equally many confidences and outcomes (got {conf.size} and {correct.size})"
        )
    if not np.all((conf >= 0) & (conf <= 1)):
        raise ScalingError("calibration: confidences must lie in [0, 1]")
    return conf, correct


def _bins(conf, n_bins: int, binning: str):
    if n_bins < 1:
        raise ScalingError(f"calibration: n_bins must be >= 1, not {n_bins}")
    if binning == "width":  # equal-width bins on [0, 1]; 1.0 goes to the last bin
        return np.minimum((conf * n_bins).astype(int), n_bins - 1)
    if binning == "mass":  # equal-mass (adaptive) bins: ranks split into n_bins nearly equal groups
        ranks = np.argsort(np.argsort(conf, kind="stable"), kind="stable")
        return (ranks * n_bins) // conf.size
    raise ScalingError(f"calibration: binning must be 'width' or 'mass', not {binning!r}")


def ece(conf, correct, n_bins: int = 10, binning: str = "width") -> float:
    """Expected calibration error: sum over bins of (bin share) * |accuracy - mean confidence|.

    ``conf`` is the confidence of the chosen answer (top-1 softmax probability for next-token prediction),
    ``correct`` 1 where it was right. numpy's bincount does the per-bin sums in one pass.
    """
    conf, correct = _check_predictions(conf, correct)
    b = _bins(conf, n_bins, binning)
    gap = np.abs(np.bincount(b, weights=correct, minlength=n_bins) - np.bincount(b, weights=conf, minlength=n_bins))
    return float(gap.sum() / conf.size)  # sum_m (n_m/n) |acc_m - conf_m| = sum_m |sum(correct) - sum(conf)| / n


def rms_calibration_error(conf, correct, n_bins: int = 10, binning: str = "width") -> float:
    """sqrt(sum over bins of (bin share) * (accuracy - mean confidence)^2)."""
    conf, correct = _check_predictions(conf, correct)
    b = _bins(conf, n_bins, binning)
    count = np.bincount(b, minlength=n_bins).astype(float)
    diff = np.bincount(b, weights=correct - conf, minlength=n_bins)
    used = count > 0
    return float(np.sqrt(np.sum(diff[used] ** 2 / count[used]) / conf.size))


def brier(conf, correct) -> float:
    """Brier score of the chosen answer: mean (conf - correct)^2."""
    conf, correct = _check_predictions(conf, correct)
    return float(np.mean((conf - correct) ** 2))


def calibration_floor(conf, n_bins: int = 10, binning: str = "width", *, simulations: int = 0, seed: int = 0) -> float:
    """Expected ECE of a *perfectly calibrated* model that makes these confidences: the finite-sample floor.

    Analytic (``simulations=0``): sqrt(2/pi) * sum_m sqrt(sum_{i in m} c_i (1 - c_i)) / n, the normal approximation
    of E|sum_i (correct_i - c_i)| per bin. ``simulations=R`` instead averages the ECE of R draws of
    correct ~ Bernoulli(conf) (exact in expectation, slower; use it for tiny bins where the normal approximation
    is loose).
    """
    conf = np.asarray(conf, dtype=float).ravel()
    if conf.size == 0 or not np.all((conf >= 0) & (conf <= 1)):
        raise ScalingError("calibration: confidences must be a non-empty array in [0, 1]")
    if simulations:
        rng = np.random.default_rng(seed)
        return float(np.mean([ece(conf, rng.random(conf.size) < conf, n_bins, binning) for _ in range(simulations)]))
    b = _bins(conf, n_bins, binning)
    var = np.bincount(b, weights=conf * (1.0 - conf), minlength=n_bins)
    return float(np.sqrt(2.0 / np.pi) * np.sqrt(var).sum() / conf.size)


def calibration_floor_bound(n_predictions, n_bins=10):
    """Upper bound on the calibrated-model ECE floor knowing only n: sqrt(n_bins / (2 pi n)).

    From the analytic floor by Cauchy-Schwarz over bins and c (1 - c) <= 1/4. Use :func:`calibration_floor` when
    the confidences are at hand; this bound is for results tables that only record how many predictions were
    scored.
    """
    n = np.asarray(n_predictions, dtype=float)
    return np.sqrt(n_bins / (2.0 * np.pi * n))


def floor_table(data: pd.DataFrame, *, informative_ratio: float = 2.0) -> pd.DataFrame:
    """The finite-sample ECE floor of every row of a results table, to report beside a calibration fit.

    The floor comes from the first of: an ``ece_floor`` column (the analytic floor computed from the confidences,
    :func:`calibration_floor`); else the bound :func:`calibration_floor_bound` from the number of scored
    predictions (``ece_count``, or ``eval_tokens``) and the bins (``ece_bins``, default 10). Returns N, ece,
    floor, ratio = ece / floor and ``informative`` (ratio >= ``informative_ratio``): rows near the floor say
    nothing about how calibration scales.
    """
    source = str(data.attrs.get("source", "table"))
    for col in ("N", "ece"):
        if col not in data.columns:
            raise ScalingError(f"{source}: missing column {col!r} for the calibration floor")
    out = pd.DataFrame(
        {"N": pd.to_numeric(data["N"], errors="coerce"), "ece": pd.to_numeric(data["ece"], errors="coerce")},
        index=data.index,
    )
    if "ece_floor" in data.columns:
        out["floor"] = pd.to_numeric(data["ece_floor"], errors="coerce")
        out["floor_kind"] = "measured"
    else:
        count_col = next((c for c in ("ece_count", "eval_tokens") if c in data.columns), None)
        if count_col is None:
            raise ScalingError(
                f"{source}: cannot report the ECE floor: need a column ece_floor, ece_count or "
                f"eval_tokens (number of scored predictions)"
            )
        n = pd.to_numeric(data[count_col], errors="coerce")
        bins = pd.to_numeric(data["ece_bins"], errors="coerce").fillna(10) if "ece_bins" in data.columns else 10
        if (n <= 0).any() or n.isna().any():
            raise ScalingError(f"{source}: column {count_col!r} must hold positive counts of scored predictions")
        out["floor"] = calibration_floor_bound(n.to_numpy(float), np.asarray(bins, dtype=float))
        out["floor_kind"] = "bound"
    out["ratio"] = out["ece"] / out["floor"]
    out["informative"] = out["ratio"] >= informative_ratio
    return out


CALIBRATION = register(
    Law(
        name="calibration",
        formula="ECE = ECE_inf + a N^-b",
        reference="Kadavath et al. 2022, Language Models (Mostly) Know What They Know, arXiv:2207.05221 "
        "(calibration improves with size; the functional form is this project's)",
        inputs=("N",),
        params=(
            Param(
                "ECE_inf", 0.0, 1.0, (0.0, 0.005, 0.02), description="calibration error of an infinitely large model"
            ),
            Param("a", 0.0, np.inf, tuple(10.0 ** np.arange(-2.0, 4.1, 2.0)), log_scale=True, description="scale"),
            Param("b", 0.0, 3.0, (0.1, 0.3, 0.6, 1.0), description="size exponent"),
        ),
        function=calibration_error,
        output="ece",
        min_distinct={"N": 3},
        notes="ECE values must lie in (0, 1]. Sizes whose ECE is close to the finite-sample floor of the eval set "
        "(scaling.laws.calibration.calibration_floor) carry no information; with 10 bins the floor is at most "
        "sqrt(10/(2 pi n)) for n scored predictions. Fit the Brier score with --map ece=brier.",
        analysis="calibration",
    )
)
