"""Coverage of the 80% and 95% prediction intervals on held-out points, over real and synthetic backtests.

Each case is a real :func:`scaling.analysis.backtest.backtest` (fit on the smaller sizes or compute, predict the
held-out largest ones) with the default prediction intervals: bootstrap plus residual noise, widened by the
training fit's own rollout calibration (scaling/fitting/conformal.py). The same fits give two baselines measured in
the same run:

- ``boot+noise``: the prediction interval without the rollout calibration (what ``backtest`` printed before it);
- ``conf``: the confidence interval of the mean law (the bootstrap band ``Fit.predict`` used to return);
- ``conformal alone``: the rollout-conformal interval log yhat +- q (1 + d / D0) without the hull with the
  bootstrap-plus-noise interval (to see what the hull adds).

Targets (issue 11): 80% intervals cover 75-90% and 95% intervals cover 90-98% of held-out points.

Data: ../shared/data (Epoch digitisation of Hoffmann et al. 2022; Muennighoff et al. 2023 datablations), the study
tables in docs/studies, and synthetic laws with misspecification (3 seeds each, pooled).

    python benchmarks/interval_coverage.py            # about 5-10 minutes on 2 busy cores
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

import scaling
from scaling.analysis.backtest import backtest
from scaling.analysis.holdout import split
from scaling.fitting.conformal import conformal_quantile, spread

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
STUDIES = ROOT / "docs" / "studies"
TRUTH = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


# ---------------------------------------------------------------------------------------------------------
# Tables


def epoch() -> pd.DataFrame:
    raw = pd.read_csv(SHARED / "chinchilla_epoch" / "svg_extracted_data.csv")
    df = pd.DataFrame({"N": raw["Model Size"], "D": raw["Training FLOP"] / (6 * raw["Model Size"]), "loss": raw["loss"]})
    df = df.sort_values("loss").iloc[:-5].reset_index(drop=True)  # Besiroglu et al.: drop the 5 highest losses
    df.attrs["source"] = "epoch"
    return df


def datablations_single_epoch() -> pd.DataFrame:
    raw = pd.read_csv(SHARED / "datablations" / "datablations_c4_runs.csv")
    raw = raw[raw["epochs_D_over_U"] <= 1.0]
    df = pd.DataFrame({"N": raw["params_N"], "D": raw["tokens_D"], "loss": raw["val_loss"]}).reset_index(drop=True)
    df.attrs["source"] = "datablations"
    return df


def study(name: str, query: str | None = None) -> pd.DataFrame:
    df = pd.read_csv(STUDIES / f"{name}-results.csv")
    df = df[df["final"] == 1]
    if query:
        df = df.query(query)
    df = df.reset_index(drop=True)
    df.attrs["source"] = f"docs/studies/{name}"
    return df


def synthetic(kind: str, seed: int) -> pd.DataFrame:
    """A ladder of 8 sizes x 5 token counts (1% noise) from a law chinchilla does not contain."""
    rng = np.random.default_rng(seed)
    N, D = (a.ravel() for a in np.meshgrid(np.geomspace(1e7, 3e9, 8), np.geomspace(2e8, 6e10, 5)))
    t = TRUTH
    if kind == "drifting-exponent":  # alpha grows with log N: a curved log-log frontier
        alpha = t["alpha"] + 0.03 * np.log10(N / 1e7)
        loss = t["E"] + t["A"] / N**alpha + t["B"] / D ** t["beta"]
    elif kind == "kaplan-truth":  # Kaplan et al. 2020 Eq. 1.5, fitted with chinchilla
        loss = ((8.8e13 / N) ** (0.076 / 0.095) + 5.4e13 / D) ** 0.095
    else:  # heavy-tailed noise: Student-t with 3 degrees of freedom
        loss = t["E"] + t["A"] / N ** t["alpha"] + t["B"] / D ** t["beta"]
    noise = rng.standard_t(3, N.size) * 0.01 / math.sqrt(3) if kind == "student-t-noise" else rng.normal(0, 0.01, N.size)
    df = pd.DataFrame({"N": N, "D": D, "loss": loss * np.exp(noise)})
    df.attrs["source"] = f"synthetic {kind} seed {seed}"
    return df


CASES = [
    ("Epoch chinchilla, largest 15 sizes", lambda: [epoch()], "chinchilla", "largest-N:15"),
    ("Epoch chinchilla, top 20% compute", lambda: [epoch()], "chinchilla", "largest-C:0.2"),
    ("datablations 1-epoch runs, largest 3 sizes", lambda: [datablations_single_epoch()], "chinchilla", "largest-N:3"),
    ("study: transfer from-scratch runs, top 20% compute", lambda: [study("transfer", "D_F != D_F")], "chinchilla",
     "largest-C:0.2"),
    ("study: calibration loss(N), largest size", lambda: [study("calibration")], "saturating:N", "largest-N:1"),
    ("synthetic drifting exponent (3 seeds)", lambda: [synthetic("drifting-exponent", s) for s in range(3)],
     "chinchilla", "largest-N:2"),
    ("synthetic Kaplan truth (3 seeds)", lambda: [synthetic("kaplan-truth", s) for s in range(3)], "chinchilla",
     "largest-N:2"),
    ("synthetic Student-t noise (3 seeds)", lambda: [synthetic("student-t-noise", s) for s in range(3)], "chinchilla",
     "largest-N:2"),
]


# ---------------------------------------------------------------------------------------------------------
# Coverage


def _inside(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return (y >= lo) & (y <= hi)


def run_case(tables: list[pd.DataFrame], law: str, holdout: str, n_bootstrap: int) -> dict:
    hits = {k: [] for k in ("pred80", "pred95", "boot80", "boot95", "conf95", "alone80", "alone95")}
    errors, statuses, decades = [], [], []
    for df in tables:
        result = backtest(df, [law], holdout, n_bootstrap=n_bootstrap, seed=0)
        (fit,) = result.fits[law].values()
        test = df[split(df, holdout)]
        y = test[fit.law.output].to_numpy(float)
        inputs = {c: test[c].to_numpy(float) for c in fit.law.inputs}
        plain = copy.copy(fit)
        plain.quality = dataclasses.replace(fit.quality, calibration=None)  # the same fit without its rollout calibration
        for level, tag in ((0.8, "80"), (0.95, "95")):
            cal = fit.predict(ci=level, **inputs)
            boot = plain.predict(ci=level, **inputs)
            hits[f"pred{tag}"].append(_inside(y, cal["pred_lower"].to_numpy(), cal["pred_upper"].to_numpy()))
            hits[f"boot{tag}"].append(_inside(y, boot["pred_lower"].to_numpy(), boot["pred_upper"].to_numpy()))
            q, _ = conformal_quantile(fit.quality.calibration, level)
            half = q * spread(cal["extrap_decades"].to_numpy(float))
            centre = np.log(cal["point"].to_numpy(float))
            hits[f"alone{tag}"].append(_inside(np.log(y), centre - half, centre + half))
            if tag == "95":
                hits["conf95"].append(_inside(y, cal["conf_lower"].to_numpy(), cal["conf_upper"].to_numpy()))
                statuses.extend(cal["interval_status"])
                decades.extend(cal["extrap_decades"])
        errors.append(np.log(cal["point"].to_numpy(float) / y))
    err = np.concatenate(errors)
    out = {k: float(np.mean(np.concatenate(v))) for k, v in hits.items()}
    out.update(n=int(err.size), rmse_log=float(np.sqrt(np.mean(err**2))), decades=float(np.max(decades)),
               status=",".join(sorted(set(map(str, statuses)))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", type=int, default=100, help="bootstrap resamples per fit (default 100)")
    args = parser.parse_args()
    rows = []
    for name, tables, law, holdout in CASES:
        t0 = time.perf_counter()
        try:
            r = run_case(tables(), law, holdout, args.bootstrap)
        except (OSError, scaling.ScalingError) as exc:
            print(f"skipped {name}: {exc}")
            continue
        r.update(case=name, law=law, holdout=holdout, seconds=time.perf_counter() - t0)
        rows.append(r)
        print(f"done {name} ({r['seconds']:.0f} s)", flush=True)
    table = pd.DataFrame(rows)

    def pct(v: float) -> str:
        return f"{100 * v:.0f}%"

    print()
    print("| case | law | hold-out | held-out points | RMSE log | max decades out | pred 80% | pred 95% "
          "| boot+noise 80% | boot+noise 95% | conformal alone 80% | conformal alone 95% | conf 95% | status |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in table.to_dict("records"):
        print(f"| {r['case']} | {r['law']} | {r['holdout']} | {r['n']} | {r['rmse_log']:.4f} | {r['decades']:.2f} "
              f"| {pct(r['pred80'])} | {pct(r['pred95'])} | {pct(r['boot80'])} | {pct(r['boot95'])} "
              f"| {pct(r['alone80'])} | {pct(r['alone95'])} | {pct(r['conf95'])} | {r['status']} |")
    # pooled over cases, each case weighted equally (a case with 40 points should not drown one with 3)
    for col, lo, hi in (("pred80", 0.75, 0.90), ("pred95", 0.90, 0.98)):
        mean = float(table[col].mean())
        within = int(((table[col] >= lo) & (table[col] <= hi)).sum())
        print(f"\n{col}: mean over cases {pct(mean)} (target {pct(lo)}-{pct(hi)}); {within} of {len(table)} cases "
              f"within the target; below it: {int((table[col] < lo).sum())}, above it: {int((table[col] > hi).sum())}")
    for col in ("boot80", "boot95", "alone80", "alone95", "conf95"):
        print(f"baseline {col}: mean over cases {pct(float(table[col].mean()))}")


if __name__ == "__main__":
    main()
