"""One library, three faces: a transfer, a repetition and a calibration fit give the same numbers from the CLI
(`scaling fit`), from Python (`scaling.fit`) and over HTTP (`scaling serve`, FastAPI's TestClient)."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke
from test_cli_analyses import calibration_table, repetition_table, transfer_table

import scaling
from scaling.errors import ScalingError

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from scaling.serve.app import create_app  # noqa: E402

CASES = {
    # name: (table, law, extra CLI args, extra Python kwargs, forecast point)
    "transfer": (transfer_table, "transfer", [], {}, {"D_F": 1e6, "N": 1e7}),
    "repetition": (repetition_table, "repetition", ["--fix", "L_inf=1.6"], {"fix": {"L_inf": 1.6}}, {"N": 1e7}),
    "calibration": (calibration_table, "calibration", [], {}, {"N": 1e8}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_python_and_http_agree(case, tmp_path):
    make, law, cli_args, kwargs, point = CASES[case]
    table = make()
    table.to_csv(tmp_path / f"{case}.csv", index=False)
    fits = tmp_path / "fits"
    code, out, err = invoke("fit", f"{case}.csv", "--law", law, "-b", "20", *cli_args, "-o", f"fits/{case}.json",
                            "-f", "json", cwd=tmp_path)
    assert code == 0, err
    from_cli = json.loads(out)

    fitted = scaling.fit(table, law=law, n_bootstrap=20, seed=0, **kwargs)
    if case in ("transfer", "repetition"):  # fitted through the analysis; the analysis rides along
        assert fitted.analysis is not None and len(fitted.analysis.runs)
    else:  # calibration: the plain fit, with every run's finite-sample ECE floor beside it (the CLI prints it)
        floor = fitted.analysis.floor
        cli_floor = pd.DataFrame(from_cli["floor"])
        np.testing.assert_allclose(cli_floor["floor"], floor["floor"], rtol=1e-12)
        assert list(cli_floor["informative"]) == list(floor["informative"]) and fitted.analysis.near_floor_sizes
    saved = scaling.load_fit(fits / f"{case}.json")
    for name, value in fitted.params.items():
        assert saved.params[name] == pytest.approx(value, rel=1e-9), (case, name)
        cli_value = from_cli["params"][name]
        cli_value = cli_value["value"] if isinstance(cli_value, dict) else cli_value
        assert cli_value == pytest.approx(value, rel=1e-9), (case, name)

    python_point = float(fitted.predict(**point)["point"].iloc[0])
    with TestClient(create_app(fits)) as client:
        response = client.post(f"/fits/{case}/forecast", json={"inputs": point})
    assert response.status_code == 200, response.text
    http = response.json()["predictions"][0]
    assert http["point"] == pytest.approx(python_point, rel=1e-9)
    if case == "transfer":  # what the D_T is worth, as `scaling forecast` prints it (CSV columns)
        args = [f"--at={k}={v}" for k, v in point.items()]
        code, out, err = invoke("forecast", f"fits/{case}.json", *args, "-f", "csv", cwd=tmp_path)
        assert code == 0, err
        cli_row = pd.read_csv(io.StringIO(out)).iloc[0]
        for column in ("D_E", "D_E_lower", "D_E_upper", "multiplier", "f_T", "f_T_upper"):
            assert http["effective_data"][column] == pytest.approx(float(cli_row[column]), rel=1e-9), column
        assert http["effective_data"]["D_E"] == pytest.approx(point["D_F"] + python_point, rel=1e-12)
    else:
        assert http["effective_data"] is None


def test_analysis_refuses_options_it_does_not_use():
    with pytest.raises(ScalingError, match="--tie does not apply to the transfer analysis"):
        scaling.fit(transfer_table(), law="transfer", tie={"beta": "alpha"}, n_bootstrap=0)
    with pytest.raises(ScalingError, match="--loss does not apply to the repetition analysis"):
        scaling.fit(repetition_table(), law="repetition", loss="least_squares", n_bootstrap=0)
    with pytest.raises(ScalingError, match="--calibrate does not apply to the transfer analysis"):
        scaling.fit(transfer_table(), law="transfer", calibrate=0, n_bootstrap=0)


def test_repetition_passes_calibrate_to_its_baseline():
    """The repetition baseline is a LawFitter fit with a bootstrap: its rollout cuts follow ``calibrate``."""
    fit = scaling.fit(repetition_table(), law="repetition", calibrate=0, n_bootstrap=5)
    assert fit.settings["calibrate"] == 0 and fit.quality.calibration is None


def test_a_table_that_holds_the_output_is_fitted_directly():
    rng = np.random.default_rng(0)
    D_F, N = np.geomspace(1e5, 1e8, 6).repeat(3), np.tile([1e6, 1e7, 1e8], 6)
    D_T = 1.9e4 * D_F**0.18 * N**0.38 * np.exp(rng.normal(0, 0.01, D_F.size))

    fit = scaling.fit(pd.DataFrame({"D_F": D_F, "N": N, "D_T": D_T}), law="transfer", n_bootstrap=0)
    assert fit.analysis is None and fit.params["alpha"] == pytest.approx(0.18, abs=0.02)
