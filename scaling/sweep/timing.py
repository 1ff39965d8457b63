"""How long a plan takes: a throughput model of one run, the order runs are submitted in, and the wall time of
the plan on K workers (``scaling sweep plan`` prints both estimates before anything trains)."""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scaling.sweep.planner import Plan, PlannedRun


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
    free up and their dependencies finish (what :func:`scaling.sweep.driver.run_plan` does)."""
    slots = [0.0] * max(1, workers)
    end: dict[str, float] = {}
    for run in submission_order(plan.runs):
        free = heapq.heappop(slots)
        start = max([free] + [end.get(d, 0.0) for d in run.depends_on])
        end[run.run_id] = start + run.est_seconds
        heapq.heappush(slots, end[run.run_id])
    return max(end.values(), default=0.0)


