"""Speed of the chinchilla fit on Epoch's 240 points: the engine against a plain loop of scipy.optimize.minimize.

    python benchmarks/fit_speed.py                 # full baseline: 4500 L-BFGS-B runs (minutes)
    python benchmarks/fit_speed.py --stride 10     # baseline on every 10th start only (labelled in the output)

Rows of the table:
- baseline: Hoffmann et al. 2022's Approach 3 (arXiv 2203.15556, §3.3) written plainly: for every start of the
  4500-point grid, scipy.optimize.minimize(L-BFGS-B, ftol 1e-15, gtol 1e-12, maxiter 20000) on the Huber-sum
  objective with SciPy's finite-difference gradient; best objective kept.
- engine, no bootstrap: scaling.LawFitter on the same grid (broadcast scoring of all starts, L-BFGS-B on the best
  32, tight polish); this is the like-for-like comparison (same starts, same objective).
- engine + 200 bootstrap: the full fit with 200 resamples and intervals (the issue's < 10 s target).

Both sides run with one BLAS thread (threadpoolctl), as the engine does. Wall and CPU (process) time are both
printed: on a shared machine wall time includes waiting for the cores; the ratio is taken on wall time measured
in the same run, and on CPU time. Data: ../shared/data/chinchilla_epoch (not part of the repository).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp
from threadpoolctl import threadpool_limits

import scaling
from scaling.fitting.estimate import LawFitter
from scaling.fitting.objective import huber

EPOCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "chinchilla_epoch" / "svg_extracted_data.csv"


def load_epoch():
    df = scaling.read_results(EPOCH, mapping={"N": "Model Size", "C": "Training FLOP"})
    return df.sort_values("loss").iloc[:-5].reset_index(drop=True)


def baseline(df, stride: int):
    """The plain loop over Hoffmann's grid (Hoffmann et al. 2022, Approach 3), every ``stride``-th start."""
    lN, lD, lL = (np.log(df[c].to_numpy()) for c in ("N", "D", "loss"))

    def objective(p):
        a, b, e, al, be = p
        pred = logsumexp(np.stack([a - al * lN, b - be * lD, np.full_like(lN, e)]), axis=0)
        return huber(pred - lL, 1e-3).sum()

    grid = list(itertools.product(np.arange(0, 30, 5), np.arange(0, 30, 5), np.arange(-1, 1.5, 0.5),
                                  np.arange(0, 2.5, 0.5), np.arange(0, 2.5, 0.5)))[::stride]
    best = None
    for x0 in grid:
        r = minimize(objective, np.array(x0, float), method="L-BFGS-B",
                     options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 20000})
        if best is None or r.fun < best.fun:
            best = r
    a, b, e, al, be = best.x
    return best.fun, {"E": np.exp(e), "A": np.exp(a), "B": np.exp(b), "alpha": al, "beta": be}, len(grid)


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stride", type=int, default=1, help="baseline on every STRIDE-th start (default: all 4500)")
    parser.add_argument("--bootstrap", type=int, default=200)
    args = parser.parse_args()
    if not EPOCH.exists():
        raise SystemExit(f"reference data not found at {EPOCH}")
    df = load_epoch()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
          f"load average {os.getloadavg()[0]:.1f}; python {platform.python_version()}; data: {len(df)} points")
    with threadpool_limits(limits=1, user_api="blas"):
        engine, e_wall, e_cpu = timed(lambda: LawFitter("chinchilla", n_bootstrap=0).fit(df))
        full, f_wall, f_cpu = timed(lambda: LawFitter("chinchilla", n_bootstrap=args.bootstrap).fit(df))
        (b_obj, b_params, n_base), b_wall, b_cpu = timed(lambda: baseline(df, args.stride))
    scale = 4500 / n_base
    label = "baseline (plain minimize loop)" + (f", {n_base} of 4500 starts" if args.stride > 1 else "")
    rows = [
        (label, b_wall, b_cpu, n_base, b_obj, b_params),
        ("engine, no bootstrap (4500 starts)", e_wall, e_cpu, 4500, engine.quality.objective, engine.params),
        (f"engine + {args.bootstrap} bootstrap", f_wall, f_cpu, 4500, full.quality.objective, full.params),
    ]
    print("\n| run | wall s | CPU s | starts | objective | E | A | B | alpha | beta |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, wall, cpu, starts, obj, p in rows:
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {starts} | {obj:.8e} | {p['E']:.4f} | {p['A']:.1f} | "
              f"{p['B']:.1f} | {p['alpha']:.4f} | {p['beta']:.4f} |")
    note = "" if args.stride == 1 else f" (baseline times x{scale:g} to estimate all 4500 starts)"
    print(f"\nspeed-up, like for like (engine without bootstrap vs baseline){note}: "
          f"wall {b_wall * scale / e_wall:.1f}x, CPU {b_cpu * scale / e_cpu:.1f}x")
    print(f"full fit + {args.bootstrap} bootstrap resamples vs baseline: wall {b_wall * scale / f_wall:.1f}x, "
          f"CPU {b_cpu * scale / f_cpu:.1f}x; full fit wall {f_wall:.2f} s (target < 10 s), CPU {f_cpu:.2f} s")
    verdict = "equal or lower" if engine.quality.objective <= b_obj * (1 + 1e-9) else "HIGHER"
    print(f"engine objective vs baseline best: {verdict} "
          f"({engine.quality.objective:.10e} vs {b_obj:.10e}); converged: {engine.quality.converged}")
    lo, hi = full.intervals["alpha"]
    print(f"bootstrap: {len(full.draws)} draws, failed {full.quality.bootstrap_failed_fraction:.1%}; "
          f"alpha 95% [{lo:.4f}, {hi:.4f}] (Besiroglu et al.: [0.317, 0.373])")


if __name__ == "__main__":
    main()
