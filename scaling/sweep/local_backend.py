"""The local backend: K worker threads on this machine, each running one trainer subprocess at a time.

K single-thread runs side by side use 2 CPU cores better than one two-thread run (measured, docs/sweeps.md).
With ``resources.gpus`` each worker owns its own ``CUDA_VISIBLE_DEVICES`` slot.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import queue

from scaling.errors import ScalingError
from scaling.sweep.task import RunOutcome, RunTask, execute_run, terminate_live


class LocalBackend:
    """K worker threads, each running one trainer subprocess at a time.

    With ``gpus_per_run`` each worker owns a slot of that many GPUs (``CUDA_VISIBLE_DEVICES``) for all of its
    runs, so K runs never share a device; ``gpus_per_run=0`` hides the GPUs (CPU runs); None leaves the
    environment as it is.
    """

    name = "local"

    def __init__(self, workers: int = 2, gpus_per_run: int | None = None):
        if workers < 1:
            raise ScalingError(f"--workers must be at least 1, got {workers}")
        self.slots = workers
        self._pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sweep")
        self._free: queue.SimpleQueue[dict[str, str]] = queue.SimpleQueue()
        for slot in gpu_slots(workers, gpus_per_run):
            self._free.put(slot)

    def submit(self, task: RunTask) -> cf.Future:
        return self._pool.submit(self._run, task)

    def _run(self, task: RunTask) -> RunOutcome:
        # At most K tasks run at once and there are K slots, so a free one is always there.
        slot = self._free.get()
        try:
            return execute_run(task, env=slot)
        finally:
            self._free.put(slot)

    def cancel(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        terminate_live()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def visible_gpus() -> list[str]:
    """The GPUs this process may use: the ids in CUDA_VISIBLE_DEVICES when it is set (indices or UUIDs),
    otherwise every device torch counts."""
    declared = os.environ.get("CUDA_VISIBLE_DEVICES")
    if declared is not None:
        return [d.strip() for d in declared.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch
    except ImportError:
        return []
    return [str(i) for i in range(torch.cuda.device_count())]


def gpu_slots(workers: int, gpus_per_run: int | None) -> list[dict[str, str]]:
    """One environment per worker: its own ``CUDA_VISIBLE_DEVICES`` (disjoint groups of ``gpus_per_run``)."""
    if gpus_per_run is None:
        return [{} for _ in range(workers)]
    if gpus_per_run == 0:
        return [{"CUDA_VISIBLE_DEVICES": ""} for _ in range(workers)]
    gpus = visible_gpus()
    need = workers * gpus_per_run
    if need > len(gpus):
        seen = f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r}" if "CUDA_VISIBLE_DEVICES" in os.environ else "torch sees"
        raise ScalingError(f"resources.gpus: {gpus_per_run} GPU(s) per run x {workers} worker(s) needs {need} GPUs, "
                           f"{len(gpus)} visible ({seen}); lower --workers, or --gpus 0 to train on the CPU")
    return [{"CUDA_VISIBLE_DEVICES": ",".join(gpus[w * gpus_per_run:(w + 1) * gpus_per_run])} for w in range(workers)]
