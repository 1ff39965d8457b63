"""``GET /fits`` and ``GET /fits/{name}``: the fits in the folder and one fit's parameters, intervals and quality;
and the lookup of a fit by name that every ``/fits/{name}/...`` endpoint shares.

A fit that cannot be used costs only itself: ``/fits`` lists it under ``unreadable`` with the reason, and an
endpoint naming it answers a 422 ``unusable-fit`` problem (an unknown name a 404 ``unknown-fit``).
"""

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam

from scaling.errors import ScalingError
from scaling.fitting.fitfile import to_jsonable
from scaling.fitting.result import SUMMARY_FIELDS, Fit
from scaling.serve.problems import ProblemError, problem_responses
from scaling.serve.schema import FitDetail, FitList
from scaling.serve.store import NAME_PATTERN, FitStore


def fit_name_parameter(store: FitStore) -> Any:
    """The ``{name}`` path parameter. Its schema examples are the files present at start-up, so generated clients
    (and fuzzers) reach real fits rather than only 404s."""
    return Annotated[
        str,
        PathParam(
            pattern=NAME_PATTERN,
            description="file name in the fits folder, without .json",
            examples=store.names()[:3] or ["chinchilla"],
        ),
    ]


def fit_named(store: FitStore, name: str) -> Fit:
    """The fit ``name`` from the folder, or the problem a client gets instead (404 unknown, 422 unusable)."""
    try:
        return store.load(name)
    except KeyError:
        raise ProblemError("unknown-fit", f"unknown fit {name!r}; GET /fits lists the {len(store.names())} available") from None
    except ScalingError as exc:
        raise ProblemError("unusable-fit", f"fit {name!r} cannot be used: {exc}") from None


def _summary(name: str, record: dict[str, Any]) -> dict[str, Any]:
    """A fit's line in ``GET /fits``: its name and the summary fields of its record (``Fit.to_record``, the record
    ``scaling fit --format json`` prints), so the two faces give the same values. A quality value of the wrong type
    in a fit file reads as null there (``FitQuality``), never a 500."""
    return {"name": name, **{key: record[key] for key in SUMMARY_FIELDS}}


def _detail(store: FitStore, name: str) -> dict:
    """``GET /fits/{name}``: the summary, plus the parameters, intervals and derived quantities as plain numbers (as
    the fit file holds them), the quality record, the data summary and the notes."""
    fit = fit_named(store, name)
    record = fit.to_record()
    return to_jsonable(
        {
            **_summary(name, record),
            "reference": record["reference"],
            "params": fit.params,
            "intervals": {k: list(v) for k, v in fit.intervals.items()},
            "derived": fit.derived,
            "ci": record["ci"],
            "quality": record["quality"],
            "data_summary": record["data"],
            "notes": fit.notes,
        }
    )


def routes(store: FitStore) -> APIRouter:
    """The two read endpoints over ``store``."""
    router = APIRouter()
    Name = fit_name_parameter(store)

    @router.get("/fits", response_model=FitList, responses=problem_responses(500))
    def list_fits() -> dict:
        fits, unreadable = [], {}
        for name, entry in store.entries().items():
            try:
                if isinstance(entry, ScalingError):
                    raise entry
                fits.append(_summary(name, store.load(name).to_record()))
            except ScalingError as exc:
                unreadable[name] = str(exc)
            except KeyError:
                continue  # removed since the listing
        return {"fits": fits, "unreadable": unreadable}

    @router.get("/fits/{name}", response_model=FitDetail, responses=problem_responses(404, 422, 500))
    def show_fit(name: Name) -> dict:
        return _detail(store, name)

    return router


__all__ = ["fit_name_parameter", "fit_named", "routes"]
