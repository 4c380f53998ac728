"""Table 1 from ``scores.csv``: RTN vs LPE-BSR across model sizes and precisions.

Rows: model (smallest first) x precision (FP32 reference row, then highest precision first) x
method, each followed by the same runs temperature-scaled ("+ TS", the temperature T fit on the
validation split; ``lpe.evaluation.temperature``) where the scores hold them. Columns: ensemble
size M; the memory budget under the paper's accounting (M full members) and under the
shared-base one (one base, the scales and the FP32 tensors once, one bit per member and
quantized weight; ``lpe.members.shared_base``); NLL, ERR and AMB as mean +- std over seeds
(LPE-BSR at the largest ensemble size in the scores; RTN and FP32 are deterministic given the
checkpoint, so they have one value and no spread), T, and the inference cost: forward passes per
input and the measured wall time per test example. Written as csv (numbers), md and tex
(formatted).

Usage: ``python -m lpe.reports.table1 --scores results/mini/scores.csv --out
results/mini/tables/table1`` (writes ``table1.csv``, ``table1.md``, ``table1.tex``).
"""

from __future__ import annotations

import argparse

import pandas as pd

from lpe.formats.names import label
from lpe.models.checkpoints import (
    GATE_RISE,
    GATE_TOLERANCE,
    GATE_WINDOW,
    checkpoint_info,
    convergence_gate,
)
from lpe.reports.tabulate import (
    METHOD_NAMES,
    cell,
    control_columns,
    final_rows,
    latex,
    markdown,
    memory_columns,
    method_name,
    write_table,
)

METRICS = {"nll": "NLL", "err": "ERR (%)", "ambiguity": "AMB"}


def table1(scores: pd.DataFrame, gates: dict[str, tuple[float, float, bool]] | None = None):
    """One row per model x precision x method: mean and std over seeds of NLL, ERR, AMB; with
    ``gates`` (model -> convergence gain, rise after the best epoch, passed), each model's
    convergence gate."""
    table = final_rows(scores, METRICS)
    if gates is not None:
        for k, column in enumerate(("gate_gain", "gate_rise", "gate_passed")):
            table[column] = table["model"].map(lambda m, k=k: gates[m][k])
    return table


def formatted(table: pd.DataFrame, pm: str) -> pd.DataFrame:
    digits = {"nll": 4, "err": 2, "ambiguity": 4}
    return pd.DataFrame(
        {
            "Model": table["model"],
            "Params": table["params"].map(lambda p: f"{p / 1e3:.0f}k"),
            "Precision": table["precision"].map(label),
            "Method": table["method"].map(lambda m: method_name(METHOD_NAMES, m)),
            "M": table["members"],
            **memory_columns(table),
            **{
                label: table.apply(cell, axis=1, metric=m, digits=digits[m], pm=pm)
                for m, label in METRICS.items()
            },
            **control_columns(table, pm),
            "Seeds": table["seeds"],
            **({GATE_LABEL: table.apply(_gate, axis=1)} if "gate_gain" in table else {}),
        }
    )


GATE_LABEL = (
    f"Converged (best val NLL change over the last {100 * GATE_WINDOW:g}% of epochs, < "
    f"{100 * GATE_TOLERANCE:g}% better; last epoch vs best, <= {100 * GATE_RISE:g}% worse)"
)


def _gate(row: pd.Series) -> str:
    return (
        f"{'yes' if row['gate_passed'] else 'NO'} ({-100 * row['gate_gain']:+.2f}%; "
        f"{100 * row['gate_rise']:+.2f}%)"
    )


def to_markdown(table: pd.DataFrame) -> str:
    return markdown(formatted(table, "±"))


def to_latex(table: pd.DataFrame) -> str:
    return latex(formatted(table, r"$\pm$"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scores", required=True)
    parser.add_argument("--out", required=True, help="path prefix; .csv, .md, .tex are added")
    parser.add_argument(
        "--checkpoints", nargs="*", default=[], help="the checkpoints, for their gate"
    )
    args = parser.parse_args(argv)
    scores = pd.read_csv(args.scores)
    gates = {checkpoint_info(p).model: convergence_gate(p) for p in args.checkpoints}
    table = table1(scores, gates or None)
    write_table(args.out, table, to_markdown(table), to_latex(table))


if __name__ == "__main__":
    main()
