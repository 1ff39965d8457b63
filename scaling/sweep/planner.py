"""A sweep file expanded into a plan of runs: the grid, isoFLOP and transfer modes, WSD branch groups, names,
ids and dependencies.

:func:`plan` takes a loaded sweep file (:mod:`scaling.sweep.spec`) and returns a :class:`Plan` of
:class:`PlannedRun` objects, each with the run config exactly as the trainer takes it. Every count, id and
validation comes from the trainer itself (:mod:`scaling.sweep.trainer_rules`), so a plan's ids are the ids in
results.csv; that is how ``scaling sweep run`` knows which runs are finished.
"""

from __future__ import annotations

import difflib
import itertools
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from scaling.errors import ScalingError
from scaling.sweep.spec import SweepFile, expand_values, load_sweep, parse_count, parse_number
from scaling.sweep.timing import Throughput
from scaling.sweep.trainer_rules import TrainerRules, trainer_rules

# The named axes of a grid, with what each sets. Any run-config key is an axis too (except those below).
AXES: dict[str, str] = {
    "model": "model size or shape: a target non-embedding N (number) or a shape {n_layer, d_model, n_head, d_ff}, "
    "optionally with per-size run-config keys ({n_layer: 5, d_model: 128, lr: 2e-3})",
    "tokens": "training tokens D",
    "unique_tokens": "unique tokens U (Muennighoff et al. 2023): D/U epochs over a nested subset",
    "epochs": "epochs over the unique data: U = D / epochs",
    "repeat_fraction": "fraction of training tokens drawn from a small repeated subset (Hernandez et al. 2022)",
    "repeat_count": "times the repeated subset is seen",
    "seed": "random seed",
    "lr_mult": "multiplier on the learning rate (base lr, or Kaplan's Eq. D.1 rule at the run's N)",
}
# Run-config keys that the sweep sets itself (or that describe where things go) and so cannot be axes.
NOT_AXES = {"name", "out_dir", "init_from", "branches", "threads", "target_corpus", "stop_after_steps"}
# Grid points a sweep may expand to (before seeds and transfer pairs): far beyond any real sweep, far below
# what makes planning itself slow.
MAX_GRID_POINTS = 10_000
# Axes that count tokens or repeats: whole numbers, so a "START:STOP:COUNT" range is rounded.
COUNT_AXES = ("tokens", "unique_tokens", "repeat_count")
# Run-config keys that describe a model's shape (what a ``model`` axis entry may hold).
SHAPE_KEYS = ("n_layer", "d_model", "n_head", "d_ff", "target_N", "aspect")

ROLES = ("pretrain", "grid", "isoflop", "scratch", "finetune")  # the order of a plan's runs


# ---------------------------------------------------------------------------------------------------------
# The plan


@dataclass(frozen=True)
class PlannedRun:
    """One training run of a sweep.

    ``config`` is the run config exactly as the trainer takes it; ``budgets`` are the token counts the run
    reports as final rows (its D, plus its cooldown branches under a WSD schedule); ``flops`` counts all of its
    training (branch cooldowns included) with the trainer's exact per-token count.
    """

    run_id: str
    role: str
    config: dict[str, Any]
    N: float
    N_total: float
    D: int
    budgets: tuple[int, ...]
    flops: float
    flops_per_token: float
    lr: float = 0.0  # the peak learning rate the run will use (Kaplan's rule when the config leaves it None)
    shape: dict[str, int] = field(default_factory=dict)  # n_layer, d_model, n_head, d_ff (solved from target_N)
    depends_on: tuple[str, ...] = ()
    est_seconds: float = 0.0

    @property
    def C(self) -> float:
        """6 N D of the run's main budget (the convention of the fits)."""
        return 6.0 * self.N * self.D


@dataclass
class Plan:
    name: str
    runs: list[PlannedRun]
    sweep: SweepFile
    source: str = "sweep"
    settings: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.runs)

    def by_id(self) -> dict[str, PlannedRun]:
        return {r.run_id: r for r in self.runs}

    def to_frame(self) -> pd.DataFrame:
        """One row per run: the columns of ``scaling sweep plan``."""
        rows = []
        for r in self.runs:
            c = r.config
            rows.append(
                {
                    "run_id": r.run_id,
                    "role": r.role,
                    "N": r.N,
                    "shape": f"{r.shape.get('n_layer')}x{r.shape.get('d_model')}",
                    "D": r.D,
                    "budgets": " ".join(str(b) for b in r.budgets),
                    "U": c.get("unique_tokens"),
                    "repeat": f"{c['repeat_fraction']:g}x{c['repeat_count']}" if c.get("repeat_fraction") else "",
                    "corpus": c.get("corpus"),
                    "init_from": c.get("init_from") or "",
                    "seed": c.get("seed"),
                    "lr": r.lr,
                    "C": r.C,
                    "flops": r.flops,
                    "est_s": round(r.est_seconds, 1),
                    "N_total": r.N_total,
                    "name": c.get("name"),
                }
            )
        return pd.DataFrame(rows)


def short_count(x: float) -> str:
    """4000000 -> '4M' (for compact tables)."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.4g}{suffix}"
    return f"{x:g}"


# ---------------------------------------------------------------------------------------------------------
# Expansion


def plan(
    sweep: SweepFile | str | os.PathLike,
    *,
    overrides: Mapping[str, Any] | None = None,
    throughput: Throughput | None = None,
) -> Plan:
    """Expand a sweep into runs: grid (or isoFLOP, or transfer) x seeds x lr multipliers, ids from the trainer.

    ``overrides`` replace base run-config keys (e.g. ``{"out_dir": "runs/demo/runs"}``).
    """
    if not isinstance(sweep, SweepFile):
        sweep = load_sweep(sweep)
    source = sweep.source
    trainer = trainer_rules()
    throughput = throughput or Throughput.default()
    where = source

    modes = [m for m in ("isoflop", "transfer") if getattr(sweep, m) is not None]
    if len(modes) > 1:
        raise ScalingError(f"{where}: isoflop and transfer cannot be combined in one sweep; write two sweep files")
    axes = _axes(sweep, where)
    if modes and "tokens" in axes:
        raise ScalingError(
            f"{where}: grid axis 'tokens' cannot be combined with {modes[0]} "
            f"({'budgets set D = C/(6N)' if modes[0] == 'isoflop' else 'transfer sets pretrain and finetune budgets'})"
        )
    if not modes and "tokens" not in axes and "tokens" not in sweep.base:
        raise ScalingError(f"{where}: no token budget: give a grid axis 'tokens', base.tokens, isoflop or transfer")

    base = {**sweep.base, **(overrides or {})}
    for key in ("tokens", "unique_tokens"):  # `tokens: 1e6` is a string to PyYAML; the grid axes parse it, so here too
        if base.get(key) is not None:
            base[key] = parse_count(base[key], what=f"{where}: base.{key}")
    for key in ("name", "init_from", "branches"):
        if key in base:
            raise ScalingError(f"{where}: base.{key} is set by the sweep itself; remove it")

    size = math.prod(len(v) for v in axes.values())
    if size > MAX_GRID_POINTS:  # a typo such as "1e5:1e300:100000" would otherwise take minutes and gigabytes
        shape = " x ".join(f"{len(v)} {k}" for k, v in axes.items())
        raise ScalingError(f"{where}: the grid has {size} points ({shape}); at most {MAX_GRID_POINTS}")
    points = _cartesian(axes)  # list of dicts: axis -> value
    specs: list[tuple[str, dict[str, Any], tuple[str, ...]]] = []  # (role, config, depends-on configs' keys)

    if sweep.isoflop is not None:
        specs = _isoflop_specs(sweep, base, points, trainer, where)
    elif sweep.transfer is not None:
        specs = _transfer_specs(sweep, base, points, trainer, where)
    else:
        for point in points:
            specs.append(("grid", _apply(base, point, trainer, where), ()))

    runs = _finalise(sweep, specs, trainer, throughput, where)
    if not runs:
        raise ScalingError(f"{where}: the plan is empty (every grid point was filtered out)")
    _check_corpora(runs, where)
    return Plan(name=sweep.name, runs=runs, sweep=sweep, source=source, settings={"throughput": throughput.describe()})


def _axes(sweep: SweepFile, where: str) -> dict[str, list[Any]]:
    valid_config = [k for k in trainer_rules().config_keys() if k not in NOT_AXES and k not in SHAPE_KEYS]
    axes: dict[str, list[Any]] = {}
    for name, values in sweep.grid.items():
        if name not in AXES and name not in valid_config:
            choices = list(AXES) + valid_config
            hint = difflib.get_close_matches(name, choices, n=1)
            did = f" (did you mean {hint[0]!r}?)" if hint else ""
            why = " (the sweep sets it itself)" if name in NOT_AXES else ""
            raise ScalingError(
                f"{where}: unknown grid axis {name!r}{why}{did}; valid axes: {', '.join(AXES)}, "
                f"or a run-config key: {', '.join(k for k in valid_config if k not in AXES)}"
            )
        vals = expand_values(values, what=f"{where}: grid.{name}", whole=name in COUNT_AXES)
        if not vals:
            raise ScalingError(f"{where}: grid axis {name!r} is empty; give at least one value")
        axes[name] = vals
    if "unique_tokens" in axes and "epochs" in axes:
        raise ScalingError(f"{where}: grid axes 'unique_tokens' and 'epochs' both set U; keep one")
    return axes


def _cartesian(axes: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    names = list(axes)
    return [dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names))]


def _apply(base: Mapping[str, Any], point: Mapping[str, Any], trainer: TrainerRules, where: str) -> dict[str, Any]:
    """A run config: base, then the grid point's values (model shape, tokens, U, repetition, seed, ...)."""
    cfg = dict(base)
    for name, value in point.items():
        what = f"{where}: grid.{name} value {value!r}"
        if name == "model":
            for k in SHAPE_KEYS:
                cfg.pop(k, None)
            if isinstance(value, Mapping):
                # A shape, plus settings that belong to that size (a learning rate tuned per size, say).
                settings = [k for k in trainer.config_keys() if k not in NOT_AXES and k not in SHAPE_KEYS]
                unknown = [k for k in value if k not in SHAPE_KEYS and k not in settings]
                if unknown:
                    hint = difflib.get_close_matches(unknown[0], [*SHAPE_KEYS, *settings], n=1)
                    did = f" (did you mean {hint[0]!r}?)" if hint else ""
                    raise ScalingError(f"{what}: unknown key {unknown[0]!r}{did}; a model entry has shape keys "
                                       f"{', '.join(SHAPE_KEYS)} and per-size run-config keys such as lr, batch_size")
                for k, v in value.items():
                    if k in ("target_N", "aspect"):
                        cfg[k] = parse_number(v, what=f"{what}.{k}")
                    elif k in SHAPE_KEYS:
                        cfg[k] = parse_count(v, what=f"{what}.{k}")
                    else:
                        cfg[k] = v
            else:
                cfg["target_N"] = parse_number(value, what=what)
        elif name in COUNT_AXES:
            cfg[name] = parse_count(value, what=what)
        elif name == "epochs":
            cfg["_epochs"] = parse_number(value, what=what)
        elif name in ("repeat_fraction", "lr_mult"):
            cfg["_lr_mult" if name == "lr_mult" else name] = parse_number(value, what=what)
        elif name == "seed":
            cfg["seed"] = int(parse_number(value, what=what))
        else:
            cfg[name] = value
    return cfg


def _isoflop_specs(sweep, base, points, trainer, where):
    iso = sweep.isoflop
    budgets = [parse_number(b, what=f"{where}: isoflop.budgets") for b in iso.budgets]
    if not budgets:
        raise ScalingError(f"{where}: isoflop.budgets is empty; give at least one FLOP budget")
    specs = []
    for C in budgets:
        for point in points:
            cfg = _apply(base, point, trainer, where)
            N = trainer.count(cfg, where)["N"]
            D = trainer.round_tokens(cfg, C / (6.0 * N))
            if D <= 0:
                continue
            tpp = D / N
            if iso.min_tokens_per_param is not None and tpp < iso.min_tokens_per_param:
                continue
            if iso.max_tokens_per_param is not None and tpp > iso.max_tokens_per_param:
                continue
            cfg["tokens"] = D
            cfg["_budget_C"] = C
            specs.append(("isoflop", cfg, ()))
    return specs


def _transfer_specs(sweep, base, points, trainer, where):
    tr = sweep.transfer
    if not tr.pairs:
        raise ScalingError(f"{where}: transfer.pairs is empty; give at least one source -> target pair")
    pretrain = {
        src: [parse_count(t, what=f"{where}: transfer.pretrain.{src}") for t in expand_values(v, what=src, whole=True)]
        for src, v in tr.pretrain.items()
    }
    specs = []
    seen_pre: set[tuple] = set()
    for i, pair in enumerate(tr.pairs):
        label = f"{where}: transfer pair {pair.source} -> {pair.target}"
        if not pretrain.get(pair.source):
            have = ", ".join(k for k, v in pretrain.items() if v) or "none"
            raise ScalingError(
                f"{label}: no pretraining run for source {pair.source!r} (transfer.pretrain has: {have})"
            )
        ft = [parse_count(t, what=f"{label}: finetune_tokens")
              for t in expand_values(pair.finetune_tokens, what=label, whole=True)]
        if not ft:
            raise ScalingError(f"{label}: finetune_tokens is empty")
        scratch = ft if pair.scratch_tokens is None else [
            parse_count(t, what=f"{label}: scratch_tokens") for t in expand_values(pair.scratch_tokens, what=label, whole=True)
        ]
        for point in points:
            model_cfg = _apply(base, point, trainer, where)
            for Dp in pretrain[pair.source]:
                pre = dict(model_cfg, corpus=pair.source, tokens=Dp)
                key = _freeze(pre)
                if key not in seen_pre:
                    seen_pre.add(key)
                    specs.append(("pretrain", pre, ()))
                for D_F in ft:
                    fine = dict(model_cfg, corpus=pair.target, tokens=D_F, _init_from=key)
                    specs.append(("finetune", fine, (key,)))
            for D in scratch:
                specs.append(("scratch", dict(model_cfg, corpus=pair.target, tokens=D), ()))
    return specs


def _check_corpora(runs: Sequence[PlannedRun], where: str) -> None:
    """A local corpus file that does not exist fails the plan, not the runs (which would fail one by one)."""
    for run in runs:
        for key in ("corpus", "target_corpus"):
            spec = run.config.get(key)
            if not spec or spec in ("english", "python") or str(spec).startswith("hf:"):
                continue
            if not Path(spec).expanduser().exists():
                raise ScalingError(f"{where}: {key} {spec!r} (run {run.config['name']}): no such file or folder; "
                                   "built-in corpora are english and python")


def _freeze(cfg: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in cfg.items()))


def _finalise(sweep, specs, trainer, throughput, where) -> list[PlannedRun]:
    """Resolve learning rates, WSD branch groups, names, ids and dependencies; validate each config."""
    # Group budgets into WSD branches: configs equal except for `tokens` share one run.
    groups: dict[tuple, list[tuple[str, dict, tuple]]] = {}
    for role, cfg, deps in specs:
        # A pretraining run stays whole: its fine-tunes start from its final weights.
        # With an epochs axis U = D/epochs differs per budget, so budgets cannot share a run either.
        wsd = sweep.wsd_branches and cfg.get("schedule") == "wsd" and role != "pretrain" and "_epochs" not in cfg
        key = (role, _freeze({k: v for k, v in cfg.items() if k not in ("tokens", "_budget_C")})) if wsd else (role, _freeze(cfg), id(cfg))
        groups.setdefault(key, []).append((role, cfg, deps))

    runs: list[PlannedRun] = []
    ids_by_key: dict[tuple, str] = {}
    seen: set[str] = set()
    for members in groups.values():
        role, cfg, deps = members[0]
        cfg = dict(cfg)
        budgets = sorted({trainer.round_tokens(cfg, m[1]["tokens"]) for m in members})
        cfg["tokens"] = budgets[-1]
        if len(budgets) > 1:
            cfg["branches"] = budgets[:-1]
        counts = trainer.count(cfg, where)
        N = counts["N"]
        mult = cfg.pop("_lr_mult", 1.0)
        lr = cfg.get("lr")
        lr = float(lr) if lr is not None else trainer.default_lr(N)
        if mult != 1.0:  # otherwise left as written (None: the trainer applies Kaplan's rule itself)
            lr = float(f"{lr * mult:.6g}")
            cfg["lr"] = lr
        if "_epochs" in cfg:
            cfg["unique_tokens"] = trainer.round_tokens(cfg, cfg["tokens"] / cfg.pop("_epochs"))
        cfg.pop("_budget_C", None)
        if not cfg.get("repeat_fraction"):  # k means nothing at f = 0: one baseline run, not one per repeat_count
            cfg.pop("repeat_count", None)
        init_key = cfg.pop("_init_from", None)
        depends: tuple[str, ...] = ()
        if init_key is not None:
            src_id = ids_by_key[init_key]
            cfg["init_from"] = trainer.checkpoint_path(cfg, src_id)
            depends = (src_id,)
        cfg["name"] = _run_name(sweep.name, role, cfg, counts)
        cfg["threads"] = sweep.launch.threads
        config = trainer.validate(cfg, where)
        rid = trainer.run_id(config)
        ids_by_key[_freeze({k: v for k, v in members[0][1].items()})] = rid
        if rid in seen:  # the same run reached twice (e.g. a baseline equal to a grid run)
            continue
        seen.add(rid)
        tokens_trained = trainer.tokens_trained(config)
        fpt = counts["flops_per_token"]
        flops = fpt * tokens_trained
        runs.append(
            PlannedRun(
                run_id=rid,
                role=role,
                config=config,
                N=N,
                N_total=counts["N_total"],
                D=int(config["tokens"]),
                budgets=tuple(int(b) for b in budgets),
                flops=flops,
                flops_per_token=fpt,
                lr=lr,
                shape={k: int(counts[k]) for k in ("n_layer", "d_model", "n_head", "d_ff")},
                depends_on=depends,
                est_seconds=throughput.seconds(config, counts, tokens_trained),
            )
        )
    order = {r: i for i, r in enumerate(ROLES)}
    runs.sort(key=lambda r: (order[r.role], r.N, r.D, r.config.get("seed", 0)))
    return runs


def _run_name(sweep_name: str, role: str, cfg: Mapping[str, Any], counts: Mapping[str, float]) -> str:
    parts = [sweep_name, role, f"L{counts['n_layer']}d{counts['d_model']}", f"D{short_count(cfg['tokens'])}"]
    if cfg.get("unique_tokens"):
        parts.append(f"U{short_count(cfg['unique_tokens'])}")
    if cfg.get("repeat_fraction"):
        parts.append(f"r{cfg['repeat_fraction']:g}x{cfg.get('repeat_count', 1)}")
    parts.append(f"s{cfg.get('seed', 0)}")
    return "-".join(parts)
