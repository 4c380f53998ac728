"""Figures 5 and 9 and Table 5: fast ensembles with and without LPE-BSR, on equal budgets.

Both read ``fast/scores.csv`` (``lpe.stages.score`` over the predictions of
``lpe.stages.fast_predict`` plus the SGD solution of Figure 2 and its LPE-BSR ensembles).

- ``figures``: one row per method (Figure 5: SSE, CSGLD; Figure 9: SSE, DE, MultiIVON) and four
  panels: NLL and ECE against the fine-tuning budget (backward passes after pre-training) and
  against the memory budget (Mbit). A point is the ensemble of every source that exists
  at that budget (c snapshots, samples or runs), alone (FP32) or with its LPE-BSR copies (mean +-
  sd over seeds); on the memory panels the LPE-BSR copies twice: counted as full members (the
  paper's accounting) and stored as one shared base per source (dashed).
- ``table5``: MAP (the SGD solution), BatchEnsemble and DE with K members, and LPE-BSR around the
  SGD solution at the configured sizes: average loss, ambiguity, ensemble loss, NLL, ERR, ECE
  (mean +- std over LPE-BSR seeds; the trained methods have one training seed), memory budget and
  training budget (memory under both accountings: the paper's, M full members, and the
  shared-base one of ``lpe.members.shared_base``).

Usage: ``python -m lpe.reports.fast figures --scores fast/scores.csv --format int5 --pretrained
CKPT --out-dir figures/mini/`` and ``python -m lpe.reports.fast table5 --scores fast/scores.csv
--format int5 --runs 4 --sizes 5 10 20 --out results/mini/tables/table5``
"""

from __future__ import annotations

import argparse

import pandas as pd

from lpe.formats.names import label as precision_label
from lpe.methods import family, with_lpe
from lpe.models.checkpoints import checkpoint_info
from lpe.reports.plotting import plt, save_figure, sns
from lpe.reports.tabulate import (
    DIVERSITY_METRICS,
    budget_points,
    cell,
    control_columns,
    controls,
    has_shared_memory,
    latex,
    markdown,
    memory_columns,
    method_name,
    over_seeds,
    with_controls,
    write_table,
)

NAMES = {s.name: s.label for s in family("fast")}  # lpe.methods
FIGURES = {
    "fig5_fast_sse_csgld": ("Figure 5", ["sse", "csgld"]),
    "fig9_fast_sse_de_multiivon": ("Figure 9", ["sse", "de", "multiivon"]),
}
PANELS = [
    ("backward_passes", "nll"),
    ("backward_passes", "ece"),
    ("memory_bits", "nll"),
    ("memory_bits", "ece"),
]
AXIS_LABELS = {
    "backward_passes": "fine-tuning budget (backward passes)",
    "memory_bits": "memory budget (Mbit)",
    "nll": "test NLL",
    "ece": "test ECE",
}


def curves(scores: pd.DataFrame, methods: list[str], fmt: str, pretrain: int, title: str):
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(len(methods), 4, figsize=(15, 3.2 * len(methods)), squeeze=False)
    for row, method in zip(axes, methods, strict=True):
        for variant, label, colour in (
            (method, f"{NAMES[method]} (FP32)", "C0"),
            (with_lpe(method), f"{NAMES[method]} + LPE-BSR {precision_label(fmt)}", "C1"),
        ):
            points = budget_points(scores, variant).copy()
            if points.empty:
                raise ValueError(f"no scores of {variant} in the scores file")
            points["backward_passes"] -= pretrain
            points["memory_bits"] = points["memory_bits"] / 1e6
            shared = variant != method and has_shared_memory(points)
            points["memory_bits_shared"] = points.get("memory_bits_shared", 0) / 1e6
            for ax, (x, y) in zip(row, PANELS, strict=True):
                series = [(x, "-", label)]
                if shared and x == "memory_bits":  # the copies stored as a shared base too
                    series.append(("memory_bits_shared", "--", f"{label}, shared base"))
                for column, style, name in series:
                    stats = points.groupby("backward_passes").agg(
                        x=(column, "mean"), y=(y, "mean"), sd=(y, "std")
                    )
                    ax.errorbar(
                        stats["x"],
                        stats["y"],
                        yerr=stats["sd"].fillna(0),
                        marker="o",
                        ls=style,
                        color=colour,
                        label=name,
                        capsize=2,
                    )
        for ax, (x, y) in zip(row, PANELS, strict=True):
            ax.set_xlabel(AXIS_LABELS[x])
            ax.set_ylabel(AXIS_LABELS[y])
            ax.set_title(f"{NAMES[method]}: {y.upper()} vs {AXIS_LABELS[x].split(' (')[0]}")
        row[0].legend(fontsize=7)
        row[2].legend(fontsize=7)
    model = scores["model"].iloc[0]
    fig.suptitle(
        f"{title}: {model}, fast ensembles with and without LPE-BSR; a point is the ensemble "
        f"of every snapshot, sample or run that exists at that budget (mean ± sd over LPE-BSR "
        "seeds)",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


ROW_NAMES = {"fp32": "MAP", "batchensemble": "BatchEnsemble", "de": "DE", "lpe-bsr": "LPE-BSR"}


def table5(scores: pd.DataFrame, fmt: str, runs: int, sizes: list[int]) -> pd.DataFrame:
    sgd = scores["optimizer"] == "sgd"
    picks = [
        scores[sgd & (scores["method"] == "fp32") & (scores["members"] == 1)],
        scores[(scores["method"] == "batchensemble") & (scores["members"] == runs)],
        scores[(scores["method"] == "de") & (scores["members"] == runs)],
        scores[
            sgd
            & (scores["method"] == "lpe-bsr")
            & (scores["precision"] == fmt)
            & scores["members"].isin(sizes)
        ],
    ]
    for name, pick in zip(ROW_NAMES.values(), picks, strict=True):
        if pick.empty:
            raise ValueError(f"Table 5: no scores for {name} in the scores file")
    chosen = pd.concat(picks)
    table = over_seeds(chosen, ["method", "members"], [*DIVERSITY_METRICS, *controls(chosen)])
    budget = chosen.groupby(["method", "members"])["backward_passes"].max()
    # the same group order as over_seeds; the column before "seeds"
    table.insert(table.columns.get_loc("seeds"), "backward_passes", budget.to_numpy())
    table["precision"] = table["method"].map(
        lambda m: precision_label(fmt) if m == "lpe-bsr" else "FP32"
    )
    order = list(ROW_NAMES)
    table = table.sort_values(
        ["method", "members"], key=lambda c: c.map(order.index) if c.name == "method" else c
    ).reset_index(drop=True)
    return with_controls(table, DIVERSITY_METRICS)


def formatted(table: pd.DataFrame, pm: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Method": table["method"].map(lambda m: method_name(ROW_NAMES, m)),
            "Precision": table["precision"],
            "M": table["members"],
            **{
                label: table.apply(cell, axis=1, metric=m, digits=digits, pm=pm)
                for m, (label, digits) in DIVERSITY_METRICS.items()
            },
            **memory_columns(table),
            "Backward passes": table["backward_passes"],
            **control_columns(table, pm),
            "Seeds": table["seeds"],
        }
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    f = sub.add_parser("figures", help="Figures 5 and 9")
    f.add_argument("--scores", required=True)
    f.add_argument("--format", required=True, help="the LPE-BSR members' format shown (int5)")
    f.add_argument("--pretrained", required=True, help="the checkpoint every method starts from")
    f.add_argument("--out-dir", required=True)
    t = sub.add_parser("table5", help="Table 5")
    t.add_argument("--scores", required=True)
    t.add_argument("--format", required=True, help="the LPE-BSR members' format shown (int5)")
    t.add_argument("--runs", type=int, required=True, help="K of BatchEnsemble and DE")
    t.add_argument("--sizes", type=int, nargs="+", required=True, help="LPE-BSR sizes shown")
    t.add_argument("--out", required=True, help="path prefix; .csv, .md, .tex are added")
    args = parser.parse_args(argv)
    scores = pd.read_csv(args.scores)
    if args.what == "figures":
        pretrain = checkpoint_info(args.pretrained).backward_passes
        for name, (title, methods) in FIGURES.items():
            fig = curves(scores, methods, args.format, pretrain, title)
            save_figure(fig, f"{args.out_dir}{name}")
        return
    table = table5(scores, args.format, args.runs, args.sizes)
    md = markdown(formatted(table, "±"))
    write_table(args.out, table, md, latex(formatted(table, r"$\pm$"), text_columns=2))


if __name__ == "__main__":
    main()
