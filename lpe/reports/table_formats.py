"""LPE-BSR across number systems: the table and the figure of ``formats/scores.csv``.

The paper's outlook, made here: FP32, RTN and LPE-BSR in each number format of the config's
``formats.names`` (INT-b, FP8/FP6/FP4, NF4, MXFP4, ...; :mod:`lpe.formats.number_formats`), per
model.
Rows: model (smallest first) x format (FP32 first, then the widest codes first) x method. Columns:
ensemble size M, memory of the ensemble (codes, scales and the weights kept in FP32; Mbit),
NLL, ERR, ECE and AMB as mean +- sd over the BSR seeds (RTN and FP32 are
deterministic given the checkpoint). The figure shows, per model, each format's RTN NLL and
LPE-BSR NLL (mean +- sd) against FP32's.

Usage: ``python -m lpe.reports.table_formats --scores results/mini/formats/scores.csv
--out results/mini/tables/table_formats --figure figures/mini/lpe_across_formats``
"""

from __future__ import annotations

import argparse

import pandas as pd

from lpe.formats.names import label, sort_key
from lpe.reports.plotting import plt, save_figure, sns
from lpe.reports.tabulate import (
    METHOD_NAMES,
    cell,
    control_columns,
    final_rows,
    latex,
    markdown,
    method_name,
    write_table,
)

METRICS = {"nll": ("NLL", 4), "err": ("ERR (%)", 2), "ece": ("ECE", 4), "ambiguity": ("AMB", 4)}


def table(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per model x format x method, at each run's largest ensemble size."""
    return final_rows(scores, METRICS)


def formatted(rows: pd.DataFrame, pm: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Model": rows["model"],
            "Format": rows["precision"].map(label),
            "Method": rows["method"].map(lambda m: method_name(METHOD_NAMES, m)),
            "M": rows["members"],
            "Memory (Mbit)": rows["memory_mbit"].map(lambda b: f"{b:.3f}"),
            **{
                name: rows.apply(cell, axis=1, metric=m, digits=digits, pm=pm)
                for m, (name, digits) in METRICS.items()
            },
            **control_columns(rows, pm),
            "Seeds": rows["seeds"],
        }
    )


def figure(rows: pd.DataFrame) -> plt.Figure:
    """Per model: RTN and LPE-BSR NLL per format, FP32 as a line."""
    models = rows.sort_values("params")["model"].unique().tolist()
    formats = sorted((p for p in rows["precision"].unique() if p != "fp32"), key=sort_key)
    sns.set_theme(style="whitegrid", context="paper")
    width = len(models) * (0.45 * len(formats) + 1.8)
    fig, axes = plt.subplots(1, len(models), figsize=(max(width, 4.5), 3.4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        mine = rows[rows["model"] == model].set_index(["precision", "method"])
        x = range(len(formats))
        for method, marker, color, dx in (("rtn", "x", "C3", -0.12), ("lpe-bsr", "o", "C0", 0.12)):
            present = [(i, f) for i, f in zip(x, formats, strict=True) if (f, method) in mine.index]
            means = [mine.loc[(f, method), "nll_mean"] for _, f in present]
            sds = [mine.loc[(f, method), "nll_std"] for _, f in present]
            ax.errorbar(
                [i + dx for i, _ in present],
                means,
                yerr=pd.Series(sds).fillna(0),
                fmt=marker,
                color=color,
                capsize=2,
                label=METHOD_NAMES[method],
            )
        if ("fp32", "fp32") in mine.index:
            ax.axhline(mine.loc[("fp32", "fp32"), "nll_mean"], ls=":", color="k", label="FP32")
        ax.set_xticks(list(x), [label(f) for f in formats], rotation=60, ha="right")
        ax.set_title(f"{model} ({int(mine['params'].iloc[0]) / 1e3:.0f}k)")
        ax.set_ylabel("test NLL")
    axes[0][0].legend(fontsize=7)
    m = int(rows.loc[rows["method"] == "lpe-bsr", "members"].max())
    fig.suptitle(f"RTN and LPE-BSR (M = {m}, mean ± sd over seeds) per number format", fontsize=9)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scores", required=True)
    parser.add_argument("--out", required=True, help="table path prefix; .csv, .md, .tex added")
    parser.add_argument("--figure", required=True, help="figure path prefix; .png, .pdf added")
    args = parser.parse_args(argv)
    scores = pd.read_csv(args.scores)
    if scores.empty or not (scores["method"] == "lpe-bsr").any():
        parser.error(f"{args.scores} has no LPE-BSR scores")
    rows = table(scores)
    md = markdown(formatted(rows, "±"))
    write_table(args.out, rows, md, latex(formatted(rows, r"$\pm$"), text_columns=3))
    save_figure(figure(rows), args.figure)


if __name__ == "__main__":
    main()
