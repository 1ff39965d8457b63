"""Fit files: exact round trip (forecast intervals reproduce), versioning, validation, name lookup, published fits."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import scaling
from scaling.errors import ScalingError
from scaling.fitting.fitfile import FORMAT_VERSION, published_names, save_fit
from scaling.fitting.result import load_fit
from scaling.laws import get_law

BESIROGLU = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


@pytest.fixture(scope="module")
def fitted():
    N, D = np.meshgrid(np.geomspace(7e7, 1.6e10, 5), np.geomspace(5e9, 5e11, 5))
    df = pd.DataFrame({"N": N.ravel(), "D": D.ravel()})
    df["loss"] = get_law("chinchilla").predict(BESIROGLU, N=df.N, D=df.D) * np.exp(
        np.random.default_rng(1).normal(0, 0.01, len(df)))
    return scaling.fit(df, law="chinchilla", n_bootstrap=15, n_refine=4, fix={"E": 1.8172})


def test_round_trip_reproduces_forecasts_and_intervals_exactly(fitted, tmp_path):
    path = fitted.save(tmp_path / "sub" / "my.json")
    loaded = load_fit(path)
    assert loaded.params == fitted.params and loaded.fixed == {"E": 1.8172}
    pd.testing.assert_frame_equal(loaded.draws, fitted.draws)
    assert loaded.intervals == fitted.intervals
    pd.testing.assert_frame_equal(loaded.predict(N=[1e9, 7e10], D=1.4e12), fitted.predict(N=[1e9, 7e10], D=1.4e12))
    pd.testing.assert_frame_equal(loaded.optimal([1e21, 5.76e23]), fitted.optimal([1e21, 5.76e23]))
    assert loaded.summary() == fitted.summary()
    d = json.loads(path.read_text())
    assert d["format_version"] == FORMAT_VERSION and d["scaling_version"] == scaling.__version__
    assert d["law"] == "chinchilla" and d["formula"] == "L = E + A/N^alpha + B/D^beta"
    assert d["param_def"] == "nonemb" and len(d["draws"]["rows"]) == 15
    assert {"rows", "ranges", "source", "sha256"} <= set(d["data_summary"])
    # Saving the loaded fit writes the same content.
    again = json.loads(loaded.save(tmp_path / "again.json").read_text())
    assert again == d


def test_retargeted_law_round_trips_by_name(tmp_path):
    D = np.geomspace(1e6, 1e9, 8)
    df = pd.DataFrame({"D": D, "loss": 1.5 + 300 * D**-0.3})
    fit = scaling.fit(df, n_bootstrap=0)
    assert fit.law_name == "saturating:D"
    loaded = load_fit(fit.save(tmp_path / "sat.json"))
    assert loaded.law.inputs == ("D",) and loaded.law_name == "saturating:D"
    assert loaded.predict(D=1e10)["point"][0] == pytest.approx(fit.predict(D=1e10)["point"][0], rel=1e-15)


def _write(tmp_path, d, name="f.json"):
    p = tmp_path / name
    p.write_text(json.dumps(d))
    return p


def test_newer_format_version_is_refused(fitted, tmp_path):
    d = fitted.to_dict()
    d["format_version"] = FORMAT_VERSION + 1
    p = _write(tmp_path, d)
    with pytest.raises(ScalingError, match=rf"{p}: fit file format version 2 is newer"):
        load_fit(p)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(law="__import__('os').system('true')"), "unknown law"),
        (lambda d: d.pop("params"), "field params"),
        (lambda d: d["params"].pop("beta"), "missing beta"),
        (lambda d: d["params"].update(beta="big"), "field params.beta"),
        (lambda d: d.update(param_def="embeddings"), "field param_def"),
        (lambda d: d.update(surprise=1), "field surprise"),
        (lambda d: d["draws"]["rows"][0].pop(), "every row needs 5 values"),
        (lambda d: d.pop("format_version"), "no format_version"),
    ],
)
def test_invalid_fit_files_give_one_line_naming_the_file(fitted, tmp_path, change, message):
    d = fitted.to_dict()
    change(d)
    p = _write(tmp_path, d)
    with pytest.raises(ScalingError, match=message) as info:
        load_fit(p)
    assert str(p) in str(info.value) and "\n" not in str(info.value)


def test_not_json_and_missing_files(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text("{not json")
    with pytest.raises(ScalingError, match="not valid JSON"):
        load_fit(p)
    with pytest.raises(ScalingError, match="no fit of that name"):
        load_fit("no-such-fit")
    with pytest.raises(ScalingError, match="is a folder"):
        load_fit(tmp_path)


def test_nothing_is_written_on_failure(fitted, tmp_path):
    target = tmp_path / "adir"
    target.mkdir()
    with pytest.raises(ScalingError, match="is a folder"):
        save_fit(fitted, target)
    assert os.listdir(target) == []
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # root ignores permissions
            pytest.skip("running as root: cannot make a read-only folder")
        with pytest.raises(ScalingError, match="cannot write"):
            save_fit(fitted, ro / "x.json")
        assert os.listdir(ro) == []
    finally:
        ro.chmod(0o700)


def test_name_lookup_prefers_the_local_fits_folder(fitted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_fit("chinchilla").meta["kind"] == "published"
    fitted.save(tmp_path / "fits" / "chinchilla.json")
    assert load_fit("chinchilla").meta["kind"] == "fitted"
    assert load_fit("chinchilla.json").meta["kind"] == "fitted"


def test_published_fits_name_their_paper_and_units():
    assert {"chinchilla", "besiroglu2024", "kaplan2020", "kaplan2020-n", "kaplan2020-d"} <= set(published_names())
    expected = {
        "chinchilla": ("chinchilla", "total", {"E": 1.6934, "A": 406.4, "B": 410.7, "alpha": 0.3392, "beta": 0.2849}),
        "besiroglu2024": ("chinchilla", "total", BESIROGLU),
        "kaplan2020": ("kaplan-nd", "nonemb", {"alpha_N": 0.076, "alpha_D": 0.103, "N_c": 6.4e13, "D_c": 1.8e13}),
        "kaplan2020-n": ("kaplan-n", "nonemb", {"alpha_N": 0.076, "N_c": 8.8e13}),
        "kaplan2020-d": ("kaplan-d", "nonemb", {"alpha_D": 0.095, "D_c": 5.4e13}),
    }
    for name, (law, param_def, params) in expected.items():
        f = load_fit(name)
        assert f.law_name == law and f.param_def == param_def and f.params == params, name
        assert f.meta["kind"] == "published" and "arXiv" in f.meta["reference"], name
        assert {"N", "loss"} <= set(f.meta["units"]) and "token" in f.meta["units"]["D"], name
        assert len(f.draws) == 0
    b = load_fit("besiroglu2024")
    assert b.intervals["alpha"] == (0.317, 0.373) and b.ci == 0.95


def test_to_lmfit_carries_fixed_tied_and_stderr(fitted):
    p = fitted.to_lmfit()
    assert p["E"].vary is False and p["E"].value == 1.8172
    assert p["alpha"].stderr == pytest.approx(float(np.std(fitted.draws["alpha"], ddof=1)))
    assert p["alpha"].value == fitted.params["alpha"]


def test_an_installed_wheel_finds_the_published_fits_by_name(tmp_path):
    """A non-editable install has no repository beside it: the wheel must carry fits/ (as scaling/published)."""
    repo = Path(scaling.__file__).resolve().parents[1]
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, src / name)
    shutil.copytree(repo / "fits", src / "fits", ignore=shutil.ignore_patterns("results*"))
    shutil.copytree(repo / "scaling", src / "scaling", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src)]
    subprocess.run([*build, "-w", str(tmp_path / "dist")], check=True, cwd=tmp_path, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)  # a wheel is a zip of the installed tree
    shipped = {p.stem for p in (site / "scaling" / "published").glob("*.json")}
    assert shipped == {p.stem for p in (src / "fits").glob("*.json")} and "chinchilla" in shipped
    probe = (
        "import scaling; from scaling.fitting.result import load_fit; f = load_fit('chinchilla');"
        "print(scaling.__file__, f.law_name, f.params['E'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,  # no ./fits here
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == [str(site / "scaling" / "__init__.py"), "chinchilla", "1.6934"]


def test_killed_writer_leaves_an_orphan_that_the_next_write_removes(tmp_path):
    """A writer SIGKILLed between writing its temporary file and the rename leaves ``.x.json.PID.*.tmp`` behind;
    the next write to x.json removes it (its process is gone) and leaves the file whole."""
    import signal

    from scaling.fitting.fitfile import write_text_atomic

    script = (
        "import os, signal; from pathlib import Path; from scaling.fitting import fitfile\n"
        "os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)  # die right before the rename\n"
        "fitfile.write_text_atomic(Path('x.json'), '{\"half\": true}')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    orphans = list(tmp_path.glob(".x.json.*.tmp"))
    assert len(orphans) == 1 and not (tmp_path / "x.json").exists()
    write_text_atomic(tmp_path / "x.json", "{}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]
    assert (tmp_path / "x.json").read_text() == "{}\n"


def test_a_live_writers_temporary_file_is_kept(tmp_path):
    """Another process still writing (its PID alive, its file fresh) keeps its temporary file."""
    from scaling.fitting.fitfile import write_text_atomic

    live = tmp_path / f".x.json.{os.getpid()}.abcdefgh.tmp"
    live.write_text("in progress")
    write_text_atomic(tmp_path / "x.json", "{}\n")
    assert live.exists()


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_output_must_be_a_regular_file_or_new(tmp_path, kind):
    from scaling.fitting.fitfile import write_text_atomic

    target = tmp_path / "out"
    os.mkfifo(target) if kind == "fifo" else target.mkdir()
    with pytest.raises(ScalingError, match="is a FIFO, not a regular file" if kind == "fifo" else "is a folder"):
        write_text_atomic(target, "{}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_file_far_too_large_for_a_fit_is_refused_before_reading(tmp_path, monkeypatch):
    import scaling.fitting.fitfile as fitfile

    path = tmp_path / "big.json"
    path.write_text(json.dumps({"format_version": 1, "padding": "x" * 5000}))
    monkeypatch.setattr(fitfile, "MAX_FIT_BYTES", 4096)  # the real limit is 64 MiB: same check, smaller file
    with pytest.raises(ScalingError, match=r"big.json: 5,\d\d\d bytes, too large for a fit file \(at most 4,096\)"):
        load_fit(path)
