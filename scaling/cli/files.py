"""The files a command reads and writes: a results table with ``--map`` and ``--where`` applied, and an output
path checked before the (possibly long) work that would fill it."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from scaling.errors import ScalingError


def read_selected_results(results: str, map_items: list[str] | None, where: str | None) -> pd.DataFrame:
    """The results table with the ``--map`` items and the ``--where`` selection applied."""
    from scaling.results import parse_mapping, read_results

    return read_results(results, mapping=parse_mapping(map_items or []), where=where)


def check_can_write(path: Path, table: str | None = None, *, what: str = "fit") -> None:
    """Fail before the (possibly long) work that writes ``path`` (-o) rather than after it: not over the input
    ``table``, not a folder, device or FIFO, and in a writable place. ``what`` names the file in the messages."""
    from scaling.fitting.fitfile import output_problem

    problem = output_problem(path, example=f"{what}.json")  # a folder, a device, a FIFO
    if problem:
        raise ScalingError(f"-o {path}: {problem}")
    if table is not None and path.exists() and path.resolve() == Path(table).resolve():  # JSON over the user's data
        raise ScalingError(f"-o {path}: is the input table; give the {what} another name such as {what}.json")
    probe = path.parent if str(path.parent) else Path(".")
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ScalingError(f"-o {path}: cannot create it ({probe} is a file)")
    if not os.access(probe, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ScalingError(f"-o {path}: not writable")
