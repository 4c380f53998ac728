"""Table 3 from ``large/scores.csv`` (paper profile): FP32, RTN and LPE-BSR of the large models.

Rows: model (fewest parameters first) x method, each followed by its temperature-scaled twin
where the scores hold it. Columns: parameters, precision, ensemble size M, the six metrics of
the paper's Table 3 as mean +- std over seeds, memory, T and the inference cost. Written as csv
(numbers), md and tex (formatted).

Usage: ``python -m lpe.reports.table3 --scores results/paper/large/scores.csv --out
results/paper/tables/table3`` (writes ``table3.csv``, ``table3.md``, ``table3.tex``).
"""

from __future__ import annotations

import argparse

import pandas as pd

from lpe.formats.names import label
from lpe.reports.tabulate import (
    DIVERSITY_METRICS,
    METHOD_NAMES,
    METHOD_ORDER,
    RUN_KEYS,
    cell,
    control_columns,
    controls,
    final_ensembles,
    latex,
    markdown,
    method_name,
    over_seeds,
    with_controls,
    write_table,
)


def table3(scores: pd.DataFrame) -> pd.DataFrame:
    """Table 3 (large models): per model x method, the six metrics and the ensemble size."""
    runs = final_ensembles(scores)
    table = over_seeds(runs, RUN_KEYS, [*DIVERSITY_METRICS, *controls(runs)])
    table = table.assign(_m=lambda t: t["method"].map(METHOD_ORDER))
    table = table.sort_values(["params", "_m"]).drop(columns="_m").reset_index(drop=True)
    return with_controls(table, DIVERSITY_METRICS)


def formatted3(table: pd.DataFrame, pm: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Model": table["model"],
            "Params": table["params"].map(lambda p: f"{p / 1e6:.0f}M"),
            "Method": table["method"].map(lambda m: method_name(METHOD_NAMES, m)),
            "Precision": table["precision"].map(label),
            "M": table["members"],
            **{
                label: table.apply(cell, axis=1, metric=m, digits=digits, pm=pm)
                for m, (label, digits) in DIVERSITY_METRICS.items()
            },
            "Memory (Mbit)": table["memory_mbit"].map(lambda b: f"{b:.1f}"),
            **control_columns(table, pm),
        }
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scores", required=True)
    parser.add_argument("--out", required=True, help="path prefix; .csv, .md, .tex are added")
    args = parser.parse_args(argv)
    table = table3(pd.read_csv(args.scores))
    md = markdown(formatted3(table, "±"))
    tex = latex(formatted3(table, r"$\pm$"), text_columns=4)
    write_table(args.out, table, md, tex)


if __name__ == "__main__":
    main()
