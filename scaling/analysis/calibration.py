"""The calibration analysis: the ECE(N) fit with the finite-sample floor of every run beside it.

Kadavath et al. (2022) find that larger models are better calibrated: ECE(N) = ECE_inf + a N^-b
(:data:`scaling.laws.calibration.CALIBRATION`). An ECE measured on n scored predictions cannot go below a floor set
by n and the number of bins (even a perfectly calibrated model shows ECE ~ sqrt(bins / (2 pi n))), so runs whose
ECE is within 2x of that floor say nothing about how calibration scales. This analysis fits the law exactly as a
plain fit would (every fitter option applies) and reports the floor of each run
(:func:`scaling.laws.calibration.floor_table`) and the sizes near it, so the CLI, Python and the service tell the
user the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from scaling.errors import ScalingError
from scaling.laws.calibration import floor_table

if TYPE_CHECKING:  # pragma: no cover
    from scaling.fitting.result import Fit

INFORMATIVE_RATIO = 2.0  # a run's ECE must be at least this multiple of its floor to inform the fit


@dataclass
class CalibrationAnalysis:
    """An ECE(N) fit and the finite-sample floor of the runs it was fitted on.

    Attributes:
        fit: the calibration law fitted to the table (the same fit a plain fit gives).
        floor: per run: N, ece, floor, floor_kind (``measured`` from an ``ece_floor`` column or ``bound`` from the
            number of scored predictions), ratio = ece / floor, informative (ratio >= 2); None when the table
            cannot give a floor (``notes`` says why).
        notes: what the user should know: the sizes near the floor, or why no floor is reported.
    """

    fit: Fit
    floor: pd.DataFrame | None
    notes: list[str] = field(default_factory=list)

    @property
    def near_floor_sizes(self) -> list[float]:
        """The model sizes N with a run whose ECE is within 2x of its floor (uninformative about scaling)."""
        if self.floor is None:
            return []
        return sorted(float(n) for n in self.floor.loc[~self.floor["informative"], "N"].unique())

    def __repr__(self) -> str:
        runs = "no floor" if self.floor is None else f"{len(self.floor)} runs, {len(self.near_floor_sizes)} sizes near the floor"
        return f"CalibrationAnalysis({self.fit!r}; {runs})"

    def summary(self) -> str:
        lines = [self.fit.summary()]
        if self.floor is not None:
            informative = int(self.floor["informative"].sum())
            lines.append(f"finite-sample ECE floor: {informative} of {len(self.floor)} runs informative "
                         f"(ece >= {INFORMATIVE_RATIO:g} x floor)")
        lines.extend(self.notes)
        return "\n".join(lines)


def analyze_calibration(table: pd.DataFrame, *, source: str | None = None, **options: Any) -> CalibrationAnalysis:
    """Fit ECE(N) with :class:`~scaling.fitting.estimate.LawFitter` (``options`` are its keyword arguments) and
    report the finite-sample floor of every run.

    A table read with ``--map ece=brier`` (``table.attrs["renamed"]``) holds Brier scores: the floor is ECE's, so
    none is reported. A table without ``ece_floor``, ``ece_count`` or ``eval_tokens`` has no floor either; the fit
    stands and ``notes`` says what is missing.
    """
    from scaling.fitting.estimate import LawFitter  # the engine is loaded only when an analysis runs
    from scaling.laws.calibration import CALIBRATION

    law = options.pop("law", CALIBRATION)
    fit = LawFitter(law, **options).fit(table, source=source)
    renamed = table.attrs.get("renamed", {})
    if "brier" in str(renamed.get("ece", "")).lower():
        return CalibrationAnalysis(fit, None, ["no finite-sample floor for the Brier score (the floor is ECE's)"])
    try:
        floor = floor_table(table, informative_ratio=INFORMATIVE_RATIO).reset_index(drop=True)
    except ScalingError as exc:  # the fit stands; only the floor cannot be reported
        return CalibrationAnalysis(fit, None, [str(exc)])
    analysis = CalibrationAnalysis(fit, floor)
    near = analysis.near_floor_sizes
    if near:
        sizes = ", ".join(f"{n:.5g}" for n in near)
        analysis.notes.append(
            f"ECE is within {INFORMATIVE_RATIO:g}x of the finite-sample floor at N = {sizes}: those sizes say little "
            "about how calibration scales (more eval predictions lower the floor)"
        )
    return analysis


__all__ = ["INFORMATIVE_RATIO", "CalibrationAnalysis", "analyze_calibration"]
