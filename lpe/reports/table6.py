"""Table 6: the training-free baselines (Gaussian weight noise, MC dropout) against LPE-BSR.

From ``baselines/scores.csv`` (predictions of one model: FP32, and the ensembles of the
``baselines`` stage at their largest size) and the stage's predictions files (for the setting
chosen on the validation split). Rows: FP32 (reference), LPE-BSR (its precision chosen on
validation from the configured bits, as the others choose theirs), Gaussian noise, Gaussian noise
of BSR's per-weight variance at that precision, MC dropout. Columns: M, memory budget, NLL, ERR,
ECE as mean +- std over seeds, and the chosen setting.

Usage: ``python -m lpe.reports.table6 --scores results/mini/baselines/scores.csv
--preds work/mini/preds/vit_mini_l/gaussian-seed0.npz ... --out results/mini/tables/table6``
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from lpe.methods import baselines
from lpe.reports.tabulate import (
    cell,
    control_columns,
    controls,
    final_ensembles,
    latex,
    markdown,
    method_name,
    with_controls,
    write_table,
)

# its rows: the reference, then each training-free ensemble (its module's row, lpe.methods)
ROWS = {"fp32": "FP32", **{name: baseline.row for name, baseline in baselines().items()}}
METRICS = {"nll": ("NLL", 4), "err": ("ERR (%)", 2), "ece": ("ECE", 4)}


def chosen_settings(paths: list[str]) -> dict[str, str]:
    """Method -> the settings the seeds chose, e.g. ``noise scale 0.02, 0.01 (seeds 0, 1)``."""
    by_method: dict[str, list[tuple[int, float]]] = {}
    for path in paths:
        with np.load(path, allow_pickle=False) as f:
            method = str(f["method"])
            by_method.setdefault(method, []).append((int(f["seed"]), float(f["setting"])))
    text, settings = {}, baselines()  # each one's setting's name (lpe.methods)
    for method, pairs in by_method.items():
        pairs.sort()
        values = sorted({v for _, v in pairs})
        name = settings[method].setting
        gap = "" if name.endswith("-") else " "
        if len(values) == 1:  # chosen once and shared by the seeds
            text[method] = f"{name}{gap}{values[0]:g}"
            continue
        shown = ", ".join(f"{v:g}" for _, v in pairs)
        seeds = ", ".join(str(s) for s, _ in pairs)
        text[method] = f"{name}{gap}{shown} (seeds {seeds})"
    return text


def table6(scores: pd.DataFrame, settings: dict[str, str]) -> pd.DataFrame:
    runs = final_ensembles(scores)
    runs = runs[runs["method"].isin(ROWS)]
    grouped = runs.groupby("method")
    table = grouped[[*METRICS, *controls(runs)]].agg(["mean", "std"])
    table.columns = [f"{metric}_{stat}" for metric, stat in table.columns]
    table["members"] = grouped["members"].max()
    table["memory_mbit"] = grouped["memory_bits"].mean() / 1e6
    table["seeds"] = grouped["seed"].nunique()
    table = table.reset_index()
    precision = grouped["precision"].first()
    table["precision"] = table["method"].map(lambda m: precision[m].upper().replace("INT", "INT-"))
    table["setting"] = table["method"].map(lambda m: settings.get(m, "-"))
    table["model"] = runs["model"].iloc[0]
    order = list(ROWS)
    table = table.sort_values("method", key=lambda c: c.map(order.index)).reset_index(drop=True)
    return with_controls(table, METRICS)


def formatted(table: pd.DataFrame, pm: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Method": table["method"].map(lambda m: method_name(ROWS, m)),
            "Precision": table["precision"],
            "M": table["members"],
            "Memory (Mbit)": table["memory_mbit"].map(lambda b: f"{b:.2f}"),
            **{
                label: table.apply(cell, axis=1, metric=m, digits=digits, pm=pm)
                for m, (label, digits) in METRICS.items()
            },
            **control_columns(table, pm),
            "Chosen on validation": table["setting"],
        }
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scores", required=True)
    parser.add_argument("--preds", nargs="+", required=True, help="the baselines' predictions")
    parser.add_argument("--out", required=True, help="path prefix; .csv, .md, .tex are added")
    args = parser.parse_args(argv)
    table = table6(pd.read_csv(args.scores), chosen_settings(args.preds))
    md = markdown(formatted(table, "±"))
    write_table(args.out, table, md, latex(formatted(table, r"$\pm$"), text_columns=2))


if __name__ == "__main__":
    main()
