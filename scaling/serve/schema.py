"""The prediction service's request and response bodies: they are its OpenAPI schema and its input validation.

Every number a client sends is checked here before any handler runs: finite and within +-:data:`MAX_VALUE`; a
compute budget over 6 FLOPs; a level ``ci`` in (0, 1); at most :data:`MAX_BATCH` points or budgets; no unknown
fields. A failure is a 422 problem naming the field (:mod:`scaling.serve.problems`).

Whether an input may be below 1 depends on the law, so that check waits for the fit (:func:`check_input_range`,
called by the handlers): a law of counts (``Law.positive_inputs``: the catalogue's N, D, U, ...) needs every input
at least 1 (below 1 they mean nothing, and laws evaluated there overflow); a formula law whose inputs need only be
finite (a log learning rate, a mixture share) takes zero and negative values, as ``Fit.predict`` does.
"""

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from scaling.laws.base import Law
from scaling.serve.problems import ProblemError

MAX_BATCH = 1000
MAX_VALUE = 1e40  # anything larger is not a model size, token count or FLOP budget anyone will plan

MIN_COUNT = 1  # the least input a law of counts (Law.positive_inputs) is forecast at over HTTP

# any finite number: the law decides whether it may be below MIN_COUNT (check_input_range)
Value = Annotated[float, Field(ge=-MAX_VALUE, le=MAX_VALUE, allow_inf_nan=False, strict=True)]
Compute = Annotated[float, Field(gt=6, le=MAX_VALUE, allow_inf_nan=False, strict=True)]  # C = 6ND, N, D >= 1
Level = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False, strict=True)]
InputName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")]


def check_input_range(law: Law, values: dict[str, float], where: str) -> None:
    """Refuse an input below what ``law`` takes: a 422 ``invalid-request`` problem naming the field as a
    validation error does (``body.points[3].N: Input should be greater than or equal to 1 ...``).

    ``where`` is the field's location up to the input (``body.inputs``, ``body.points[3]``, ``body.at``). A law of
    counts (``Law.positive_inputs``) needs every input >= :data:`MIN_COUNT`; any other law takes every finite
    number the schema let through. Names the law does not have are left to the handler.
    """
    if not law.positive_inputs:
        return
    for column in law.inputs:
        if column in values and values[column] < MIN_COUNT:
            raise ProblemError("invalid-request", f"{where}.{column}: Input should be greater than or equal to "
                               f"{MIN_COUNT} (law {law.name} takes counts: {', '.join(law.inputs)})")


# ---------------------------------------------------------------------------------------------------------
# Requests


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ForecastRequest(_Strict):
    inputs: dict[InputName, Value] = Field(
        ..., description='the law\'s inputs, e.g. {"N": 7e10, "D": 1.4e12}: finite numbers, at least 1 for a law '
        "of counts (every catalogue law); a formula law may take zero or negative ones",
        examples=[{"N": 7e10, "D": 1.4e12}],
    )
    ci: Level | None = Field(None, description="interval level; default: the level the fit was made with")


class BatchRequest(_Strict):
    points: list[dict[InputName, Value]] = Field(..., min_length=1, max_length=MAX_BATCH)
    ci: Level | None = None


class OptimalRequest(_Strict):
    compute: list[Compute] = Field(
        ..., min_length=1, max_length=MAX_BATCH, description="training FLOPs (C = 6ND)", examples=[[5.76e23]]
    )
    at: dict[InputName, Value] = Field(
        default_factory=dict,
        description='the law\'s other inputs, e.g. {"U": 25e9}: the optimum with only 25e9 unique tokens',
    )
    ci: Level | None = None


# ---------------------------------------------------------------------------------------------------------
# Responses


class Warning_(BaseModel):
    code: str = Field(description="stable identifier, e.g. not_converged, extrapolating_far")
    severity: str = Field(description="info, warning or error")
    message: str


class Extrapolation(BaseModel):
    label: str = Field(description="inside, near, far or unknown")
    decades: float | None = Field(description="decades outside the fitted N, D, C range (0 inside)")
    distance: float | None = Field(description="Mahalanobis distance of log10 inputs from the fitted data")


class Prediction(BaseModel):
    inputs: dict[str, float]
    point: float
    conf_lower: float | None = Field(description="confidence interval of the mean law (bootstrap); null if withheld")
    conf_upper: float | None
    pred_lower: float | None = Field(description="prediction interval for one new run (plan on this); null if withheld")
    pred_upper: float | None
    interval_status: str = Field(description="ok, small_calibration, uncalibrated, or why the intervals are null")
    extrapolation: Extrapolation
    warnings: list[Warning_] = Field(default_factory=list, description="this forecast's own warnings")
    effective_data: dict[str, float | None] | None = Field(
        None, description="transfer fits: D_E = D_F + D_T, multiplier = D_E/D_F and f_T = D_T/D_E, each with _lower/"
        "_upper from D_T's confidence interval (as `scaling forecast` prints them); null for other laws")


class ForecastResponse(BaseModel):
    fit: str
    law: str
    output: str
    ci: float
    predictions: list[Prediction]
    fit_warnings: list[Warning_] = Field(default_factory=list, description="the fit's warnings (from its fit file)")


class OptimalAllocation(BaseModel):
    compute: float
    at: dict[str, float] = Field(default_factory=dict, description="the other inputs held (as requested)")
    N_opt: float
    D_opt: float
    loss: float
    tokens_per_param: float
    N_opt_conf_lower: float | None = None
    N_opt_conf_upper: float | None = None
    D_opt_conf_lower: float | None = None
    D_opt_conf_upper: float | None = None
    loss_conf_lower: float | None = None
    loss_conf_upper: float | None = None
    loss_pred_lower: float | None = Field(None, description="prediction interval of one run's loss at the allocation")
    loss_pred_upper: float | None = None
    tokens_per_param_conf_lower: float | None = None
    tokens_per_param_conf_upper: float | None = None
    epochs: float | None = Field(None, description="D_opt / U, when U is held")
    epochs_conf_lower: float | None = None
    epochs_conf_upper: float | None = None
    interval_status: str = "ok"
    extrapolation: str = "unknown"
    extrap_decades: float | None = None
    extrap_distance: float | None = None
    warning: str = ""


class OptimalResponse(BaseModel):
    fit: str
    law: str
    ci: float
    allocations: list[OptimalAllocation]


class FitSummary(BaseModel):
    name: str
    law: str
    formula: str
    inputs: list[str]
    output: str
    kind: str
    n_points: int | None
    rmse_log: float | None
    converged: bool | None
    convergence: str = Field("unknown", description="converged, stalled, not_converged (or not_fitted: published)")
    interval_status: str = Field("ok", description="ok, or why this fit's intervals are withheld")
    n_draws: int


class FitList(BaseModel):
    fits: list[FitSummary]
    unreadable: dict[str, str] = Field(default_factory=dict, description="files that are not valid fit files, with why")


class FitDetail(FitSummary):
    reference: str
    params: dict[str, float]
    intervals: dict[str, list[float | None]]
    derived: dict[str, float | None]
    ci: float
    quality: dict[str, Any]
    data_summary: dict[str, Any] | None
    notes: str


__all__ = ["MAX_BATCH", "MAX_VALUE", "MIN_COUNT", "BatchRequest", "FitDetail", "FitList", "FitSummary",
           "ForecastRequest", "ForecastResponse", "OptimalRequest", "OptimalResponse", "check_input_range"]
