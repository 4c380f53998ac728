"""``csgld``: cyclical SGLD. ``sse``'s schedule with Langevin noise at ``--csgld-temperature`` in
the sampling phase of each cycle (after ``--csgld-exploration`` of it); a sample at the end of
each cycle. The peak rate is chosen on validation as ``sse``'s is."""

from __future__ import annotations

from lpe.training.fast import sse

SETTINGS = {
    "fast.csgld.lr": "lr_candidates",
    "fast.csgld.momentum": "momentum",
    "fast.csgld.temperature": "csgld_temperature",
    "fast.csgld.exploration": "csgld_exploration",
}
OPTIONS, check = sse.OPTIONS, sse.check


def train(job) -> dict:
    return sse.train(job, optimizer="csgld")
