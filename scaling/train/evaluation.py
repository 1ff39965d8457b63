"""Held-out evaluation during training: the numbers of one row of results.csv.

At every evaluation step the model is scored on the target corpus's held-out split (loss, bits per byte, ECE,
Brier: :mod:`scaling.train.metrics`), on the repeated subset of a repetition run (the loss that falls towards 0
as the model memorises it) and on each of ``eval_corpora``. Every process scores its share of the windows and
the sums are reduced, so the numbers do not depend on how many processes ran.
"""

from __future__ import annotations

from typing import Any

import torch

from scaling.train import metrics
from scaling.train.config import RunConfig
from scaling.train.data import TokenizedCorpus
from scaling.train.sampling import TrainSampler, heldout_batches


class Evaluator:
    """Scores a model the same way at every evaluation of a run.

    ``eval_sets``: (column, corpus) pairs scored besides the target (the ``eval_corpora`` columns).
    """

    def __init__(self, acc: Any, config: RunConfig, target: TokenizedCorpus, sampler: TrainSampler,
                 eval_sets: list[tuple[str, TokenizedCorpus]]):
        self.acc, self.cfg, self.target, self.sampler, self.eval_sets = acc, config, target, sampler, eval_sets

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module) -> dict:
        """Held-out metrics (loss, ECE, Brier, bits per byte) and, for a run with a repeated subset, the loss on it."""
        acc, cfg = self.acc, self.cfg
        local_batch = max(1, cfg.batch_size // acc.num_processes)
        shard = {"process_index": acc.process_index, "num_processes": acc.num_processes}
        heldout = heldout_batches(self.target, context=cfg.context, batch_size=local_batch, max_tokens=cfg.eval_tokens, **shard)
        stats, n_bytes = self._score(model, heldout, count_bytes=True)
        out = stats.result()
        out["bits_per_byte"] = metrics.bits_per_byte(out["loss"], out["count"], n_bytes)
        if self.sampler.subset_windows:  # what the model has memorised: this loss falls towards 0
            subset = self.sampler.repeated_subset_batches(local_batch, max_tokens=cfg.eval_tokens, **shard)
            out["repeated_loss"] = self._score(model, subset)[0].result()["loss"]
        for column, corpus in self.eval_sets:  # eval_corpora: the same loss on other held-out corpora
            if corpus is self.target:
                out[column] = out["loss"]
                continue
            batches = heldout_batches(corpus, context=cfg.context, batch_size=local_batch, max_tokens=cfg.eval_tokens, **shard)
            out[column] = self._score(model, batches)[0].result()["loss"]
        return out

    def _score(self, model: torch.nn.Module, batches, *, count_bytes: bool = False) -> tuple[metrics.NextTokenStats, float]:
        """Next-token statistics of the model over ``batches``, summed over processes, and the bytes they cover."""
        acc = self.acc
        model.eval()
        stats = metrics.NextTokenStats(self.cfg.ece_bins, device=acc.device)
        n_bytes = 0
        batches = list(batches)
        # Through the prepared model: FSDP gathers its shards in forward (and DDP syncs buffers), collectives
        # that every process must join; the shares may differ by a batch, so the shorter ones repeat their last
        # batch (its statistics are not counted).
        n = len(batches)
        most = int(acc.gather(torch.tensor([n], device=acc.device)).max().item()) if acc.num_processes > 1 else n
        with acc.autocast():
            for i in range(most):
                batch = batches[min(i, n - 1)] if n else None
                if batch is None:  # no share at all (fewer windows than processes): any one window will do
                    batch = next(heldout_batches(self.target, context=self.cfg.context, batch_size=1, max_tokens=1))
                if count_bytes and i < n:
                    n_bytes += self.target.count_bytes(batch[:, 1:])
                batch = batch.to(acc.device)
                logits = model(input_ids=batch[:, :-1]).logits
                if i < n:
                    stats.update(logits, batch[:, 1:])
        model.train()
        total = torch.cat([stats.state, torch.tensor([float(n_bytes)], dtype=torch.float64, device=acc.device)])
        if acc.num_processes > 1:
            total = acc.reduce(total, "sum")
        stats.state = total[:-1]
        return stats, float(total[-1].item())
