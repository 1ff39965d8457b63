"""Model-free cross-checks of a law's inversion: where the measured points themselves reach a loss.

Transfer (effective data D_E) and repeated data (effective size N_eff) both turn a loss into an amount of data or
parameters by inverting a fitted law. Where the law misfits the measured points by as much as the effect being
measured, the inversion says more about the misfit than about the effect; interpolating between the measured points
is the check. SciPy's PCHIP interpolant is monotone between monotone points, so it never invents a wiggle.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.interpolate import PchipInterpolator


def amount_at_loss(points: pd.Series, loss: float) -> float:
    """The x at which measured losses reach ``loss``: ``points`` maps x (tokens, parameters) to loss.

    Interpolates ln x as a monotone (PCHIP) function of the loss. Several losses at one x are averaged. NaN when
    there are fewer than 2 distinct x, the losses do not fall strictly as x grows (noise), or ``loss`` lies outside
    the measured range (no extrapolation).
    """
    pts = points.groupby(level=0).mean().sort_index()
    if len(pts) < 2 or not np.all(np.diff(pts.to_numpy(dtype=float)) < 0):
        return float("nan")
    losses = pts.to_numpy(dtype=float)[::-1]  # increasing
    log_x = np.log(pts.index.to_numpy(dtype=float))[::-1]
    if not losses[0] <= loss <= losses[-1]:
        return float("nan")
    return float(np.exp(PchipInterpolator(losses, log_x)(loss)))
