"""Ray: one task per run, reserving the run's resources; cancelled gracefully (docs/sweeps.md)."""

from __future__ import annotations

import concurrent.futures as cf
import os
from typing import Any

from scaling.errors import ScalingError
from scaling.sweep.task import RunTask, execute_run


class RayBackend:
    """One Ray task per run, reserving the run's resources, on an existing cluster or a local one with ``workers`` CPUs.

    Ray sets ``CUDA_VISIBLE_DEVICES`` of the worker to the GPUs it reserved (``num_gpus``), and the trainer
    inherits it. Cancelling is graceful: ``ray.cancel`` without force raises KeyboardInterrupt in the task, which
    SIGTERMs the trainer (it checkpoints and exits); only tasks still running after ``cancel_grace_s`` are killed.
    """

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None, *, cpus_per_run: float = 1,
                 gpus_per_run: float = 0, memory_gb: float | None = None, custom: dict[str, float] | None = None,
                 runtime_env: dict[str, Any] | None = None, cancel_grace_s: float = 120.0, **init_kwargs: Any):
        try:
            import ray
        except ImportError:
            raise ScalingError("--backend ray: ray is not installed (pip install 'scaling[sweep]' or pip install ray)") from None
        self._ray = ray
        self._started = False
        quiet = {"log_to_driver": False, "logging_level": "ERROR", "include_dashboard": False}
        if address and address not in ("auto", "local"):
            _probe(address)  # ray.init retries an unreachable address for minutes; fail in seconds instead
        if not ray.is_initialized():
            try:
                if address:
                    ray.init(address=address, **{**quiet, **init_kwargs})
                else:
                    try:  # an existing cluster on this machine (started with `ray start --head`) or RAY_ADDRESS
                        ray.init(address="auto", **{**quiet, **init_kwargs})
                    except (ConnectionError, RuntimeError, ValueError):
                        ray.init(num_cpus=workers or os.cpu_count() or 1, **{**quiet, **init_kwargs})
            except (ConnectionError, RuntimeError, ValueError, TimeoutError, TypeError) as exc:
                where = address or "a local cluster"
                raise ScalingError(f"--backend ray: cannot reach {where}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
            self._started = True
        self.slots = None  # Ray places tasks by the resources they reserve
        self.options: dict[str, Any] = {"num_cpus": cpus_per_run, "num_gpus": gpus_per_run, "max_retries": 0}
        if memory_gb:
            self.options["memory"] = int(memory_gb * 2**30)
        if custom:
            self.options["resources"] = dict(custom)
        if runtime_env:
            self.options["runtime_env"] = dict(runtime_env)
        if self._started and not address:
            try:
                self._check_fits()  # only a cluster we started: a running one may add nodes (autoscaler) on demand
            except ScalingError:
                ray.shutdown()
                raise
        try:
            self._remote = ray.remote(execute_run).options(**self.options)
        except (ValueError, TypeError) as exc:
            raise ScalingError(f"--backend ray: bad task option: {str(exc).splitlines()[0]}") from None
        self.cancel_grace_s = cancel_grace_s
        self._refs: list[Any] = []

    def _check_fits(self) -> None:
        """A run that no node can ever hold would wait forever in Ray's queue: refuse it in one line instead."""
        need = {"CPU": self.options["num_cpus"], "GPU": self.options["num_gpus"], **self.options.get("resources", {})}
        nodes = [n.get("Resources", {}) for n in self._ray.nodes() if n.get("Alive")]
        if nodes and not any(all(have.get(k, 0) >= v for k, v in need.items() if v) for have in nodes):
            asked = ", ".join(f"{k}={v:g}" for k, v in need.items() if v)
            raise ScalingError(f"--backend ray: no node of the cluster has the resources one run asks for ({asked}); "
                               "see resources: in the sweep file")

    def submit(self, task: RunTask) -> cf.Future:
        ref = self._remote.remote(task)
        self._refs.append(ref)
        return ref.future()

    def cancel(self) -> None:
        ray = self._ray
        live = [ref for ref in self._refs if not _ray_done(ray, ref)]
        for ref in live:
            ray.cancel(ref, force=False)  # KeyboardInterrupt in the task: the trainer gets SIGTERM and checkpoints
        if live and self.cancel_grace_s > 0:
            _, live = ray.wait(live, num_returns=len(live), timeout=self.cancel_grace_s)
        for ref in live:
            ray.cancel(ref, force=True)  # still running after the grace period: kill the worker

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()


def _ray_done(ray: Any, ref: Any) -> bool:
    ready, _ = ray.wait([ref], timeout=0)
    return bool(ready)


def _probe(address: str, timeout: float = 5.0) -> None:
    """Raise a one-line error unless something listens at a Ray address (``host:port`` or ``ray://host:port``)."""
    import socket

    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ScalingError(f"--backend ray: address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ScalingError(f"--backend ray: no Ray cluster reachable at {address} ({exc.strerror or type(exc).__name__})") from None
