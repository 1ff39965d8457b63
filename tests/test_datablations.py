"""Reproduce Muennighoff et al. 2023 on their own runs (../shared/data/datablations, arXiv 2305.16264).

The 182 runs of the published fit, base Chinchilla constants frozen at the paper's C4 values, R*_D and R*_N fitted
with the Huber objective (delta 1e-3, log space, sum) from the paper's start grid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scaling.fitting.estimate import LawFitter
from scaling.fitting.objective import huber
from scaling.laws import get_law
from scaling.laws.data_constrained import MUENNIGHOFF_C4
from scaling.results import read_results

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "datablations" / "datablations_c4_runs.csv"
MAPPING = {"N": "params_N", "D": "tokens_D", "U": "unique_tokens_U", "loss": "val_loss"}
BASE = {k: MUENNIGHOFF_C4[k] for k in ("E", "A", "B", "alpha", "beta")}

pytestmark = pytest.mark.skipif(
    not DATA.exists(), reason=f"reference data not found at {DATA} (the shared data folder is not checked out)"
)


@pytest.fixture(scope="module")
def runs():
    return read_results(DATA, mapping=MAPPING, where="in_paper_fit_182 == 1", require=["N", "D", "U", "loss"])


# The basin of the published optimum: the paper's optimizer (torch L-BFGS from R* in {6.7, 13.3, 20}) ends there,
# but the same objective is lower outside it (see test_the_global_optimum_lies_elsewhere).
PAPER_BASIN = {"R_D": (5.0, 30.0), "R_N": (3.0, 10.0)}
NOTEBOOK_OBJECTIVE = 0.015825936570763588  # printed by utils/parametric_fit.ipynb (float32 torch)


@pytest.fixture(scope="module")
def fit(runs):
    return LawFitter("data-constrained", fix=BASE, bounds=PAPER_BASIN, n_bootstrap=0, seed=0).fit(runs)


@pytest.fixture(scope="module")
def free_fit(runs):
    return LawFitter("data-constrained", fix=BASE, n_bootstrap=0, seed=0).fit(runs)


def _objective(law, params, runs):
    r = law.log_predict(params, **{c: runs[c].to_numpy() for c in law.inputs}) - np.log(runs["loss"].to_numpy())
    return float(huber(np.asarray(r), 1e-3).sum()), float(np.sqrt(np.mean(np.asarray(r) ** 2)))


def test_the_182_runs_and_the_notebook_objective(runs):
    assert len(runs) == 182
    assert (runs["U"] <= runs["D"]).all()
    # same runs, same law, same objective: the published constants score what the notebook printed
    objective, _ = _objective(get_law("data-constrained"), MUENNIGHOFF_C4, runs)
    assert objective == pytest.approx(NOTEBOOK_OBJECTIVE, rel=1e-6)


def test_reproduces_the_published_decay_constants(fit):
    assert fit.quality.converged and not fit.quality.at_bound  # an interior optimum of the basin
    assert fit.params["R_D"] == pytest.approx(15.4, abs=0.5)
    assert fit.params["R_N"] == pytest.approx(5.3, abs=0.2)
    for k, v in BASE.items():  # the base stayed frozen
        assert fit.params[k] == v
    assert fit.quality.objective == pytest.approx(NOTEBOOK_OBJECTIVE, rel=1e-6)


@pytest.mark.parametrize("which", ["fit", "free_fit"])
def test_beats_plain_chinchilla_with_the_same_base(which, request, runs):
    result = request.getfixturevalue(which)
    chin_objective, chin_rmse = _objective(get_law("chinchilla"), BASE, runs)  # every token counted as fresh
    dc_objective, dc_rmse = _objective(get_law("data-constrained"), result.params, runs)
    assert dc_objective == pytest.approx(result.quality.objective, rel=1e-9)
    assert dc_objective < 0.5 * chin_objective  # 0.0158 against 0.0331
    assert dc_rmse < 0.6 * chin_rmse  # 0.110 against 0.204


def test_the_global_optimum_lies_elsewhere(fit, free_fit):
    # Honest caveat (docs/transfer-repetition-calibration.md): without the basin's bounds the same objective is
    # lower along a flat valley towards large R*_D and small R*_N; the difference is 0.1%.
    assert free_fit.quality.converged
    assert free_fit.quality.objective < fit.quality.objective
    assert free_fit.quality.objective == pytest.approx(fit.quality.objective, rel=5e-3)
    assert free_fit.params["R_D"] > 30 and free_fit.params["R_N"] < 3


@pytest.mark.slow
def test_bootstrap_shows_r_star_poorly_determined(runs):
    boot = LawFitter("data-constrained", fix=BASE, n_bootstrap=100, seed=0, group="run_name").fit(runs)
    lo, hi = boot.intervals["R_D"]
    assert lo < 15.4 < hi and hi / lo > 10
    lo, hi = boot.intervals["R_N"]
    assert lo < 5.3 < hi


def test_cli_fit_matches_the_library(tmp_path, capsys, monkeypatch, free_fit):
    import json

    from scaling.cli import main

    monkeypatch.chdir(tmp_path)
    fix = [f"--fix={k}={v!r}" for k, v in BASE.items()]
    main(
        [
            "fit",
            str(DATA),
            "--law",
            "data-constrained",
            "--map",
            "N=params_N",
            "--map",
            "D=tokens_D",
            "--map",
            "U=unique_tokens_U",
            "--map",
            "loss=val_loss",
            "--where",
            "in_paper_fit_182 == 1",
            *fix,
            "--bootstrap",
            "0",
            "--format",
            "json",
            "-o",
            "dc.json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert out["params"]["R_D"]["value"] == pytest.approx(free_fit.params["R_D"], rel=1e-6)
    assert out["params"]["R_N"]["value"] == pytest.approx(free_fit.params["R_N"], rel=1e-6)
    assert (tmp_path / "dc.json").exists()
