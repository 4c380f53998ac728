"""Score tables: runs at their largest ensemble size, mean and sd over seeds, markdown and LaTeX.

The shared steps of every table stage (Table 1, 3, 5, 6 and the number systems table): which rows
are final, how seeds are aggregated, how a cell is printed, and the two text formats.
"""

from __future__ import annotations

import math

import pandas as pd

from lpe.core.artifacts import write_text, write_with
from lpe.formats.names import sort_key
from lpe.methods import family

METHOD_ORDER = {"fp32": 0, "rtn": 1, "lpe-bsr": 2}


METHOD_NAMES = {s.name: s.label for s in family("reference")}  # lpe.methods


def has_shared_memory(scores: pd.DataFrame) -> bool:
    """Whether the scores count memory under the shared-base accounting too (score CSVs made
    before it have no ``memory_bits_shared``)."""
    return "memory_bits_shared" in scores and bool(scores["memory_bits_shared"].notna().all())


def final_ensembles(scores: pd.DataFrame) -> pd.DataFrame:
    """Each run at its largest ensemble size."""
    largest = scores.groupby(["model", "precision", "method", "seed"])["members"].transform("max")
    return scores[scores["members"] == largest]


def over_seeds(runs: pd.DataFrame, keys: list[str], metrics) -> pd.DataFrame:
    """Per ``keys`` group: ``<metric>_mean``, ``<metric>_std``, ``memory_mbit`` (the paper's
    accounting), ``memory_mbit_shared`` (the shared-base one, where the scores have it) and
    ``seeds``."""
    grouped = runs.groupby(keys)
    table = grouped[list(metrics)].agg(["mean", "std"])
    table.columns = [f"{metric}_{stat}" for metric, stat in table.columns]
    table["memory_mbit"] = grouped["memory_bits"].mean() / 1e6
    if has_shared_memory(runs):
        table["memory_mbit_shared"] = grouped["memory_bits_shared"].mean() / 1e6
    table["seeds"] = grouped["seed"].nunique()
    return table.reset_index()


RUN_KEYS = ["model", "params", "precision", "method", "members"]
# the columns of the tables that show the loss decomposition (Tables 3 and 5): label, digits
DIVERSITY_METRICS = {
    "avg_loss": ("Avg loss", 4),
    "ambiguity": ("AMB", 4),
    "ens_loss": ("Ens loss", 4),
    "nll": ("NLL", 4),
    "err": ("ERR (%)", 2),
    "ece": ("ECE", 4),
}
# the shared-base accounting (lpe.members.shared_base), beside the paper's (M full members)
SHARED_LABEL = "Memory, shared base (Mbit)"


def memory_columns(table: pd.DataFrame) -> dict[str, pd.Series]:
    """The memory budget's formatted columns: the paper's accounting and, where the table has
    it, the shared-base one."""
    columns = {"Memory (Mbit)": table["memory_mbit"].map(lambda b: f"{b:.2f}")}
    if "memory_mbit_shared" in table:
        columns[SHARED_LABEL] = table["memory_mbit_shared"].map(lambda b: f"{b:.2f}")
    return columns


def cell(row: pd.Series, metric: str, digits: int, pm: str) -> str:
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    if math.isnan(mean):  # undefined for this row (a temperature-scaled row's AMB, say)
        return "-"
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
    LPE-BSR (Table 1 and the number systems table). With the controls (see
    :func:`with_controls`)."""
    rows = over_seeds(final_ensembles(scores), RUN_KEYS, [*metrics, *controls(scores)])
    rows = rows.assign(_p=rows["precision"].map(sort_key), _m=rows["method"].map(METHOD_ORDER))
    rows = rows.sort_values(["params", "_p", "_m"]).drop(columns=["_p", "_m"])
    return with_controls(rows.reset_index(drop=True), metrics)


# The controls beside every gain (lpe.stages.score): the temperature-scaled NLL and ECE with their
# temperature (fit on the selection split), and the cost of inference: forward passes per input
# and the measured wall time per test example. Score files made without them have none.
CONTROLS = ("forward_passes", "infer_us", "temperature", "nll_ts", "ece_ts")
TS = "+ts"  # a temperature-scaled row's method suffix
TS_NAME = " + TS"
# a temperature-scaled row's metric -> the scores' column; ERR keeps its value (a temperature
# keeps the argmax); every other metric (the members' average loss, AMB) is not defined for it
TS_METRICS = {"nll": "nll_ts", "ens_loss": "nll_ts", "ece": "ece_ts", "err": "err"}
TIMING_UNIT = (
    "µs"  # lpe.tools.compare: a number printed before it is a measured time, not reproduced
)


def controls(scores: pd.DataFrame) -> list[str]:
    return [c for c in CONTROLS if c in scores and scores[c].notna().any()]


def with_controls(table: pd.DataFrame, metrics) -> pd.DataFrame:
    """``table`` (``over_seeds`` of runs, controls included) with, after each row whose runs
    were calibrated, the same runs temperature-scaled: method ``<method>+ts``, each metric at
    the fitted temperature (:data:`TS_METRICS`; undefined ones NaN). The plain rows are at
    temperature 1 and show none."""
    if "temperature_mean" not in table:
        return table
    rows = []
    for _, row in table.iterrows():
        plain = row.copy()
        plain[["temperature_mean", "temperature_std"]] = math.nan
        rows.append(plain)
        if math.isnan(row["temperature_mean"]):
            continue
        ts = row.copy()
        ts["method"] = row["method"] + TS
        for metric in metrics:
            source = TS_METRICS.get(metric)
            for stat in ("mean", "std"):
                ts[f"{metric}_{stat}"] = row[f"{source}_{stat}"] if source else math.nan
        rows.append(ts)
    dropped = [f"{c}_{stat}" for c in ("nll_ts", "ece_ts") for stat in ("mean", "std")]
    out = pd.DataFrame(rows).drop(columns=[c for c in dropped if c in table])
    return out.drop(columns=["forward_passes_std"], errors="ignore").reset_index(drop=True)


def method_name(names: dict[str, str], method: str) -> str:
    """A table's name of ``method``, temperature-scaled ones included ("FP32 + TS")."""
    if method.endswith(TS):
        return names[method[: -len(TS)]] + TS_NAME
    return names[method]


def control_columns(table: pd.DataFrame, pm: str) -> dict[str, pd.Series]:
    """The printed controls of a table: temperature, forward passes, inference time."""
    if "forward_passes_mean" not in table:
        return {}
    columns = {}
    if "temperature_mean" in table:
        columns["T"] = table.apply(cell, axis=1, metric="temperature", digits=3, pm=pm)
    columns["Forward passes"] = table["forward_passes_mean"].map(lambda f: f"{f:.0f}")
    if "infer_us_mean" in table:
        columns[f"Inference ({TIMING_UNIT}/example)"] = table["infer_us_mean"].map(
            lambda t: "-" if math.isnan(t) else f"{t:.2f} {TIMING_UNIT}"
        )
    return columns
