"""scaling: fit scaling laws to small training sweeps and forecast what a larger model will do.

The notebook API::

    import scaling
    df = scaling.read_results("results.csv")
    fit = scaling.fit(df, law="chinchilla")
    fit.summary()
    fit.predict(N=70e9, D=1.4e12)          # DataFrame: point, lower, upper
    fit.optimal(compute=5.76e23)
    published = scaling.load_fit("chinchilla")
    scaling.optimal_hyperparameters([scaling.load_fit("steplaw2025-lr")], N=1e9, D=1e11)   # lr_opt with interval
    mine = scaling.fit_formula(df, "L = E + A/N^alpha", params={"alpha": {"lower": 0, "upper": 2}})
    scaling.evaluate(mine, test_df)          # r2, nmse, nmae, log_rmse, mean_relative_error

The fitting side imports without torch; the trainer lives in ``scaling.train``.
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING, Any

# Public name -> the module that defines it. Imported on first use (PEP 562), so `import scaling` and the
# command line's `--help` do not pay for scipy and pandas (about 1 s) before anything needs them.
_EXPORTS = {
    "ScalingError": "scaling.errors",
    "Law": "scaling.laws",
    "Param": "scaling.laws",
    "get_law": "scaling.laws",
    "law_names": "scaling.laws",
    "read_results": "scaling.results",
    "Fit": "scaling.fitting.result",
    "LawFitter": "scaling.fitting.estimate",
    "fit": "scaling.analysis",
    "load_fit": "scaling.fitting.result",
    "optimal_hyperparameters": "scaling.analysis.hyperparameters",
    "optimum_table": "scaling.analysis.hyperparameters",
    "formula_law": "scaling.laws.formula",
    "fit_formula": "scaling.fitting.formula_fit",
    "predict_rows": "scaling.fitting.scoring",
    "evaluate": "scaling.fitting.scoring",
}

__all__ = [  # the names of _EXPORTS, written out so that static checkers see them (tests/test_imports.py)
    "ScalingError", "Law", "Param", "get_law", "law_names", "read_results", "Fit", "LawFitter", "fit", "load_fit",
    "optimal_hyperparameters", "optimum_table", "formula_law", "fit_formula", "predict_rows", "evaluate",
    "__version__",
]

if TYPE_CHECKING:  # what static checkers and IDEs see; at run time the names resolve lazily below
    from scaling.errors import ScalingError
    from scaling.analysis import fit
    from scaling.fitting.estimate import LawFitter
    from scaling.fitting.result import Fit, load_fit
    from scaling.fitting.formula_fit import fit_formula
    from scaling.laws.formula import formula_law
    from scaling.fitting.scoring import evaluate, predict_rows
    from scaling.analysis.hyperparameters import optimal_hyperparameters, optimum_table
    from scaling.laws import Law, Param, get_law, law_names
    from scaling.results import read_results


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        # submodules (scaling.fitting.forecast, ...) are attributes once imported; others are a normal AttributeError
        raise AttributeError(f"module 'scaling' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
