"""``multiivon``: ``runs`` IVON runs with seeds ``seed, seed + 1, ...``, ``--draws`` posterior
draws each (FP32 sources); run 0 is the IVON run of the SWAG/IVON figures when given as
``--reuse`` with its ``--reuse-posterior``. A run costs its backward passes whatever its draws."""

from __future__ import annotations

from lpe.methods import FastSource, Spec, de
from lpe.methods import ivon as _ivon  # noqa: F401  (registers its runs' method, ivon)
from lpe.training.sources import Setting


def check(options) -> str | None:
    if options["draws"] < 1:
        return f"--draws must be >= 1, got {options['draws']}"
    if options["reuse_posterior"] and not options["reuse"]:
        return "--reuse-posterior needs --reuse"
    if options["reuse"] and not options["reuse_posterior"]:
        return "multiivon --reuse needs --reuse-posterior (run 0's posterior file)"
    return None


def train(job) -> dict:
    options = job.options
    settings = de.train(job, "ivon", options["draws"], options["reuse_posterior"])
    return {**settings, "draws": options["draws"]}


# DE's options and keys, and its own
SPEC = Spec(
    "multiivon",
    fast=FastSource(
        settings={
            **de.SPEC.fast.settings,
            "job.reuse_posterior": "reuse_posterior",
            "fast.multiivon.draws": "draws",
        },
        options=(
            *de.SPEC.fast.options,
            Setting("reuse_posterior", str, None, help="run 0's posterior file (with --reuse)"),
            Setting("draws", int, 2, help="posterior draws per run"),
        ),
        check=check,
        train=train,
    ),
)
