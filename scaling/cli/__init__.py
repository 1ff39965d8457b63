"""The ``scaling`` command: a typer app assembled from one module per command.

Each command module (``COMMAND_MODULES``) defines its command on the shared ``app`` (or a sub-app added to it) and
holds no logic of its own: it parses options, calls the library and prints. What several commands share lives in
modules that define no command and that command modules import, never each other: ``options`` (option
declarations), ``parsing`` (command-line text to values), ``files`` (tables read, output paths checked),
``output`` (tables, JSON and CSV), ``fit_output`` and ``forecast_output`` (how a fit and forecast rows print),
``progress`` (a running sweep on stderr).

A :class:`~scaling.errors.ScalingError` becomes one line on stderr and exit status 2; anything else is a bug and shows
a traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer

from scaling.errors import ScalingError, path_error_line

app = typer.Typer(
    name="scaling",
    help="Fit scaling laws to small training sweeps and forecast larger models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command modules, imported for their side effect of adding commands to ``app``.
COMMAND_MODULES = [
    "scaling.cli.fit",
    "scaling.cli.forecast",
    "scaling.cli.optimal",
    "scaling.cli.laws",
    "scaling.cli.demo",
    "scaling.cli.sweep",  # sweep plan, sweep run
    "scaling.cli.backtest",
    "scaling.cli.serve",
    "scaling.cli.report",
    "scaling.cli.scoring",  # predict, evaluate
]

# The top-level commands with their one-line help, in the order `scaling --help` lists them. `scaling` and
# `scaling --help` render this table instead of importing the command modules (pandas, scipy and the law
# catalogue: about 1 s of a 1.3 s start), so asking what the tool does answers at once. A command that runs
# imports everything. tests/test_imports.py checks this table against the real commands, so it cannot drift.
COMMANDS = {
    "fit": "Fit a scaling law to a results table; print parameters with intervals and fit quality; save the fit.",
    "forecast": "Predicted loss with its interval at given inputs; several values per input give their full grid.",
    "optimal": "Compute-optimal model size and tokens (C = 6ND), or optimal learning rate and batch size; with "
    "intervals.",
    "laws": "The law catalogue: name, formula, inputs, parameters and paper; or one law in full.",
    "demo": "The main job: run configs/sweeps/demo.yaml, fit chinchilla, forecast a 100x larger model, write plots.",
    "backtest": "Fit each law on the small end of the table, predict the held-out large end, rank laws by "
    "extrapolation error.",
    "serve": "Serve forecasts from the fits in a folder over HTTP (FastAPI; OpenAPI docs at /docs).",
    "report": "A self-contained HTML report: data, fitted curves with extrapolation bands, residuals, isoFLOP "
    "profiles, backtest.",
    "predict": "The rows with the fit's prediction and interval appended (prediction, prediction_lower, "
    "prediction_upper).",
    "evaluate": "R^2, NMSE, NMAE, log-RMSE and mean relative error of a fit on a test table (docs/cli.md).",
    "sweep": "Plan and run training sweeps described by a sweep file (configs/sweeps/*.yaml).",
}


def _load_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name)


def _add_listing() -> None:
    """Register each command by name and help only: enough for typer to render the top-level help."""
    for name, text in COMMANDS.items():
        app.command(name, help=text)(lambda: None)


def _names_a_command(args: list[str]) -> bool:
    # Options of the top-level group are flags only (--help), so the first non-option word is the command.
    return any(not arg.startswith("-") for arg in args)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``scaling`` console script."""
    args = sys.argv[1:] if argv is None else list(argv)
    if _names_a_command(args):
        _load_commands()
    else:  # `scaling` or `scaling --help`: list the commands without importing them
        _add_listing()
    try:
        app(args=args, standalone_mode=False, prog_name="scaling")
    except ScalingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (typer.Exit, SystemExit) as exc:  # --help, explicit exits
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code or 0)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:  # a path no check foresaw (a 5000-character name, ...): still one line
        line = path_error_line(exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:  # click usage errors (bad option, missing argument) are user errors too
        import click

        # typer >= 0.25 vendors its own click: its usage errors derive from typer.TyperException, not click's.
        if isinstance(exc, (click.exceptions.ClickException, typer.TyperException)) and hasattr(exc, "show"):
            # One line like every other user error (click's own show() prints Usage/Try/Error on three lines).
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "scaling"
            message = " ".join(str(exc.format_message()).split())
            print(f"error: {message} (see {where} --help)", file=sys.stderr)
            sys.exit(getattr(exc, "exit_code", 2))
        raise
