"""Cyclic learning-rate schedules of snapshot ensembles (SSE) and cyclical SGLD (CSGLD).

Both split training into ``cycles`` equal cycles of ``steps_per_cycle`` steps. Within a cycle the
learning rate follows a cosine from ``lr`` down to 0 (Huang et al., 2017; Zhang et al., 2020):

    lr(t) = lr / 2 * (cos(pi * r(t)) + 1),   r(t) = (t mod steps_per_cycle) / steps_per_cycle

so it restarts at ``lr`` at the first step of every cycle and reaches its minimum at the last one,
where SSE takes its snapshot. CSGLD runs the first ``exploration`` fraction of each cycle as
plain SGD and the rest as Langevin dynamics (``lpe.sources.csgld``), collecting samples at the end
of the cycle. Written here because the schedule is four lines; torch's
``CosineAnnealingWarmRestarts`` works per epoch fraction and does not expose the cycle phase
that CSGLD needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class CyclicSchedule:
    total_steps: int
    cycles: int
    lr: float
    exploration: float = 1.0  # fraction of each cycle without Langevin noise (1.0: SSE)

    def __post_init__(self) -> None:
        if self.cycles < 1 or self.total_steps < 1:
            raise ValueError(
                f"cycles and steps must be >= 1, got {self.cycles}, {self.total_steps}"
            )
        if self.total_steps % self.cycles:
            raise ValueError(
                f"{self.cycles} cycles do not divide the training length of {self.total_steps} "
                "steps; choose a number of cycles that divides epochs x steps per epoch"
            )
        if not 0.0 <= self.exploration <= 1.0:
            raise ValueError(f"exploration must be in [0, 1], got {self.exploration}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    @property
    def steps_per_cycle(self) -> int:
        return self.total_steps // self.cycles

    def phase(self, step: int) -> float:
        """Position of ``step`` (0-based) within its cycle, in [0, 1)."""
        return (step % self.steps_per_cycle) / self.steps_per_cycle

    def lr_at(self, step: int) -> float:
        return self.lr / 2 * (math.cos(math.pi * self.phase(step)) + 1)

    def sampling(self, step: int) -> bool:
        """Whether ``step`` is in the Langevin (sampling) phase of its cycle."""
        return self.phase(step) >= self.exploration

    def cycle_end(self, step: int) -> bool:
        """Whether ``step`` is the last step of a cycle (where snapshots are taken)."""
        return (step + 1) % self.steps_per_cycle == 0
