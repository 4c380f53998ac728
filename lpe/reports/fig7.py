"""Figure 7 from ``large/scores.csv`` (paper profile): per large model, NLL against ensemble size
and against the memory budget, LPE-BSR with its spread over seeds, FP32 and RTN as references.

Usage: ``python -m lpe.reports.fig7 --scores results/paper/large/scores.csv
--out figures/paper/fig7_large_models`` (writes ``.png`` and ``.pdf``).
"""

from __future__ import annotations

import argparse

import pandas as pd

from lpe.formats.names import label as format_label
from lpe.reports.plotting import plt, save_figure, sns


def nll_vs_size_and_memory(scores: pd.DataFrame) -> plt.Figure:
    """Figure 7: per model, NLL against ensemble size (top) and memory budget (bottom)."""
    models = scores.sort_values("params")["model"].unique().tolist()
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(2, len(models), figsize=(3.6 * len(models), 5.4), squeeze=False)
    for j, model in enumerate(models):
        here = scores[scores["model"] == model]
        bsr = here[here["method"] == "lpe-bsr"]
        stats = bsr.groupby("members").agg(
            nll=("nll", "mean"), sd=("nll", "std"), mbit=("memory_bits", "mean")
        )
        stats["mbit"] /= 1e6
        for ax, x in ((axes[0][j], stats.index), (axes[1][j], stats["mbit"])):
            precision = format_label(bsr["precision"].iloc[0]) if len(bsr) else "?"
            ax.errorbar(
                x,
                stats["nll"],
                yerr=stats["sd"].fillna(0),
                marker="o",
                markersize=3,
                capsize=2,
                label=f"LPE-BSR {precision}",
            )
        for method, marker, color in (("fp32", "*", "k"), ("rtn", "s", "C3")):
            ref = here[(here["method"] == method) & (here["members"] == 1)]
            if ref.empty:
                continue
            nll, mbit = ref["nll"].mean(), ref["memory_bits"].mean() / 1e6
            axes[0][j].axhline(
                nll, ls=":" if method == "fp32" else "--", color=color, label=method.upper()
            )
            axes[1][j].plot([mbit], [nll], marker, color=color, markersize=9, label=method.upper())
        axes[0][j].set_title(model, fontsize=8)
        axes[0][j].set_xlabel("ensemble size (members)")
        axes[1][j].set_xlabel("memory budget (Mbit)")
        for ax in axes[:, j]:
            ax.set_ylabel("NLL")
    axes[0][0].legend(fontsize=7)
    axes[1][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scores", required=True)
    parser.add_argument("--out", required=True, help="path prefix; .png and .pdf are added")
    args = parser.parse_args(argv)
    save_figure(nll_vs_size_and_memory(pd.read_csv(args.scores)), args.out)


if __name__ == "__main__":
    main()
