"""Langevin noise of cyclical SGLD (Zhang et al., 2020), with an explicit generator.

With the loss taken as the mean over a minibatch of a data set of ``data_size`` examples, the
SGLD update of the posterior at temperature ``T`` is

    theta <- theta - lr * grad + sqrt(2 * lr * T / data_size) * N(0, I)

The gradient step is a plain SGD step; this module adds the noise term. ``T = 0`` is SGD, and
``T = 1`` samples the Bayes posterior (the "cold posterior" literature uses T < 1).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


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
