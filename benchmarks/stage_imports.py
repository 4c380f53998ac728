"""What each stage imports, and what its imports cost: ``python -X importtime`` per stage module.

For every ``lpe.<stage>`` that the workflow runs, this imports the module in a fresh interpreter
(``--repeats`` times; the median) in each checkout given, and reports the total import time and
which of the heavy libraries it pulled in (torch, timm, torchvision, torch._dynamo, timm.data,
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


def import_profile(checkout: Path, module: str, repeats: int) -> tuple[float, set[str]] | None:
    """Median import time (s) of ``module`` in ``checkout`` and the heavy modules it imported."""
    times, heavy = [], set()
    for _ in range(repeats):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            cwd=checkout, capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode != 0:
            return None  # the module does not exist in that checkout
        rows = [line.split("|") for line in result.stderr.splitlines() if "|" in line]
        names = {row[2].strip() for row in rows if len(row) == 3}
        heavy = {name for name in HEAVY if name in names}
        # the module's own row: its cumulative time (us) includes everything it imported
        times.append(next(int(r[1]) for r in rows if len(r) == 3 and r[2].strip() == module) / 1e6)
    return statistics.median(times), heavy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="another checkout to compare with")
    parser.add_argument("--repeats", type=int, default=3, help="imports per stage (median)")
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
        + f"`: median of {args.repeats} `python -X importtime -c 'import lpe.<stage>'` per stage.",
        "",
        header + " |",
        "|---|" + "---:|---|" * len(checkouts),
    ]
    for stage in STAGES:
        cells = []
        for _, checkout in checkouts:
            found = import_profile(checkout, f"lpe.{stage}", args.repeats)
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
