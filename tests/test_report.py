"""scaling report: a self-contained HTML page with labelled figures, rendered for real in headless Chromium."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from scaling.analysis.backtest import backtest
from scaling.errors import ScalingError
from scaling.laws.chinchilla import chinchilla_loss, chinchilla_optimal
from scaling.report.html import build_report

BESIROGLU = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
# Axis-label vocabulary: every figure must name a quantity with its unit on both axes.
UNITS = ("nats/token", "parameters", "tokens", "FLOPs", "log(measured / fitted)", "calibration error", "epochs")


def sweep_table(budgets=(1e13, 1e14, 1e15, 1e16), sizes=5, evals=(0.25, 0.5, 1.0), seed=0):
    """An isoFLOP sweep whose runs log intermediate evaluations, with 0.5% noise (curves + final rows)."""
    rng = np.random.default_rng(seed)
    rows = []
    for C in budgets:
        N0, _ = chinchilla_optimal(BESIROGLU, C)
        for j, N in enumerate(N0 * np.geomspace(0.1, 10, sizes)):
            for f in evals:
                D = f * C / (6 * N)
                rows.append(
                    {
                        "run_id": f"{C:.0e}-{j}",
                        "N": N,
                        "D": D,
                        "final": int(f == 1.0),
                        "loss": chinchilla_loss(N, D, **BESIROGLU) * np.exp(rng.normal(0, 0.005)),
                    }
                )
    df = pd.DataFrame(rows)
    df.attrs["source"] = "sweep.csv"
    return df


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("r") / "report"
    path = build_report(sweep_table(), out_dir=out, n_bootstrap=5, seed=0)
    return path


def test_report_is_self_contained_with_all_sections(report):
    text = report.read_text()
    for title in ("Data", "Fit: chinchilla", "Compute-optimal planning", "Backtest", "IsoFLOP profiles"):
        assert title in text
    assert "laws ranked by extrapolation error" in text
    # No external resource: every image is an inline PNG that decodes.
    assert not re.search(r"(src|href)=['\"](https?:|file:|/)", text)
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", text)
    assert len(images) >= 10
    for b64 in images:
        im = Image.open(io.BytesIO(base64.b64decode(b64)))
        assert im.size[0] > 300 and im.size[1] > 200


def test_figures_written_as_png_and_svg_with_labelled_axes(report):
    folder = report.parent / "figures"
    pngs = sorted(p.stem for p in folder.glob("*.png"))
    svgs = sorted(p.stem for p in folder.glob("*.svg"))
    assert pngs == svgs and {
        "data_loss_vs_N",
        "isoflop_profiles",
        "frontier",
        "backtest",
        "fit_chinchilla_residuals",
        "fit_chinchilla_frontier",
    } <= set(pngs)
    for svg in folder.glob("*.svg"):
        text = svg.read_text()
        found = {u for u in UNITS if u in text.replace("&gt;", ">")}
        assert len(found) >= 1, f"{svg.name}: no axis label with a unit"
        assert text.count("<text") >= 4 or "text" in text  # labels are text, not outlines


def _chromium() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


def test_rendered_in_headless_chromium(report, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium found (apt-get install chromium) to render the report")
    shot = tmp_path / "page.png"
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tempfile.mkdtemp()}",
        "--hide-scrollbars",
        "--window-size=1280,4000",
        f"--screenshot={shot}",
        report.resolve().as_uri(),
    ]
    subprocess.run(cmd, check=False, capture_output=True, timeout=120)
    assert shot.is_file(), "Chromium wrote no screenshot"
    im = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert im.shape[:2] == (4000, 1280)
    gray = im.mean(axis=2)
    # A real page with figures, not a blank or error page (calibrated on this report: a blank page has 0.1%
    # non-white pixels and ~30 colours; the same page with its images removed 4.4% and ~30 colours and 0.04%
    # coloured pixels; the real page 7%, ~600 colours and 0.8% coloured pixels).
    assert (gray < 245).mean() > 0.03
    colours = np.unique((im[::4, ::4] // 16).astype(int).reshape(-1, 3), axis=0)
    assert len(colours) > 150
    saturation = im.max(axis=2) - im.min(axis=2)
    assert (saturation > 60).mean() > 0.003  # coloured markers, colour bars, fitted curves


def test_transfer_repetition_and_calibration_sections(tmp_path):
    rng = np.random.default_rng(1)
    rows = []
    for N in (1e5, 1e6, 1e7):
        for i, D_F in enumerate((1e5, 1e6, 1e7)):
            epochs = 2.0**i
            rows.append(
                {
                    "N": N,
                    "D": 1e8,
                    "D_F": D_F,
                    "U": 1e8 / epochs,
                    "epochs": epochs,
                    "loss": 3 * N**-0.05 * D_F**-0.02 * np.exp(rng.normal(0, 0.01)),
                    "ece": 0.2 * N**-0.1,
                }
            )
    df = pd.DataFrame(rows)
    df.attrs["source"] = "special.csv"
    from scaling.fitting.result import load_fit

    path = build_report(
        df, [("kaplan2020-n", load_fit("kaplan2020-n"))], out_dir=tmp_path / "r", n_bootstrap=0, run_backtest=False
    )
    text = path.read_text()
    for title in ("Transfer", "Repetition", "Calibration"):
        assert f"<h2>{title}</h2>" in text
    assert {"transfer", "repetition", "calibration"} <= {p.stem for p in (path.parent / "figures").glob("*.png")}


def test_nothing_written_on_failure_and_safe_replacement(tmp_path):
    from scaling.fitting.result import load_fit

    out = tmp_path / "r"
    small = sweep_table(budgets=(1e13, 1e14), sizes=3, evals=(1.0,))
    with pytest.raises(ScalingError, match="positive"):  # fails late: in the planning section, after figures
        build_report(small, [("chinchilla", load_fit("chinchilla"))], out_dir=out, run_backtest=False, compute=[-1.0])
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no half report, no temporary folder
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    with pytest.raises(ScalingError, match="not empty and holds no report"):
        build_report(sweep_table(), out_dir=tmp_path / "notes", n_bootstrap=0, run_backtest=False)
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"


def test_cli_report_with_saved_backtest(tmp_path, capsys):
    from scaling.cli import main

    df = sweep_table(budgets=(1e13, 1e14, 1e15), sizes=4, evals=(0.5, 1.0))
    csv = tmp_path / "sweep.csv"
    df.to_csv(csv, index=False)
    saved = backtest(df, ["chinchilla", "power:N"], "largest-N", n_bootstrap=0).save(tmp_path / "bt.json")
    main(
        [
            "report",
            str(csv),
            "chinchilla",
            "-o",
            str(tmp_path / "rep"),
            "--backtest",
            str(saved),
            "--bootstrap",
            "0",
            "--compute",
            "1e17",
        ]
    )
    text = (tmp_path / "rep" / "index.html").read_text()
    assert "Fit: chinchilla" in text and "power:N" in text and "1e+17" in text
    assert "wrote" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(csv), "-o", str(csv)])
    assert exit_.value.code == 2 and "is a file" in capsys.readouterr().err
