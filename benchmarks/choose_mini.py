"""The format-and-members chooser (``lpe.evaluation.choice``) on one of the suite's own mini
models: choose on the MNIST-1D validation split, report on the test split.

An example of the library call on a model that is not a timm image model (a mini ViT on 1-D
signals, read from the mini DAG's checkpoint and data file), with every registered format and
M = 1 (RTN), 2, 5, 10, 20. Writes the table (markdown) and the figure (NLL against memory).

Usage: ``python benchmarks/choose_mini.py --checkpoint work/mini/checkpoints/vit_mini_b.safetensors
--data work/mini/data/mnist1d.npz [--budget-mbit 4] [--out benchmarks/results/choose_mini.md]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import emit, machine_line


def batches(x, y, size: int = 500):
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(y), size)]


def main() -> None:
    from lpe.core.numerics import pin_cpu_numerics

    pin_cpu_numerics()  # the stages' CPU paths (a stage's entry point sets them, the library not)
    from lpe.data.datasets import load_splits
    from lpe.evaluation.choice import choose, plot_choice
    from lpe.models.checkpoints import load_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="work/mini/checkpoints/vit_mini_b.safetensors")
    parser.add_argument("--data", default="work/mini/data/mnist1d.npz")
    parser.add_argument("--budget-mbit", type=float, default=4.0)
    parser.add_argument("--out")
    args = parser.parse_args()
    state, info = load_checkpoint(args.checkpoint)
    model = info.build()
    model.load_state_dict(state)
    splits = load_splits(args.data)
    held_out = batches(splits.x["val"], splits.y["val"])
    evaluated = batches(splits.x["test"], splits.y["test"])
    start = time.perf_counter()
    choice = choose(model, held_out, evaluated, budget_mbit=args.budget_mbit, seed=0)
    seconds = time.perf_counter() - start
    table = choice.table.copy()
    table["err"] = table["err"].map(lambda v: f"{v:.2f}")
    text = (
        f"`{info.model}` ({args.checkpoint}), chosen on the {len(splits.y['val'])} validation "
        f"signals, reported on the {len(splits.y['test'])} test signals; every registered format, "
        f"RTN and LPE-BSR M = 2, 5, 10, 20 (seed 0), budget {args.budget_mbit:g} Mbit (stored). "
        f"{seconds:.0f} s on {machine_line()}\n\n"
        + table.to_markdown(index=False, floatfmt=".4f")
        + "\n\n"
        + "\n".join(f"    {line}" for line in choice.lines())
        + "\n\n![NLL against memory](choose_mini.png)\n"
    )
    command = "python benchmarks/choose_mini.py --out benchmarks/results/choose_mini.md"
    emit(text, args.out, "The format and members chooser on a mini model", command)
    if args.out:
        plot_choice(choice, Path(args.out).with_suffix(".png"),
                    title=f"{info.model} on MNIST-1D (test split)")  # fmt: skip


if __name__ == "__main__":
    main()
