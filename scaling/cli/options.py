"""Options that several commands share, declared once as ``Annotated`` aliases (typer reads the declaration from
the type), so that ``--format``, ``--ci``, ``--map`` and ``--where`` read and behave the same in every command."""

from __future__ import annotations

from typing import Annotated

import typer

from scaling.cli.output import Format

FormatOption = Annotated[
    Format,
    typer.Option("--format", "-f", metavar="table|json|csv", help="table (for people), json or csv (for pipes)."),
]
CiOption = Annotated[
    float | None,
    typer.Option(
        "--ci", metavar="LEVEL", help="Interval level in (0, 1), e.g. 0.9. Default: the level the fit was made with."
    ),
]
# A repeatable option whose text is parsed by scaling.cli.parsing (``--N 1e9,1e10``, ``--fix alpha=0.35``, ...).
ValuesOption = list[str] | None
MapOption = Annotated[
    ValuesOption,
    typer.Option(
        "--map", "-m", metavar="COL=FOREIGN", help='Column mapping CANONICAL=FOREIGN, e.g. N="Model Size" (repeatable).'
    ),
]
WhereOption = Annotated[
    str | None,
    typer.Option("--where", "-w", metavar="EXPR", help='Row selection, e.g. "N > 1e4" (grammar: docs/cli.md).'),
]
BootstrapOption = Annotated[
    int, typer.Option("--bootstrap", "-b", metavar="INT", help="Bootstrap resamples (0: no intervals).")
]
SeedOption = Annotated[int, typer.Option("--seed", metavar="INT", help="Seed of the bootstrap.")]
ResultsArgument = Annotated[
    str,
    typer.Argument(help="Results table (CSV) with one row per evaluation.", metavar="RESULTS.csv", show_default=False),
]
# Training a sweep: `scaling sweep run` and `scaling demo`.
WorkersOption = Annotated[
    int | None, typer.Option("--workers", "-k", help="Runs at once (local: pool size; default 2, one thread each).")
]
BackendOption = Annotated[str, typer.Option("--backend", help="local | ray | slurm.")]
