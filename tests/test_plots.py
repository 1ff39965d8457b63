"""Plotting is notebook-friendly: no backend forced at import, functions draw on a given ``ax`` and return the
Figure, and files are written only when asked."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

matplotlib = pytest.importorskip("matplotlib")
import matplotlib.pyplot as plt  # noqa: E402

import scaling  # noqa: E402
from scaling.report import plots  # noqa: E402


def test_importing_plots_and_report_leaves_the_backend_alone():
    code = (
        "import matplotlib; matplotlib.use('svg')\n"
        "import scaling.report.plots, scaling.report.html\n"
        "print(matplotlib.get_backend())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().lower() == "svg"


@pytest.fixture(scope="module")
def table_and_fit():
    rng = np.random.default_rng(0)
    N, D = (a.ravel() for a in np.meshgrid(np.geomspace(1e6, 1e8, 4), np.geomspace(1e8, 1e10, 3)))
    loss = (1.7 + 400 / N**0.34 + 410 / D**0.28) * np.exp(rng.normal(0, 0.005, N.size))
    df = pd.DataFrame({"N": N, "D": D, "loss": loss})
    return df, scaling.fit(df, law="chinchilla", n_bootstrap=20)


def test_plots_draw_on_the_callers_axes_and_return_its_figure(table_and_fit, tmp_path):
    df, fit = table_and_fit
    fig, (left, right) = plt.subplots(1, 2)
    try:
        assert plots.plot_loss_vs(df, fit, "N", ax=left) is fig
        assert plots.plot_surface(df, fit, ax=right) is fig
        assert len(left.collections) >= 1 and len(left.lines) >= 1  # measured points and fitted curves
        assert left.get_xscale() == "log"
        assert plt.fignum_exists(fig.number), "the caller's figure must stay open"
    finally:
        plt.close(fig)
    assert list(tmp_path.iterdir()) == []


def test_plot_fit_writes_three_pngs_and_closes_its_figures(table_and_fit, tmp_path):
    df, fit = table_and_fit
    before = set(plt.get_fignums())
    paths = plots.plot_fit(df, fit, tmp_path, extrapolate_to=1e9)
    assert [p.name for p in paths] == ["loss_vs_N.png", "loss_vs_D.png", "loss_surface.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(plt.get_fignums()) == before
