"""``multiivon``: ``runs`` IVON runs with seeds ``seed, seed + 1, ...``, ``--draws`` posterior
draws each (FP32 sources); run 0 is the IVON run of the SWAG/IVON figures when given as
``--reuse`` with its ``--reuse-posterior``. A run costs its backward passes whatever its draws."""

from __future__ import annotations

import argparse

from lpe.training.fast import de

SETTINGS = {
    **de.SETTINGS,
    "job.reuse_posterior": "reuse_posterior",
    "fast.multiivon.draws": "draws",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    de.add_arguments(parser)
    parser.add_argument("--reuse-posterior", help="run 0's posterior file (with --reuse)")
    parser.add_argument("--draws", type=_positive, default=2, help="posterior draws per run")


def _positive(value: str) -> int:
    if int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return int(value)


def check(args) -> str | None:
    if args.reuse_posterior and not args.reuse:
        return "--reuse-posterior needs --reuse"
    if args.reuse and not args.reuse_posterior:
        return "multiivon --reuse needs --reuse-posterior (run 0's posterior file)"
    return None


def train(job) -> dict:
    settings = de.train(job, "ivon", job.args.draws, job.args.reuse_posterior)
    return {**settings, "draws": job.args.draws}
