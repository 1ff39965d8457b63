"""The figure of docs/studies.md's transfer section, from a transfer sweep's results table.

    python docs/studies/plot_transfer.py docs/studies/transfer-results.csv docs/studies/transfer.png

Left: held-out Python loss against tokens of Python, from scratch (points and the fitted from-scratch law
L_B(N, D), lines) and after English pretraining (open markers at D_F). Right: the effective data transferred
D_T against D_F per size (every seed), with the fitted D_T = k D_F^alpha N^beta. The analysis is the one behind
`scaling fit --law transfer` (scaling.analysis.transfer.analyze_transfer; the from-scratch fit resamples runs, so the seeds'
spread is in the intervals).
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from scaling.analysis.transfer import analyze_transfer


def main(results: str, out: str) -> None:
    a = analyze_transfer(results, n_bootstrap=200, seed=0)
    df = pd.read_csv(results)
    df = df[(df["final"] == 1) & (df["target"] == "python")]
    scratch = df[df["source"].isna()]
    tuned = df[df["source"].notna()]
    pre, src = tuned["D_pretrain"].max(), ", ".join(sorted(tuned["source"].unique()))
    sizes = sorted(scratch["N"].unique())
    colours = plt.cm.viridis(np.linspace(0.1, 0.85, len(sizes)))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    d = np.geomspace(scratch["D"].min() / 1.5, scratch["D"].max() * 1.5, 200)
    for N, c in zip(sizes, colours):
        s = scratch[scratch["N"] == N].sort_values("D")
        ax.plot(s["D"], s["loss"], "o", color=c, label=f"N = {N:,.0f} from scratch")
        ax.plot(
            d,
            a.scratch_fit.predict(N=np.full_like(d, N), D=d)["point"],
            "-",
            color=c,
            lw=1,
        )
        r = a.runs[a.runs["N"] == N].sort_values("D_F")
        ax.plot(
            r["D_F"],
            r["loss"],
            "s",
            mfc="none",
            color=c,
            ms=7,
            label=f"N = {N:,.0f} fine-tuned",
        )
        ok = r[r["class"] == "ok"]
        bx.errorbar(
            r["D_F"],
            r["D_T"],
            yerr=[r["D_T"] - r["D_T_lower"], r["D_T_upper"] - r["D_T"]],
            fmt="o",
            color=c,
            mfc="none" if ok.empty else c,
            capsize=2,
            label=f"N = {N:,.0f}",
        )
        xf = np.geomspace(r["D_F"].min(), r["D_F"].max(), 50)
        bx.plot(
            xf,
            a.fit.predict(D_F=xf, N=np.full_like(xf, N))["point"],
            "-",
            color=c,
            lw=1,
        )
    ax.set(
        xscale="log",
        xlabel="Python tokens (bytes): D from scratch, D_F fine-tuned",
        ylabel="held-out Python loss (nats/byte)",
        title=f"from scratch vs fine-tuned after {pre:,.0f} tokens of {src}",
    )
    ax.legend(fontsize=7)
    bx.set(
        xscale="log",
        yscale="log",
        xlabel="D_F (fine-tuning bytes of Python)",
        ylabel="D_T (effective bytes transferred)",
        title="D_T = k D_F^alpha N^beta (lines); 95% intervals from the from-scratch fit",
    )
    bx.title.set_fontsize(9)
    bx.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(a.summary())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
