"""The figure and numbers of docs/studies.md's calibration section, from the calibration sweep's results table.

    python docs/studies/plot_calibration.py docs/studies/calibration-results.csv docs/studies/calibration.png

ECE(N) = ECE_inf + a N^-b and the same form for the Brier score, fitted on the final rows with the bootstrap
resampling runs (each seed of each size is one run), as `scaling fit --law calibration` does. Left: ECE per run
(markers), the fit and its 95% band, and the finite-sample floor of the eval set
(docs/transfer-repetition-calibration.md). Right: the held-out loss of the same runs, for scale, and the Brier
score.
"""

from __future__ import annotations

import dataclasses
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import scaling
from scaling.laws import get_law
from scaling.laws.calibration import floor_table


def main(results: str, out: str) -> None:
    df = pd.read_csv(results)
    df = df[df["final"] == 1]
    ece_fit = scaling.fit(df, law="calibration", seed=0)
    brier_law = dataclasses.replace(get_law("calibration"), output="brier")
    brier_fit = scaling.fit(df, law=brier_law, seed=0)
    print(ece_fit.summary(), "\n")
    print(brier_fit.summary(), "\n")
    floors = floor_table(df)
    per_size = df.groupby("N").agg(
        runs=("run_id", "count"),
        lr=("lr", "first"),
        loss=("loss", "mean"),
        loss_sd=("loss", "std"),
        ece=("ece", "mean"),
        ece_sd=("ece", "std"),
        ece_min=("ece", "min"),
        ece_max=("ece", "max"),
        brier=("brier", "mean"),
        brier_sd=("brier", "std"),
    )
    per_size["floor"] = floors.groupby("N")["floor"].first()
    print(per_size.to_string(float_format="{:.4g}".format))

    n = np.geomspace(df["N"].min() / 1.5, df["N"].max() * 1.5, 100)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    band = ece_fit.predict(N=n)
    ax.fill_between(n, band["lower"], band["upper"], color="C0", alpha=0.25, label="95% band (runs resampled)")
    ax.plot(n, band["point"], "C0-", label=f"ECE = {ece_fit.params['ECE_inf']:.3g} + {ece_fit.params['a']:.3g} "
            f"N^-{ece_fit.params['b']:.3g}")
    ax.plot(df["N"], df["ece"], "o", color="C0", mfc="none", label="one run (seed)")
    ax.plot(per_size.index, per_size["floor"], "k:", label="finite-sample floor (calibrated model)")
    ax.set(xscale="log", yscale="log", xlabel="N (non-embedding parameters)", ylabel="next-token ECE (10 bins)",
           title=f"calibration at {df['D'].iloc[0] / 1e6:.0f}M tokens, {int(df['ece_count'].iloc[0]):,} held-out bytes")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    bx.plot(df["N"], df["loss"], "s", color="C1", mfc="none", label="held-out loss (nats/byte)")
    bx.set(xscale="log", xlabel="N (non-embedding parameters)", ylabel="held-out loss (nats/byte)")
    cx = bx.twinx()
    cx.plot(df["N"], df["brier"], "^", color="C2", mfc="none", label="Brier score (right axis)")
    cx.plot(n, brier_fit.predict(N=n)["point"], "C2-", lw=1)
    cx.set_ylabel("Brier score of the top-1 prediction")
    handles = bx.get_legend_handles_labels()[0] + cx.get_legend_handles_labels()[0]
    bx.legend(handles, [h.get_label() for h in handles], fontsize=7)
    bx.set_title("loss and Brier score of the same runs", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
