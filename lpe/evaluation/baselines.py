"""What a training-free baseline of Table 6 is (the interface of its method's module,
``lpe.methods``) and what its members cost: a perturbed full-precision copy of the model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from lpe.formats.rounding import format_scales
from lpe.models.factory import count_params


@dataclass(frozen=True)
class Baseline:
    """A training-free ensemble of Table 6 (its method module's ``SPEC.baseline``; the method's
    name, in the command line, the rules, the files and the CSVs alike, its candidates' config
    list or the method whose choice it takes are its registry line's, ``lpe.methods``).

    ``row``: its row in Table 6; ``setting``: how Table 6 names its setting (``noise scale``;
    ending in ``-``, the value follows without a space); ``chosen``: how the claims report words
    the choice (a format string of the setting; empty: the report leaves it out);
    ``problem``: what is wrong with settings;
    ``member``: the context a member runs in (it yields the weights to run the member with, or
    None: the model's own, as the context left them); ``storage``: each member's bits;
    ``rounded``: whether its setting is a bit width (the members' precision); ``dropout``:
    whether its members run with dropout in train mode.
    """

    row: str
    setting: str
    chosen: str
    problem: Callable[[Sequence[float]], str | None]
    member: Callable
    storage: Callable[..., list[int]]
    rounded: bool = False
    dropout: bool = False


@contextlib.contextmanager
def on_device(weights: Mapping[str, torch.Tensor], device: torch.device):
    """A perturbed member's weights on ``device``, as its context yields them (freed when the
    member closes)."""
    yield {name: t.to(device) for name, t in weights.items()}


def fp32_bits(model, state, setting: float, members: int) -> list[int]:
    """A noisy member is a full FP32 model."""
    return [32 * count_params(model)] * members


def channel_scales(fmt, tensor: torch.Tensor) -> torch.Tensor:
    """``fmt``'s per-output-channel scales of ``tensor``, shaped to broadcast against it."""
    return format_scales(fmt, tensor).reshape(-1, *[1] * (tensor.dim() - 1))
