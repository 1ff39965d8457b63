"""Start-up time of the package and the command line: lazy loading against eager loading, in the same run.

    python benchmarks/startup_time.py            # 7 runs of each, median and min wall time
    python benchmarks/startup_time.py --runs 15

Rows of the table (each a fresh interpreter, so nothing is cached between runs):
- `scaling --help` (lazy): the console entry point lists the commands from its table (scaling/cli/__init__.py)
  without importing the command modules.
- `scaling --help` (eager): the same help after importing every command module first, as the CLI did before
  (the baseline).
- `import scaling` (lazy): the package resolves its public names on first use (PEP 562).
- `import scaling` (eager): the package plus everything its public names need (laws, fitter, fit files).

Wall time on a shared 2-core machine includes waiting for the cores; the ratio is taken between rows measured in
the same run, interleaved, so a busy neighbour slows both sides alike.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time

CASES = {
    "scaling --help (lazy)": "import sys; from scaling.cli import main; sys.argv = ['scaling', '--help']; main()",
    "scaling --help (eager, baseline)": "from scaling.cli import app, _load_commands; "
    "_load_commands(); app(args=['--help'], prog_name='scaling')",
    "import scaling (lazy)": "import scaling",
    "import scaling (eager, baseline)": "import scaling; [getattr(scaling, n) for n in scaling.__all__]",
}


def wall_time(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(runs):  # interleaved: each round measures every case once
        for name, code in CASES.items():
            times[name].append(wall_time(code))
    print(f"python {platform.python_version()}, {platform.machine()}, {runs} runs each, wall seconds")
    print(f"{'case':36s} {'median':>8s} {'min':>8s}")
    for name, values in times.items():
        print(f"{name:36s} {statistics.median(values):8.3f} {min(values):8.3f}")
    for what in ("scaling --help", "import scaling"):
        lazy = statistics.median(times[f"{what} (lazy)"])
        eager = statistics.median(times[f"{what} (eager, baseline)"])
        print(f"{what}: eager / lazy = {eager / lazy:.1f}x")


if __name__ == "__main__":
    main()
