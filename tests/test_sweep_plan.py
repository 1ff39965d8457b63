"""Sweep files and plan expansion: axes, WSD branches, isoFLOP, transfer, ids, dependencies, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from scaling.errors import ScalingError
from scaling.sweep.driver import finished_run_ids
from scaling.sweep.planner import plan
from scaling.sweep.spec import load_sweep, parse_sweep
from scaling.sweep.timing import estimate_wall_seconds

pytest.importorskip("torch", reason="sweep plans count parameters with the trainer's model (pip install 'scaling[train]')")

from scaling.laws.kaplan import kaplan_learning_rate
from scaling.train.config import RunConfig, load_config, run_id

REPO = Path(__file__).resolve().parents[1]
BASE = {"corpus": "english", "context": 32, "batch_size": 4, "eval_tokens": 256, "lr": 1e-3}
SHAPES = [{"n_layer": 2, "d_model": 16}, {"n_layer": 2, "d_model": 32}]


def sweep(**kwargs):
    data = {"name": "t", "base": dict(BASE), **kwargs}
    return parse_sweep(data, source="t.yaml")


def test_grid_is_the_cartesian_product_with_trainer_ids():
    p = plan(sweep(grid={"model": SHAPES, "tokens": [1024, 2048, "4e3"], "seed": [0, 1]}))
    assert len(p) == 2 * 3 * 2
    for run in p.runs:
        # The id is the trainer's own id of the config the worker will hand it.
        assert run.run_id == run_id(RunConfig.model_validate(run.config))
        assert len(run.run_id) == 12 and int(run.run_id, 16) >= 0
        assert run.budgets == (run.D,)
        assert run.D % (BASE["context"] * BASE["batch_size"]) == 0  # whole optimizer steps, as the trainer rounds
    assert len({r.run_id for r in p.runs}) == len(p)
    assert {r.D for r in p.runs} == {1024, 2048, 3968}  # "4e3" (a YAML string) rounded to 31 steps of 128
    # Deterministic: the same file gives the same ids, in the same order.
    again = plan(sweep(grid={"model": SHAPES, "tokens": [1024, 2048, "4e3"], "seed": [0, 1]}))
    assert [r.run_id for r in again.runs] == [r.run_id for r in p.runs]


def test_ids_survive_a_round_trip_through_the_config_file(tmp_path):
    p = plan(sweep(grid={"model": SHAPES[:1], "tokens": [1024]}))
    run = p.runs[0]
    f = tmp_path / "run.yaml"
    f.write_text(yaml.safe_dump(run.config))
    assert run_id(load_config(f)) == run.run_id


def test_wsd_budgets_become_branches_of_one_run():
    p = plan(sweep(base={**BASE, "schedule": "wsd"}, grid={"model": SHAPES, "tokens": "1024:4096:3"}))
    assert len(p) == 2
    for run in p.runs:
        assert run.budgets == (1024, 2048, 4096)
        assert run.config["tokens"] == 4096 and run.config["branches"] == [1024, 2048]
        # FLOPs count the stable run plus each branch's cooldown (20% of its budget).
        assert run.flops == pytest.approx(run.flops_per_token * (4096 + 0.2 * (1024 + 2048)))
    off = plan(sweep(base={**BASE, "schedule": "wsd"}, wsd_branches=False, grid={"model": SHAPES, "tokens": [1024, 2048]}))
    assert len(off) == 4 and all(not r.config["branches"] for r in off.runs)


def test_lr_multipliers_scale_the_kaplan_rule():
    base = {k: v for k, v in BASE.items() if k != "lr"}
    p = plan(sweep(base=base, grid={"model": SHAPES[:1], "tokens": [1024], "lr_mult": [0.5, 1, 2]}))
    assert len(p) == 3
    lr0 = kaplan_learning_rate(p.runs[0].N)
    assert sorted(r.lr for r in p.runs) == pytest.approx([0.5 * lr0, lr0, 2 * lr0], rel=1e-5)
    # Multiplier 1 leaves lr unset, so the id equals that of a hand-written config without lr.
    unit = next(r for r in p.runs if r.lr == pytest.approx(lr0, rel=1e-5))
    assert unit.config["lr"] is None


def test_model_entries_carry_per_size_settings():
    p = plan(sweep(grid={"model": [{**SHAPES[0], "lr": 4e-3}, {**SHAPES[1], "lr": 2e-3, "batch_size": 8}],
                         "tokens": [2048], "lr_mult": [1, 0.5]}))
    by = {(r.shape["d_model"], r.lr) for r in p.runs}
    assert by == {(16, 4e-3), (16, 2e-3), (32, 2e-3), (32, 1e-3)}
    assert {r.config["batch_size"] for r in p.runs if r.shape["d_model"] == 32} == {8}
    assert {r.config["batch_size"] for r in p.runs if r.shape["d_model"] == 16} == {BASE["batch_size"]}


def test_target_N_and_epochs_and_repetition_axes():
    p = plan(sweep(grid={"model": [2e4], "tokens": [4096], "epochs": [1, 4], "repeat_fraction": [0.0, 0.25],
                         "repeat_count": [4]}))
    assert len(p) == 4
    for run in p.runs:
        assert abs(run.N / 2e4 - 1) <= 0.10  # the trainer's shape solver, within its tolerance
        assert run.config["target_N"] == 2e4
    us = sorted({r.config["unique_tokens"] for r in p.runs})
    assert us == [1024, 4096]  # U = D / epochs
    assert {r.config["repeat_fraction"] for r in p.runs} == {0.0, 0.25}


def test_isoflop_mode_sets_D_from_C_over_6N():
    budgets = [2e9, 8e9]
    p = plan(sweep(grid={"model": SHAPES + [{"n_layer": 3, "d_model": 48}]}, isoflop={"budgets": budgets}))
    assert len(p) == 6
    for run in p.runs:
        C = min(budgets, key=lambda c: abs(math.log(run.C / c)))
        # D is rounded to whole steps of 128 tokens: 6ND lands within one step of C.
        assert abs(run.C - C) <= 6 * run.N * 128 / 2 + 1
        assert run.role == "isoflop"
    filtered = plan(sweep(grid={"model": SHAPES + [{"n_layer": 3, "d_model": 48}]},
                          isoflop={"budgets": budgets, "min_tokens_per_param": 1.0}))
    assert 0 < len(filtered) < 6 and all(r.D / r.N >= 1.0 for r in filtered.runs)


def test_transfer_plans_pretraining_finetunes_and_scratch_baselines():
    p = plan(sweep(grid={"model": SHAPES}, transfer={
        "pretrain": {"english": [4096]},
        "pairs": [{"source": "english", "target": "python", "finetune_tokens": [1024, 2048]}],
    }))
    by_role = {role: [r for r in p.runs if r.role == role] for role in ("pretrain", "finetune", "scratch")}
    assert [len(by_role[k]) for k in ("pretrain", "finetune", "scratch")] == [2, 4, 4]
    ids = p.by_id()
    order = [r.run_id for r in p.runs]
    for ft in by_role["finetune"]:
        (src,) = ft.depends_on
        pre = ids[src]
        assert pre.role == "pretrain" and pre.N == ft.N and pre.config["corpus"] == "english"
        assert Path(ft.config["init_from"]).name == src  # the pretraining run's folder
        assert ft.config["corpus"] == "python"
        assert order.index(src) < order.index(ft.run_id)  # planned (and so submitted) first
        # A from-scratch baseline on the target exists at this size and budget.
        assert any(s.N == ft.N and s.D == ft.D and s.config["corpus"] == "python" and not s.config["init_from"]
                   for s in by_role["scratch"])


def test_estimated_wall_time_respects_workers_and_dependencies():
    p = plan(sweep(grid={"model": SHAPES}, transfer={
        "pretrain": {"english": [4096]},
        "pairs": [{"source": "english", "target": "python", "finetune_tokens": [1024]}],
    }))
    total = sum(r.est_seconds for r in p.runs)
    assert estimate_wall_seconds(p, 1) == pytest.approx(total)
    two = estimate_wall_seconds(p, 2)
    assert total / 2 <= two < total
    longest_chain = max(ids_est for ids_est in (
        r.est_seconds + sum(p.by_id()[d].est_seconds for d in r.depends_on) for r in p.runs))
    assert estimate_wall_seconds(p, 100) == pytest.approx(longest_chain)


def test_shipped_sweep_files_plan():
    for name in ("tiny.yaml", "demo.yaml"):
        p = plan(REPO / "configs" / "sweeps" / name)
        assert len(p) >= 1
    demo = plan(REPO / "configs" / "sweeps" / "demo.yaml")
    sizes = sorted({r.N for r in demo.runs})
    assert len(sizes) >= 4 and math.log10(sizes[-1] / sizes[0]) >= 1.5  # issue 4: >= 4 sizes over >= 1.5 decades
    assert all(len(r.budgets) >= 3 for r in demo.runs)  # >= 3 token budgets per size
    assert all(r.shape["n_layer"] >= 2 for r in demo.runs)  # 1-layer models are off-trend (docs/sweeps.md)


def test_finished_runs_are_those_with_a_final_main_branch_row(tmp_path):
    f = tmp_path / "results.csv"
    f.write_text("run_id,final,branch,D\n"
                 "aaa,0,0,512\n"
                 "aaa,1,1,1024\n"  # a cooldown branch finished, the main run did not
                 "bbb,1,1,1024\n"
                 "bbb,1,0,2048\n")
    assert finished_run_ids(f) == {"bbb"}
    assert finished_run_ids(tmp_path / "missing.csv") == set()
    (tmp_path / "empty.csv").write_text("")
    assert finished_run_ids(tmp_path / "empty.csv") == set()


# ---------------------------------------------------------------------------------------------------------
# Bad input: one line naming the file and the field


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_unknown_axis_lists_the_valid_axes():
    with pytest.raises(ScalingError) as exc:
        plan(sweep(grid={"model": SHAPES, "tokenz": [1024]}))
    text = one_line(exc)
    assert "t.yaml" in text and "'tokenz'" in text and "did you mean 'tokens'" in text
    for axis in ("model", "tokens", "unique_tokens", "epochs", "repeat_fraction", "seed", "lr_mult", "batch_size"):
        assert axis in text


def test_axis_the_sweep_sets_itself_is_refused():
    with pytest.raises(ScalingError, match="unknown grid axis 'init_from' \\(the sweep sets it itself\\)"):
        plan(sweep(grid={"model": SHAPES, "tokens": [1024], "init_from": ["x"]}))


def test_empty_grid_axis_and_empty_plan():
    with pytest.raises(ScalingError, match="grid axis 'tokens' is empty"):
        plan(sweep(grid={"model": SHAPES, "tokens": []}))
    with pytest.raises(ScalingError, match="no token budget"):
        plan(sweep(grid={"model": SHAPES}))
    with pytest.raises(ScalingError, match="the plan is empty"):
        plan(sweep(grid={"model": SHAPES}, isoflop={"budgets": [2e9], "min_tokens_per_param": 1e9}))


def test_transfer_pair_without_pretraining_run():
    with pytest.raises(ScalingError) as exc:
        plan(sweep(grid={"model": SHAPES}, transfer={
            "pretrain": {"english": [4096]},
            "pairs": [{"source": "wikipedia", "target": "python", "finetune_tokens": [1024]}],
        }))
    text = one_line(exc)
    assert "wikipedia -> python" in text and "no pretraining run" in text and "english" in text


def test_conflicting_modes_and_unknown_keys(tmp_path):
    with pytest.raises(ScalingError, match="'tokens' cannot be combined with isoflop"):
        plan(sweep(grid={"model": SHAPES, "tokens": [1024]}, isoflop={"budgets": [1e9]}))
    with pytest.raises(ScalingError) as exc:
        parse_sweep({"name": "t", "gird": {}}, source="t.yaml")
    assert "unknown key 'gird'" in one_line(exc) and "did you mean 'grid'" in str(exc.value)
    with pytest.raises(ScalingError, match="unknown key 'transfer.pairs.0.tgt'"):
        parse_sweep({"name": "t", "transfer": {"pretrain": {}, "pairs": [{"source": "a", "tgt": "b"}]}}, source="t.yaml")
    with pytest.raises(ScalingError, match="unknown key 'layers'"):
        plan(sweep(grid={"model": [{"layers": 2}], "tokens": [1024]}))
    with pytest.raises(ScalingError, match="run t-grid.*key 'batch_size'"):
        plan(sweep(grid={"model": SHAPES, "tokens": [1024], "batch_size": [0]}))
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ngrid: [unclosed\n")
    with pytest.raises(ScalingError, match="bad.yaml: not valid YAML"):
        load_sweep(bad)
    with pytest.raises(ScalingError, match="no such sweep file"):
        load_sweep(tmp_path / "missing.yaml")


# ---------------------------------------------------------------------------------------------------------
# scaling sweep plan (in-process through the CLI entry point)


def run_cli(args, capsys):
    from scaling.cli import main

    with pytest.raises(SystemExit) as exc:
        main(args)
        raise SystemExit(0)
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


def test_cli_plan_formats(capsys):
    import io
    import json

    import pandas as pd

    tiny = str(REPO / "configs" / "sweeps" / "tiny.yaml")
    code, out, err = run_cli(["sweep", "plan", tiny, "--format", "json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert len(data["runs"]) == 3 and data["estimated_seconds"] > 0 and data["total_flops"] > 0
    run = data["runs"][0]
    assert run["budgets"] == [16384, 32768, 65536] and run["config"]["branches"] == [16384, 32768]
    assert run["run_id"] == run_id(RunConfig.model_validate(run["config"]))
    code, out, err = run_cli(["sweep", "plan", tiny, "--format", "csv", "--workers", "1"], capsys)
    df = pd.read_csv(io.StringIO(out))
    assert code == 0 and list(df.columns[:5]) == ["run_id", "role", "N", "shape", "D"] and len(df) == 3
    assert "3 runs" in err and "with 1 workers" in err  # the summary goes to stderr, not into the CSV
    code, out, err = run_cli(["sweep", "plan", tiny], capsys)
    assert code == 0 and "run_id" in out and "est_s" in out and "3 runs" in out


def test_cli_plan_bad_input_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nbase: {corpus: english}\ngrid: {model: [3e4], tokenz: [1e6]}\n")
    code, out, err = run_cli(["sweep", "plan", str(bad)], capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "unknown grid axis 'tokenz'" in err


def test_time_estimate_caption_names_only_pages_in_the_repository():
    """The plan's caption says where its speed figures come from; a page it names must ship with the project."""
    import re

    from scaling.sweep.timing import Throughput

    source = Throughput.default().source
    pages = re.findall(r"[\w./-]+\.md", source)
    assert pages, source
    assert all((REPO / page).is_file() for page in pages), source


def test_sweep_files_share_the_command_lines_number_grammar():
    from scaling.sweep.spec import parse_number

    assert parse_number("70B", what="tokens") == 70e9
    assert parse_number("1.4T", what="tokens") == 1.4e12
    assert parse_number("4e6", what="tokens") == 4e6 and parse_number("1_000_000", what="tokens") == 1e6
    with pytest.raises(ScalingError, match="tokens: expected a number"):
        parse_number("70 bn", what="tokens")
