"""``POST /fits/{name}/optimal``: compute-optimal allocations (N_opt, D_opt, loss, with intervals) at the budgets
asked for, optionally with the law's other inputs held (``"at": {"U": 25e9}``: the unique tokens available).

The numbers are :meth:`Fit.optimal`'s; this module bounds the work (numeric optima cost far more than the
closed form, :func:`scaling.serve.limits.check_work`) and translates the table into the response body.
"""

import numpy as np
from fastapi import APIRouter

from scaling.errors import ScalingError
from scaling.fitting.fitfile import to_jsonable
from scaling.serve.fits import fit_name_parameter, fit_named
from scaling.serve.limits import DRAW_OVERHEAD, ComputePool, check_work, run_in_pool
from scaling.serve.problems import problem_responses
from scaling.serve.schema import OptimalRequest, OptimalResponse, check_input_range
from scaling.serve.store import FitStore


def optimal_response(store: FitStore, name: str, compute: list[float], at: dict[str, float], ci: float | None) -> dict:
    """The response body for the budgets ``compute`` allocated by the fit ``name``."""
    fit = fit_named(store, name)
    check_input_range(fit.law, at, "body.at")  # any other law: Fit.optimal needs the held inputs > 0 (as the CLI)
    numeric = fit.law.optimal is None or bool(at)
    check_work(fit, name, len(compute), "compute budgets", numeric, 0 if numeric else DRAW_OVERHEAD)
    table = fit.optimal(np.array(compute, dtype=float), ci=ci, at=at)
    core = table[["N_opt", "D_opt", "loss", "tokens_per_param"]].to_numpy(float)
    if not np.isfinite(core).all():
        bad = float(table["compute"][~np.isfinite(core).all(axis=1)].iloc[0])
        raise ScalingError(f"no finite compute-optimal allocation at compute {bad:g}: outside the law's range")
    return {
        "fit": name,
        "law": fit.law_name,
        "ci": fit.ci if ci is None else ci,
        "allocations": [
            {**to_jsonable({k: v for k, v in r.items() if k not in at}), "at": dict(at)} for r in table.to_dict("records")
        ],
    }


def routes(store: FitStore, pool: ComputePool) -> APIRouter:
    """The allocation endpoint over ``store``, computed on ``pool``."""
    router = APIRouter()
    Name = fit_name_parameter(store)

    @router.post("/fits/{name}/optimal", response_model=OptimalResponse,
                 responses=problem_responses(400, 404, 408, 413, 422, 500, 503, 504))
    async def optimal(name: Name, body: OptimalRequest) -> dict:
        return await run_in_pool(pool, optimal_response, store, name, list(body.compute), dict(body.at), body.ci)

    return router


__all__ = ["optimal_response", "routes"]
