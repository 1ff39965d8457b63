"""The ``scaling`` command: a typer app assembled from one module per command group.

Each module in this package defines its commands on the shared ``app`` (or a sub-app added to it) and holds no
logic of its own: it parses options, calls the library and prints. A :class:`~scaling.errors.ScalingError`
becomes one line on stderr and exit status 2; anything else is a bug and shows a traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer

from scaling.errors import ScalingError

app = typer.Typer(
    name="scaling",
    help="Fit scaling laws to small training sweeps and forecast larger models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command modules, imported for their side effect of adding commands to ``app``.
COMMAND_MODULES = [
    "scaling.cli.fitting",  # fit, forecast, optimal, laws
    "scaling.cli.sweep",  # sweep plan, sweep run, demo
    "scaling.cli.planning",  # backtest, report, serve (and optimal RESULTS.csv --approach)
]


def _load_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``scaling`` console script."""
    _load_commands()
    try:
        app(args=argv, standalone_mode=False, prog_name="scaling")
    except ScalingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (typer.Exit, SystemExit) as exc:  # --help, explicit exits
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code or 0)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # click usage errors (bad option, missing argument) are user errors too
        import click

        # typer >= 0.25 vendors its own click: its usage errors derive from typer.TyperException, not click's.
        if isinstance(exc, (click.exceptions.ClickException, typer.TyperException)) and hasattr(exc, "show"):
            exc.show()
            sys.exit(getattr(exc, "exit_code", 2))
        raise
