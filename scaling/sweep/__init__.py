"""Sweeps: a sweep file (``spec``) becomes a plan of runs (``planner``, with the trainer's own counts and ids
from ``trainer_rules``; time estimates in ``timing``) that the driver (``driver``) hands to a backend chosen by
name (``backends``): local processes (``local_backend``), Ray (``ray_backend``) or Slurm through submitit
(``slurm_backend``), each running the same task (``task``: the trainer as a subprocess)."""
