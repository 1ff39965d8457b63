"""Run configs: typed keys, one-line errors naming the key, run ids that ignore what cannot change the numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaling.errors import ScalingError
from scaling.train.config import RunConfig, load_config, parse_overrides, run_id
from scaling.train.schedule import lr_multiplier, make_plan

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "runs" / "smoke.yaml"
BASE = {"n_layer": 2, "d_model": 32, "tokens": 262_144}


def test_smoke_config_loads():
    cfg = load_config(SMOKE)
    assert cfg.tokens_trained == cfg.tokens == 64 * 32 * 128
    assert cfg.steps == 64


def test_overrides_are_yaml_and_counts_accept_exponents():
    cfg = load_config(SMOKE, ["tokens=5e5", "lr=1e-3", "schedule=wsd", "branches=[2e5, 1e5]"])
    assert cfg.tokens == 500_000 and cfg.lr == 1e-3
    assert cfg.branches == [100_000, 200_000]  # sorted
    # D rounds to whole steps; the exact D is recorded
    assert cfg.steps == round(500_000 / 4096) and cfg.tokens_trained == cfg.steps * 4096
    assert parse_overrides(["betas=[0.9, 0.99]", "init_from="]) == {"betas": [0.9, 0.99], "init_from": None}


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"d_modle": 3}, "unknown key 'd_modle' (did you mean 'd_model'?); valid keys: name, corpus"),
        ({"tokens": 100}, "smaller than one batch"),
        ({"lr": -1}, "key 'lr': Input should be greater than 0"),
        ({"tokens": "lots"}, "key 'tokens'"),
        ({"n_head": 3}, "n_head 3 does not divide d_model 32"),
        ({"target_N": 1e5}, "either target_N or a shape"),
        ({"branches": [131072]}, "branches need schedule: wsd"),
        ({"schedule": "wsd", "branches": [10**7]}, "below tokens"),
        ({"precision": "fp16"}, "key 'precision'"),
        ({"checkpoint_every": "soon"}, "checkpoint_every 'soon'"),
        ({"schedule": "wsd", "warmup": 0.9}, "runs into the cooldown"),
    ],
)
def test_bad_keys_are_one_line_errors(overrides, message):
    with pytest.raises(ScalingError) as err:
        cfg = load_config(None, {**BASE, **overrides})
        make_plan(cfg)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_tokens_and_model():
    with pytest.raises(ScalingError, match="missing key 'tokens'"):
        load_config(None, {"n_layer": 2, "d_model": 32})
    with pytest.raises(ScalingError, match="no model"):
        load_config(None, {"tokens": 1e6})


def test_config_file_errors(tmp_path):
    with pytest.raises(ScalingError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tokens: [1, 2\n")
    with pytest.raises(ScalingError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ScalingError, match="expected a mapping"):
        load_config(bad)


def test_run_id_ignores_execution_keys_only():
    a = RunConfig(**BASE)
    assert run_id(a) == run_id(RunConfig(**BASE, name="x", out_dir="/elsewhere", threads=2, checkpoint_every=10))
    assert run_id(a) != run_id(RunConfig(**BASE, seed=1))
    assert run_id(a) != run_id(RunConfig(**BASE, lr=1e-3))
    # init_from enters by the source run's folder name, not the full path
    b = RunConfig(**BASE, init_from="runs/abc123")
    assert run_id(b) == run_id(RunConfig(**BASE, init_from="/data/sweep/runs/abc123/final"))
    assert run_id(b) != run_id(RunConfig(**BASE, init_from="runs/def456"))


def test_schedules():
    kw = dict(steps=100, warmup_steps=10, min_lr_ratio=0.1)
    cos = [lr_multiplier(s, schedule="cosine", **kw) for s in range(100)]
    assert cos[0] == pytest.approx(0.1) and cos[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(cos[9:], cos[10:]))  # decays monotonically after warmup
    assert cos[-1] == pytest.approx(0.1)  # ends exactly at min_lr_ratio
    wsd = [lr_multiplier(s, schedule="wsd", cooldown_steps=20, **kw) for s in range(100)]
    assert wsd[10:80] == [1.0] * 70 and wsd[-1] == pytest.approx(0.1)
    assert wsd[80] == pytest.approx(0.1 + 0.9 * (1 - (1 / 20) ** 0.5))  # 1-sqrt cooldown


def test_plan_evals_and_branches():
    cfg = RunConfig(**{**BASE, "tokens": 4096 * 1000, "schedule": "wsd", "branches": [4096 * 250, 4096 * 500]})
    plan = make_plan(cfg)
    assert plan.eval_steps == (16, 31, 62, 125, 250, 500, 1000)  # halvings + the end
    assert plan.branches == ((1, 4096 * 250, 250), (2, 4096 * 500, 500))
    assert [plan.branch_start(e) for _, _, e in plan.branches] == [200, 400]
    # a branch follows its own WSD schedule: stable until its cooldown, then down to min at its end
    assert plan.multiplier(199, cfg, end=250) == 1.0
    assert plan.multiplier(249, cfg, end=250) == pytest.approx(cfg.min_lr_ratio)
    assert plan.multiplier(249, cfg) == 1.0  # the main run is still stable there
