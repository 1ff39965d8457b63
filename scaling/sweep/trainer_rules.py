"""The trainer's rules as the sweep planner needs them: run-config validation, run ids, shapes and counts.

A plan must agree with what the trainer will do, so the planner never re-implements the trainer's rules: it asks
``scaling.train`` (imported lazily here: the model module imports torch). Counts use the trainer's own shape
solver and tensor count on the meta device, so the plan's N is the N that the run will record, and run ids come
from the trainer's ``run_id``, so that a plan's ids are the ids in results.csv.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from scaling.errors import ScalingError


class TrainerRules:
    """What the plan needs from ``scaling.train``: the config model, run ids, shapes and parameter counts."""

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
        from scaling.train.schedule import make_plan

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


_RULES: TrainerRules | None = None


def trainer_rules() -> TrainerRules:
    """The one :class:`TrainerRules` of this process (its counts are cached), or a one-line error naming the
    missing extra when the training side is not installed."""
    global _RULES
    if _RULES is None:
        try:
            _RULES = TrainerRules()
        except ImportError as exc:
            raise ScalingError(
                f"sweeps need the training side ({exc.name or exc} is not installed): pip install 'scaling[train]'"
            ) from None
    return _RULES
