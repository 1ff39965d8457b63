"""Peak memory and wall time of `scaling fit` on large tables (issue 13: memory must be bounded).

    python benchmarks/fit_memory.py                       # 1e4, 1e5 and 1e6 rows, default fit (200 bootstrap)
    python benchmarks/fit_memory.py --rows 10000 100000   # other sizes
    python benchmarks/fit_memory.py --bootstrap 0         # point fit only

Data: a synthetic chinchilla sweep (Besiroglu et al. 2024's constants E=1.82, A=482, B=2085, alpha=0.3478,
beta=0.3658) of 40 runs (8 sizes from 1e7 to 1e9 parameters x 5 token budgets), each logging its loss along the
training curve at rows/40 token counts, 2% log-normal noise, seeded. Columns run_id, N, D, loss: what a
per-step log of a sweep looks like.

Each row of the table is one fresh process (`python -m scaling fit CSV --law chinchilla -o FIT`, the real CLI)
started by this script; its peak resident set size comes from os.wait4's resource usage of that child alone
(ru_maxrss, KiB on Linux), its wall time from the clock around it. The baseline row runs the same CLI in a child
process with the engine's previous block rule restored (2048 parameter sets x all rows per law evaluation,
``BLOCK_ELEMENTS = 2048 * rows``), only at the smallest size: at 1e5 rows it needs ~13 GB and at 1e6 more than
the machine has (issue 13: MemoryError, then the kernel's OOM killer).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

TRUTH = {"E": 1.82, "A": 482.0, "B": 2085.0, "alpha": 0.3478, "beta": 0.3658}

# The baseline child: the CLI with the old block rule (every evaluation scored 2048 parameter sets at all rows).
BASELINE = """
import sys
import scaling.fitting.objective as objective
objective.BLOCK_ELEMENTS = 2048 * int(sys.argv[1])
from scaling.cli import main
main(sys.argv[2:])
"""


def make_table(rows: int, seed: int = 0) -> pd.DataFrame:
    """40 training curves of a chinchilla law with 2% log-normal noise, rows/40 points each."""
    rng = np.random.default_rng(seed)
    sizes = np.geomspace(1e7, 1e9, 8)
    budgets = [5, 10, 20, 40, 80]  # tokens per parameter at the end of each run
    per_run = max(1, rows // (len(sizes) * len(budgets)))
    parts = []
    run = 0
    for n in sizes:
        for k in budgets:
            d = np.geomspace(0.05 * k * n, k * n, per_run)
            loss = TRUTH["E"] + TRUTH["A"] / n ** TRUTH["alpha"] + TRUTH["B"] / d ** TRUTH["beta"]
            loss = loss * np.exp(0.02 * rng.standard_normal(per_run))
            parts.append(pd.DataFrame({"run_id": f"r{run:02d}", "N": n, "D": d, "loss": loss}))
            run += 1
    return pd.concat(parts, ignore_index=True).iloc[:rows]


def run_child(cmd: list[str]) -> tuple[float, float, int, str]:
    """(wall s, peak RSS MiB, exit code, last stderr line) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own resource usage
    wall = time.perf_counter() - t0
    err = proc.stderr.read().strip().splitlines() if proc.stderr else []
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024.0, proc.returncode, (err[-1] if err else "")


def read_fit(path: Path) -> dict:
    import json

    doc = json.loads(path.read_text())
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--no-baseline", action="store_true", help="skip the old-block-rule row")
    args = ap.parse_args()
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"Python {platform.python_version()}, NumPy {np.__version__}; --bootstrap {args.bootstrap}")
    lines = ["| engine | rows | wall s | peak RSS MiB | exit | E | A | B | alpha | beta |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    baseline_rss = None
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            csv = Path(tmp) / f"sweep_{rows}.csv"
            make_table(rows).to_csv(csv, index=False)
            fit_args = ["fit", str(csv), "--law", "chinchilla", "--bootstrap", str(args.bootstrap), "--format", "json"]
            runs = [("blocked (this engine)", [sys.executable, "-m", "scaling", *fit_args])]
            if not args.no_baseline and rows == min(args.rows):
                runs.append(("baseline: 2048 sets x all rows", [sys.executable, "-c", BASELINE, str(rows), *fit_args]))
            for label, cmd in runs:
                out = Path(tmp) / f"fit_{rows}_{len(label)}.json"
                wall, rss, code, last = run_child([*cmd, "-o", str(out)])
                params = read_fit(out)["params"] if code == 0 and out.exists() else {}
                cells = [f"{params[k]:.4g}" if k in params else "-" for k in TRUTH]
                lines.append(f"| {label} | {rows:.0e} | {wall:.1f} | {rss:.0f} | {code} | " + " | ".join(cells) + " |")
                print(lines[-1] + (f"   ({last})" if code else ""), flush=True)
                if label.startswith("baseline"):
                    baseline_rss = (rows, rss, lines[-2])
    print()
    print("\n".join(lines))
    print(f"| truth | | | | | {' | '.join(f'{v:.4g}' for v in TRUTH.values())} |")
    if baseline_rss is not None:
        rows, rss, _ = baseline_rss
        mine = [ln for ln in lines if ln.startswith("| blocked") and f"| {rows:.0e} |" in ln][0]
        ours = float(mine.split("|")[4])
        print(f"\npeak RSS at {rows:.0e} rows: baseline {rss:.0f} MiB / blocked {ours:.0f} MiB = {rss / ours:.1f}x")


if __name__ == "__main__":
    main()
