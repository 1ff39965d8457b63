"""Mixed precision of a run: what the Accelerator is asked for, and when ``precision: auto`` picks bf16.

Measured rather than assumed (docs/training.md): bf16 autocast pays off on a GPU that supports it, and on a CPU
only for models from about 1e6 parameters and only where a bf16 matmul is much faster than an fp32 one.
"""

from __future__ import annotations

import os

import torch

from scaling.errors import ScalingError
from scaling.train import metrics
from scaling.train.config import RunConfig

BF16_MIN_N = 1e6  # measured (docs/training.md): bf16 autocast pays off from about 1e6 parameters, and only where bf16 is fast
BF16_MIN_GAIN = 1.5  # measured bf16 matmul peak must beat fp32 by this factor


def wanted_precision(cfg: RunConfig, N: int, device: torch.device) -> str | None:
    """``mixed_precision`` for the Accelerator: None lets accelerate decide (the user's ``accelerate config`` or
    launch flags, a DeepSpeed config); "bf16" or "no" where the run config, or auto on a plain ``python`` start,
    decides. accelerate keeps one precision per process: a second in-process run that needs another is refused."""
    from accelerate.state import AcceleratorState, is_initialized

    launched = os.environ.get("ACCELERATE_MIXED_PRECISION")  # set by `accelerate launch` from its config/flags
    if cfg.precision == "auto" and launched is not None:
        wanted = None
    elif cfg.precision == "auto":
        wanted = "bf16" if auto_bf16(N, device) else "no"
    else:
        wanted = {"fp32": "no"}.get(cfg.precision, cfg.precision)
    if wanted is not None and is_initialized():
        current = AcceleratorState().mixed_precision
        if current != wanted:
            raise ScalingError(
                f"precision {cfg.precision}: this Python process already trained a run with mixed precision "
                f"{current!r}, and accelerate fixes it once per process; train this run in a fresh process "
                "(python trainers/train.py ..., as sweeps do)"
            )
    return wanted


def auto_bf16(N: int, device: torch.device) -> bool:
    """auto: bf16 on a GPU that supports it; on a CPU only from BF16_MIN_N and where a bf16 matmul is measured
    BF16_MIN_GAIN times faster than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu" and N >= BF16_MIN_N:
        return metrics.matmul_peak(device, torch.bfloat16) >= BF16_MIN_GAIN * metrics.matmul_peak(device, torch.float32)
    return False
