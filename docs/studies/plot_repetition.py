"""The figure and numbers of docs/studies.md's repeated-data section, from the repetition sweep's results table.

    python docs/studies/plot_repetition.py docs/studies/repetition-results.csv docs/studies/repetition.png

The analysis behind `scaling fit --law repetition` (scaling.analysis.repetition.analyze_repetition): the unique-data
baseline L_u(N) = L_inf + (N_c / N)^a_N on the f = 0 runs (runs resampled), then each repeated-data run's effective
size N_eff = N_c (L - L_inf)^(-1/a_N) and multiplier m = N_eff / N (Hernandez et al. 2022, arXiv 2205.10487), beside
N_eff_interp read off the measured baseline runs. The pure power law (L_inf = 0) is printed too, for comparison.
Left: held-out loss against the repeat count k, one line per size and fraction f, the unique-data loss as a
horizontal mark. Middle: the fraction of parameters lost, 1 - m, against k. Right: the loss on the repeated subset
itself (`repeated_loss`), which falls towards 0 as a model memorises it.
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from scaling.analysis.repetition import analyze_repetition

KEYS = ["N", "repeat_fraction", "repeat_count"]


def main(results: str, out: str) -> None:
    df = pd.read_csv(results)
    pure = analyze_repetition(df, baseline_fix={"L_inf": 0.0}, n_bootstrap=200, seed=0)
    print("== baseline with L_inf = 0\n", pure.baseline.summary(), "\n")
    a = analyze_repetition(df, n_bootstrap=200, seed=0)
    print("== baseline with L_inf free\n", a.summary(), "\n")
    runs = a.runs.copy()  # one row per repeated-data run, in the table's order (both analyses keep it)
    runs["m_interp"] = runs["N_eff_interp"] / runs["N"]
    runs["m_pure"] = pure.runs["m"].to_numpy()
    final = df[df["final"] == 1]
    repeated = final[final["repeat_fraction"] > 0]
    runs["repeated_loss"] = repeated["repeated_loss"].to_numpy()  # analyze_repetition keeps the same rows in order
    assert np.allclose(repeated["loss"].to_numpy(), runs["loss"].to_numpy())
    # Seeds: the mean and the spread of each (N, f, k) cell
    cells = runs.groupby(KEYS).agg(
        seeds=("loss", "size"),
        loss=("loss", "mean"),
        loss_sd=("loss", "std"),
        m=("m", "mean"),
        m_sd=("m", "std"),
        m_interp=("m_interp", "mean"),
        m_pure=("m_pure", "mean"),
        repeated_loss=("repeated_loss", "mean"),
        repeated_loss_sd=("repeated_loss", "std"),
    )
    print(cells.to_string(float_format="{:.4g}".format), "\n")
    unique = final[final["repeat_fraction"] == 0].groupby("N")["loss"].agg(["mean", "std", "size"])
    print("unique-data baseline (f = 0) per size:\n", unique.to_string(float_format="{:.4g}".format))

    sizes = list(unique.index)
    colours = plt.cm.viridis(np.linspace(0.1, 0.85, len(sizes)))
    fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(15, 4.2))
    for N, c in zip(sizes, colours):
        for f, ls, marker in ((0.1, "--", "o"), (0.5, "-", "s")):
            r = cells.loc[(N, f)].reset_index()
            style = dict(fmt=ls + marker, color=c, mfc="none" if f == 0.1 else c, ms=5, capsize=2)
            ax.errorbar(r["repeat_count"], r["loss"], yerr=r["loss_sd"], **style)
            bx.errorbar(r["repeat_count"], 1 - r["m"], yerr=r["m_sd"], **style)
            cx.errorbar(r["repeat_count"], r["repeated_loss"], yerr=r["repeated_loss_sd"], **style)
        ax.axhline(unique.loc[N, "mean"], color=c, lw=0.8, ls=":")
        ax.plot([], [], "-", color=c, label=f"N = {N:,.0f}")
    for f, ls, marker in ((0.1, "--", "o"), (0.5, "-", "s")):
        ax.plot([], [], ls + marker, color="grey", mfc="none" if f == 0.1 else "grey", label=f"f = {f:g} repeated")
    ax.plot([], [], ":", color="grey", label="unique data (f = 0)")
    seeds = int(cells["seeds"].max())
    ax.set(xscale="log", xlabel="repeat count k (epochs on the repeated subset)", ylabel="held-out loss (nats/byte)",
           title=f"{final['D'].iloc[0] / 1e6:.0f}M tokens per run; a fraction f repeats a subset k times "
           f"(mean ± sd of {seeds} seeds)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, ncol=2)
    bx.axhline(0, color="grey", lw=0.8)
    bx.set(xscale="log", xlabel="repeat count k", ylabel="fraction of parameters lost, 1 - N_eff / N",
           title="effective size against the unique-data baseline (L_inf free)")
    bx.title.set_fontsize(9)
    cx.set(xscale="log", yscale="log", xlabel="repeat count k", ylabel="loss on the repeated subset (nats/byte)",
           title="memorisation: loss on the repeated subset itself")
    cx.title.set_fontsize(9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
