"""Figures from ``scores.csv``: NLL vs ensemble size per model and precision (Table 1's figure),
and NLL vs measured inference time per model (``--layout inference``: what each gain costs).

One panel per precision (rows) and model (columns): LPE-BSR's NLL against the number of members,
mean over seeds with a +-1 std band; RTN (dashed) and FP32 (dotted) as horizontal reference
lines. Written as png and pdf; the pdf carries no creation date, so reruns give the same file.

Usage: ``python -m lpe.reports.figures --scores results/mini/scores.csv
--out figures/mini/nll_vs_ensemble_size``
"""

from __future__ import annotations

import argparse

import pandas as pd
from matplotlib.ticker import NullFormatter

from lpe.formats.names import label as format_label
from lpe.formats.names import sort_key
from lpe.reports.plotting import plt, save_figure, sns


def nll_vs_ensemble_size(scores: pd.DataFrame) -> plt.Figure:
    models = scores.sort_values("params")["model"].unique().tolist()
    precisions = sorted((p for p in scores["precision"].unique() if p != "fp32"), key=sort_key)
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(
        len(precisions),
        len(models),
        figsize=(3.0 * len(models), 2.6 * len(precisions)),
        squeeze=False,
        sharex=True,
    )
    for i, precision in enumerate(precisions):
        for j, model in enumerate(models):
            ax = axes[i][j]
            here = scores[(scores["model"] == model) & (scores["precision"] == precision)]
            bsr = here[here["method"] == "lpe-bsr"]
            sns.lineplot(
                data=bsr,
                x="members",
                y="nll",
                errorbar="sd",
                marker="o",
                markersize=3,
                ax=ax,
                label="LPE-BSR (mean ± sd)",
            )
            for method, style, color in (("rtn", "--", "C3"), ("fp32", ":", "k")):
                ref = scores[(scores["model"] == model) & (scores["method"] == method)]
                ref = ref[ref["precision"] == (precision if method == "rtn" else "fp32")]
                if len(ref):
                    label = "RTN" if method == "rtn" else "FP32"
                    ax.axhline(ref["nll"].mean(), ls=style, color=color, label=label)
            params = int(here["params"].iloc[0]) if len(here) else 0
            ax.set_title(f"{model} ({params / 1e3:.0f}k), {format_label(precision)}")
            ax.set_xlabel("ensemble size (members)")
            ax.set_ylabel("test NLL")
            handles, labels = ax.get_legend_handles_labels()
            ax.get_legend().remove()
    # one legend for the figure, with the reference lines included
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def nll_vs_inference_time(scores: pd.DataFrame) -> plt.Figure:
    """Per model, test NLL against the measured inference wall time per test example: LPE-BSR
    at every ensemble size (mean over seeds) per precision, RTN and FP32, each also after
    temperature scaling (open markers, dashed) where the scores hold it."""
    if "infer_us" not in scores or scores["infer_us"].isna().all():
        raise ValueError("the scores hold no inference times (infer_us): rerun lpe.stages.score")
    models = scores.sort_values("params")["model"].unique().tolist()
    precisions = sorted((p for p in scores["precision"].unique() if p != "fp32"), key=sort_key)
    calibrated = bool("nll_ts" in scores and scores["nll_ts"].notna().any())
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, len(models), figsize=(3.2 * len(models), 3.0), squeeze=False)
    for j, model in enumerate(models):
        ax, here = axes[0][j], scores[scores["model"] == model]
        for i, precision in enumerate(precisions):
            bsr = here[(here["precision"] == precision) & (here["method"] == "lpe-bsr")]
            curve = bsr.groupby("members")[["infer_us", "nll", *(["nll_ts"] * calibrated)]].mean()
            name = f"LPE-BSR {format_label(precision)}"
            ax.plot(curve["infer_us"], curve["nll"], "o-", color=f"C{i}", markersize=3, label=name)
            if calibrated:
                ax.plot(
                    curve["infer_us"],
                    curve["nll_ts"],
                    "o--",
                    color=f"C{i}",
                    markersize=3,
                    mfc="none",
                    label=f"{name} + TS",
                )
            rtn = here[(here["precision"] == precision) & (here["method"] == "rtn")]
            rtn_name = f"RTN {format_label(precision)}"
            ax.plot(rtn["infer_us"], rtn["nll"], "s", color=f"C{i}", markersize=6, label=rtn_name)
        fp32 = here[here["method"] == "fp32"]
        ax.plot(fp32["infer_us"], fp32["nll"], "*", color="k", markersize=10, label="FP32")
        if calibrated:
            ax.plot(
                fp32["infer_us"],
                fp32["nll_ts"],
                "*",
                color="k",
                mfc="none",
                markersize=10,
                label="FP32 + TS",
            )
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on a short range
        ax.set_title(f"{model} ({int(here['params'].iloc[0]) / 1e3:.0f}k)", fontsize=8)
        ax.set_xlabel("µs per test example (measured)")
        ax.set_ylabel("test NLL")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="upper center", ncol=min(len(labels), 6), frameon=False, fontsize=7
    )
    fig.tight_layout(rect=(0, 0, 1, 0.82))
    return fig


LAYOUTS = {
    "table1": nll_vs_ensemble_size,
    "inference": nll_vs_inference_time,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scores", required=True)
    parser.add_argument("--out", required=True, help="path prefix; .png and .pdf are added")
    parser.add_argument(
        "--layout",
        choices=tuple(LAYOUTS),
        default="table1",
        help="table1: per model and precision; inference: vs measured inference time per test "
        "example",
    )
    args = parser.parse_args(argv)
    scores = pd.read_csv(args.scores)
    save_figure(LAYOUTS[args.layout](scores), args.out)


if __name__ == "__main__":
    main()
