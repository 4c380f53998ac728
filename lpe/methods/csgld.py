"""``csgld``: cyclical SGLD. ``sse``'s schedule with Langevin noise at ``--csgld-temperature`` in
the sampling phase of each cycle (after ``--csgld-exploration`` of it); a sample at the end of
each cycle. The peak rate is chosen on validation as ``sse``'s is.

The Langevin noise of cyclical SGLD (Zhang et al., 2020), with an explicit generator:

With the loss taken as the mean over a minibatch of a data set of ``data_size`` examples, the
SGLD update of the posterior at temperature ``T`` is

    theta <- theta - lr * grad + sqrt(2 * lr * T / data_size) * N(0, I)

The gradient step is a plain SGD step; this module adds the noise term. ``T = 0`` is SGD, and
``T = 1`` samples the Bayes posterior (the "cold posterior" literature uses T < 1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from lpe.core.jobs import setting
from lpe.methods import Spec, sse
from lpe.methods.sse import CyclicSettings, Sse
from lpe.training.finetuning import finetuning_method
from lpe.training.loop import Plan


def noise_std(lr: float, temperature: float, data_size: int) -> float:
    if temperature < 0:
        raise ValueError(f"csgld.temperature must be >= 0, got {temperature}")
    if data_size < 1:
        raise ValueError(f"data_size must be >= 1, got {data_size}")
    return (2.0 * lr * temperature / data_size) ** 0.5


@torch.no_grad()
def add_langevin_noise(
    params: Iterable[torch.Tensor],
    lr: float,
    temperature: float,
    data_size: int,
    generator: torch.Generator,
) -> None:
    """Add ``N(0, 2 lr T / N)`` to every parameter, in place (after the SGD step)."""
    std = noise_std(lr, temperature, data_size)
    if std == 0.0:
        return
    for p in params:
        noise = torch.randn(p.shape, generator=generator, dtype=p.dtype, device=generator.device)
        p.add_(noise.to(p.device), alpha=std)


@dataclass(frozen=True)
class CsgldSettings(CyclicSettings):
    csgld_temperature: float = setting(1.0, "cSGLD: temperature of the sampling phase")
    csgld_exploration: float = setting(0.5, "cSGLD: fraction of each cycle before sampling")

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.csgld_temperature < 0:
            problems.append(f"csgld temperature must be >= 0, got {self.csgld_temperature}")
        if not 0 <= self.csgld_exploration <= 1:
            problems.append(f"csgld exploration must be in [0, 1], got {self.csgld_exploration}")
        return problems


@finetuning_method
class Csgld(Sse):
    """``sse``'s schedule with Langevin noise in each cycle's sampling phase."""

    name, what = "csgld", "csgld fine-tuning"
    Settings = CsgldSettings
    lr_setting = "fast.csgld.lr"

    def __init__(self, settings: CsgldSettings, plan: Plan) -> None:
        super().__init__(settings, plan)
        self.exploration = settings.csgld_exploration

    def begin(self, model, plan, train_size, device) -> None:
        self.langevin = torch.Generator(device=device).manual_seed(plan.seed + 2)
        self.train_size = train_size  # the noise scales with 1 / the data set's size
        super().begin(model, plan, train_size, device)

    def after_step(self, model, step, passes) -> None:
        if self.cyclic.sampling(step):
            add_langevin_noise(
                model.parameters(),
                self.cyclic.lr_at(step),
                self.settings.csgld_temperature,
                self.train_size,
                self.langevin,
            )
        super().after_step(model, step, passes)

    def state(self) -> dict:
        return {**super().state(), "langevin": self.langevin.get_state()}

    def restore(self, saved: dict) -> None:
        super().restore(saved)
        self.langevin.set_state(saved["langevin"])


# ---- the fast source's trainer (lpe.training.sources)


def train(job) -> dict:
    return sse.train(job, optimizer="csgld")


# SSE's options and their check, its own config keys
SPEC = Spec(
    "csgld",
    finetuning=Csgld,
    fast=dataclasses.replace(
        sse.SPEC.fast,
        settings={
            "fast.csgld.lr": "lr_candidates",
            "fast.csgld.momentum": "momentum",
            "fast.csgld.temperature": "csgld_temperature",
            "fast.csgld.exploration": "csgld_exploration",
        },
        train=train,
    ),
)
