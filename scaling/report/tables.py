"""The report's tables: a fit's quality, and how every cell of the page is written (:func:`format_value`; intervals
as ``value [lower, upper]`` through :func:`scaling.values.with_intervals` with it). A fit's parameters are
:meth:`Fit.parameter_table <scaling.fitting.result.Fit.parameter_table>`, the table the command line prints."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from scaling.fitting.result import Fit


def quality_table(fit: Fit) -> pd.DataFrame:
    q = {**fit.quality.to_dict(), "convergence": fit.convergence}  # the fields the fit reports
    keys = ["n_points", "n_params_free", "rmse_log", "objective", "convergence", "at_bound", "bootstrap_failed_fraction"]
    return pd.DataFrame(
        [
            {"quantity": k, "value": q[k] if not isinstance(q[k], list) else ", ".join(q[k]) or "none"}
            for k in keys
            if k in q
        ]
    )


def format_value(v: Any) -> str:
    """A cell as the page shows it: 5 significant digits, yes/no, and nothing for a missing or infinite value."""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            return ""
        return f"{v:.5g}"
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


__all__ = ["format_value", "quality_table"]
