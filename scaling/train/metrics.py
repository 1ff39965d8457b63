"""Evaluation metrics of next-token predictions: loss, bits per byte, calibration (ECE) and Brier score.

Calibration as in Kadavath et al. 2022 ("Language Models (Mostly) Know What They Know", arXiv 2207.05221),
applied to next-token prediction (docs/training.md): for every scored position,
``conf = max softmax probability`` and ``correct = (argmax == target)``.

    ECE   = sum_m (n_m / n) * |mean(correct in bin m) - mean(conf in bin m)|   (equal-width bins on [0, 1])
          = sum_m |sum(correct in bin m) - sum(conf in bin m)| / n
    Brier = mean((conf - correct)^2)                                          (binary, top-1 prediction)

:func:`scaling.laws.calibration.ece` and :func:`~scaling.laws.calibration.brier` are the plain numpy definitions
(one definition for the trainer and the fitter). :class:`NextTokenStats` accumulates the same quantities from
logits batch by batch (held-out sets are larger than one batch) and gives identical numbers: it keeps, per bin,
the count and the sums of conf and correct, which is all the ECE needs.
"""

from __future__ import annotations

import math

import numpy as np
import torch


class NextTokenStats:
    """Running sums over scored positions: NLL, calibration bins and Brier score.

    ``update(logits, targets)`` takes logits ``[..., V]`` and targets ``[...]``; ``result()`` returns the metrics.
    Sums are kept in float64 so that the order of batches does not matter to the digits that get reported.
    ``as_tensor()``/``from_tensor()`` let several processes add their sums with one all-reduce.
    """

    def __init__(self, n_bins: int = 10, device: torch.device | str = "cpu"):
        self.n_bins = n_bins
        # Layout of the flat state: [nll_sum, count, brier_sum, correct_sum, bin_count*n, bin_conf*n, bin_correct*n]
        self.state = torch.zeros(4 + 3 * n_bins, dtype=torch.float64, device=device)

    @torch.no_grad()
    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        logits = logits.reshape(-1, logits.shape[-1]).float()
        targets = targets.reshape(-1)
        logp = torch.log_softmax(logits, dim=-1)
        nll = -logp.gather(1, targets[:, None]).squeeze(1)
        max_logp, argmax = logp.max(dim=-1)
        conf = max_logp.exp().double()
        correct = (argmax == targets).double()
        b = torch.clamp((conf * self.n_bins).long(), max=self.n_bins - 1)
        n = self.n_bins
        s = self.state
        s[0] += nll.double().sum()
        s[1] += targets.numel()
        s[2] += ((conf - correct) ** 2).sum()
        s[3] += correct.sum()
        s[4 : 4 + n] += torch.bincount(b, minlength=n).double()
        s[4 + n : 4 + 2 * n] += torch.bincount(b, weights=conf, minlength=n)
        s[4 + 2 * n : 4 + 3 * n] += torch.bincount(b, weights=correct, minlength=n)

    def update_from_confidence(self, conf: np.ndarray, correct: np.ndarray) -> None:
        """Add (conf, correct) pairs directly, without logits (used to check the binning against
        :func:`scaling.laws.calibration.ece`)."""
        conf_t = torch.as_tensor(np.asarray(conf), dtype=torch.float64, device=self.state.device)
        corr_t = torch.as_tensor(np.asarray(correct), dtype=torch.float64, device=self.state.device)
        b = torch.clamp((conf_t * self.n_bins).long(), max=self.n_bins - 1)
        n, s = self.n_bins, self.state
        s[1] += conf_t.numel()
        s[2] += ((conf_t - corr_t) ** 2).sum()
        s[3] += corr_t.sum()
        s[4 : 4 + n] += torch.bincount(b, minlength=n).double()
        s[4 + n : 4 + 2 * n] += torch.bincount(b, weights=conf_t, minlength=n)
        s[4 + 2 * n : 4 + 3 * n] += torch.bincount(b, weights=corr_t, minlength=n)

    @property
    def count(self) -> int:
        return int(self.state[1].item())

    def result(self) -> dict[str, float]:
        """``loss`` (mean NLL, nats), ``ece``, ``brier``, ``accuracy``, ``count`` (positions scored)."""
        s = self.state.cpu().numpy()
        n, count = self.n_bins, s[1]
        if count == 0:
            raise ValueError("no positions were scored")
        gap = s[4 + 2 * n : 4 + 3 * n] - s[4 + n : 4 + 2 * n]
        return {
            "loss": float(s[0] / count),
            "ece": float(np.abs(gap).sum() / count),
            "brier": float(s[2] / count),
            "accuracy": float(s[3] / count),
            "count": int(count),
        }


def bits_per_byte(loss_nats: float, n_tokens: int, n_bytes: float) -> float:
    """Bits per UTF-8 byte: total nats over the scored tokens, converted to bits, divided by their bytes."""
    return loss_nats * n_tokens / (n_bytes * math.log(2))


# ---------------------------------------------------------------------------------------------------------
# Peak FLOP/s for MFU


def matmul_peak(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, *, cache: bool = True) -> float:
    """FLOP/s of a large square matmul on ``device`` in ``dtype`` with the current thread count (cached).

    MFU is reported against this measured peak rather than a datasheet number: on a CPU the attainable rate
    depends on the vector units, the BLAS build and how many threads torch uses. The result is cached in
    ``$SCALING_CACHE/peak_flops.json`` (key: device, dtype, threads). A measurement taken while other work shares
    the cores can only come out too low (and would then report MFU above 100%), so the cache keeps the highest
    rate ever measured and each later call adds a short re-measurement (~0.3 s) instead of the full ~1 s one.
    """
    import json
    import time

    from filelock import FileLock

    from scaling.train.data import default_cache_dir

    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu-{torch.get_num_threads()}threads"
    key = f"{name}|{str(dtype).removeprefix('torch.')}"
    path = default_cache_dir() / "peak_flops.json"
    cached = 0.0
    if cache and path.is_file():
        try:
            cached = float(json.loads(path.read_text()).get(key) or 0.0)
        except ValueError:
            cached = 0.0
    best = 0.0
    sizes = (256, 512, 1024, 2048) if device.type == "cpu" else (1024, 2048, 4096, 8192)
    window = 0.25
    if cached:  # a quick check on the size that usually wins
        sizes, window = ((512, 1024) if device.type == "cpu" else (4096, 8192)), 0.1
    for n in sizes:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        torch.matmul(a, b)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        reps, start = 0, time.perf_counter()
        while True:
            torch.matmul(a, b)
            reps += 1
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - start
            if elapsed > window:
                break
        best = max(best, 2.0 * n**3 * reps / elapsed)
        if elapsed / reps > 0.2:  # one matmul already takes long: a larger one would not tell us more
            break
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            data = {}
            if path.is_file():
                try:
                    data = json.loads(path.read_text())
                except ValueError:
                    data = {}
            best = max(best, cached, float(data.get(key) or 0.0))
            data[key] = best
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(json.dumps(data, indent=1))
            tmp.replace(path)
    return best
