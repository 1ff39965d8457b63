"""Command line of the trainer: ``python trainers/train.py --config FILE [key=value ...] [--results PATH]``.

The same arguments work under ``accelerate launch trainers/train.py ...``. A user error prints one line
``error: ...`` on stderr and exits 2 before anything is written; a run stopped early (SIGTERM, or the testing key
``stop_after_steps``) exits 3 after saving what a re-run needs to resume.
"""

from __future__ import annotations

import argparse
import os
import sys

from scaling.errors import ScalingError, path_error_line

EXIT_USAGE = 2
EXIT_STOPPED = 3


class _OneLineParser(argparse.ArgumentParser):
    """argparse's usage errors as one ``error:`` line like every other user error (argparse prints the usage too)."""

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def parser() -> argparse.ArgumentParser:
    p = _OneLineParser(
        prog="trainers/train.py",
        description="Train one small transformer and append its evaluations to a results table.",
        epilog="Keys: see docs/training.md. Example: python trainers/train.py --config configs/runs/smoke.yaml tokens=2e5 seed=1",
    )
    p.add_argument("--config", "-c", help="run config (YAML)")
    p.add_argument("--results", "-r", default="results.csv", help="CSV that gets one row per evaluation (default: results.csv)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or evaluation lines")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override config keys (values read as YAML)")
    return p


def main(argv: list[str] | None = None) -> int:
    # Nothing here needs the hub (models are built from configs; local corpora are read in offline mode by
    # scaling.train.corpora), so the user's HF_HUB_OFFLINE decides whether hf:NAME corpora can download.
    # One line per error: datasets' "Generating train split" bars would otherwise come before it on stderr.
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    # intermixed: key=value settings may come before or after --results/--quiet (plain parse_args stops
    # collecting positionals at the first option and reports the rest as unrecognized arguments)
    args = parser().parse_intermixed_args(argv)
    try:
        from scaling.train.config import load_config

        if args.config is None and not args.overrides:
            raise ScalingError("give --config FILE and/or key=value settings (at least tokens and a model shape)")
        config = load_config(args.config, args.overrides)
        # torch, transformers and accelerate load only once the config is known to be good.
        from datasets.utils.logging import disable_progress_bar
        from rich.console import Console

        from scaling.train.loop import train

        disable_progress_bar()  # datasets may have been imported before the variable above was set
        console = None if args.quiet else Console(stderr=True)
        outcome = train(config, args.results, console=console)
    except ScalingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # a path no check foresaw (a 5000-character name, ...): still one line
        line = path_error_line(exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return EXIT_USAGE
    if outcome.stopped_at is not None:
        print(f"stopped after step {outcome.stopped_at}; run the same command again to resume", file=sys.stderr)
        return EXIT_STOPPED
    return 0
