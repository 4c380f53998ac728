"""Wall time of each method of the fast-ensemble figures, from Snakemake's benchmark files.

Reads ``work/<profile>/benchmarks/**.tsv`` (written by the rules' ``benchmark:`` directive during
``snakemake``) and sums, per method, the wall time of its training jobs and of its prediction
jobs. DE and MultiIVON include Figure 2's SGD or IVON run, which they reuse as their run 1;
"+ LPE-BSR" rows are the copies' generation and prediction only (their training is the method's).
Run after the workflow: ``python benchmarks/method_times.py [--profile mini] [--out FILE]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from common import emit

METHODS = {
    "SSE": (["fast/sse"], ["predict/fast/sse/fp32"]),
    "CSGLD": (["fast/csgld"], ["predict/fast/csgld/fp32"]),
    "DE": (["fast/de", "finetune/{model}-sgd"], ["predict/fast/de/fp32"]),
    "MultiIVON": (["fast/multiivon", "finetune/{model}-ivon"], ["predict/fast/multiivon/fp32"]),
    "BatchEnsemble": (["fast/batchensemble"], ["predict/fast/batchensemble/fp32"]),
    "SWAG BMA": (["finetune/{model}-swag"], ["predict/{model}-swag/bma-seed*"]),
    "IVON BMA": (["finetune/{model}-ivon"], ["predict/{model}-ivon/bma-seed*"]),
}
for name, key in (("SSE", "sse"), ("CSGLD", "csgld"), ("DE", "de"), ("MultiIVON", "multiivon")):
    METHODS[f"{name} + LPE-BSR"] = ([], [f"predict/fast/{key}/bsr-*"])
METHODS["LPE-BSR (SGD solution)"] = ([], ["predict/{model}-sgd/bsr-*"])


def seconds(root: Path, patterns: list[str], model: str) -> tuple[float, int]:
    files = [f for p in patterns for f in root.glob(p.format(model=model) + ".tsv")]
    return sum(float(pd.read_csv(f, sep="\t")["s"].iloc[0]) for f in files), len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="mini")
    parser.add_argument("--model", default="vit_mini_s", help="the fine-tuned model (bma.model)")
    parser.add_argument("--out")
    args = parser.parse_args()
    root = Path(f"work/{args.profile}/benchmarks")
    if not root.is_dir():
        parser.error(f"no {root}: run `snakemake --cores 2` first")
    lines = [
        f"Wall time per method on the {args.profile} profile, one job per core, from {root}.",
        "",
        "| method | training (s) | prediction (s) | jobs |",
        "|---|---|---|---|",
    ]
    for name, (train, predict) in METHODS.items():
        t, nt = seconds(root, train, args.model)
        p, np_ = seconds(root, predict, args.model)
        lines.append(f"| {name} | {t:.1f} | {p:.1f} | {nt + np_} |")
    emit("\n".join(lines) + "\n", args.out, "Wall time per method",
         "python benchmarks/method_times.py")  # fmt: skip


if __name__ == "__main__":
    main()
