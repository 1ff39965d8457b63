"""The results table's columns: what each canonical column means, which must be positive or lie in [0, 1], the
names other people's tables give them, what can be derived; and one definition each of a run and of its compute.
``docs/results.md`` is the long form."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling.errors import ScalingError

# Canonical columns and what they mean (docs/results.md is the long form).
CANONICAL_COLUMNS: dict[str, str] = {
    "N": "non-embedding parameters (Kaplan et al. 2020 convention)",
    "D": "training tokens seen",
    "loss": "held-out loss, nats/token",
    "N_total": "all parameters, embeddings included (Hoffmann et al. 2022 convention)",
    "C": "training FLOPs (defaults to 6 N D when absent)",
    "U": "unique training tokens (data-constrained runs)",
    "epochs": "D / U",
    "D_F": "fine-tuning tokens (transfer runs)",
    "ece": "expected calibration error of next-token predictions",
    "run_id": "identifier of the training run (several rows per run: one per evaluation)",
    "step": "optimizer step of the evaluation",
    "final": "1 for the run's last evaluation, else 0",
    "seed": "random seed",
}

# Columns that catalogue laws read or predict but the trainer never writes. Kept apart from CANONICAL_COLUMNS,
# which is the head of the trainer's results.csv header (scaling/train/record.py): adding there would reorder that
# header and make existing results files refuse new rows. --map accepts both.
LAW_COLUMNS: dict[str, str] = {
    "error": "average top-1 error on downstream tasks, in [0, 1] (gadre-error)",
    "task_loss": "loss of the correct answers of one downstream task (nats or bits per byte; task-loss, downstream)",
    "accuracy": "accuracy on one downstream task, in [0, 1] (task-accuracy, downstream)",
    "N_v": "vocabulary parameters, V x d (vocabulary size times embedding width; vocab law)",
    "loss_u": "unigram-normalised loss: loss minus the unigram model's loss, nats/token, usually negative (vocab law)",
    "lr_opt": "optimal (lowest-loss) peak learning rate at the row's N, D or C (hyperparameter laws)",
    "batch_opt": "optimal batch size in tokens at the row's N, D or C (hyperparameter laws)",
}

# Columns that must be strictly positive wherever a law uses them.
POSITIVE_COLUMNS = {"N", "D", "loss", "N_total", "C", "U", "epochs", "D_F", "lr_opt", "batch_opt", "task_loss", "N_v"}
# Probabilities and error rates (calibration, downstream error): a value outside [0, 1] is a column or unit mix-up.
UNIT_INTERVAL_COLUMNS = {"ece", "brier", "error", "accuracy"}

# Names other people's tables use for the canonical columns, so a missing column can be answered with
# "use --map N=params_N" instead of only listing the columns. Compared after normalising (lower case,
# letters and digits only). The Epoch Chinchilla and datablations tables are the first two entries.
FOREIGN_NAMES: dict[str, tuple[str, ...]] = {
    "N": ("Model Size", "params_N", "params", "parameters", "n_params", "num_params", "model_size",
          "non_embedding_params", "nonemb_params", "n_nonemb", "N_nonemb"),
    "D": ("tokens_D", "tokens", "n_tokens", "num_tokens", "tokens_seen", "training_tokens", "train_tokens",
          "data_size", "dataset_size"),
    "loss": ("val_loss", "eval_loss", "test_loss", "validation_loss", "valid_loss", "heldout_loss", "nll"),
    "C": ("Training FLOP", "training_flops", "flops", "FLOPs", "compute"),
    "U": ("unique_tokens_U", "unique_tokens", "unique"),
    "epochs": ("epochs_D_over_U", "num_epochs", "n_epochs"),
    "N_total": ("total_params", "params_total", "n_params_total"),
}

# Derivations applied when the left column is absent and the right ones are present (docs/results.md).
DERIVED: dict[str, tuple[str, tuple[str, ...]]] = {
    "D": ("C/(6N)", ("C", "N")),
    "C": ("6ND", ("N", "D")),
}


def run_key(df: pd.DataFrame) -> pd.Series:
    """One key per training run (curve): ``run_id`` when present, else the model size with the other inputs that
    tell runs apart (N_total, U, D_F, seed); a table with none of them is one curve."""
    if "run_id" in df.columns:
        return df["run_id"].astype(str)
    cols = [c for c in ("N", "N_total", "U", "D_F", "seed") if c in df.columns]
    if not cols:
        return pd.Series("all", index=df.index)
    return df[cols].astype(str).agg("|".join, axis=1)


def training_compute(df: pd.DataFrame) -> np.ndarray:
    """Training FLOPs per row: the table's C column when every value is a positive number, else C = 6 N D (Kaplan
    et al. 2020's approximation, as the trainer writes it)."""
    if "C" in df.columns:
        C = pd.to_numeric(df["C"], errors="coerce").to_numpy(float)
        if np.all(np.isfinite(C) & (C > 0)):
            return C
    if not {"N", "D"} <= set(df.columns):
        raise ScalingError(f"{df.attrs.get('source', 'table')}: training compute needs a C column or both N and D")
    return 6.0 * pd.to_numeric(df["N"]).to_numpy(float) * pd.to_numeric(df["D"]).to_numpy(float)


__all__ = ["CANONICAL_COLUMNS", "DERIVED", "FOREIGN_NAMES", "LAW_COLUMNS", "POSITIVE_COLUMNS", "UNIT_INTERVAL_COLUMNS",
           "run_key", "training_compute"]
