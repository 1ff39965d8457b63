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

Besides the named axes (:data:`scaling.sweep.planner.AXES`) any run-config key can be an axis (``batch_size: [16, 32]``). Two
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

This module is the file: its schema, :func:`load_sweep` (pydantic, unknown keys refused, every error one line
naming the field) and the grammar of its values. :func:`scaling.sweep.planner.plan` expands a loaded file into
runs; :mod:`scaling.sweep.timing` estimates how long they take.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from scaling.errors import ScalingError
from scaling.values import number_from_text


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
