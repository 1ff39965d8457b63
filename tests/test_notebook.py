"""docs/notebook.ipynb runs top to bottom with the installed package (nbclient), on a user's table and fit file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

from scaling.analysis import fit as fit_law
from scaling.fitting.fitfile import save_fit
from scaling.laws.chinchilla import chinchilla_loss

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebook.ipynb"
TRUTH = {"E": 1.9, "A": 500.0, "B": 3000.0, "alpha": 0.34, "beta": 0.38}


def _outputs(nb, kind):
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out["output_type"] == kind:
                yield out


def test_notebook_runs_on_a_users_results_and_fit(tmp_path, monkeypatch):
    # The user's sweep (final rows of a 5 x 5 grid) and the fit they made of it with `scaling fit`.
    rng = np.random.default_rng(0)
    N, D = (a.ravel() for a in np.meshgrid(np.geomspace(1e6, 1e8, 5), np.geomspace(2e7, 2e9, 5)))
    df = pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(25)],
            "N": N,
            "D": D,
            "final": 1,
            "loss": chinchilla_loss(N, D, **TRUTH) * np.exp(rng.normal(0, 0.01, 25)),
        }
    )
    df.to_csv(tmp_path / "results.csv", index=False)
    mine = fit_law(df, law="chinchilla", n_bootstrap=30, seed=0)
    save_fit(mine, tmp_path / "mine.json")
    monkeypatch.setenv("SCALING_RESULTS", str(tmp_path / "results.csv"))
    monkeypatch.setenv("SCALING_FIT", str(tmp_path / "mine.json"))

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the failing cell, if any cell fails

    streams = "".join(o["text"] for o in _outputs(nb, "stream"))
    assert "results.csv: 25 rows" in streams  # it used the user's table, not the example
    assert "synthetic" not in streams
    assert "Hoffmann et al. at 5.76e23 FLOPs: N_opt = 4.031e+10" in streams
    assert f"{mine.params['alpha']:.6g}" in streams  # the summary printed is the user's fit file
    figures = [o for o in _outputs(nb, "display_data") if "image/png" in o["data"]]
    assert len(figures) == 1 and len(figures[0]["data"]["image/png"]) > 10_000
    tables = [o["data"]["text/plain"] for o in _outputs(nb, "execute_result")]
    assert any("N_opt (hoffmann)" in t for t in tables) and any("chinchilla" in t and "rmse_log" in t for t in tables)
