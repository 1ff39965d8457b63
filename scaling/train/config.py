"""The run config: one typed, validated description of a training run, and its run id.

A run config is a YAML file (``configs/runs/*.yaml``) plus ``key=value`` overrides on the command line; every key
is a field of :class:`RunConfig` (pydantic, unknown keys refused with a list of the valid ones). docs/training.md
documents each key. :func:`run_id` hashes everything that can change the numbers a run produces, so that the
same config always maps to the same rows of results.csv and a finished run is never trained twice.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from scaling.errors import ScalingError


def _count(value: Any) -> Any:
    """Token counts may be written 4e6 or 4_000_000: PyYAML reads ``4e6`` as a string (YAML 1.1)."""
    if isinstance(value, str):
        try:
            value = float(value.replace("_", ""))
        except ValueError:
            return value  # pydantic reports it as "not a valid integer"
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return int(value)
    return value


def _number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value.replace("_", ""))
        except ValueError:
            return value
    return value


# At most 2**53: beyond it a count no longer survives a float round trip (YAML's 4e6), and int64 arithmetic in
# torch and numpy is one step from overflowing; no run counts anywhere near it.
Count = Annotated[int, BeforeValidator(_count), Field(le=2**53)]
Number = Annotated[float, BeforeValidator(_number)]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)\s*$")


class RunConfig(BaseModel):
    """Every setting of one training run. Field descriptions are the reference (docs/training.md repeats them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("run", description="a label for people; not part of the run id")
    # --- data
    corpus: str = Field("english", description="training corpus: english, python, a local file/folder, or hf:NAME[:CONFIG]")
    target_corpus: str | None = Field(None, description="corpus whose held-out split is scored (default: corpus)")
    tokenizer: str = Field(
        "bytes", min_length=1,
        description="bytes (vocabulary 256), bpe (trained on the corpus), a pretrained tokenizer.json (file or folder), or hf:NAME",
    )
    bpe_vocab: Count = Field(4096, ge=260, description="BPE vocabulary size (tokenizer: bpe)")
    # --- model
    model_type: str = Field(
        "llama", min_length=1,
        description="transformers causal-LM architecture (AutoConfig.for_model): llama, gpt2, qwen2, mistral, gpt_neox, olmo2, ...",
    )
    hf_config: dict[str, Any] = Field(
        default_factory=dict,
        description="more parameters of the architecture's config, passed through (num_key_value_heads, rope_theta, "
        "tie_word_embeddings, rms_norm_eps, ...)",
    )
    n_layer: Count | None = Field(None, ge=1)
    d_model: Count | None = Field(None, ge=2)
    n_head: Count | None = Field(None, ge=1, description="default: d_model / 32 (at least 1)")
    d_ff: Count | None = Field(None, ge=1, description="default: 4 * d_model")
    target_N: Number | None = Field(None, gt=0, description="solve n_layer, d_model for this non-embedding N")
    aspect: Number = Field(32.0, gt=0, description="d_model / n_layer when solving for target_N")
    context: Count = Field(128, ge=2, description="tokens per training sequence")
    # --- budget and data repetition
    batch_size: Count = Field(32, ge=1, description="sequences per optimizer step, over all processes")
    tokens: Count = Field(..., ge=1, description="D: training tokens (rounded to whole steps)")
    unique_tokens: Count | None = Field(None, ge=1, description="U: train on the first U tokens, D/U epochs")
    repeat_fraction: Number = Field(0.0, ge=0.0, lt=1.0, description="f: fraction of tokens from a repeated subset")
    repeat_count: Count = Field(1, ge=1, description="k: times the repeated subset is seen")
    init_from: str | None = Field(None, description="run directory to fine-tune from (transfer)")
    # --- optimisation
    lr: Number | None = Field(None, gt=0, description="peak learning rate; default Kaplan Eq. D.1 at N")
    warmup: Number = Field(0.05, ge=0.0, lt=1.0, description="warmup, as a fraction of the run's steps")
    schedule: Literal["cosine", "wsd"] = Field("cosine")
    min_lr_ratio: Number = Field(0.1, ge=0.0, le=1.0, description="final lr / peak lr")
    cooldown: Number = Field(0.2, gt=0.0, lt=1.0, description="wsd: cooldown as a fraction of each budget")
    branches: list[Count] = Field(default_factory=list, description="wsd: extra token budgets cooled down from the stable phase")
    weight_decay: Number = Field(0.1, ge=0.0)
    grad_clip: Number | None = Field(1.0, ge=0.0, description="max gradient norm; 0 or null: off")
    betas: tuple[Number, Number] = Field((0.9, 0.95))
    seed: Count = Field(0, ge=0, lt=2**32)  # numpy's legacy seeding (accelerate's set_seed) takes 32 bits
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: the precision accelerate launch was configured with, else bf16 autocast where measured faster"
    )
    compile: bool = Field(False, description="torch.compile the model (pays off only for runs of several minutes)")
    # --- evaluation
    eval_tokens: Count = Field(100_000, ge=2, description="held-out tokens scored per evaluation")
    eval_points: Count = Field(6, ge=0, description="log-spaced evaluations before the final one")
    ece_bins: Count = Field(10, ge=1)
    eval_corpora: list[str] = Field(
        default_factory=list,
        description="more held-out corpora scored at every evaluation (english, python, a file, hf:NAME); "
        "each adds a column loss_<name> to results.csv",
    )
    # --- execution (not part of the run id)
    out_dir: str = Field("runs", description="checkpoints and final weights go to out_dir/run_id/")
    threads: Count | None = Field(None, ge=1, description="torch threads per process (default: torch's choice)")
    checkpoint_every: str | Count | None = Field("5m", description="steps (500) or time (30s, 5m, 1h); null: only at branch points")
    log_with: Literal["tensorboard"] | None = Field(None, description="older spelling of trackers: [tensorboard]")
    trackers: list[str] = Field(
        default_factory=list,
        description="accelerate trackers: tensorboard, wandb, mlflow, aim, comet_ml, clearml, dvclive, swanlab, trackio, all",
    )
    grad_accum_steps: Count = Field(
        1, ge=1, description="micro-batches per optimizer step (Accelerator.accumulate); the global batch is unchanged"
    )
    peak_flops: Number | None = Field(None, gt=0, description="FLOP/s for MFU; default: a matmul peak measured once and cached")
    stop_after_steps: Count | None = Field(None, ge=0, description="testing: stop as if killed after this global step")

    @field_validator("branches")
    @classmethod
    def _sorted(cls, value: list[int]) -> list[int]:
        return sorted(value)  # the order of budgets means nothing; keep the run id independent of it

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        has_shape = self.n_layer is not None or self.d_model is not None
        if self.target_N is not None and has_shape:
            _fail("give either target_N or a shape (n_layer, d_model), not both")
        if has_shape and (self.n_layer is None or self.d_model is None):
            _fail("a shape needs both n_layer and d_model")
        if not has_shape and self.target_N is None and self.init_from is None:
            _fail("no model: give n_layer and d_model, or target_N, or init_from")
        if self.n_head is not None and self.d_model is not None:
            if self.d_model % self.n_head:
                _fail(f"n_head {self.n_head} does not divide d_model {self.d_model}")
            if self.model_type != "gpt2" and (self.d_model // self.n_head) % 2:
                _fail(f"head size d_model/n_head = {self.d_model // self.n_head} must be even (rotary embeddings)")
        batch_tokens = self.batch_size * self.context
        if self.batch_size % self.grad_accum_steps:
            _fail(f"batch_size {self.batch_size} is not divisible by grad_accum_steps {self.grad_accum_steps}")
        if self.tokens < batch_tokens:
            _fail(f"tokens {self.tokens} is smaller than one batch (batch_size*context = {batch_tokens})")
        if self.branches and self.schedule != "wsd":
            _fail("branches need schedule: wsd")
        for b in self.branches:
            if not batch_tokens <= b < self.tokens:
                _fail(f"branch budget {b} must be at least one batch ({batch_tokens}) and below tokens ({self.tokens})")
        if len(set(self.branches)) != len(self.branches):
            _fail("branches has a budget twice")
        if self.unique_tokens is not None and self.unique_tokens < self.context + 1:
            _fail(f"unique_tokens {self.unique_tokens} is shorter than one sequence (context+1 = {self.context + 1})")
        if self.eval_tokens < self.context:
            _fail(f"eval_tokens {self.eval_tokens} is shorter than one sequence (context {self.context})")
        columns = [eval_column(spec) for spec in self.eval_corpora]  # one-line error for an unusable name
        if len(set(columns)) != len(columns):
            _fail(f"eval_corpora {self.eval_corpora}: two corpora give the same column ({', '.join(columns)})")
        if isinstance(self.checkpoint_every, str) and not _DURATION.match(self.checkpoint_every):
            if not self.checkpoint_every.strip().isdigit():
                _fail(f"checkpoint_every {self.checkpoint_every!r}: give steps (500) or a time (30s, 5m, 1h)")
        return self

    # ------------------------------------------------------------------ derived settings
    @property
    def batch_tokens(self) -> int:
        return self.batch_size * self.context

    @property
    def steps(self) -> int:
        """Optimizer steps: D rounded to the nearest whole number of batches (at least one)."""
        return max(1, round(self.tokens / self.batch_tokens))

    @property
    def tokens_trained(self) -> int:
        """The exact D trained (``steps * batch_size * context``), recorded in the D column."""
        return self.steps * self.batch_tokens

    def branch_steps(self) -> list[int]:
        return sorted(max(1, round(b / self.batch_tokens)) for b in self.branches)

    def checkpoint_interval(self) -> tuple[int | None, float | None]:
        """(every N steps, every S seconds); both None: checkpoints only where the schedule needs them."""
        value = self.checkpoint_every
        if value is None:
            return None, None
        if isinstance(value, int):
            return (value or None), None
        text = value.strip()
        if text.isdigit():
            return (int(text) or None), None
        number, unit = _DURATION.match(text).groups()  # validated above
        return None, float(number) * {"s": 1, "m": 60, "h": 3600}[unit]


def eval_column(spec: str) -> str:
    """The results.csv column of an ``eval_corpora`` entry: ``loss_english``, ``loss_python``, ``loss_<file stem>``,
    ``loss_<hub name>`` (lower case, non-alphanumerics as ``_``)."""
    text = str(spec).strip()
    if text.startswith("hf:"):
        text = text[3:]
    elif text not in ("english", "python"):
        text = Path(text).stem or text
    slug = re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")
    if not slug:
        _fail(f"eval_corpora entry {spec!r}: give a corpus (english, python, a file or hf:NAME)")
    return f"loss_{slug}"


def _fail(message: str) -> None:
    # A PydanticCustomError keeps the message clean ("Value error, ..." is what a plain ValueError gives).
    raise PydanticCustomError("run_config", message)


# Keys that do not change what a run computes: excluded from the run id.
EXECUTION_KEYS = ("name", "out_dir", "threads", "checkpoint_every", "log_with", "trackers", "grad_accum_steps", "peak_flops",
                  "stop_after_steps")


def run_id(config: RunConfig) -> str:
    """A 12-hex-digit hash of every setting that changes the numbers a run produces.

    Left out: :data:`EXECUTION_KEYS` (labels, paths, threads, checkpointing, logging). ``init_from`` enters as the
    name of the source run's directory (its run id when it was made by this trainer), not as a full path, so a
    sweep moved to another folder keeps its ids. A local corpus file enters by the path as written.
    """
    data = config.model_dump(mode="json", exclude=set(EXECUTION_KEYS))
    for key in ("eval_corpora", "hf_config"):  # added later: runs without them keep the ids they always had
        if not data.get(key):
            data.pop(key, None)
    if data.get("init_from"):
        p = Path(data["init_from"])
        data["init_from"] = (p.parent if p.name == "final" else p).name
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------------------
# Reading a config file plus command-line overrides


def config_error_line(exc: ValidationError, source: str) -> str:
    """The first pydantic error as one line naming the key (and, for an unknown key, the valid ones)."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return _unknown_key_line(str(err["loc"][0]), source)
    if err["type"] == "missing":
        return f"{source}: missing key {loc!r} ({RunConfig.model_fields[loc].description})"
    value = err.get("input")
    got = "" if not loc or isinstance(value, dict) else f" (got {value!r})"
    where = f"key {loc!r}: " if loc else ""
    return f"{source}: {where}{err['msg']}{got}"


def _unknown_key_line(key: str, source: str) -> str:
    valid = list(RunConfig.model_fields)
    hint = difflib.get_close_matches(key, valid, n=1)
    did = f" (did you mean {hint[0]!r}?)" if hint else ""
    return f"{source}: unknown key {key!r}{did}; valid keys: {', '.join(valid)}"


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["lr=1e-3", "branches=[1e6,2e6]"]`` -> ``{"lr": 1e-3, "branches": [1e6, 2e6]}`` (values read as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ScalingError(f"override {item!r}: expected key=value, e.g. lr=1e-3")
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            out[key] = raw
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key written twice in one mapping: PyYAML keeps the last silently, so a second
    ``grid:`` would drop the first grid without a word. (ruamel.yaml refuses duplicates, but is one more dependency
    for six lines.) Keys brought in by a ``<<`` merge may still be overridden, as YAML intends."""

    def construct_mapping(self, node, deep=False):
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if (key_node.tag, key_node.value) in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key_node.value!r} appears twice", key_node.start_mark
                    )
                seen.add((key_node.tag, key_node.value))
        return super().construct_mapping(node, deep)


def read_yaml(path: Path) -> Any:
    """Parse a YAML file (run config or sweep file); a syntax error is one line naming the file and the line."""
    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except UnicodeDecodeError:
        raise ScalingError(f"{path}: not a YAML file (not UTF-8 text)") from None
    except IsADirectoryError:
        raise ScalingError(f"{path}: is a folder, expected a YAML file") from None
    except OSError as exc:
        raise ScalingError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except RecursionError:
        raise ScalingError(f"{path}: not usable YAML (nested too deeply)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ScalingError(f"{path}: not valid YAML{at} ({getattr(exc, 'problem', None) or exc})") from None


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
) -> RunConfig:
    """Read ``path`` (YAML mapping of run-config keys), apply overrides, validate. Errors: one line, ScalingError."""
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ScalingError(f"{path}: no such config file")
        loaded = read_yaml(path)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ScalingError(f"{path}: expected a mapping of run-config keys, got {type(loaded).__name__}")
        data.update(loaded)
    if overrides:
        extra = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(overrides)
        unknown = [k for k in extra if k not in RunConfig.model_fields]
        if unknown:  # name the command line, not the file, when the misspelt key came from there
            raise ScalingError(_unknown_key_line(unknown[0], "command line"))
        data.update(extra)
        if path is None:
            source = "overrides"
    return validate_config(data, source=source)


def validate_config(data: Mapping[str, Any] | RunConfig, *, source: str = "config") -> RunConfig:
    if isinstance(data, RunConfig):
        return data
    try:
        return RunConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ScalingError(config_error_line(exc, source)) from None
