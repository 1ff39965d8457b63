"""``scaling fit --law transfer|repetition|calibration|data-constrained`` from raw results tables, and the matching
``scaling forecast`` questions, through the real entry point.

Every table is synthetic, generated from known parameters (the published constants of LAWS.md), so each fit can
be checked against the truth. Commands run in-process through :func:`scaling.cli.main` (what the console script
calls) with small bootstraps; one test runs the console script in a subprocess.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.cli import main
from scaling.errors import ScalingError
from scaling.estimate import LawFitter
from scaling.laws import get_law

ENV = {**os.environ, "NO_COLOR": "1"}


def run(capsys, *args: str) -> tuple[int, str, str]:
    """In-process ``scaling ARGS``: (exit status, stdout, stderr)."""
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code: int, out: str, err: str, *fragments: str) -> str:
    """Exit 2, nothing on stdout, exactly one line on stderr starting with 'error:', no traceback."""
    assert code == 2, (code, out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---------------------------------------------------------------------------------------------------------
# The engine refuses a fit with nothing to fit


CALIBRATION = {"ECE_inf": 0.01, "a": 2.0, "b": 0.3}


def calibration_table(noise: float = 0.02, seed: int = 0, count: float = 2e4) -> pd.DataFrame:
    """ECE(N) at 7 sizes from CALIBRATION, log-normal noise, scored on ``count`` predictions per run."""
    rng = np.random.default_rng(seed)
    N = np.geomspace(1e5, 1e9, 7)
    ece = get_law("calibration").predict(CALIBRATION, N=N) * np.exp(noise * rng.standard_normal(N.size))
    return pd.DataFrame({"run_id": [f"c{i}" for i in range(N.size)], "N": N, "ece": ece, "ece_count": count})


def test_engine_with_every_parameter_fixed_says_so():
    with pytest.raises(ScalingError, match="all parameters are fixed; nothing to fit"):
        LawFitter("calibration", fix=CALIBRATION, n_bootstrap=0).fit(calibration_table())


def test_fit_with_every_parameter_fixed_is_a_user_error(workdir, capsys):
    calibration_table().to_csv("cal.csv", index=False)
    code, out, err = run(capsys, "fit", "cal.csv", "--law", "calibration", "--fix", "ECE_inf=0.01,a=2,b=0.3")
    assert_user_error(code, out, err, "all parameters are fixed")
    assert not (workdir / "fits").exists()
