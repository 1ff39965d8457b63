"""FitQuality: typed fields, and a fit file's quality object re-saved exactly as it was (unknown keys, nulls, wrong
types included)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

import scaling
from scaling.fitting.diagnostics import FitWarning
from scaling.fitting.fitfile import published_dir

from scaling.fitting.quality import FitQuality
from scaling.laws import get_law


@pytest.fixture(scope="module")
def fitted():
    N, D = np.meshgrid(np.geomspace(7e7, 1.6e10, 4), np.geomspace(5e9, 5e11, 4))
    df = pd.DataFrame({"N": N.ravel(), "D": D.ravel()})
    df["loss"] = get_law("chinchilla").predict({"E": 1.8, "A": 480, "B": 2000, "alpha": 0.34, "beta": 0.36},
                                               N=df.N, D=df.D) * np.exp(np.random.default_rng(2).normal(0, 0.01, len(df)))
    return scaling.fit(df, law="chinchilla", n_bootstrap=0, n_refine=4)


def test_a_fit_reports_typed_fields(fitted):
    q = fitted.quality
    assert isinstance(q, FitQuality)
    assert (q.n_points, q.n_distinct_points, q.n_params_free) == (16, 16, 5)
    assert isinstance(q.rmse_log, float) and isinstance(q.objective, float) and q.residual_space == "log"
    assert q.converged is (q.convergence == "converged") and q.message.startswith(q.convergence)
    assert isinstance(q.at_bound, list) and all(isinstance(w, FitWarning) for w in q.warnings)
    assert q.bootstrap_failed_fraction is None and q.seconds > 0 and q.extra == {}
    # without bootstrap the fraction is reported as null, not left out (the file format since version 1)
    assert fitted.to_dict()["quality"]["bootstrap_failed_fraction"] is None


def test_fit_takes_a_mapping_and_converts_it(fitted):
    fit = scaling.Fit(fitted.law, fitted.params, quality={"n_points": 3, "rmse_log": 0.5, "warnings": ["x"]})
    assert fit.quality.n_points == 3 and fit.quality.rmse_log == 0.5 and fit.quality.converged is None
    assert fit.quality.warnings == [FitWarning("unclassified", "x")]
    assert fit.quality.to_dict() == {"n_points": 3, "rmse_log": 0.5, "warnings": [FitWarning("unclassified", "x").to_dict()]}


def test_only_reported_fields_are_written():
    assert FitQuality().to_dict() == {"warnings": []}  # a published law: its warnings and nothing else
    assert FitQuality(calibration=None).to_dict() == {"calibration": None, "warnings": []}
    q = FitQuality()
    q.seconds = 1.5  # set since construction: written
    assert q.to_dict() == {"warnings": [], "seconds": 1.5}


def test_old_fit_file_with_unknown_keys_re_saves_the_same_quality(fitted, tmp_path):
    d = fitted.to_dict()
    d["quality"] = {"n_points": 16, "rmse_log": 0.01, "converged": True, "warnings": ["alpha is at a bound (x)"],
                    "newer_tool_metric": {"a": [1, 2]}, "n_points_cleaned": 15}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(d))
    loaded = scaling.load_fit(path)
    assert loaded.quality.extra == {"newer_tool_metric": {"a": [1, 2]}, "n_points_cleaned": 15}
    assert loaded.quality.converged is True and loaded.convergence == "converged"
    again = json.loads(loaded.save(tmp_path / "again.json").read_text())["quality"]
    assert again == {**d["quality"], "warnings": [{"code": "param_at_bound", "severity": "warning",
                                                   "message": "alpha is at a bound (x)"}]}


@pytest.mark.parametrize("name", sorted(p.stem for p in published_dir().glob("*.json")))
def test_published_fits_re_save_identically(name, tmp_path):
    original = json.loads((published_dir() / f"{name}.json").read_text())
    again = json.loads(scaling.load_fit(name).save(tmp_path / "f.json").read_text())
    stamped = {"scaling_version": None, "created": None}  # a save stamps its version, and a time when there was none
    assert {**again, **stamped} == {**original, **stamped}


def test_wrong_types_read_none_and_are_kept_as_stored(fitted, tmp_path):
    d = fitted.to_dict()
    d["quality"].update(n_points="many", rmse_log=True, converged="yes", at_bound="alpha", calibration=[1],
                        warnings="not a list")
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(d))
    q = scaling.load_fit(path).quality
    assert (q.n_points, q.rmse_log, q.converged, q.calibration, q.at_bound, q.warnings) == (None, None, None, None, [], [])
    assert q.extra == {"n_points": "many", "rmse_log": True, "converged": "yes", "at_bound": "alpha", "calibration": [1]}
    fit = scaling.load_fit(path)
    fit.summary(), fit.predict(N=1e9, D=1e10), fit.interval_status  # usable: no exception
    again = json.loads(fit.save(tmp_path / "again.json").read_text())["quality"]
    assert again == {**d["quality"], "warnings": []}  # a non-list warnings value always read as none


def test_a_copy_reports_what_the_original_did():
    q = FitQuality(n_points=5, calibration=None)
    copy = dataclasses.replace(q, calibration={"axis": "N"}, seconds=None)
    assert copy.to_dict() == {"n_points": 5, "warnings": [], "calibration": {"axis": "N"}}
    assert dataclasses.replace(FitQuality()).to_dict() == {"warnings": []}


def test_every_field_is_type_checked_on_load():
    from scaling.fitting import quality

    assert set(quality._TYPES) == {f.name for f in dataclasses.fields(FitQuality)} - {"extra", "_reported"}


def test_assigning_a_mapping_converts_it(fitted):
    fit = scaling.Fit(fitted.law, fitted.params)
    fit.quality = {"n_points": 4, "calibration": None}
    assert isinstance(fit.quality, FitQuality) and fit.quality.n_points == 4
    assert fit.to_dict()["quality"] == {"n_points": 4, "warnings": [], "calibration": None}
