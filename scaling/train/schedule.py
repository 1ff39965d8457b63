"""Learning-rate schedules and the step plan of a run (torch-free: the sweep planner uses it too).

Schedules (the learning rate is a pure function of the step, as in nanoGPT's ``get_lr``: resuming needs only the
step, and WSD branches need the lr of any budget at any step):

- ``cosine``: linear warmup over ``warmup * steps``, then cosine decay to ``min_lr_ratio * lr`` at the last step.
- ``wsd`` (warmup-stable-decay, Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed
  Training Durations", arXiv 2405.18392): the same warmup, constant lr, then a "1-sqrt" cooldown over the last
  ``cooldown`` fraction of the steps to ``min_lr_ratio * lr``. Each budget in ``branches`` forks from the stable
  phase at ``(1 - cooldown) * budget``, cools down to its budget, is evaluated (a final row with its own D) and
  is dropped; the main run continues from the fork point. Branches share the main run's warmup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scaling.errors import ScalingError
from scaling.train.config import RunConfig


def lr_multiplier(step: int, *, steps: int, warmup_steps: int, schedule: str, min_lr_ratio: float, cooldown_steps: int = 0) -> float:
    """lr(step) / peak lr for optimizer step ``step`` (0-based) of a run of ``steps`` steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps  # linear; the first step already has a non-zero lr
    if schedule == "cosine":
        decay = steps - warmup_steps
        progress = min(1.0, (step - warmup_steps + 1) / decay)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "wsd":
        start = steps - cooldown_steps
        if step < start:
            return 1.0
        progress = min(1.0, (step - start + 1) / cooldown_steps)
        # "1-sqrt" cooldown, the best of those compared by Hägele et al. 2024 (also transformers' get_wsd_schedule).
        return min_lr_ratio + (1 - min_lr_ratio) * (1 - math.sqrt(progress))
    raise ValueError(f"unknown schedule {schedule!r}")


@dataclass(frozen=True)
class Schedule:
    """Step counts of a run: the main trajectory, its evaluations and its WSD branches."""

    steps: int
    warmup_steps: int
    cooldown_steps: int
    eval_steps: tuple[int, ...]
    branches: tuple[tuple[int, int, int], ...]  # (index, budget tokens, end step), index from 1
    cooldown: float = 0.0  # wsd: cooldown fraction of every budget

    def cooldown_steps_of(self, end: int) -> int:
        return max(1, round(self.cooldown * end))

    def branch_start(self, end: int) -> int:
        return end - self.cooldown_steps_of(end)

    def multiplier(self, step: int, config: RunConfig, end: int | None = None) -> float:
        steps = self.steps if end is None else end
        return lr_multiplier(
            step,
            steps=steps,
            warmup_steps=self.warmup_steps,
            schedule=config.schedule,
            min_lr_ratio=config.min_lr_ratio,
            cooldown_steps=self.cooldown_steps if end is None else self.cooldown_steps_of(end),
        )


def make_plan(config: RunConfig) -> Schedule:
    """Steps, warmup, cooldown, evaluation steps and branches of a config; raises ScalingError if inconsistent."""
    S = config.steps
    W = round(config.warmup * S)
    K = max(1, round(config.cooldown * S)) if config.schedule == "wsd" else 0
    if config.schedule == "wsd" and S - K < W:
        raise ScalingError(f"warmup ({W} steps) runs into the cooldown ({K} of {S} steps); lower warmup or cooldown")
    # Evaluations: halvings of the run (S/2, S/4, ... S/2^eval_points), then the end. Log-spaced in D, as the
    # nested-subset designs of Kaplan et al. 2020 and Hestness et al. 2017 are.
    evals = {max(1, round(S / 2**k)) for k in range(1, config.eval_points + 1)}
    evals.add(S)
    branches = []
    for i, budget in enumerate(config.branches, start=1):
        end = max(1, round(budget / config.batch_tokens))
        k = max(1, round(config.cooldown * end))
        if end - k < W:
            raise ScalingError(
                f"branch budget {budget}: its cooldown would start at step {end - k}, inside the warmup ({W} steps); "
                "lower warmup or drop the budget"
            )
        branches.append((i, budget, end))
    return Schedule(S, W, K, tuple(sorted(evals)), tuple(branches), config.cooldown)
