"""Score tables: runs at their largest ensemble size, mean and sd over seeds, markdown and LaTeX.

The shared steps of every table stage (Table 1, 3, 5, 6 and the number systems table): which rows
are final, how seeds are aggregated, how a cell is printed, and the two text formats.
"""

from __future__ import annotations

import pandas as pd

from lpe.artifacts import write_text, write_with
from lpe.precision import sort_key
from lpe.sources import family

METHOD_ORDER = {"fp32": 0, "rtn": 1, "lpe-bsr": 2}


METHOD_NAMES = {s.name: s.label for s in family("reference")}  # lpe.sources


def final_ensembles(scores: pd.DataFrame) -> pd.DataFrame:
    """Each run at its largest ensemble size."""
    largest = scores.groupby(["model", "precision", "method", "seed"])["members"].transform("max")
    return scores[scores["members"] == largest]


def over_seeds(runs: pd.DataFrame, keys: list[str], metrics) -> pd.DataFrame:
    """Per ``keys`` group: ``<metric>_mean``, ``<metric>_std``, ``memory_mbit`` and ``seeds``."""
    grouped = runs.groupby(keys)
    table = grouped[list(metrics)].agg(["mean", "std"])
    table.columns = [f"{metric}_{stat}" for metric, stat in table.columns]
    table["memory_mbit"] = grouped["memory_bits"].mean() / 1e6
    table["seeds"] = grouped["seed"].nunique()
    return table.reset_index()


RUN_KEYS = ["model", "params", "precision", "method", "members"]


def cell(row: pd.Series, metric: str, digits: int, pm: str) -> str:
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    if row["seeds"] > 1:
        return f"{mean:.{digits}f} {pm} {std:.{digits}f}"
    return f"{mean:.{digits}f}"


def markdown(shown: pd.DataFrame) -> str:
    """A formatted table (strings) as a markdown table."""
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(False)]
    return "\n".join(lines) + "\n"


def latex(shown: pd.DataFrame, text_columns: int = 4) -> str:
    """A formatted table as a booktabs tabular: the first ``text_columns`` left, the rest right."""

    def tex(value) -> str:
        return str(value).replace("%", r"\%").replace("_", r"\_")

    lines = [
        r"\begin{tabular}{" + "l" * text_columns + "r" * (len(shown.columns) - text_columns) + "}",
        r"\toprule",
        " & ".join(tex(c) for c in shown.columns) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(tex(v) for v in row) + r" \\" for row in shown.itertuples(False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def budget_points(scores: pd.DataFrame, method: str) -> pd.DataFrame:
    """Per seed and training budget, the ensemble of every member that exists at that budget."""
    runs = scores[scores["method"] == method]
    largest = runs.groupby(["seed", "backward_passes"])["members"].transform("max")
    return runs[runs["members"] == largest]


def write_table(prefix: str, table: pd.DataFrame, md: str, tex: str) -> None:
    """``prefix.csv`` (the numbers), ``prefix.md`` and ``prefix.tex`` (formatted), atomically."""
    write_with(f"{prefix}.csv", lambda tmp: table.to_csv(tmp, index=False, float_format="%.6f"))
    write_text(f"{prefix}.md", md)
    write_text(f"{prefix}.tex", tex)
    print(f"wrote {prefix}.csv/.md/.tex: {len(table)} rows")


def final_rows(scores: pd.DataFrame, metrics) -> pd.DataFrame:
    """One row per model x precision x method at each run's largest ensemble size, ``metrics``
    over seeds; the smallest model first, then FP32 and the widest codes, then FP32, RTN,
    LPE-BSR (Table 1 and the number systems table)."""
    rows = over_seeds(final_ensembles(scores), RUN_KEYS, metrics)
    rows = rows.assign(_p=rows["precision"].map(sort_key), _m=rows["method"].map(METHOD_ORDER))
    rows = rows.sort_values(["params", "_p", "_m"]).drop(columns=["_p", "_m"])
    return rows.reset_index(drop=True)
