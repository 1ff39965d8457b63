"""Training throughput of the trainer against a minimal hand-written PyTorch loop of the same model.

    python benchmarks/train_throughput.py                       # 1e4, 1e5, 1e6 non-embedding parameters
    python benchmarks/train_throughput.py --sizes 1e6 --threads 2 --repeats 5
    python benchmarks/train_throughput.py --device cuda --precision bf16 --sizes 1e7 1e8 5e8 --batch 32 --context 1024

For each size, both loops train the same Hugging Face model (same shape, initialisation, optimizer settings,
batch of 32 x 128 byte tokens of the shipped English corpus) for the same number of steps, alternating
trainer / minimal ``--repeats`` times so that both see the same machine load; the table shows medians.

- ``minimal``: nanoGPT's loop, nothing else: random windows of a token tensor, forward, cross-entropy, backward,
  gradient clipping, AdamW step, ``loss.item()``. Timed from its first step to its last.
- ``trainer``: ``scaling.train.train`` with one evaluation of one window at the end. ``tok/s`` is the rate it
  records in results.csv (time inside training steps: batch, forward, backward, clip, step); ``e2e tok/s``
  divides D by the wall time of the whole call (corpus lookup, model build, accelerate set-up, final evaluation,
  saving the weights included), which short runs pay proportionally more for.
- MFU: exact training FLOPs per token (``scaling.train.model.count``) x tokens/s / matmul peak, the peak being
  the highest of several large fp32 matmul measurements taken during this run (before each size and at the end)
  with the same number of threads.

On a GPU (``--device cuda --precision bf16``) both loops run under bf16 autocast and the peak is a bf16 matmul
on that GPU, measured in the same run. ``--model-type`` takes any architecture the trainer does (qwen2, ...).

The ratio ``trainer / minimal`` is the number to watch (target >= 0.9); MFU target >= 35% at 1e6 on a CPU,
>= 40% at 1e8 on a GPU (issue 14).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from scaling.train.config import RunConfig  # noqa: E402
from scaling.train.data import load_corpus  # noqa: E402
from scaling.train.loop import train  # noqa: E402
from scaling.train.metrics import matmul_peak  # noqa: E402
from scaling.train.model import ModelShape, build_model, count, solve_shape  # noqa: E402

CONTEXT, BATCH, LR = 128, 32, 1e-3
DEVICE, DTYPE = torch.device("cpu"), torch.float32  # set by main() from --device / --precision


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def minimal_loop(shape: ModelShape, data: torch.Tensor, steps: int) -> float:
    """tokens/s of the plainest correct loop (nanoGPT's train.py without its extras)."""
    model = build_model(shape, seed=0).to(DEVICE)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(0)
    _sync()
    start = time.perf_counter()
    for _ in range(steps):
        ix = torch.randint(len(data) - CONTEXT - 1, (BATCH,), generator=gen)
        batch = torch.stack([data[i : i + CONTEXT + 1] for i in ix.tolist()]).to(DEVICE, non_blocking=True)
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=DTYPE == torch.bfloat16):
            logits = model(input_ids=batch[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
    _sync()
    return steps * BATCH * CONTEXT / (time.perf_counter() - start)


def trainer_loop(shape: ModelShape, steps: int, threads: int, workdir: Path, peak: float, tag: str) -> tuple[float, float]:
    """(tokens/s recorded by the trainer, end-to-end tokens/s of the whole call)."""
    config = RunConfig(
        name=f"bench-{tag}",
        model_type=shape.model_type,
        n_layer=shape.n_layer,
        d_model=shape.d_model,
        n_head=shape.n_head,
        context=CONTEXT,
        batch_size=BATCH,
        tokens=steps * BATCH * CONTEXT,
        lr=LR,
        seed=hash(tag) % 10_000,  # a new run id each repeat (a finished run would be skipped)
        eval_points=0,
        eval_tokens=CONTEXT,
        precision="bf16" if DTYPE == torch.bfloat16 else "fp32",
        threads=threads,
        checkpoint_every=None,
        peak_flops=peak,
        out_dir=str(workdir / "runs"),
    )
    start = time.perf_counter()
    out = train(config, workdir / "results.csv")
    wall = time.perf_counter() - start
    return out.rows[-1]["tokens_per_s"], config.tokens_trained / wall


def main(argv: list[str] | None = None) -> None:
    global DEVICE, DTYPE, BATCH, CONTEXT
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", type=float, default=[1e4, 1e5, 1e6], help="target non-embedding N")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=6.0, help="about this long per measurement")
    p.add_argument("--device", default="cpu", help="cpu or cuda (the trainer uses what accelerate picks: the GPU if any)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--model-type", default="llama", help="any causal-LM model_type of transformers")
    p.add_argument("--batch", type=int, default=32, help="sequences per step")
    p.add_argument("--context", type=int, default=128, help="tokens per sequence")
    args = p.parse_args(argv)
    DEVICE, DTYPE = torch.device(args.device), torch.bfloat16 if args.precision == "bf16" else torch.float32
    BATCH, CONTEXT = args.batch, args.context

    torch.set_num_threads(args.threads)
    corpus = load_corpus("english")
    data = torch.from_numpy(corpus.train[: 2_000_000].astype("int64"))
    # On a shared machine one peak measurement is a snapshot of the load at that moment: measure before every
    # size and at the end, and use the highest (MFU above 100% would otherwise be possible).
    peaks = [matmul_peak(DEVICE, DTYPE, cache=False)]
    measured = []
    with tempfile.TemporaryDirectory() as tmp:
        for target in args.sizes:
            peaks.append(matmul_peak(DEVICE, DTYPE, cache=False))
            peak = max(peaks)
            shape = solve_shape(target, aspect=32, context=CONTEXT, vocab_size=256, model_type=args.model_type)
            counts = count(build_model(shape), shape)
            # size the run from a short probe of the minimal loop so each measurement takes ~args.seconds
            probe = minimal_loop(shape, data, 3)
            steps = max(10, int(args.seconds * probe / (BATCH * CONTEXT)))
            minimal, mine, e2e = [], [], []
            for r in range(args.repeats):
                mine_r, e2e_r = trainer_loop(shape, steps, args.threads, Path(tmp), peak, f"{target:g}-{r}")
                mine.append(mine_r)
                e2e.append(e2e_r)
                minimal.append(minimal_loop(shape, data, steps))
            measured.append((shape, counts, steps, minimal, mine, e2e))
    peaks.append(matmul_peak(DEVICE, DTYPE, cache=False))
    peak = max(peaks)
    where = torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else f"{sys.platform} CPU, no GPU in this run"
    print(f"# {where}, torch {torch.__version__}, {args.threads} thread(s), {args.model_type}; {args.precision} matmul peak: "
          f"{peak / 1e9:.1f} GFLOP/s (highest of {len(peaks)} measurements during the run: "
          f"{', '.join(f'{p / 1e9:.1f}' for p in peaks)}); batch {BATCH} x {CONTEXT} byte tokens; "
          f"medians of {args.repeats} alternating repeats\n")
    rows = []
    for shape, counts, steps, minimal, mine, e2e in measured:
        m, t, e = statistics.median(minimal), statistics.median(mine), statistics.median(e2e)
        fpt = counts.flops_per_token
        rows.append((f"{counts.N:.3g}", f"L{shape.n_layer} d{shape.d_model}", steps, f"{m:,.0f}", f"{t:,.0f}",
                     f"{e:,.0f}", f"{t / m:.2f}", f"{100 * fpt * m / peak:.0f}%", f"{100 * fpt * t / peak:.0f}%",
                     f"{counts.flops_per_token / counts.flops_per_token_6N:.2f}"))
    header = ("N", "shape", "steps", "minimal tok/s", "trainer tok/s", "trainer e2e tok/s", "trainer/minimal",
              "MFU minimal", "MFU trainer", "FLOPs/6N")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


if __name__ == "__main__":
    main()
