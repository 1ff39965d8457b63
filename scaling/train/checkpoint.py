"""Checkpoints of a run: resume state, the final weights, and files renamed into place.

A run folder ``out_dir/RUN_ID/`` holds ``run.json`` (what the run is), ``ckpt-<step>/`` (model, optimizer and
RNG through ``accelerate.save_state``, plus ``trainer_state.json``: the step and the running sums of the rows),
``latest`` (the name of the newest checkpoint) and, once finished, ``final/`` (Hugging Face format). Every file
and folder is written under a temporary name and renamed into place, so a crash at any moment leaves either the
previous checkpoint or the new one, never half of one; an interrupted run resumes from :func:`latest_checkpoint`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_FILE = "trainer_state.json"


@dataclass
class TrainState:
    """What a checkpoint adds to model/optimizer/RNG: the step and the running sums of the rows."""

    step: int = 0
    train_tokens: int = 0  # tokens trained in this run so far, branches included
    train_s: float = 0.0  # seconds in training steps (for tokens_per_s)
    wall_s: float = 0.0  # seconds in everything (training, evaluation, checkpoints)
    loss_sum: float = 0.0  # training loss since the last evaluation (main trajectory)
    loss_count: int = 0
    branch_loss_sum: float = 0.0
    branch_loss_count: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def drop_loss_sums(self) -> None:
        """The saved loss sums are global (summed over processes): one process, the main one, carries them."""
        self.loss_sum = self.branch_loss_sum = 0.0
        self.loss_count = self.branch_loss_count = 0


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    latest = run_dir / "latest"
    if not latest.is_file():
        return None
    path = run_dir / latest.read_text().strip()
    return path if (path / STATE_FILE).is_file() else None


def read_state(checkpoint: Path) -> TrainState:
    return TrainState(**json.loads((checkpoint / STATE_FILE).read_text()))


def resume(acc: Any, checkpoint: Path) -> TrainState:
    """Restore model, optimizer and RNG from ``checkpoint`` (every process) and return its step and sums."""
    acc.load_state(str(checkpoint))
    state = read_state(checkpoint)
    if not acc.is_main_process:
        state.drop_loss_sums()
    return state


def save_checkpoint(acc: Any, run_dir: Path, state: TrainState) -> None:
    """model + optimizer + RNG (accelerate.save_state) + step and running sums, renamed into place; older
    checkpoints are removed. A collective: every process calls it."""
    _quiet_tied_weights_warning()
    tmp = run_dir / f".ckpt-{state.step:09d}.tmp"
    final = run_dir / f"ckpt-{state.step:09d}"
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    acc.wait_for_everyone()
    acc.save_state(str(tmp))
    if acc.is_main_process:
        write_json(tmp / STATE_FILE, state.as_dict())
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        write_text(run_dir / "latest", final.name)
        for old in run_dir.glob("ckpt-*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()


def save_final_weights(acc: Any, model: Any, run_dir: Path) -> None:
    """Final weights in Hugging Face format (``from_pretrained``-loadable) in ``run_dir/final``, renamed into place."""
    acc.wait_for_everyone()
    # Every process: under FSDP / DeepSpeed ZeRO-3 this gathers the full weights (a collective).
    state_dict = acc.get_state_dict(model)
    if acc.is_main_process:
        import inspect

        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Writing model shards" bars are noise for a few-MB model
        tmp = run_dir / ".final.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        unwrapped = acc.unwrap_model(model)
        # transformers 4.x takes save_function (accelerate's save knows TPU and process rules); 5.x writes
        # safetensors itself and no longer has the argument.
        extra = {"save_function": acc.save} if "save_function" in inspect.signature(unwrapped.save_pretrained).parameters else {}
        unwrapped.save_pretrained(str(tmp), state_dict=state_dict, is_main_process=True, **extra)
        shutil.rmtree(run_dir / "final", ignore_errors=True)
        os.replace(tmp, run_dir / "final")
    acc.wait_for_everyone()


def drop_checkpoints(acc: Any, run_dir: Path) -> None:
    """The run is finished: resume checkpoints are no longer needed (final/ stays)."""
    acc.wait_for_everyone()
    if acc.is_main_process:
        for old in run_dir.glob("ckpt-*"):
            shutil.rmtree(old, ignore_errors=True)
        (run_dir / "latest").unlink(missing_ok=True)


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=1))


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (readers never see half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class _TiedWeightsFilter(logging.Filter):
    """accelerate warns that the tied LM head is "removed" when saving with safetensors; it is tied to the
    embedding and restored from it on load (resume is tested to be bit-exact), so the warning is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Removed shared tensor" not in record.getMessage()


def _quiet_tied_weights_warning() -> None:
    log = logging.getLogger("accelerate.utils.other")
    if not any(isinstance(f, _TiedWeightsFilter) for f in log.filters):
        log.addFilter(_TiedWeightsFilter())
