"""Experiment trackers: the run config's ``trackers`` list -> accelerate's ``Accelerator(log_with=...)``.

Every tracker accelerate integrates can be named (``tensorboard``, ``wandb``, ``mlflow``, ``aim``, ``comet_ml``,
``clearml``, ``dvclive``, ``swanlab``, ``trackio``, or ``all`` for every installed one). The names come from
``accelerate.utils.LoggerType`` and availability from accelerate's own ``is_<name>_available`` checks, so a
tracker added to accelerate is accepted without a change here. A tracker whose package is missing is a one-line
error before anything is written. Where a tracker writes (TensorBoard events, MLflow's ./mlruns, Aim's repo) is
``out_dir/RUN_ID/`` for those that take a folder; W&B and others read their usual environment (``WANDB_MODE``).
"""

from __future__ import annotations

from collections.abc import Sequence

from scaling.errors import ScalingError

# pip package of a tracker, where it differs from the tracker's name
PACKAGES = {"comet_ml": "comet-ml", "tensorboard": "tensorboard"}


def resolve(names: Sequence[str]) -> list[str]:
    """Validated tracker names for ``Accelerator(log_with=...)``; ScalingError for an unknown or missing one."""
    import accelerate.utils as accelerate_utils
    from accelerate.utils import LoggerType

    known = [t.value for t in LoggerType]
    out: list[str] = []
    for raw in names:
        name = str(raw).strip().lower()
        if name not in known:
            raise ScalingError(f"trackers: unknown tracker {raw!r}; accelerate offers {', '.join(known)}")
        if name != "all":
            available = getattr(accelerate_utils, f"is_{name}_available", None)
            if available is not None and not available():
                package = PACKAGES.get(name, name)
                raise ScalingError(f"trackers: {name} is not installed (pip install {package}), or drop it from trackers")
        if name not in out:
            out.append(name)
    return out


def loggable_config(config: dict) -> dict:
    """The run config as tracker hyper-parameters: scalars only (TensorBoard's hparams refuse lists and dicts)."""
    return {k: v for k, v in config.items() if isinstance(v, (bool, int, float, str)) or v is None}
