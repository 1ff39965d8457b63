"""Sweep files: describe a study once, expand it into runs with deterministic ids.

A sweep file (``configs/sweeps/*.yaml``) is a base run config plus grid axes::

    name: demo
    base:                      # any run-config key (configs/runs/*.yaml, docs/training.md)
      corpus: english
      schedule: wsd
    grid:                      # the runs are the cartesian product of the axes
      model: [{n_layer: 2, d_model: 48}, {n_layer: 4, d_model: 64}]   # shapes, or target N values: [3e4, 1e5]
      tokens: [4e6, 8e6, 16e6]  # D; "4e6:16e6:3" is the same, log-spaced
      seed: [0]
      lr_mult: [1.0]            # multiplies the base lr (or Kaplan's Eq. D.1 rule at the run's N)

Besides the named axes (:data:`AXES`) any run-config key can be an axis (``batch_size: [16, 32]``). Two
modes replace the ``tokens`` axis:

- ``isoflop: {budgets: [1e12, 3e12]}``: every (budget C, model) pair trains D = C / (6 N) tokens (Hoffmann et al.
  2022, Approach 2), N being the non-embedding count of that shape;
- ``transfer``: pretraining runs on a source corpus, fine-tunes of each on a target corpus for every D_F budget,
  and a from-scratch baseline on the target corpus for every model size and budget (Hernandez et al. 2021)::

      transfer:
        pretrain: {english: [8e6]}                 # source corpus -> pretraining budgets
        pairs:
          - {source: english, target: python, finetune_tokens: [1e5, 3e5, 1e6]}

With ``schedule: wsd`` the budgets of one shape share one run: it trains to the largest budget and the others
become cooldown branches (Hägele et al. 2024), so a size with three budgets costs about one run, not three.

:func:`load_sweep` validates the file (pydantic, unknown keys refused), :func:`plan` expands it into
:class:`PlannedRun` objects. Run ids come from the trainer's own ``run_id`` so that a plan's ids are the ids in
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
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from scaling.errors import ScalingError
from scaling.values import number_from_text

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
# Run-config keys that describe a model's shape (what a ``model`` axis entry may hold).
# Grid points a sweep may expand to (before seeds and transfer pairs): far beyond any real sweep, far below
# what makes planning itself slow.
MAX_GRID_POINTS = 10_000
# Axes that count tokens or repeats: whole numbers, so a "START:STOP:COUNT" range is rounded.
COUNT_AXES = ("tokens", "unique_tokens", "repeat_count")
SHAPE_KEYS = ("n_layer", "d_model", "n_head", "d_ff", "target_N", "aspect")

ROLES = ("pretrain", "grid", "isoflop", "scratch", "finetune")


# ---------------------------------------------------------------------------------------------------------
# The file schema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IsoFLOP(_Strict):
    """IsoFLOP mode: budgets x model sizes, D = C / (6 N)."""

    budgets: list[float | str] = Field(description="training FLOP budgets C (6 N D)")
    min_tokens_per_param: float | None = Field(None, description="drop (C, N) points with D/N below this")
    max_tokens_per_param: float | None = Field(None, description="drop (C, N) points with D/N above this")


class TransferPair(_Strict):
    source: str = Field(description="pretraining corpus (a key of transfer.pretrain)")
    target: str = Field(description="fine-tuning corpus")
    finetune_tokens: list[float | str] = Field(description="fine-tuning budgets D_F")
    scratch_tokens: list[float | str] | None = Field(
        None, description="budgets of the from-scratch baselines on the target (default: finetune_tokens)"
    )


class Transfer(_Strict):
    pretrain: dict[str, list[float | str]] = Field(description="source corpus -> pretraining token budgets")
    pairs: list[TransferPair]


class Launch(_Strict):
    """How a worker starts the trainer. Only what is set here is passed to ``accelerate launch``: everything else
    comes from the user's own ``accelerate config`` (or ``config_file``) on the machine that runs it."""

    launcher: Literal["python", "accelerate"] = Field(
        "python",
        description="python: `python trainers/train.py` (accelerate's single-process launch); "
        "accelerate: `accelerate launch trainers/train.py` (DDP, FSDP, DeepSpeed as the accelerate config says)",
    )
    num_processes: int | None = Field(
        None, ge=1, description="processes per run, over all machines (`--num_processes`; unset: the accelerate config)"
    )
    num_machines: int | None = Field(
        None, ge=1, description="machines per run (`--num_machines`; more than 1 needs --backend slurm)"
    )
    mixed_precision: Literal["no", "fp16", "bf16", "fp8"] | None = Field(
        None, description="`--mixed_precision` (unset: the accelerate config decides)"
    )
    config_file: str | None = Field(None, description="`accelerate launch --config_file` (unset: accelerate's default config)")
    threads: int = Field(1, ge=1, description="torch threads per process (1 per run on CPU: two one-thread runs use 2 cores better than one two-thread run)")
    accelerate_args: list[str] = Field(default_factory=list, description="extra `accelerate launch` arguments")


class Resources(_Strict):
    """What one run reserves: GPUs, CPUs, memory (each backend in its own terms, docs/sweeps.md)."""

    gpus: int | None = Field(
        None, ge=0, description="GPUs per run (local: a CUDA_VISIBLE_DEVICES slot per worker; 0 hides the GPUs; "
        "unset: the environment is left as it is)"
    )
    cpus: int | None = Field(None, ge=1, description="CPUs per run (Ray num_cpus, Slurm cpus_per_task; default threads x processes)")
    memory_gb: float | None = Field(None, gt=0, description="memory per run (Ray memory, Slurm mem_gb)")
    custom: dict[str, float] = Field(default_factory=dict, description="Ray custom resources per run, e.g. {'node:gpu': 1}")


class SweepFile(_Strict):
    name: str = Field(description="sweep name: prefixes run names")
    description: str = ""
    base: dict[str, Any] = Field(default_factory=dict, description="run-config keys shared by every run")
    grid: dict[str, Any] = Field(default_factory=dict, description="axes: name -> list of values")
    isoflop: IsoFLOP | None = None
    transfer: Transfer | None = None
    wsd_branches: bool = Field(
        True, description="with schedule: wsd, budgets of one shape share one run as cooldown branches"
    )
    launch: Launch = Field(default_factory=Launch)
    resources: Resources = Field(default_factory=Resources)
    slurm: dict[str, Any] = Field(
        default_factory=dict, description="submitit parameters for --backend slurm (e.g. slurm_partition, timeout_min), "
        "plus cluster, submit_attempts, submit_backoff_s"
    )
    ray: dict[str, Any] = Field(
        default_factory=dict, description="--backend ray: address, runtime_env (per run), cancel_grace_s, and ray.init() arguments"
    )
    _source: str = PrivateAttr("sweep")  # the file it came from, for error messages

    @property
    def source(self) -> str:
        return self._source


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
# Loading


def load_sweep(path: str | os.PathLike) -> SweepFile:
    """Read and validate a sweep file; every error is one line naming the file and the field."""
    path = Path(path)
    if not path.exists():
        raise ScalingError(f"{path}: no such sweep file")
    if path.is_dir():
        raise ScalingError(f"{path}: is a folder, expected a sweep YAML file")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise ScalingError(f"{path}: not a regular file, expected a sweep YAML file")
    from scaling.train.config import read_yaml  # torch-free; one YAML reader for run configs and sweep files

    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ScalingError(f"{path}: expected a mapping with name, base and grid, got {type(data).__name__}")
    return parse_sweep(data, source=str(path))


def parse_sweep(data: Mapping[str, Any], *, source: str = "sweep") -> SweepFile:
    try:
        sweep = SweepFile.model_validate(dict(data))
    except ValidationError as exc:
        raise ScalingError(f"{source}: {_pydantic_line(exc, SweepFile)}") from None
    sweep._source = source
    return sweep


def _pydantic_line(exc: ValidationError, model: type[BaseModel]) -> str:
    """The first pydantic error as one line: 'field a.b: message' (+ the valid keys for an unknown key)."""
    errors = exc.errors()
    # A misspelt key is both unknown and (for a required one) missing: name the misspelling, it is the cause.
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        key = str(err["loc"][-1])
        valid = _fields_at(model, err["loc"][:-1])
        hint = difflib.get_close_matches(key, valid, n=1)
        did = f" (did you mean {hint[0]!r}?)" if hint else ""
        return f"unknown key {loc!r}{did}; valid keys: {', '.join(valid)}"
    return f"{loc}: {err['msg']}"


def _fields_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """The field names of the (nested) model at an error location, e.g. ("transfer", "pairs", 0) -> TransferPair's
    fields; [] where the location holds no model (a plain dict such as ``base``)."""
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(str(part))
        if info is None:
            return []
        ann = info.annotation
        inner = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not inner:
            # list[Model]
            for a in getattr(ann, "__args__", ()):
                inner += [b for b in getattr(a, "__args__", ()) if isinstance(b, type) and issubclass(b, BaseModel)]
        if not inner:
            return []
        model = inner[0]
    return list(model.model_fields)


# ---------------------------------------------------------------------------------------------------------
# Values


def parse_number(value: Any, *, what: str) -> float:
    """A YAML scalar as a float: PyYAML reads ``4e6`` as a string (YAML 1.1), so strings are parsed too, in the
    command line's grammar (``70B``, ``1.4T``, ``500M``: :mod:`scaling.values`)."""
    if isinstance(value, bool):
        raise ScalingError(f"{what}: expected a number, got {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        out = float(value)
    elif isinstance(value, str):  # the command line's grammar (scaling.values): 4e6, 70B, 1_000_000
        parsed = number_from_text(value)
        if parsed is None:
            raise ScalingError(f"{what}: expected a number (e.g. 4e6, 70B), got {value!r}")
        out = parsed
    else:
        raise ScalingError(f"{what}: expected a number, got {value!r}")
    if not math.isfinite(out):
        raise ScalingError(f"{what}: expected a finite number, got {value!r}")
    return out


def parse_count(value: Any, *, what: str) -> int:
    """A positive whole number (token counts: ``4e6`` is fine, ``4.5`` is not)."""
    x = parse_number(value, what=what)
    if x <= 0 or x != int(x):
        raise ScalingError(f"{what}: expected a positive whole number, got {value!r}")
    return int(x)


def expand_values(values: Any, *, what: str, whole: bool = False) -> list[Any]:
    """An axis's values: a list, one scalar, or ``"start:stop:num"`` (num log-spaced values, like the CLI grids).

    ``whole``: the axis counts tokens, so a range's values are rounded to whole numbers (``"1e5:1e6:4"`` gives
    100000, 215443, 464159, 1000000), as docs/sweeps.md promises; a list's values must be whole already.
    """
    if isinstance(values, str) and values.count(":") == 2:
        start, stop, num = (s.strip() for s in values.split(":"))
        a, b = parse_number(start, what=what), parse_number(stop, what=what)
        n = parse_count(num, what=f"{what} (count)")
        if a <= 0 or b <= 0:
            raise ScalingError(f"{what}: a log-spaced range needs positive ends, got {values!r}")
        # 10 significant digits: 1024:4096:3 gives 2048, not 2047.9999999999989.
        spaced = [float(f"{v:.10g}") for v in np.geomspace(a, b, n)]
        if whole:
            spaced = list(dict.fromkeys(float(round(v)) for v in spaced))  # a narrow range may round to repeats
            if spaced[0] < 1:
                raise ScalingError(f"{what}: {values!r} starts below one token")
        return spaced
    if isinstance(values, (list, tuple)):
        return list(values)
    return [values]


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
    trainer = _trainer()
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
    valid_config = [k for k in _trainer().config_keys() if k not in NOT_AXES and k not in SHAPE_KEYS]
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


def _apply(base: Mapping[str, Any], point: Mapping[str, Any], trainer: _TrainerModel, where: str) -> dict[str, Any]:
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


# ---------------------------------------------------------------------------------------------------------
# Estimated time on this machine


@dataclass(frozen=True)
class Throughput:
    """Training speed model: seconds = FLOPs / rate(FLOPs per token) + fixed costs.

    Tiny models are overhead-bound, so the FLOP rate grows with the work per token. The default curve,
    ``rate = r0 * (flops_per_token / 1e6) ** p`` per thread, is fitted to the project's one-thread fp32 CPU
    measurements (1.2e4 params: ~100k tokens/s; 2e5: ~20k; 1e6: ~6k; 4.7e6: ~2k; docs/sweeps.md).
    """

    r0: float = 2.3e10  # FLOP/s at 1e6 FLOPs per token, one thread
    p: float = 0.33
    startup_s: float = 6.0  # python + torch + transformers import, corpus load (measured: ~5 s)
    source: str = "one-thread fp32 CPU measurements; docs/sweeps.md"  # printed to users: name a page they have

    @classmethod
    def default(cls) -> Throughput:
        return cls()

    def rate(self, flops_per_token: float, threads: int = 1) -> float:
        # Two threads give ~1.3x one thread for these sizes (measured); more threads assumed no better.
        speedup = 1.0 if threads <= 1 else 1.3
        return self.r0 * (flops_per_token / 1e6) ** self.p * speedup

    def seconds(self, config: Mapping[str, Any], counts: Mapping[str, float], tokens_trained: float) -> float:
        fpt = counts["flops_per_token"]
        threads = int(config.get("threads") or 1)
        train = fpt * tokens_trained / self.rate(fpt, threads)
        # Evaluations: forward only (a third of a training step per token) on eval_tokens at each eval point.
        n_evals = int(config.get("eval_points") or 6) + len(config.get("branches") or ()) + 1
        evals = n_evals * float(config.get("eval_tokens") or 1e5) * fpt / 3.0 / self.rate(fpt, threads)
        return self.startup_s + train + evals

    def describe(self) -> str:
        return f"rate = {self.r0:.3g} FLOP/s x (FLOPs per token / 1e6)^{self.p:.2f} per thread, {self.startup_s:g} s start-up ({self.source})"


def submission_order(runs: Sequence[PlannedRun]) -> list[PlannedRun]:
    """Longest estimated run first (the LPT rule: the sweep's end is not held up by a big run started last);
    a run never comes before the runs it depends on."""
    ordered = sorted(runs, key=lambda r: -r.est_seconds)
    placed: set[str] = set()
    out: list[PlannedRun] = []
    while ordered:
        run = next(r for r in ordered if all(d in placed or d not in {q.run_id for q in runs} for d in r.depends_on))
        ordered.remove(run)
        placed.add(run.run_id)
        out.append(run)
    return out


def estimate_wall_seconds(plan: Plan, workers: int) -> float:
    """Wall time of the plan on ``workers`` single-run slots: runs start in :func:`submission_order` as slots
    free up and their dependencies finish (what :func:`scaling.sweep.backends.run_plan` does)."""
    import heapq

    slots = [0.0] * max(1, workers)
    end: dict[str, float] = {}
    for run in submission_order(plan.runs):
        free = heapq.heappop(slots)
        start = max([free] + [end.get(d, 0.0) for d in run.depends_on])
        end[run.run_id] = start + run.est_seconds
        heapq.heappush(slots, end[run.run_id])
    return max(end.values(), default=0.0)


# ---------------------------------------------------------------------------------------------------------
# Finished runs in a results table


def finished_run_ids(results: str | os.PathLike) -> set[str]:
    """Run ids that are finished in ``results``: the trainer's rule (``scaling.train.record.is_finished``), a
    final row of the main branch (branch 0; a WSD run writes it after all of its cooldown branches)."""
    path = Path(results)
    if not path.exists() or path.stat().st_size == 0:
        return set()
    try:
        df = pd.read_csv(path, usecols=lambda c: c in ("run_id", "final", "branch"), dtype=str)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, ValueError):
        return set()
    if "run_id" not in df.columns or "final" not in df.columns:
        return set()
    done = df["final"].str.strip() == "1"
    if "branch" in df.columns:
        done &= df["branch"].fillna("0").str.strip().isin(["0", ""])
    return set(df.loc[done, "run_id"].dropna().str.strip())


# ---------------------------------------------------------------------------------------------------------
# The trainer's side: ids, parameter counts, validation (imported lazily: torch is heavy)


class _TrainerModel:
    """What the plan needs from ``scaling.train``: the config model, run ids, shapes and parameter counts.

    Imported lazily (the model module imports torch); counts use the trainer's own shape solver and tensor
    count on the meta device, so the plan's N is the N that the run will record.
    """

    SHAPE_FIELDS = ("model_type", "hf_config", "n_layer", "d_model", "n_head", "d_ff", "target_N", "aspect", "context",
                    "tokenizer", "bpe_vocab")

    def __init__(self) -> None:
        from scaling.train import config as config_mod
        from scaling.train import model as model_mod

        self._config = config_mod
        self._model = model_mod
        self._counts: dict[tuple, dict[str, float]] = {}

    def config_keys(self) -> list[str]:
        return list(self._config.RunConfig.model_fields)

    def _validated(self, cfg: Mapping[str, Any], where: str) -> Any:
        try:
            return self._config.RunConfig.model_validate(dict(cfg))
        except ValidationError as exc:
            raise ScalingError(self._config.config_error_line(exc, f"{where}: run {cfg.get('name', '?')}")) from None

    def validate(self, cfg: Mapping[str, Any], where: str) -> dict[str, Any]:
        """The run config as the trainer will see it: validated, defaults filled in, plain JSON values."""
        config = self._validated(cfg, where)
        # The schedule checks (a WSD branch whose cooldown starts inside the warmup, ...) live in the trainer's
        # make_plan, not in RunConfig: run them here so that the plan refuses the file instead of runs failing.
        from scaling.train.loop import make_plan

        try:
            make_plan(config)
        except ScalingError as exc:
            raise ScalingError(f"{where}: run {cfg.get('name', '?')}: {exc}") from None
        return config.model_dump(mode="json")

    def run_id(self, config: Mapping[str, Any]) -> str:
        return self._config.run_id(self._config.RunConfig.model_validate(dict(config)))

    def count(self, cfg: Mapping[str, Any], where: str) -> dict[str, float]:
        """Shape (solved from target_N where given) and counts: N, N_total, flops_per_token, n_layer, d_model."""
        subset = {k: cfg[k] for k in self.SHAPE_FIELDS if k in cfg and cfg[k] is not None}
        key = tuple(sorted((k, repr(v)) for k, v in subset.items()))
        if key not in self._counts:
            # A huge token count so that only the shape is checked here; the full config is validated later.
            shape_cfg = self._validated({**subset, "tokens": 10**15}, where)
            try:
                self._counts[key] = self._model.describe(shape_cfg)
            except ScalingError as exc:
                raise ScalingError(f"{where}: {exc}") from None
        return self._counts[key]

    def default_lr(self, N: float) -> float:
        from scaling.laws.kaplan import kaplan_learning_rate

        return float(kaplan_learning_rate(N))

    def round_tokens(self, cfg: Mapping[str, Any], tokens: float) -> int:
        """Tokens rounded to whole optimizer steps, as the trainer rounds them (RunConfig.tokens_trained)."""
        fields = self._config.RunConfig.model_fields
        per_step = int(cfg.get("batch_size") or fields["batch_size"].default) * int(cfg.get("context") or fields["context"].default)
        return max(1, round(tokens / per_step)) * per_step

    def tokens_trained(self, config: Mapping[str, Any]) -> float:
        """Tokens of training compute: the main run plus each WSD branch's cooldown."""
        cfg = self._config.RunConfig.model_validate(dict(config))
        total = float(cfg.tokens_trained)
        if cfg.schedule == "wsd":
            total += sum(cfg.cooldown * b for b in cfg.branches)
        return total

    def checkpoint_path(self, cfg: Mapping[str, Any], run_id: str) -> str:
        return str(Path(cfg.get("out_dir") or "runs") / run_id)


_TRAINER: _TrainerModel | None = None


def _trainer() -> _TrainerModel:
    global _TRAINER
    if _TRAINER is None:
        try:
            _TRAINER = _TrainerModel()
        except ImportError as exc:
            raise ScalingError(
                f"sweeps need the training side ({exc.name or exc} is not installed): pip install 'scaling[train]'"
            ) from None
    return _TRAINER
