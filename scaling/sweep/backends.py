"""The sweep backends by name: ``--backend local|ray|slurm`` to a backend object, or one clear line.

A backend turns :class:`scaling.sweep.task.RunTask` objects into ``concurrent.futures.Future`` objects of their
:class:`~scaling.sweep.task.RunOutcome` (``submit``, optionally ``submit_many`` for a wave), says how many runs it
takes at once (``slots``: None when it places runs itself) and can ``cancel`` and ``close``:

- :class:`scaling.sweep.local_backend.LocalBackend`: a pool of K threads, each waiting on one trainer subprocess.
- :class:`scaling.sweep.ray_backend.RayBackend`: one Ray task per run reserving the run's ``resources`` (num_gpus,
  num_cpus, memory, custom resources; ``runtime_env``) on an existing cluster (``address="auto"``) or a local one
  with K CPUs.
- :class:`scaling.sweep.slurm_backend.SlurmBackend`: submitit job arrays, requeued on timeout or pre-emption.

Ray and submitit are imported only when their backend is asked for. Which runs go when is the driver's business
(:func:`scaling.sweep.driver.run_plan`); placement and parallelism belong to the pool, Ray or Slurm.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from scaling.errors import ScalingError
from scaling.sweep.local_backend import LocalBackend
from scaling.sweep.planner import Plan

BACKENDS = ("local", "ray", "slurm")


def cpus_per_run(sweep: Any) -> int:
    """CPUs one run reserves: ``resources.cpus``, or torch threads x processes."""
    return sweep.resources.cpus or sweep.launch.threads * (sweep.launch.num_processes or 1)


def make_backend(name: str, *, workers: int | None, folder: Path, plan: Plan) -> Any:
    """The backend called ``name``, or one clear line when it is unknown, not installed or not reachable."""
    sweep = plan.sweep
    res = sweep.resources
    if (sweep.launch.num_machines or 1) > 1 and name != "slurm":
        raise ScalingError(f"{sweep.source}: launch.num_machines {sweep.launch.num_machines} needs --backend slurm "
                           "(elsewhere, run `accelerate launch` on each machine yourself: docs/sweeps.md)")
    if name == "local":
        return LocalBackend(workers or 2, gpus_per_run=res.gpus)
    if name == "ray":
        kwargs = dict(sweep.ray)
        from scaling.sweep.ray_backend import RayBackend

        return RayBackend(workers, kwargs.pop("address", None), cpus_per_run=cpus_per_run(sweep),
                          gpus_per_run=res.gpus or 0, memory_gb=res.memory_gb, custom=res.custom, **kwargs)
    if name == "slurm":
        params = dict(sweep.slurm)
        cluster = params.pop("cluster", "slurm")
        attempts = int(params.pop("submit_attempts", 3))
        backoff = float(params.pop("submit_backoff_s", 10.0))
        # The run's resources in submitit's generic names; the slurm: section overrides them (more specific).
        params = {"cpus_per_task": cpus_per_run(sweep), **({"gpus_per_node": res.gpus} if res.gpus else {}),
                  **({"mem_gb": res.memory_gb} if res.memory_gb else {}),
                  **({"nodes": sweep.launch.num_machines} if sweep.launch.num_machines else {}), **params}
        if workers and "slurm_array_parallelism" not in params:
            params["slurm_array_parallelism"] = workers
        return _slurm_backend_class()(folder / "submitit", workers=workers or 2, cluster=cluster, parameters=params,
                                      submit_attempts=attempts, submit_backoff_s=backoff)
    raise ScalingError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def _slurm_backend_class() -> type:
    try:
        importlib.import_module("submitit")  # checked first: scaling.sweep.slurm_backend may already be imported
        from scaling.sweep.slurm_backend import SlurmBackend
    except ImportError:
        raise ScalingError("--backend slurm: submitit is not installed (pip install 'scaling[sweep]' or pip install submitit)") from None
    return SlurmBackend
