"""The ``data`` stage: one data set (:mod:`lpe.data.datasets`) built and written as a split file.

Usage: ``python -m lpe.stages.data --dataset mnist1d --train 12000 --val 2000 --test 6000 --seed 0
--out work/mini/data/mnist1d.npz``
"""

from __future__ import annotations

import argparse

from lpe.data.datasets import DATASETS, SPLITS, build, save_splits


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    for split in SPLITS:
        parser.add_argument(f"--{split}", type=int, required=True, help=f"{split} examples")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    splits = build(args.dataset, train=args.train, val=args.val, test=args.test, seed=args.seed)
    save_splits(args.out, splits)
    sizes = ", ".join(f"{s} {len(splits.y[s])}" for s in SPLITS)
    print(f"{args.dataset}: {sizes}; input {splits.input_shape}; wrote {args.out}")


if __name__ == "__main__":
    main()
