"""The ``data`` stage: one data set (:mod:`lpe.data.datasets`) built and written as a split file.

Usage: ``python -m lpe.stages.data --dataset mnist1d --train 12000 --val 2000 --test 6000 --seed 0
--out work/mini/data/mnist1d.npz``
"""

from __future__ import annotations

from dataclasses import dataclass

from lpe.cli.jobs import from_cli
from lpe.core.jobs import Job, setting
from lpe.data.datasets import DATASETS, SPLITS, build, save_splits


@dataclass(frozen=True, kw_only=True)
class DataJob(Job):
    """One data set's splits, written as one file."""

    dataset: str = setting(
        "mnist1d", "the data set", config="dataset.name", choices=tuple(sorted(DATASETS))
    )
    train: int = setting(12000, "train examples", config="dataset.train")
    val: int = setting(2000, "val examples", config="dataset.val")
    test: int = setting(6000, "test examples", config="dataset.test")
    seed: int = setting(0, "seed of the data generator", config="dataset.seed")
    out: str = setting(help="the split file written")


def run(job: DataJob) -> None:
    """Build the job's splits and write them."""
    splits = build(job.dataset, train=job.train, val=job.val, test=job.test, seed=job.seed)
    save_splits(job.out, splits)
    sizes = ", ".join(f"{s} {len(splits.y[s])}" for s in SPLITS)
    print(f"{job.dataset}: {sizes}; input {splits.input_shape}; wrote {job.out}")


def main(argv: list[str] | None = None) -> None:
    run(from_cli(DataJob, argv, __doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
