"""Sweeps: a sweep file becomes a plan of runs (``spec``) that a backend trains: local processes
(``backends``), Ray (``ray_backend``) or Slurm through submitit (``slurm_backend``)."""
