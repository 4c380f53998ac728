"""What each stage imports, and what its imports cost: ``python -X importtime`` per stage module.

For every ``lpe.<stage>`` that the workflow runs, this imports the module in a fresh interpreter
(three times; the median) in each checkout given, and reports the total import time and which of
the heavy libraries it pulled in (torch, timm, torchvision, torch._dynamo, timm.data,
matplotlib). Run it on a quiet machine; give two checkouts to compare them.

Usage: ``python benchmarks/stage_imports.py [--before OLD_CHECKOUT] [--out FILE.md]`` (the
checkout measured is this one; ``--before`` adds the columns of another).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = [
    "data", "train", "generate", "predict", "ensembles", "finetune", "bma", "baselines", "fast",
    "landscape", "score", "tables", "figures", "claims", "table6", "fast_report", "bma_figures",
    "figure1",
]  # fmt: skip
HEAVY = ["torch", "timm", "torchvision", "torch._dynamo", "timm.data", "matplotlib"]


def import_profile(checkout: Path, module: str) -> tuple[float, set[str]] | None:
    """Median import time (s) of ``module`` in ``checkout`` and the heavy modules it imported."""
    times, heavy = [], set()
    for _ in range(3):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            cwd=checkout, capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode != 0:
            return None  # the module does not exist in that checkout
        rows = [line.split("|") for line in result.stderr.splitlines() if "|" in line]
        names = {row[2].strip() for row in rows if len(row) == 3}
        heavy = {name for name in HEAVY if name in names}
        # the last row is the module itself; its cumulative time (us) includes everything
        times.append(int(rows[-1][1]) / 1e6)
    return statistics.median(times), heavy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="another checkout to compare with")
    parser.add_argument("--out", type=Path, help="markdown file (else printed)")
    args = parser.parse_args(argv)
    checkouts = ([("before", args.before)] if args.before else []) + [("now", ROOT)]
    header = "| stage | " + " | ".join(
        f"{label}: import (s) | {label}: heavy imports" for label, _ in checkouts
    )
    lines = [
        "# Stage imports",
        "",
        "`python benchmarks/stage_imports.py"
        + (" --before OLD" if args.before else "")
        + "`: median of three `python -X importtime -c 'import lpe.<stage>'` per stage.",
        "",
        header + " |",
        "|---|" + "---:|---|" * len(checkouts),
    ]
    for stage in STAGES:
        cells = []
        for _, checkout in checkouts:
            found = import_profile(checkout, f"lpe.{stage}")
            cells += ["-", "(no such stage)"] if found is None else [
                f"{found[0]:.2f}", ", ".join(n for n in HEAVY if n in found[1]) or "none"
            ]  # fmt: skip
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
