"""The figure and numbers of docs/studies.md's data-constrained section, from an epochs sweep's results table.

    python docs/studies/plot_epochs.py docs/studies/epochs-results.csv docs/studies/epochs.png

The same two stages as the documented commands (`scaling fit --law chinchilla --tie beta=alpha` on the
one-epoch runs, then `scaling fit --law data-constrained --fix-from` that base), on the final rows, resampling runs
(200 draws each; stage 1's draws carried into stage 2). Twice: on every run, and on the runs of at most 16 epochs, because the
law has no term for the rise of held-out loss when a small model memorises a tiny unique set.

Left: held-out loss against epochs (D / U) at each token budget D and size N, with the law's curves at fixed D.
Right: what a repeated token is worth: effective data D' / U against epochs, fitted here (band: 95% of the draws)
and published for C4 (Muennighoff et al. 2023, R*_D = 15.4).
"""

from __future__ import annotations

import sys

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import scaling
from scaling.laws.data_constrained import BASE_PARAMS, MUENNIGHOFF_C4

ONE_EPOCH = "epochs <= 1.01"


def two_stage(df: pd.DataFrame, where: str | None = None):
    """Stage 1 (chinchilla on the one-epoch runs) and stage 2 (R*_D, R*_N with the base frozen, its draws carried)."""
    rows = df.query(where) if where else df
    # alpha = beta, as in stage 1 of Muennighoff et al. 2023 (the authors' fitting notebook): 9 one-epoch runs
    # cannot pin down 5 free parameters
    base = scaling.fit(df.query(ONE_EPOCH), law="chinchilla", tie={"beta": "alpha"}, n_bootstrap=200, seed=0)
    frozen = {n: base.params[n] for n in BASE_PARAMS}
    dc = scaling.fit(rows, law="data-constrained", fix=frozen, fix_draws=base.draws[list(BASE_PARAMS)], seed=0)
    return base, dc


def effective_data_ratio(epochs: np.ndarray, R_D) -> np.ndarray:
    """D' / U = 1 + R*_D (1 - exp(-(epochs - 1) / R*_D)) (Muennighoff et al. 2023, Eq. 5)."""
    R_D = np.asarray(R_D, dtype=float)[..., None]
    return 1.0 + R_D * -np.expm1(-(epochs - 1.0) / R_D)


def main(results: str, out: str) -> None:
    df = pd.read_csv(results)
    df = df[df["final"] == 1].copy()
    df["epochs_nominal"] = df["epochs"].apply(lambda e: min((1, 4, 16, 64), key=lambda k: abs(np.log(e / k))))
    fits = {"all runs": two_stage(df), "runs of <= 16 epochs": two_stage(df, "epochs_nominal <= 16")}
    base, dc = fits["runs of <= 16 epochs"]
    print(base.summary(), "\n")
    for label, (_, f) in fits.items():
        print(f"== data-constrained, {label}")
        print(f.summary(), "\n")
        c = scaling.fit(df.query("epochs_nominal <= 16") if "16" in label else df, law="chinchilla", n_bootstrap=0)
        print(f"   plain chinchilla on the same rows: RMSE of log loss {c.quality.rmse_log:.4f} "
              f"vs data-constrained {f.quality.rmse_log:.4f}\n")

    table = df.pivot_table(index=["D", "epochs_nominal"], columns="N", values="loss").round(3)
    print(table.to_string())

    sizes = sorted(df["N"].unique())
    budgets = sorted(df["D"].unique())
    colours = plt.cm.viridis(np.linspace(0.1, 0.85, len(sizes)))
    styles = ["-", "--", ":"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    e = np.geomspace(1, 70, 100)
    for N, c in zip(sizes, colours):
        for D, ls, marker in zip(budgets, styles, "osD"):
            s = df[(df["N"] == N) & (df["D"] == D)].sort_values("epochs")
            ax.plot(s["epochs"], s["loss"], marker, color=c, mfc="none", ms=5)
            curve = dc.predict(N=np.full_like(e, N), D=np.full_like(e, D), U=D / e)["point"]
            ax.plot(e, curve, ls, color=c, lw=1)
    for N, c in zip(sizes, colours):
        ax.plot([], [], "-", color=c, label=f"N = {N:,.0f}")
    for D, ls, marker in zip(budgets, styles, "osD"):
        ax.plot([], [], ls + marker, color="grey", mfc="none", label=f"D = {D / 1e6:.1f}M")
    ax.set(xscale="log", yscale="log", xlabel="epochs (D / U)", ylabel="held-out loss (nats/byte)",
           title="measured (markers); law fitted on <= 16 epochs (lines)")
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, ncol=2)

    draws = dc.draws["R_D"].to_numpy()
    ratio = effective_data_ratio(e, draws)
    lo, hi = np.quantile(ratio, [0.025, 0.975], axis=0)
    bx.fill_between(e, lo, hi, color="C0", alpha=0.25, label="95% of the bootstrap draws")
    bx.plot(e, effective_data_ratio(e, dc.params["R_D"]), "C0-", label=f"fitted here: R*_D = {dc.params['R_D']:.3g}")
    bx.plot(e, effective_data_ratio(e, MUENNIGHOFF_C4["R_D"]), "k--", lw=1, label="Muennighoff et al. (C4): R*_D = 15.4")
    bx.plot(e, e, ":", color="grey", lw=1, label="fresh data (D' = D)")
    bx.set(xscale="log", yscale="log", xlabel="epochs (D / U)", ylabel="effective data D' / U",
           title="what repeated tokens are worth", ylim=(0.9, 80))
    bx.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
