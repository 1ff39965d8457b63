"""The trainer: run configs -> trained tiny transformers -> rows of results.csv.

    from scaling.train import RunConfig, run
    rows = run({"n_layer": 2, "d_model": 64, "tokens": 4_000_000}, results="results.csv")

Modules: :mod:`~scaling.train.config` (the validated run config and run ids), :mod:`~scaling.train.data`
(corpora, tokenizers, the cached train/held-out splits), :mod:`~scaling.train.sampling` (training batches,
held-out windows), :mod:`~scaling.train.model` (shapes, parameter and FLOP counts), :mod:`~scaling.train.loop`
(the accelerate training loop), :mod:`~scaling.train.schedule` (learning-rate schedules, the step plan),
:mod:`~scaling.train.checkpoint` (checkpoints, resume, final weights), :mod:`~scaling.train.evaluation`
(held-out scoring), :mod:`~scaling.train.source_run` (the source run of a fine-tune),
:mod:`~scaling.train.precision` (mixed precision), :mod:`~scaling.train.progress` (progress bar, SIGTERM),
:mod:`~scaling.train.metrics` (loss, bits per byte, ECE, Brier, peak FLOP/s), :mod:`~scaling.train.record` (the
columns of results.csv and how a row is made),
:mod:`~scaling.train.trackers` (accelerate trackers), :mod:`~scaling.train.pretrained_tokenizer` (tokenizer.json /
hub tokenizers), :mod:`~scaling.train.cli` (``trainers/train.py``). The fitting side of ``scaling`` never imports this package.
"""

from scaling.train.config import RunConfig, load_config, run_id

__all__ = ["RunConfig", "load_config", "run", "run_id", "train"]


def __getattr__(name: str):
    # run/train import torch and the data pipeline: load them on first use, so that reading or validating a
    # config (the sweep planner, the CLI's error path) stays fast.
    if name in ("run", "train"):
        from scaling.train import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'scaling.train' has no attribute {name!r}")
