"""The estimator's options against today's engine, in one run: variable projection starts and the asymmetric loss.

    python benchmarks/estimator_compare.py            # all data sets, 3 seeds each
    python benchmarks/estimator_compare.py --seeds 1  # quicker

Engines (all: scaling.LawFitter("chinchilla", n_bootstrap=0), Huber delta 1e-3 on log residuals, sum reduction):
- grid: today's engine: Hoffmann's 4500-point start grid, the best 32 refined by L-BFGS-B, tight polish;
- varpro: method="varpro": a 40 x 40 grid of (alpha, beta) with (E, A, B) solved by IRLS/NNLS at each point
  (1600 starts), the best 32 refined by the same L-BFGS-B on the full objective (scaling/fitting/varpro.py);
- varpro, 4 refined: the same with only the best 4 starts refined (n_refine=4): what the better starts buy;
- grid asym10 / varpro asym10: asymmetry=10, over-predictions cost 10x under-predictions (lower envelope).

Data:
- epoch: Epoch AI's 240 chinchilla points (../shared/data/chinchilla_epoch, D = C/(6N), the 5 highest-loss rows
  dropped as Besiroglu et al. 2024 did); reference = Besiroglu et al.'s estimate (E 1.82, A 482, B 2085,
  alpha 0.3478, beta 0.3658) - a published fit, not a truth;
- synthetic: the law with Besiroglu's constants on a 12 x 12 grid (N 7e7-1.6e10, D 5e9-5e11), 1% symmetric
  log-normal noise; truth known;
- offgrid: a law far from Hoffmann's start grid and from Besiroglu's constants (E 0.6, A 2e4, B 300, alpha 0.62,
  beta 0.21) on an 8 x 8 grid (N 1e7-3e9, D 2e8-1e11), 2% noise; truth known;
- envelope: the Besiroglu grid where every point is the law times exp(|e|), e ~ N(0, 3%) (each run lands at or above
  the achievable loss, as under-tuned runs do) plus 0.2% symmetric noise; truth = the law itself, the lower envelope.

Columns: best start = how far the best-scoring start lies above the final optimum (objective at the start /
objective at the optimum - 1): the quality of the starts the refinement gets; objective = the engine's own
objective at its optimum (comparable between grid and varpro with the same
asymmetry, not across asymmetries); rel. error = the largest |fitted/truth - 1| over E, A, B, alpha, beta;
pred. error = |L_hat/L_truth - 1| at N = 70e9, D = 1.4e12 (Chinchilla itself), the extrapolation a user cares about
(for epoch: against the prediction of Besiroglu et al.'s fit).
Wall and CPU (process) seconds per fit; one BLAS thread (the engine sets it).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy

import scaling
from scaling.fitting.estimate import LawFitter
from scaling.fitting.objective import Objective, ParamSpace, law_arrays
from scaling.fitting.varpro import varpro_starts
from scaling.laws import get_law

EPOCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "chinchilla_epoch" / "svg_extracted_data.csv"
BESIROGLU = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
OFFGRID = {"E": 0.6, "A": 2.0e4, "B": 300.0, "alpha": 0.62, "beta": 0.21}
CHIN = get_law("chinchilla")
TARGET = {"N": np.array([70e9]), "D": np.array([1.4e12])}
ENGINES = {
    "grid": {"method": "grid"},
    "varpro": {"method": "varpro"},
    "varpro, 4 refined": {"method": "varpro", "n_refine": 4},
    "grid asym10": {"method": "grid", "asymmetry": 10.0},
    "varpro asym10": {"method": "varpro", "asymmetry": 10.0},
}


def load_epoch() -> pd.DataFrame:
    df = scaling.read_results(EPOCH, mapping={"N": "Model Size", "C": "Training FLOP"})
    return df.sort_values("loss").iloc[:-5].reset_index(drop=True)


def synthetic(seed: int, kind: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    if kind == "offgrid":
        N, D = np.meshgrid(np.geomspace(1e7, 3e9, 8), np.geomspace(2e8, 1e11, 8))
        truth, noise = OFFGRID, 0.02
    else:
        N, D = np.meshgrid(np.geomspace(7e7, 1.6e10, 12), np.geomspace(5e9, 5e11, 12))
        truth, noise = BESIROGLU, 0.01
    N, D = N.ravel(), D.ravel()
    loss = CHIN.predict(truth, N=N, D=D)
    if kind == "envelope":
        loss = loss * np.exp(np.abs(rng.normal(0.0, 0.03, loss.size)) + rng.normal(0.0, 0.002, loss.size))
    else:
        loss = loss * np.exp(rng.normal(0.0, noise, loss.size))
    return pd.DataFrame({"N": N, "D": D, "loss": loss})


def best_start(df: pd.DataFrame, options: dict) -> float:
    """The objective of the best-scoring start of the engine (what its refinement begins from)."""
    space = ParamSpace(CHIN, None, None, None)
    inputs, log_y = law_arrays(CHIN, df)
    obj = Objective(space, inputs, log_y, loss="huber", delta=1e-3, asymmetry=options.get("asymmetry", 1.0))
    starts = varpro_starts(obj, obj.asymmetry) if options["method"] == "varpro" else space.grid()
    return float(np.min(obj.values(starts)))


def run(df: pd.DataFrame, options: dict, truth: dict) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    fit = LawFitter("chinchilla", n_bootstrap=0, **options).fit(df)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rel = max(abs(fit.params[k] / v - 1.0) for k, v in truth.items())
    pred = float(CHIN.predict(fit.params, **TARGET)[0] / CHIN.predict(truth, **TARGET)[0] - 1.0)
    objective = fit.quality.objective
    return {"wall": wall, "cpu": cpu, "objective": objective, "rel": rel, "pred": abs(pred),
            "start": best_start(df, options) / objective - 1.0,
            "converged": fit.quality.converged, "starts": fit.quality.n_starts, "params": fit.params}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; Python "
          f"{platform.python_version()}, NumPy {np.__version__}, SciPy {scipy.__version__}")
    sets = [("epoch", load_epoch(), BESIROGLU)]
    for kind in ("synthetic", "offgrid", "envelope"):
        sets += [(f"{kind} s{s}", synthetic(s, kind), OFFGRID if kind == "offgrid" else BESIROGLU)
                 for s in range(args.seeds)]
    rows = []
    print("| data | engine | starts | best start | objective | wall s | CPU s | converged | rel. error (max over "
          "params) | pred. error at 70B/1.4T | E | A | B | alpha | beta |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, df, truth in sets:
        for engine, options in ENGINES.items():
            r = run(df, options, truth)
            rows.append({"data": name.split()[0], "engine": engine, **r})
            p = r["params"]
            print(f"| {name} | {engine} | {r['starts']} | {r['start']:+.1e} | {r['objective']:.10e} | {r['wall']:.2f} | {r['cpu']:.2f} | "
                  f"{'yes' if r['converged'] else 'NO'} | {r['rel']:.3f} | {r['pred']:.4f} | {p['E']:.4f} | "
                  f"{p['A']:.1f} | {p['B']:.1f} | {p['alpha']:.4f} | {p['beta']:.4f} |", flush=True)
    table = pd.DataFrame(rows)
    print("\nSummary per data kind and engine (mean over seeds):\n")
    print("| data | engine | mean CPU s | mean best start | mean rel. error | mean pred. error | objective vs grid "
          "(same asymmetry) |")
    print("|---|---|---|---|---|---|---|")
    for (data, engine), g in table.groupby(["data", "engine"], sort=False):
        ref_engine = "grid asym10" if "asym" in engine else "grid"
        ref = table[(table.data == data) & (table.engine == ref_engine)]
        ratio = (g.objective.to_numpy() / ref.objective.to_numpy() - 1.0).max()
        print(f"| {data} | {engine} | {g.cpu.mean():.2f} | {g.start.mean():+.1e} | {g.rel.mean():.3f} | {g.pred.mean():.4f} | "
              f"{ratio:+.1e} (max relative excess) |")
    grid, varpro = table[table.engine == "grid"], table[table.engine == "varpro"]
    print(f"\nCPU time varpro / grid over all {len(grid)} data sets: {varpro.cpu.sum() / grid.cpu.sum():.2f}; "
          f"wall: {varpro.wall.sum() / grid.wall.sum():.2f}")


if __name__ == "__main__":
    main()
