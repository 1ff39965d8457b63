"""The trainer's rows of results.csv: the header, what each column holds, how a row is made, and what a run
already wrote.

Rows go out through :func:`scaling.results.append_rows` (file lock, whole rows, header checked, never rewritten).
The first columns are the canonical ones of :data:`scaling.results.CANONICAL_COLUMNS`, in the same order; the
rest describe the run. docs/training.md has the long form of every column.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING

import scaling
from scaling.results import CANONICAL_COLUMNS

if TYPE_CHECKING:  # the model and data modules import torch; rows are plain values
    from scaling.train.config import RunConfig
    from scaling.train.data import TokenizedCorpus
    from scaling.train.model import ModelCounts, ModelShape

# Column -> meaning. Order is the header's order; reordering makes old results files refuse new rows.
TRAINER_COLUMNS: dict[str, str] = {
    **CANONICAL_COLUMNS,  # N, D, loss, N_total, C, U, epochs, D_F, ece, run_id, step, final, seed
    "C_exact": "training FLOPs counted exactly: flops_per_token * D (attention and LM head included)",
    "name": "the run config's name (a label)",
    "tokens": "the run's requested token budget (config 'tokens', or the branch budget)",
    "repeat_fraction": "f: fraction of training tokens drawn from the repeated subset (Hernandez et al. 2022)",
    "repeat_count": "k: times the repeated subset is seen",
    "source": "corpus the initial weights were pretrained on (transfer runs; empty otherwise)",
    "target": "corpus whose held-out split is scored",
    "D_pretrain": "tokens the initial weights were pretrained for (transfer runs)",
    "lr": "peak learning rate",
    "batch_tokens": "tokens per optimizer step (batch_size * context, all processes)",
    "context": "sequence length",
    "n_layer": "layers",
    "d_model": "width",
    "n_head": "attention heads",
    "d_ff": "MLP hidden width",
    "vocab_size": "vocabulary size (embedding rows)",
    "tokenizer": "bytes, bpe-<vocab>, or a pretrained tokenizer as the config names it (hf:NAME, tokenizer.json)",
    "corpus": "training corpus",
    "bits_per_byte": "held-out loss in bits per UTF-8 byte of text (comparable across tokenizers)",
    "train_loss": "mean training loss over the steps since the previous evaluation (nats/token)",
    "brier": "Brier score of the top-1 next-token prediction on the held-out tokens",
    "ece_bins": "equal-width bins of the ECE",
    "ece_count": "held-out predictions scored (ECE, Brier and loss)",
    "eval_tokens": "held-out tokens scored (same as ece_count)",
    "schedule": "cosine or wsd",
    "branch": "0 for the main run; i >= 1 for the i-th WSD cooldown branch (budgets in increasing order)",
    "precision": "fp32 or bf16 (autocast), as resolved",
    "wall_s": "seconds of training and evaluation up to this row (all restarts summed)",
    "tokens_per_s": "training tokens per second (all processes) up to this row",
    "mfu": "model FLOPs utilisation: flops_per_token * tokens_per_s / peak FLOP/s of the devices",
    "scaling_version": "version of this toolkit",
    # Columns added later go at the end: a results file written before them still takes new rows (without them).
    "repeated_loss": "loss on the repeated subset (repetition runs; empty otherwise): falls towards 0 as it is memorised",
}

HEADER: list[str] = list(TRAINER_COLUMNS)

EVAL_PREFIX = "loss_"
"""Columns of a run's ``eval_corpora`` (``loss_english``, ``loss_python``, ...) come after :data:`HEADER`."""


def header_for(eval_columns: list[str], existing: list[str] | None = None) -> list[str]:
    """The header a run writes: :data:`HEADER`, then its ``eval_corpora`` columns.

    Without ``eval_corpora`` this is :data:`HEADER` exactly (default output unchanged). A results file that already
    carries eval columns (written by other runs of the sweep) keeps its header and the run's new eval columns go
    after them; a run without those columns leaves them empty. A file from before a trainer column was added
    (its header a prefix of :data:`HEADER`) takes the rows without the missing columns, as always.
    """
    if existing and existing[: len(HEADER)] == HEADER and all(c.startswith(EVAL_PREFIX) for c in existing[len(HEADER):]):
        return list(existing) + [c for c in eval_columns if c not in existing]
    return HEADER + list(eval_columns)


def rows_of_run(results: str | os.PathLike, run_id: str) -> list[dict[str, str]]:
    """Rows already in ``results`` for ``run_id`` (as strings); [] when the file does not exist yet.

    Read with the csv module rather than pandas: this runs before every training run and on every resume, and
    the file is only scanned for one id.
    """
    path = Path(results)
    if not path.exists() or path.stat().st_size == 0:
        return []
    with open(path, newline="") as fh:
        return [row for row in csv.DictReader(fh) if row.get("run_id") == run_id]


def row_key(row: dict) -> tuple[str, str]:
    """What makes a row unique within a run: (branch, step)."""
    return str(row.get("branch", "")), str(row.get("step", ""))


def is_finished(rows: list[dict[str, str]]) -> bool:
    """A run is finished when its main branch wrote its final row."""
    return any(str(r.get("final")) == "1" and str(r.get("branch")) == "0" for r in rows)


class ResultRows:
    """The rows of one run: what is fixed for the run is given once, each evaluation adds its own numbers.

    ``source_info`` is the ``run.json`` of a transfer run's source (None otherwise); ``eval_columns`` are the
    run's ``eval_corpora`` columns, read from each evaluation's metrics.
    """

    def __init__(self, *, run_id: str, config: RunConfig, counts: ModelCounts, shape: ModelShape,
                 corpus: TokenizedCorpus, target: TokenizedCorpus, source_info: dict | None, lr: float, precision: str,
                 peak: float, eval_columns: list[str]):
        self.rid, self.cfg, self.counts, self.shape = run_id, config, counts, shape
        self.corpus, self.target, self.source_info = corpus, target, source_info
        self.lr, self.precision, self.peak, self.eval_columns = lr, precision, peak, eval_columns

    def row(self, m: dict, *, branch: int, step: int, budget: int, final: bool, train_loss: float,
            distinct_tokens: int, wall_s: float, tokens_per_s: float) -> dict:
        """The row of an evaluation at optimizer step ``step``; ``m`` holds the evaluation's metrics."""
        cfg, c, s, src = self.cfg, self.counts, self.shape, self.source_info
        D = step * cfg.batch_tokens
        U = distinct_tokens
        return {
            "N": c.N,
            "D": D,
            "loss": m["loss"],
            "N_total": c.N_total,
            "C": 6.0 * c.N * D,
            "U": U,
            "epochs": D / U,
            "D_F": D if src is not None else None,
            "ece": m["ece"],
            "run_id": self.rid,
            "step": step,
            "final": int(final),
            "seed": cfg.seed,
            "C_exact": c.flops_per_token * D,
            "name": cfg.name,
            "tokens": budget,
            "repeat_fraction": cfg.repeat_fraction,
            "repeat_count": cfg.repeat_count,
            "source": src["corpus"] if src else None,
            "target": self.target.name,
            "D_pretrain": (src["D"] + src.get("D_pretrain", 0)) if src else None,
            "lr": self.lr,
            "batch_tokens": cfg.batch_tokens,
            "context": cfg.context,
            "n_layer": s.n_layer,
            "d_model": s.d_model,
            "n_head": s.n_head,
            "d_ff": s.d_ff,
            "vocab_size": s.vocab_size,
            "tokenizer": self.corpus.tokenizer,
            "corpus": self.corpus.name,
            "bits_per_byte": m["bits_per_byte"],
            "train_loss": train_loss,
            "brier": m["brier"],
            "ece_bins": cfg.ece_bins,
            "ece_count": m["count"],
            "eval_tokens": m["count"],
            "schedule": cfg.schedule,
            "branch": branch,
            "precision": self.precision,
            "wall_s": round(wall_s, 3),
            "tokens_per_s": round(tokens_per_s, 1),
            "mfu": round(c.flops_per_token * tokens_per_s / self.peak, 4) if self.peak else None,
            "scaling_version": scaling.__version__,
            "repeated_loss": m.get("repeated_loss"),
            **{column: m[column] for column in self.eval_columns},
        }
