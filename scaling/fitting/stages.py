"""Fitting in stages: a law fitted on top of an earlier fit of a simpler law, e.g. data-constrained L(N, D, U) on
chinchilla's L(N, D) from one-epoch runs (Muennighoff et al. 2023). The parameters the two share are frozen at the
earlier fit's values, and its bootstrap draws of them are carried into the later fit's intervals
(``LawFitter(fix=..., fix_draws=...)``), so the stage-2 intervals include the stage-1 uncertainty.
``scaling fit --fix-from FIT`` is this; ``docs/transfer-repetition-calibration.md`` shows it end to end.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

import pandas as pd

from scaling.errors import ScalingError

if TYPE_CHECKING:  # pragma: no cover
    from scaling.fitting.result import Fit
    from scaling.laws.base import Law


def frozen_from(
    base: Fit, law: Law, *, exclude: Collection[str] = (), param_def: str = "nonemb", label: str = "fix_from"
) -> tuple[dict[str, float], pd.DataFrame | None]:
    """The parameters ``law`` shares with the stage-1 fit ``base`` at its values (those in ``exclude``, set
    otherwise, are left out), and ``base``'s draws of them for the bootstrap (None when it has none, e.g. a
    published fit). ``label`` names the base in errors (``--fix-from FIT`` on the command line)."""
    # Parameter names alone do not make a base (transfer's alpha is not chinchilla's): the fit must model the same
    # output from some of this law's inputs, as chinchilla's L(N, D) is the base of data-constrained L(N, D, U).
    if base.law.output != law.output or not set(base.law.inputs) <= set(law.inputs):
        raise ScalingError(
            f"{label}: law {base.law_name} models {base.law.output} from {', '.join(base.law.inputs)}; "
            f"not a stage 1 of law {law.name} ({law.output} from {', '.join(law.inputs)})"
        )
    shared = [n for n in law.param_names if n in base.params and n not in exclude]
    if not shared:
        raise ScalingError(
            f"{label}: law {base.law_name} shares no free parameter with law {law.name} "
            f"({', '.join(law.param_names)})"
        )
    if "N" in law.inputs and base.param_def != param_def:
        raise ScalingError(f"{label}: that fit counts N as {base.param_def}, this one as {param_def} (--param-def)")
    frozen = {n: float(base.params[n]) for n in shared}
    draws = base.draws[shared].dropna() if len(base.draws) and set(shared) <= set(base.draws.columns) else None
    return frozen, (draws if draws is not None and len(draws) else None)


__all__ = ["frozen_from"]
