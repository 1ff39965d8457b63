"""``GET /backtests`` and ``GET /backtests/{name}``: the backtest summaries saved in the fits folder's
``backtests/`` (``scaling backtest ... -o FITS/backtests/NAME.json``), read through the same guarded store as
the fits."""

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam

from scaling.errors import ScalingError
from scaling.fitting.fitfile import to_jsonable
from scaling.serve.problems import ProblemError, problem_responses
from scaling.serve.store import BACKTESTS, NAME_PATTERN, FitStore


def routes(store: FitStore) -> APIRouter:
    """The two backtest endpoints over ``store``."""
    router = APIRouter()
    BacktestName = Annotated[
        str,
        PathParam(
            pattern=NAME_PATTERN,
            description="file name in FITS/backtests/",
            examples=store.names(sub=BACKTESTS)[:3] or ["demo"],
        ),
    ]

    @router.get("/backtests", responses=problem_responses(500))
    def list_backtests() -> dict[str, list[str]]:
        return {"backtests": store.names(sub=BACKTESTS)}

    @router.get("/backtests/{name}", responses=problem_responses(404, 422, 500))
    def show_backtest(name: BacktestName) -> dict[str, Any]:
        try:
            return to_jsonable(store.read_backtest(name))
        except KeyError:
            raise ProblemError("unknown-backtest", f"unknown backtest {name!r}; GET /backtests lists them") from None
        except ScalingError as exc:
            raise ProblemError("unusable-backtest", f"backtest {name!r} cannot be read: {exc}") from None

    return router


__all__ = ["routes"]
