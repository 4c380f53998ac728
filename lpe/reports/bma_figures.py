"""Figures 2, 8 (LPE-BSR vs BMA curves) and 3, 6 (landscape planes).

``curves``: from ``results/<profile>/bma/scores.csv``, one panel per fine-tuning run (SGD, SWAG,
IVON). LPE-BSR around the run's solution at INT-b and BMA with the run's posterior draws (SWAG,
IVON), mean over seeds with a +-1 std band; the FP32 solution as a reference. Figure 2 puts the
ensemble size on the x axis, Figure 8 the memory budget in bits (log scale), LPE-BSR twice: as
full members (the paper's accounting) and stored as one shared base (dashed).

``landscape``: from one ``lpe.stages.landscape`` file, four labelled panels over the plane: test
NLL, then ``log10 KL(p_anchor || p_point)`` for each of the three anchors, with the anchors marked.
Also writes the anchors' plane coordinates and NLL as a csv (the numbers behind the figure).

Usage: ``python -m lpe.reports.bma_figures curves --scores S.csv --format int5 --out-dir
figures/mini/``;
``python -m lpe.reports.bma_figures landscape --plane P.npz --title "Figure 3: SWAG" --out PREFIX
--csv C.csv``
"""

from __future__ import annotations

import argparse
import textwrap

import numpy as np
import pandas as pd

from lpe.core.artifacts import write_with
from lpe.formats.names import label as precision_label
from lpe.methods import family
from lpe.reports.plotting import plt, save_figure, sns
from lpe.reports.tabulate import has_shared_memory

# one panel per fine-tuning run: SGD's, then each posterior method's (the registry's)
SOLUTION_NAMES = {"sgd": "SGD solution", **{s.optimizer: s.solution for s in family("posterior")}}
BMA_METHODS = {s.optimizer: s.name for s in family("posterior")}  # each run's BMA, by registry name
RUNS = {"sgd": "SGD solution"} | {
    o: f"{o.upper()} ({solution})" for o, solution in SOLUTION_NAMES.items() if o != "sgd"
}
X_AXES = {
    "members": ("ensemble size (members)", False),
    "memory_bits": ("memory budget (bits, log scale)", True),
}


def curves(scores: pd.DataFrame, fmt: str, x: str) -> plt.Figure:
    """Figure 2 (``x='members'``) or Figure 8 (``x='memory_bits'``)."""
    label, log_x = X_AXES[x]
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, len(RUNS), figsize=(3.4 * len(RUNS), 3.0), sharey=True)
    for ax, (optimizer, title) in zip(axes, RUNS.items(), strict=True):
        run = scores[scores["optimizer"] == optimizer]
        lpe = run[(run["method"] == "lpe-bsr") & (run["precision"] == fmt)]
        bma = run[run["method"] == BMA_METHODS.get(optimizer)]  # none around the SGD solution
        series = [
            (bma, x, "BMA", "C1", {}),
            (lpe, x, f"LPE-BSR ({precision_label(fmt)})", "C0", {}),
        ]
        if x == "memory_bits" and len(lpe) and has_shared_memory(lpe):  # Figure 8: both
            name = f"LPE-BSR ({precision_label(fmt)}), shared base"
            series.append((lpe, "memory_bits_shared", name, "C0", {"linestyle": "--"}))
        for data, column, name, color, style in series:
            if len(data):
                sns.lineplot(
                    data=data,
                    x=column,
                    y="nll",
                    errorbar="sd",
                    color=color,
                    marker="o",
                    markersize=3,
                    ax=ax,
                    label=f"{name}, mean ± sd",
                    **style,
                )
        fp32 = run[run["method"] == "fp32"]
        if len(fp32) and x == "members":
            ax.axhline(fp32["nll"].mean(), ls=":", color="k", label="FP32 solution")
        elif len(fp32):
            ax.plot(fp32[x], fp32["nll"], "k*", markersize=8, label="FP32 solution")
        if log_x:
            ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel(label)
        ax.set_ylabel("test NLL")
        handles, labels = ax.get_legend_handles_labels()
        if ax.get_legend():
            ax.get_legend().remove()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False)
    model = scores["model"].iloc[0]
    fig.suptitle(f"{model}: BMA vs LPE-BSR around each fine-tuned solution", y=0.9, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.86))
    return fig


def landscape(plane: dict, title: str) -> plt.Figure:
    a, b, anchors = plane["a"], plane["b"], plane["anchors"]
    names = [str(n) for n in plane["anchor_names"]]
    optimizer, bits = str(plane["optimizer"]), int(plane["bits"])
    if names[1] == "BMA draw":  # Figures 3 and 6
        names[0] = SOLUTION_NAMES.get(optimizer, names[0])
        names[1] = f"{optimizer.upper()} BMA draw"
        names[2] = f"LPE-BSR INT-{bits} draw"
    else:  # Figure 4: two snapshots and a draw from the first
        names[:2] = [f"{optimizer.upper()} {name}" for name in names[:2]]
        names[2] = f"LPE-BSR INT-{bits} draw of snapshot 1"
    sns.set_theme(style="white", context="paper")
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    nll = plane["nll"]
    top = np.percentile(nll, 90)
    panels = [("test NLL", "test NLL", nll, np.linspace(nll.min(), top, 15), "max")]
    for k, name in enumerate(names):
        log_kl = np.log10(np.maximum(plane["kl"][k], 1e-6))
        panels.append((f"log10 KL({name} ‖ point)", "log10 KL", log_kl, 15, "neither"))
    markers = ("o", "s", "^")
    for ax, (label, short, values, levels, extend) in zip(axes, panels, strict=True):
        filled = ax.contourf(a, b, values, levels=levels, cmap="viridis", extend=extend)
        fig.colorbar(filled, ax=ax, label=short)
        for (x, y), name, marker in zip(anchors, names, markers, strict=True):
            ax.plot(x, y, marker, color="w", markeredgecolor="k", markersize=8, label=name)
        ax.set_title(textwrap.fill(label, 45))
        ax.set_xlabel(textwrap.fill(f"direction 1: toward the {names[1]}", 45))
        ax.set_ylabel(textwrap.fill(f"direction 2: toward the {names[2]}", 40))
    axes[0].legend(loc="best", fontsize=7, framealpha=0.8)
    text = (
        f"{title}: the plane through three weight vectors: {names[0]} (circle), {names[1]} "
        f"(square), {names[2]} (triangle); {plane['model']}, first {int(plane['points'])} "
        "test points; NLL colours capped at the 90th percentile; the two axes have different "
        "scales"
    )
    fig.suptitle(textwrap.fill(text, 190), fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return fig


def anchor_table(plane: dict) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "anchor": [str(n) for n in plane["anchor_names"]],
            "a": plane["anchors"][:, 0],
            "b": plane["anchors"][:, 1],
            "nll": plane["anchor_nll"],
            "grid_min_nll": float(plane["nll"].min()),
            "grid_max_nll": float(plane["nll"].max()),
        }
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="figure", required=True)
    c = sub.add_parser("curves", help="Figures 2 and 8")
    c.add_argument("--scores", required=True)
    c.add_argument("--format", required=True, help="the LPE-BSR members' format shown (int5)")
    c.add_argument("--out-dir", required=True)
    p = sub.add_parser("landscape", help="Figures 3 and 6")
    p.add_argument("--plane", required=True)
    p.add_argument("--title", required=True)
    p.add_argument("--out", required=True, help="path prefix; .png and .pdf are added")
    p.add_argument("--csv", required=True, help="anchor coordinates and NLL")
    args = parser.parse_args(argv)
    if args.figure == "curves":
        scores = pd.read_csv(args.scores)
        if args.format not in set(scores["precision"]):
            parser.error(f"no LPE-BSR scores at {precision_label(args.format)} in {args.scores}")
        save_figure(
            curves(scores, args.format, "members"), f"{args.out_dir}fig2_nll_vs_ensemble_size_bma"
        )
        save_figure(
            curves(scores, args.format, "memory_bits"), f"{args.out_dir}fig8_nll_vs_memory_bma"
        )
        return
    with np.load(args.plane, allow_pickle=False) as f:
        plane = {k: f[k] for k in f.files}
    save_figure(landscape(plane, args.title), args.out)
    table = anchor_table(plane)
    write_with(args.csv, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6f"))


if __name__ == "__main__":
    main()
