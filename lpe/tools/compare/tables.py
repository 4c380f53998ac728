"""CSV files cell by cell: rows named by their text columns and ``seed``/``members``, each
number's noise unit from its group's spread, measured times present but not compared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lpe.tools.checkpoint_noise import row_key
from lpe.tools.compare.tolerances import Report, resolution

ROW_KEYS = ("seed", "members")


# Measured wall times (lpe.stages.score's infer_us columns, numbers the tables print before
# lpe.reports.tabulate.TIMING_UNIT): present, not compared
TIMING_COLUMN = "infer_us"


def csv_spreads(table: pd.DataFrame) -> pd.DataFrame:
    """The measured spread of every numeric cell of a results CSV (NaN where none was measured).

    Seed groups (``scores.csv``): the sd over seeds of the row's group, rows without seeds the
    column's median group sd. Tables: ``<m>_std`` is the spread of ``<m>_mean`` and of itself.
    """
    numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]
    spreads = pd.DataFrame(np.nan, index=table.index, columns=numeric)
    if "seed" in table.columns:
        keys = [c for c in table.columns if c not in numeric] + ["members"] * (
            "members" in table.columns
        )
        measured = [c for c in numeric if c not in ("seed", "members")]
        sd = table.groupby(keys, dropna=False)[measured].transform("std")  # NaN: one seed
        for column in measured:
            spreads[column] = sd[column].fillna(sd[column].median())
    for column in numeric:
        if column.endswith("_std"):
            std = table[column].fillna(table[column].median())
            spreads[column] = std
            mean = column.removesuffix("_std") + "_mean"
            if mean in spreads.columns:
                spreads[mean] = std
    return spreads


def _cell_checkpoint(report, ref, i, models, key, *, column) -> float:
    """A cell's checkpoint unit; ``<m>_std`` moves at the scale of ``<m>_mean``'s noise."""
    mean = column.removesuffix("_std") + "_mean"
    if column.endswith("_std") and mean in ref.columns:
        column = mean
    return report.checkpoint.cell(models, key, column, float(ref.at[i, column]))


def compare_csv(name: str, ref_path: Path, act_path: Path, report: Report) -> None:
    ref, act = pd.read_csv(ref_path), pd.read_csv(act_path)
    if list(ref.columns) != list(act.columns) or len(ref) != len(act):
        report.problems.append(
            f"{name}: shape or columns differ (reference {ref.shape} "
            f"{list(ref.columns)}, regenerated {act.shape} {list(act.columns)})"
        )
        return
    raw = pd.read_csv(ref_path, dtype=str, keep_default_na=False)  # the numbers as printed
    spreads = csv_spreads(ref) if report.mode == "noise" else None
    text = [c for c in ref.columns if not pd.api.types.is_numeric_dtype(ref[c])]
    keys = text + [c for c in ROW_KEYS if c in ref.columns]
    noise = report.mode == "noise"
    for i in range(len(ref)):
        row = ", ".join(f"{k}={ref.at[i, k]}" for k in keys) or f"row {i + 1}"
        models = report.checkpoint.models(" ".join(str(ref.at[i, c]) for c in text))
        key = row_key(ref.loc[i], text)
        for column in ref.columns:
            x, y = ref.at[i, column], act.at[i, column]
            if column in text:
                if str(x) != str(y):
                    report.problems.append(f"{name} [{row}] {column}: {x!r} became {y!r}")
            elif column.startswith(TIMING_COLUMN):
                report.timing(f"{name} [{row}] {column}", x, y)
            elif pd.isna(x) or pd.isna(y):
                if not (pd.isna(x) and pd.isna(y)):
                    report.problems.append(f"{name} [{row}] {column}: {x} became {y}")
            else:
                spread = spreads.at[i, column] if spreads is not None else None
                report.number(
                    f"{name} [{row}] {column}",
                    float(x),
                    float(y),
                    spread,
                    resolution(raw.at[i, column]),
                    count=pd.api.types.is_integer_dtype(ref[column]),
                    checkpoint=_cell_checkpoint(report, ref, i, models, key, column=column)
                    if noise
                    else 0.0,
                )
