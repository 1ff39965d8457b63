"""Reproduce Muennighoff et al. 2023 on their own runs (../shared/data/datablations, LAWS.md 5.2).

The 182 runs of the published fit, base Chinchilla constants frozen at the paper's C4 values, R*_D and R*_N fitted
with the Huber objective (delta 1e-3, log space, sum) from the paper's start grid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scaling.estimate import LawFitter, huber
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


@pytest.fixture(scope="module")
def fit(runs):
    return LawFitter("data-constrained", fix=BASE, n_bootstrap=0, seed=0).fit(runs)


def _objective(law, params, runs):
    r = law.log_predict(params, **{c: runs[c].to_numpy() for c in law.inputs}) - np.log(runs["loss"].to_numpy())
    return float(huber(np.asarray(r), 1e-3).sum()), float(np.sqrt(np.mean(np.asarray(r) ** 2)))


def test_the_182_runs(runs):
    assert len(runs) == 182
    assert (runs["U"] <= runs["D"]).all()


def test_reproduces_the_published_decay_constants(fit):
    assert fit.quality["converged"]
    assert fit.params["R_D"] == pytest.approx(15.4, abs=0.5)
    assert fit.params["R_N"] == pytest.approx(5.3, abs=0.2)
    # the base stayed frozen
    for k, v in BASE.items():
        assert fit.params[k] == v
    # the objective matches the notebook's printed minimum (0.015825936570763588, float32 torch)
    assert fit.quality["objective"] == pytest.approx(0.0158259366, rel=1e-6)


def test_beats_plain_chinchilla_with_the_same_base(fit, runs):
    chin = get_law("chinchilla")
    chin_objective, chin_rmse = _objective(chin, BASE, runs)  # no repetition discount: every token counts as fresh
    dc_objective, dc_rmse = _objective(get_law("data-constrained"), fit.params, runs)
    assert dc_objective == pytest.approx(fit.quality["objective"], rel=1e-9)
    assert dc_objective < 0.7 * chin_objective
    assert dc_rmse < 0.6 * chin_rmse  # 0.110 against 0.204


def test_the_published_point_is_a_local_optimum_not_the_global_one(fit, runs):
    # Honest caveat (docs/transfer-repetition-calibration.md): the same objective is lower along a flat valley
    # towards large R*_D and small R*_N, reached from starts outside the paper's grid. The paper's value is the
    # optimum of its own start grid; these runs pin down R*_D and R*_N only loosely.
    law = get_law("data-constrained")
    ridge = LawFitter(law, fix=BASE, n_bootstrap=0, bounds={"R_N": (0.5, 3.0)}).fit(runs)
    assert ridge.quality["objective"] < fit.quality["objective"]
    assert ridge.params["R_D"] > 30 and ridge.params["R_N"] < 3
    assert ridge.quality["objective"] == pytest.approx(fit.quality["objective"], rel=5e-3)  # within 0.5%
