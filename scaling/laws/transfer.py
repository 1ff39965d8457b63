"""Hernandez, Kaplan, Henighan, McCandlish 2021, "Scaling Laws for Transfer" (arXiv 2102.01293), Eq. 1.1.

    D_T = k * D_F^alpha * N^beta

D_F is the fine-tuning data (the paper counts characters of Python), N the non-embedding parameters and D_T the
*effective data transferred*: the extra target data a same-size model trained from scratch would need to reach
the fine-tuned model's loss. Published fits (Table 1, low-data regime, D in characters):
text -> Python k = 1.9e4, alpha = 0.18, beta = 0.38; 50% text + 50% non-Python code -> Python k = 2.1e5,
alpha = 0.096, beta = 0.38.

D_T is not measured directly. It comes from inverting a from-scratch law L_B(N, D) on the target at the fine-tuned
model's loss (D_E = D_F + D_T, App. B). The toolkit uses Kaplan's Eq. 1.5 (law ``kaplan-nd``, parameters alpha_N,
alpha_D, N_c, D_c), whose inversion at fixed N has a closed form (:func:`effective_data`). The whole procedure
(fit L_B on from-scratch runs, invert, classify, fit this law on the clean runs with bootstrap intervals) is
:func:`scaling.analysis.transfer.analyze_transfer`; this module holds the formulas.

Fitting this law is ordinary least squares on ln D_T = ln k + alpha ln D_F + beta ln N (use ``loss="least_squares"``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from scaling.laws.base import Law, Param, register

# Run classes (docs/transfer-repetition-calibration.md, 'transfer'); only OK runs enter the power-law fit, which
# Hernandez et al. 2021 fit only in the low-data regime.
OK, SATURATED, NEGATIVE, EXTRAPOLATED, HIGH_DATA = "ok", "saturated", "negative", "extrapolated", "high_data"
CLASSES = (OK, SATURATED, NEGATIVE, EXTRAPOLATED, HIGH_DATA)

# D(N) is the data at which L(N, D) is within 1% of L(N, inf) (Hernandez 2021, Sec. 3); the low-data regime is
# D_F <= 0.1 D(N).
INFINITE_DATA_FRACTION = 0.99
LOW_DATA_FRACTION = 0.1


def transfer_data(D_F, N, *, k, alpha, beta):
    """D_T = k D_F^alpha N^beta."""
    return k * D_F**alpha * N**beta


def transfer_log_data(D_F, N, *, k, alpha, beta):
    """ln D_T = ln k + alpha ln D_F + beta ln N (no overflow for any inputs)."""
    return np.log(k) + alpha * np.log(D_F) + beta * np.log(N)


def transfer_fraction(D_F, D_T):
    """f_T = D_T / (D_F + D_T), the fraction of effective data that came from pre-training.

    Note logit(f_T) = ln(D_T / D_F): the paper's per-D_F "logit fits" are this quantity against ln N.
    """
    D_F, D_T = np.asarray(D_F, dtype=float), np.asarray(D_T, dtype=float)
    return D_T / (D_F + D_T)


def data_multiplier(D_F, D_T):
    """The effective-data multiplier (D_F + D_T) / D_F (Eq. 1.2: about k N^beta / D_F^(1-alpha) when D_T >> D_F)."""
    D_F, D_T = np.asarray(D_F, dtype=float), np.asarray(D_T, dtype=float)
    return (D_F + D_T) / D_F


EFFECTIVE_DATA_COLUMNS = tuple(f"{q}{end}" for q in ("D_E", "multiplier", "f_T") for end in ("", "_lower", "_upper"))


def effective_data_columns(forecast: pd.DataFrame) -> pd.DataFrame:
    """What a D_T forecast is worth, as EFFECTIVE_DATA_COLUMNS: D_E = D_F + D_T, the multiplier D_E/D_F and
    f_T = D_T/D_E, each with the confidence interval of D_T (``conf_lower``/``conf_upper``) mapped through it (all
    three increase with D_T > 0, so the quantiles map exactly). ``forecast`` is a transfer fit's ``predict`` table;
    the CLI and the HTTP service both show these columns."""
    out = {}
    D_F = forecast["D_F"].to_numpy(float)
    for end, column in (("", "point"), ("_lower", "conf_lower"), ("_upper", "conf_upper")):
        d_t = forecast[column].to_numpy(float)
        out[f"D_E{end}"] = D_F + d_t
        out[f"multiplier{end}"] = data_multiplier(D_F, d_t)
        out[f"f_T{end}"] = transfer_fraction(D_F, d_t)
    return pd.DataFrame(out, index=forecast.index)[list(EFFECTIVE_DATA_COLUMNS)]


# ---------------------------------------------------------------------------------------------------------
# Inverting the from-scratch law (Kaplan Eq. 1.5) at equal loss


def effective_data(N, loss, *, alpha_N, alpha_D, N_c, D_c):
    """D_E(N, L) = D_c / (L^(1/alpha_D) - (N_c/N)^(alpha_N/alpha_D)): the from-scratch data that reaches loss L.

    The closed-form inverse of Kaplan's L_B(N, D) (:func:`scaling.laws.kaplan.kaplan_nd_loss`) at fixed N; +inf where L <= L_B(N, inf) (no amount of
    from-scratch data reaches that loss at this size).
    """
    N, loss = np.broadcast_arrays(np.asarray(N, dtype=float), np.asarray(loss, dtype=float))
    gap = loss ** (1.0 / alpha_D) - (N_c / N) ** (alpha_N / alpha_D)
    # Compare with L_B(N, inf) computed as Kaplan's L(N) is, so a loss equal to it is saturated despite rounding
    # in the gap (which would otherwise give a finite D_E ~ 1e20).
    reachable = (gap > 0) & (loss > (N_c / N) ** alpha_N)
    return np.where(reachable, D_c / np.where(reachable, gap, 1.0), np.inf)


def data_for_infinite_performance(N, *, alpha_N, alpha_D, N_c, D_c):
    """D(N): the data at which L_B(N, D(N)) = L_B(N, inf) / 0.99.

    Solving ((N_c/N)^(aN/aD) + D_c/D)^aD = (N_c/N)^aN / 0.99 for D gives
    D(N) = D_c (N/N_c)^(aN/aD) / ((1/0.99)^(1/aD) - 1).
    """
    N = np.asarray(N, dtype=float)
    return D_c * (N / N_c) ** (alpha_N / alpha_D) / ((1.0 / INFINITE_DATA_FRACTION) ** (1.0 / alpha_D) - 1.0)


def classify_runs(N, D_F, loss, scratch_params: Mapping[str, float], D_measured_max=None):
    """Effective data and class of each fine-tuned run (docs/transfer-repetition-calibration.md, 'transfer').

    Returns ``(D_E, D_T, classes)``. Classes, first match wins:
    ``saturated`` (loss <= L_B(N, inf), D_E = inf), ``negative`` (D_T <= 0: worse than from scratch on the same
    D_F, i.e. ossification), ``high_data`` (D_F > 0.1 D(N), outside the regime where the law holds),
    ``extrapolated`` (D_E beyond the largest from-scratch D measured at that N), else ``ok``.
    """
    p = {k: scratch_params[k] for k in ("alpha_N", "alpha_D", "N_c", "D_c")}
    N, D_F, loss = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (N, D_F, loss)))
    D_E = effective_data(N, loss, **p)
    with np.errstate(invalid="ignore"):
        D_T = D_E - D_F
    D_N = data_for_infinite_performance(N, **p)
    d_max = (
        np.full(N.shape, np.inf)
        if D_measured_max is None
        else np.broadcast_to(np.asarray(D_measured_max, float), N.shape)
    )
    classes = np.full(N.shape, OK, dtype=object)
    classes[D_E > d_max] = EXTRAPOLATED
    classes[D_F > LOW_DATA_FRACTION * D_N] = HIGH_DATA
    classes[D_T <= 0] = NEGATIVE
    classes[~np.isfinite(D_E)] = SATURATED
    return D_E, D_T, classes


TRANSFER = register(
    Law(
        name="transfer",
        formula="D_T = k D_F^alpha N^beta",
        reference="Hernandez et al. 2021, Scaling Laws for Transfer, arXiv:2102.01293 (Eq. 1.1, Table 1)",
        inputs=("D_F", "N"),
        params=(
            Param(
                "k",
                0.0,
                np.inf,
                tuple(np.exp(np.arange(0.0, 16.0, 5.0))),
                log_scale=True,
                description="scale (carries the units of D)",
            ),
            Param(
                "alpha",
                -1.0,
                2.0,
                (0.0, 0.25, 0.5, 1.0),
                description="fine-tuning-data exponent (smaller = closer distributions)",
            ),
            Param("beta", -1.0, 2.0, (0.0, 0.25, 0.5, 1.0), description="parameter exponent"),
        ),
        function=transfer_data,
        log_function=transfer_log_data,
        output="D_T",
        min_distinct={"D_F": 2, "N": 2},
        notes="D_T comes from inverting a from-scratch law on the target (scaling.analysis.transfer.analyze_transfer, "
        "on a table of from-scratch and fine-tuned runs). Fit only low-data runs "
        "(D_F <= 0.1 D(N)); units of D_F and D_T must match (Hernandez et al. use characters).",
        analysis="transfer",
    )
)
