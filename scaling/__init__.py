"""scaling: fit scaling laws to small training sweeps and forecast what a larger model will do.

The notebook API::

    import scaling
    df = scaling.read_results("results.csv")
    fit = scaling.fit(df, law="chinchilla")
    fit.summary()
    fit.predict(N=70e9, D=1.4e12)          # DataFrame: point, lower, upper
    fit.optimal(compute=5.76e23)
    published = scaling.load_fit("chinchilla")

The fitting side imports without torch; the trainer lives in ``scaling.train``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from scaling.errors import ScalingError
from scaling.laws import Law, Param, get_law, law_names
from scaling.results import read_results
from scaling.fit import Fit
from scaling.estimate import LawFitter, fit
from scaling.fitfile import load_fit

__all__ = ["ScalingError", "Law", "Param", "get_law", "law_names", "read_results", "Fit", "LawFitter", "fit",
           "load_fit", "__version__"]
