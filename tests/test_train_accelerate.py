"""The trainer as accelerate users run it: gradient accumulation, the launch config's precision, one precision per
process (no private accelerate state), trackers, and several processes (DDP over gloo, FSDP where torch allows it
on CPU) giving the single-process losses. Tiny runs (2 layers x 32 wide, 40 steps of 256 tokens).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scaling.errors import ScalingError
from scaling.train.cli import main
from scaling.train.config import RunConfig, run_id, validate_config
from scaling.train.loop import train

REPO = Path(__file__).resolve().parents[1]
TINY = dict(corpus="english", n_layer=2, d_model=32, context=32, batch_size=8, tokens=40 * 256, lr=3e-3, eval_points=2,
            eval_tokens=2080, threads=1, peak_flops=1e11, checkpoint_every=None)  # 65 held-out windows: uneven shares


# the shared token cache and offline flags (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("offline_token_cache")


def cfg(tmp_path, **kw) -> dict:
    return {**TINY, "out_dir": str(tmp_path / "runs"), **kw}


def read_rows(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def keys(tmp_path, **kw) -> list[str]:
    return [f"{k}={v}" for k, v in cfg(tmp_path, **kw).items() if v is not None]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The reference: one process, no accumulation."""
    tmp = tmp_path_factory.mktemp("single")
    return train(cfg(tmp), tmp / "r.csv").rows


def test_gradient_accumulation_equals_one_big_batch(tmp_path, single):
    acc = train(cfg(tmp_path, grad_accum_steps=4), tmp_path / "r.csv").rows
    assert acc[-1]["run_id"] == single[-1]["run_id"]  # the same run: only how the batch is split differs
    for a, b in zip(acc, single):
        assert a["D"] == b["D"]
        # four micro-batches of 2 sequences sum to the gradient of the batch of 8, up to float addition order
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4) and a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    assert a["ece_count"] == b["ece_count"] == 2080
    with pytest.raises(ScalingError, match="not divisible by grad_accum_steps 3"):
        validate_config(cfg(tmp_path, grad_accum_steps=3))


def test_one_precision_per_process_without_private_state(tmp_path, single):
    """accelerate fixes the mixed precision once per process: a second in-process run that needs another one is
    refused in one line, before anything is written (the CLI and sweeps start a process per run)."""
    with pytest.raises(ScalingError, match="fresh process") as err:
        train(cfg(tmp_path, precision="bf16"), tmp_path / "r.csv")
    assert "\n" not in str(err.value) and not (tmp_path / "r.csv").exists()


def test_trackers_selectable_and_missing_ones_one_line(tmp_path, capsys):
    out = train(cfg(tmp_path, tokens=4 * 256, eval_points=0, trackers=["tensorboard"]), tmp_path / "r.csv")
    events = list(out.run_dir.rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    assert run_id(RunConfig(**cfg(tmp_path, trackers=["tensorboard"]))) == run_id(RunConfig(**cfg(tmp_path)))
    import importlib.util

    missing = next((t for t in ("aim", "clearml", "dvclive", "swanlab", "comet_ml") if importlib.util.find_spec(t) is None), None)
    for names, message in (([missing], f"{missing} is not installed"), (["tensorbored"], "unknown tracker 'tensorbored'")):
        if names[0] is None:
            continue
        code = main(["--quiet", "--results", str(tmp_path / "x.csv"), *keys(tmp_path / "x", trackers=names)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and message in err and err.count("\n") == 0, err
        assert not (tmp_path / "x.csv").exists()


def _launch(tmp_path, results, extra_keys, *launch_args, timeout=600):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *launch_args, str(REPO / "trainers" / "train.py"),
           "--quiet", "--results", str(results), *keys(tmp_path), *extra_keys]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def test_launch_config_precision_is_respected(tmp_path):
    """`accelerate launch --config_file` with bf16: precision auto follows it; the run config can still say fp32."""
    config = tmp_path / "accelerate.yaml"
    config.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: 'NO'\nmixed_precision: bf16\n"
                      "num_processes: 1\nnum_machines: 1\nuse_cpu: true\ndynamo_config: {}\n")
    results = tmp_path / "r.csv"
    proc = _launch(tmp_path, results, ["tokens=1024", "eval_points=0"], "--config_file", str(config))
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _launch(tmp_path, results, ["tokens=1024", "eval_points=0", "precision=fp32"], "--config_file", str(config))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_rows(results)
    assert [r["precision"] for r in rows] == ["bf16", "fp32"]
    assert float(rows[0]["loss"]) != float(rows[1]["loss"])  # bf16 autocast really ran: another rounding


def test_two_process_ddp_with_accumulation_equals_one_process(tmp_path, single):
    """2 CPU processes (gloo) x 2 micro-batches each: the rows of the single-process run, within float tolerance;
    65 held-out windows give the processes 33 and 32 (the shorter share repeats a batch, uncounted)."""
    results = tmp_path / "r.csv"
    proc = _launch(tmp_path, results, ["grad_accum_steps=2"], "--multi_gpu", "--num_processes", "2",
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_rows(results)
    assert [r["step"] for r in rows] == ["10", "20", "40"]
    info = json.loads((tmp_path / "runs" / rows[0]["run_id"] / "run.json").read_text())
    assert (info["distributed_type"], info["num_processes"], info["grad_accum_steps"]) == ("MULTI_CPU", 2, 2)
    for two, one in zip(rows, single):
        assert int(two["D"]) == one["D"] and two["run_id"] == one["run_id"] and int(two["ece_count"]) == one["ece_count"]
        assert float(two["loss"]) == pytest.approx(one["loss"], rel=2e-3)
        assert float(two["train_loss"]) == pytest.approx(one["train_loss"], rel=2e-3)


@pytest.mark.slow
def test_two_process_fsdp_on_cpu_equals_one_process(tmp_path, single):
    """An FSDP launch config on CPU. accelerate 1.x builds FSDP only on accelerator devices (its MULTI_CPU state
    ignores the FSDP plugin and wraps the model in DDP): then the run still trains correctly, run.json records
    what ran, and the FSDP-specific part is skipped with that reason."""
    config = tmp_path / "fsdp.yaml"
    config.write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: FSDP\nmixed_precision: 'no'\nnum_processes: 2\n"
        "num_machines: 1\nuse_cpu: true\nfsdp_config:\n  fsdp_version: 2\n  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP\n"
        "  fsdp_state_dict_type: FULL_STATE_DICT\n  fsdp_cpu_ram_efficient_loading: false\n"
        "  fsdp_reshard_after_forward: true\n"
    )
    results = tmp_path / "r.csv"
    proc = _launch(tmp_path, results, [], "--config_file", str(config))
    if proc.returncode != 0 and ("gloo" in proc.stderr.lower() and "not supported" in proc.stderr.lower()):
        pytest.skip("this torch cannot run FSDP collectives over gloo: " + proc.stderr.strip().splitlines()[-1][:200])
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_rows(results)
    run_dir = tmp_path / "runs" / rows[0]["run_id"]
    info = json.loads((run_dir / "run.json").read_text())
    assert [r["step"] for r in rows] == ["10", "20", "40"] and info["num_processes"] == 2
    for two, one in zip(rows, single):
        assert float(two["loss"]) == pytest.approx(one["loss"], rel=2e-3)
    if info["distributed_type"] != "FSDP":
        import accelerate

        pytest.skip(f"accelerate {accelerate.__version__} ran an FSDP config on CPU as {info['distributed_type']} "
                    "(FSDP needs an accelerator device there); the run itself matched one process")
    # the final save gathered the sharded weights (get_state_dict): a whole model that scores like the row
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(run_dir / "final")
    assert model.num_parameters(exclude_embeddings=True) == int(rows[-1]["N"])
