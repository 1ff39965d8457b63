"""The training loop end to end: real training on the shipped English corpus, rows in results.csv, resume,
WSD branches, transfer, repetition accounting, bad input. Runs are tiny (a few thousand parameters, ~1e4 tokens).
"""

from __future__ import annotations

import csv
import math
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from scaling.errors import ScalingError
from scaling.results import append_rows
from scaling.train import record
from scaling.train.cli import main
from scaling.train.config import RunConfig, run_id, validate_config
from scaling.train.loop import train

REPO = Path(__file__).resolve().parents[1]
TIMING = {"wall_s", "tokens_per_s", "mfu"}  # the only columns allowed to differ between identical runs

TINY = dict(
    corpus="english",
    n_layer=2,
    d_model=32,
    context=32,
    batch_size=8,  # 256 tokens per step
    tokens=40 * 256,
    lr=3e-3,
    eval_points=2,  # evals at steps 10, 20 and 40
    eval_tokens=2048,
    threads=1,
    peak_flops=1e11,  # skip measuring the machine's matmul peak
    checkpoint_every=None,
)


# the shared token cache and offline flags (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("offline_token_cache")


def read_rows(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def cfg(tmp_path, **kw) -> dict:
    return {**TINY, "out_dir": str(tmp_path / "runs"), **kw}


def strip_timing(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in TIMING}


# ---------------------------------------------------------------------------------------------------------


def test_entry_point_end_to_end(tmp_path):
    """The real script in a fresh process: rows, final weights, and a second call that does nothing."""
    results = tmp_path / "results.csv"
    cmd = [sys.executable, str(REPO / "trainers" / "train.py"), "--config", str(REPO / "configs/runs/smoke.yaml"),
           "--results", str(results), f"out_dir={tmp_path / 'runs'}", "tokens=65536", "eval_tokens=8192", "peak_flops=1e11"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_rows(results)
    assert list(rows[0]) == record.HEADER
    assert [int(r["step"]) for r in rows] == [4, 8, 16]  # halvings of 16 steps, then the end
    assert [r["final"] for r in rows] == ["0", "0", "1"]
    final = rows[-1]
    assert int(final["D"]) == 65536 and int(final["tokens"]) == 65536
    assert int(final["N"]) == 32928 and int(final["N_total"]) == 32928 + 256 * 32
    assert float(final["C"]) == 6 * 32928 * 65536
    assert float(final["C_exact"]) > float(final["C"])  # attention and the LM head on top of 6N
    losses = [float(r["loss"]) for r in rows]
    assert losses[0] > losses[-1] and losses[-1] < math.log(256)  # it learned something
    assert float(final["bits_per_byte"]) == pytest.approx(float(final["loss"]) / math.log(2))  # bytes tokenizer
    assert int(final["ece_count"]) == 8192 and 0 <= float(final["ece"]) < 0.5
    assert final["corpus"] == final["target"] == "english" and final["precision"] == "fp32"
    assert float(final["tokens_per_s"]) > 0 and float(final["mfu"]) > 0
    run_dir = tmp_path / "runs" / final["run_id"]
    assert (run_dir / "final" / "model.safetensors").is_file() and not list(run_dir.glob("ckpt-*"))
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and "already finished" in again.stderr
    assert len(read_rows(results)) == 3


def test_kill_and_resume_equals_uninterrupted(tmp_path):
    whole = train(cfg(tmp_path / "a"), tmp_path / "a.csv")
    assert whole.finished and [r["step"] for r in whole.rows] == [10, 20, 40]

    results = tmp_path / "b.csv"
    first = train(cfg(tmp_path / "b", checkpoint_every=7, stop_after_steps=25), results)
    assert first.stopped_at == 25 and not first.finished
    assert [r["step"] for r in first.rows] == [10, 20]
    run_dir = tmp_path / "b" / "runs" / first.run_id
    assert (run_dir / "latest").read_text() == "ckpt-000000021"  # checkpoints at 7, 14, 21: only the last is kept
    second = train(cfg(tmp_path / "b", checkpoint_every=7), results)
    assert second.finished and second.run_id == first.run_id == whole.run_id
    assert [r["step"] for r in second.rows] == [40]  # 10 and 20 were written before the crash: not again
    rows = read_rows(results)
    assert [r["step"] for r in rows] == ["10", "20", "40"]
    expected = read_rows(tmp_path / "a.csv")
    assert [strip_timing(r) for r in rows] == [strip_timing(r) for r in expected]  # bit for bit, train_loss too
    third = train(cfg(tmp_path / "b", checkpoint_every=7), results)
    assert third.skipped and len(read_rows(results)) == 3


def test_wsd_branches_equal_separate_runs(tmp_path):
    """A cooldown branch is exactly the run of its budget; the main run is unchanged by its branches."""
    base = cfg(tmp_path, schedule="wsd", warmup=0.0, cooldown=0.25, tokens=40 * 256, eval_points=0)
    with_branch = train({**base, "branches": [16 * 256]}, tmp_path / "w.csv")
    assert [(r["branch"], r["step"], r["final"]) for r in with_branch.rows] == [(1, 16, 1), (0, 40, 1)]
    alone_main = train(base, tmp_path / "main.csv")
    alone_short = train({**base, "tokens": 16 * 256}, tmp_path / "short.csv")
    branch, main_final = with_branch.rows
    for got, want in ((branch, alone_short.rows[-1]), (main_final, alone_main.rows[-1])):
        assert got["loss"] == want["loss"] and got["train_loss"] == want["train_loss"]
        assert got["D"] == want["D"] and got["tokens"] == want["tokens"]
    assert branch["run_id"] == main_final["run_id"] != alone_short.run_id


def test_transfer_loads_pretrained_weights(tmp_path):
    text = tmp_path / "code.txt"
    text.write_text(_python_text(700_000))
    pre = train(cfg(tmp_path, corpus=str(text), tokens=20 * 256, eval_points=0), tmp_path / "r.csv")
    src_dir = tmp_path / "runs" / pre.run_id
    # Fine-tune with a learning rate so small that the weights cannot move: the result must equal the source.
    ft = train(cfg(tmp_path, init_from=str(src_dir), tokens=4 * 256, lr=1e-12, weight_decay=0.0, eval_points=0,
                   n_layer=None, d_model=None), tmp_path / "r.csv")
    src = load_file(src_dir / "final" / "model.safetensors")
    got = load_file(tmp_path / "runs" / ft.run_id / "final" / "model.safetensors")
    assert src.keys() == got.keys()
    for k in src:
        torch.testing.assert_close(got[k], src[k], atol=1e-8, rtol=0)
    fresh = load_file(tmp_path / "runs" / train(cfg(tmp_path, tokens=4 * 256, lr=1e-12, weight_decay=0.0, eval_points=0),
                                                tmp_path / "s.csv").run_id / "final" / "model.safetensors")
    assert not torch.allclose(fresh["model.layers.0.mlp.up_proj.weight"], src["model.layers.0.mlp.up_proj.weight"])
    row = ft.rows[-1]
    assert row["source"] == str(text) and row["target"] == row["corpus"] == "english"
    assert row["D_pretrain"] == 20 * 256 and row["D_F"] == row["D"] == 4 * 256
    pre_row = pre.rows[-1]
    assert pre_row["source"] is None and pre_row["D_F"] is None and pre_row["corpus"] == str(text)


def test_repetition_rows_are_exact(tmp_path):
    out = train(cfg(tmp_path, unique_tokens=2048), tmp_path / "r.csv")  # 40 steps of 256 over 2048 tokens
    final = out.rows[-1]
    assert final["U"] == 2048 and final["D"] == 40 * 256 and final["epochs"] == 5.0
    first = out.rows[0]  # step 10: 2560 tokens drawn, every one of the 2048 already seen once
    assert first["U"] == 2048 and first["epochs"] == 2560 / 2048
    assert final["repeated_loss"] is None  # no repeated subset in an epochs run
    rep = train(cfg(tmp_path, repeat_fraction=0.5, repeat_count=4), tmp_path / "h.csv").rows[-1]
    # f*D = 5120 tokens from a subset of f*D/k = 1280 tokens; the other 5120 tokens are all distinct
    assert rep["U"] == 5120 + 1280 and rep["repeat_fraction"] == 0.5 and rep["repeat_count"] == 4
    # the loss on the subset it saw 4 times is below the held-out loss (it has started to memorise it)
    assert 0 < rep["repeated_loss"] < rep["loss"]
    assert read_rows(tmp_path / "h.csv")[-1]["repeated_loss"] == repr(rep["repeated_loss"])


def test_a_results_file_from_before_a_new_column_keeps_taking_rows(tmp_path, capsys):
    """A results.csv written before `repeated_loss` existed: the run appends to it, without that column."""
    old_header = record.HEADER[: record.HEADER.index("repeated_loss")]
    path = tmp_path / "old.csv"
    path.write_text(",".join(old_header) + "\n")
    out = train(cfg(tmp_path, tokens=10 * 256, eval_points=0, repeat_fraction=0.5, repeat_count=2), path)
    assert out.finished and out.rows[-1]["repeated_loss"] > 0
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(old_header) and len(lines) == 2
    assert len(next(csv.reader([lines[1]]))) == len(old_header)


def _append_worker(args):
    path, worker = args
    rows = [{"run_id": f"w{worker}", "step": i, "N": 1, "D": i + 1, "loss": 1.0} for i in range(40)]
    for row in rows:
        append_rows(path, [row], record.HEADER)


def test_concurrent_appends_lose_nothing(tmp_path):
    path = tmp_path / "results.csv"
    # fork: the workers need nothing but append_rows (spawn would re-import torch in each)
    with mp.get_context("fork" if sys.platform == "linux" else "spawn").Pool(6) as pool:
        pool.map(_append_worker, [(str(path), w) for w in range(6)])
    rows = read_rows(path)
    assert len(rows) == 240
    assert {(r["run_id"], r["step"]) for r in rows} == {(f"w{w}", str(i)) for w in range(6) for i in range(40)}
    assert all(list(r) == record.HEADER for r in rows[:1])


# ---------------------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing written


def _python_text(n_bytes: int) -> str:
    import sysconfig

    parts, size = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        text = path.read_text(errors="replace")
        parts.append(text)
        size += len(text)
        if size >= n_bytes:
            break
    return "\n\n".join(parts)


def _bad_cases(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("   \n\n")
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    return [
        (["corpus=" + str(tmp_path / "missing.txt")], "missing.txt"),
        (["corpus=" + str(empty)], "empty"),
        (["unique_tokens=1e9"], "larger than the train split"),
        (["tokens=100"], "smaller than one batch"),
        (["n_layer=null", "d_model=null", "target_N=50"], "no shape reaches it"),
        (["init_from=" + str(tmp_path / "nowhere")], "init_from"),
        (["--results", str(locked / "sub" / "r.csv")], "not writable"),
        (["--results", str(other)], "header differs"),
        (["--results", str(empty / "r.csv")], "is not a folder"),
        (["d_modle=3"], "did you mean 'd_model'"),
    ]


def test_bad_input_one_line_nothing_written(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root ignores folder permissions (the unwritable-results case cannot be staged)")
    _run_bad_cases(tmp_path, capsys)


def test_bad_input_one_line_nothing_written_as_any_user(tmp_path, capsys):
    _run_bad_cases(tmp_path, capsys, skip=("not writable",))


def _run_bad_cases(tmp_path, capsys, skip=()):
    for args, message in _bad_cases(tmp_path):
        if message in skip:
            continue
        results = tmp_path / "results.csv"
        out_dir = tmp_path / "out"
        argv = [a for a in args if a.startswith("--") or "=" not in a or a.startswith("/")]
        keys = [a for a in args if a not in argv]
        extra = ["--results", str(results)] if "--results" not in args else []
        code = main(["--quiet", *extra, *argv, *[f"{k}={v}" for k, v in TINY.items() if v is not None],
                     f"out_dir={out_dir}", *keys])
        err = capsys.readouterr().err.strip()
        assert code == 2, (args, err)
        assert err.startswith("error: ") and "\n" not in err and message in err, (args, err)
        assert not results.exists() and not out_dir.exists(), args


def test_incompatible_init_from(tmp_path, capsys):
    pre = train(cfg(tmp_path, tokens=4 * 256, eval_points=0), tmp_path / "r.csv")
    src = tmp_path / "runs" / pre.run_id
    for keys, message in ((["d_model=64"], "incompatible shape (d_model 32 there, 64 here)"),
                          (["tokenizer=bpe"], "incompatible tokenizer")):
        out_dir = tmp_path / "out"
        code = main(["--quiet", "--results", str(tmp_path / "x.csv"),
                     *[f"{k}={v}" for k, v in TINY.items() if v is not None], f"out_dir={out_dir}",
                     f"init_from={src}", *keys])
        err = capsys.readouterr().err.strip()
        assert code == 2 and message in err and "\n" not in err, err
        assert not (tmp_path / "x.csv").exists() and not out_dir.exists()


# ---------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_process_gloo_run_counts_tokens_globally(tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2` on CPU: one row per eval, D over both processes."""
    results = tmp_path / "results.csv"
    keys = [f"{k}={v}" for k, v in TINY.items() if v is not None] + [f"out_dir={tmp_path / 'runs'}"]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           str(REPO / "trainers" / "train.py"), "--quiet", "--results", str(results), *keys]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_rows(results)
    assert [r["step"] for r in rows] == ["10", "20", "40"]  # written once, by the main process
    single = train(cfg(tmp_path / "single"), tmp_path / "single.csv").rows
    for two, one in zip(rows, single):
        assert int(two["D"]) == one["D"] and two["run_id"] == one["run_id"]
        # same data, same init; only the order of float additions differs (gradient all-reduce)
        assert float(two["loss"]) == pytest.approx(one["loss"], rel=2e-3)
        assert int(two["ece_count"]) == one["ece_count"]


@pytest.mark.slow
def test_sigterm_checkpoints_and_the_rerun_resumes(tmp_path):
    """A scheduler's SIGTERM: checkpoint at the next step, exit 3; the same command then finishes the run."""
    import signal
    import time

    results = tmp_path / "results.csv"
    keys = [f"{k}={v}" for k, v in {**TINY, "tokens": 2000 * 256, "eval_points": 8}.items() if v is not None]
    cmd = [sys.executable, str(REPO / "trainers" / "train.py"), "--quiet", "--results", str(results), *keys,
           f"out_dir={tmp_path / 'runs'}"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (results.exists() and len(read_rows(results)) >= 1) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    assert "stopped after step" in err
    rows_before = read_rows(results)
    run_dir = tmp_path / "runs" / rows_before[0]["run_id"]
    step = int((run_dir / "latest").read_text().split("-")[1])
    assert 0 < step < 2000
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    rows = read_rows(results)
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(set(steps)) and steps[-1] == 2000 and rows[-1]["final"] == "1"


def test_one_trainer_per_run_at_a_time(tmp_path):
    from filelock import FileLock

    config = cfg(tmp_path)
    run_dir = tmp_path / "runs" / run_id(RunConfig(**config))
    run_dir.mkdir(parents=True)
    with FileLock(str(run_dir / ".lock")):  # another trainer holds this run
        with pytest.raises(ScalingError, match="being trained by another process"):
            train(config, tmp_path / "r.csv")
    assert not (tmp_path / "r.csv").exists()
    assert train(config, tmp_path / "r.csv").finished  # once it is free


@pytest.mark.slow
def test_concurrent_trainer_processes_share_one_results_file(tmp_path):
    """Three trainers in separate processes append to one results.csv: every row of every run arrives once."""
    results = tmp_path / "results.csv"
    keys = [f"{k}={v}" for k, v in TINY.items() if v is not None] + [f"out_dir={tmp_path / 'runs'}"]
    procs = [subprocess.Popen([sys.executable, str(REPO / "trainers" / "train.py"), "--quiet", "--results",
                               str(results), *keys, f"seed={s}"], stderr=subprocess.PIPE, text=True) for s in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
    rows = read_rows(results)
    assert len(rows) == 9 and len({r["run_id"] for r in rows}) == 3
    assert sorted((r["seed"], r["step"]) for r in rows) == sorted((str(s), st) for s in range(3) for st in ("10", "20", "40"))


def test_eval_corpora_add_one_loss_column_each(tmp_path, capsys):
    """eval_corpora: [english, python] scores both held-out corpora at every evaluation (loss_english, loss_python);
    without it the header and the run id are what they always were, and both kinds of run share one file."""
    plain_path = tmp_path / "plain.csv"
    plain = train(cfg(tmp_path, tokens=10 * 256, eval_points=0), plain_path)
    assert plain_path.read_text().splitlines()[0] == ",".join(record.HEADER)  # default output unchanged
    assert run_id(RunConfig(**cfg(tmp_path))) == run_id(RunConfig(**cfg(tmp_path, eval_corpora=[])))
    assert run_id(RunConfig(**cfg(tmp_path))) != run_id(RunConfig(**cfg(tmp_path, eval_corpora=["python"])))

    path = tmp_path / "multi.csv"
    multi = train(cfg(tmp_path, tokens=10 * 256, eval_points=0, eval_corpora=["english", "python"]), path)
    rows = read_rows(path)
    assert list(rows[0])[-2:] == ["loss_english", "loss_python"] and len(rows) == 1
    last = multi.rows[-1]
    assert last["loss"] == plain.rows[-1]["loss"]  # scoring more corpora changes nothing else
    assert last["loss_english"] == last["loss"]  # the target corpus is english: the same number
    # a model trained 10 steps on English prose scores Python source worse than held-out English
    assert last["loss_python"] > last["loss_english"] > 0
    assert rows[0]["loss_python"] == repr(last["loss_python"])
    # a run without eval_corpora still appends to that file: its eval cells are left empty
    train(cfg(tmp_path, tokens=10 * 256, eval_points=0, seed=1), path)
    assert read_rows(path)[1]["loss_python"] == "" and read_rows(path)[1]["loss"] != ""
    # a file written without the columns keeps taking rows (never rewritten): they are left out, with a note
    from rich.console import Console

    train(cfg(tmp_path, tokens=10 * 256, eval_points=0, seed=2, eval_corpora=["python"]), plain_path,
          console=Console())
    assert "loss_python" in capsys.readouterr().out and len(read_rows(plain_path)) == 2
    with pytest.raises(ScalingError, match="same column"):
        validate_config(cfg(tmp_path, eval_corpora=["python", "Python"]))
