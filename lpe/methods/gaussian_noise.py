"""``gaussian-noise`` (Table 6): Gaussian weight noise on the tensors LPE-BSR quantizes (the same
policy), with a standard deviation of ``scale x max|w|`` of each output channel, i.e. in the units
of the INT-b grid's per-channel range (ASSUMED parameterisation; the paper's was not available).
Member k draws from its own generator, ``member_seed(seed, k)``; it is stored as FP32 weights
(32 bits per parameter). The scale is chosen on validation from ``baselines.gaussian_scales``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lpe.evaluation.baselines import Baseline, channel_scales, fp32_bits, on_device
from lpe.formats.number_formats import int_format
from lpe.formats.policy import QuantPolicy
from lpe.methods import Spec


def scales_problem(candidates: Sequence[float]) -> str | None:
    if all(s >= 0 for s in candidates):
        return None
    return f"baselines.gaussian scales must be >= 0, got {list(candidates)}"


@torch.no_grad()
def gaussian_member(state, policy: QuantPolicy, scale: float, seed: int) -> dict:
    """``state`` plus Gaussian noise (std ``scale x`` channel absmax) on the quantized tensors."""
    generator = torch.Generator().manual_seed(seed)
    noisy_state = {}
    for name, tensor in state.items():
        noisy = tensor
        if policy.quantizes(name, tensor):
            # INT-2's scales (qmax 1) are the per-channel absmax
            absmax = channel_scales(int_format(2), tensor)
            noise = torch.randn(tensor.shape, generator=generator)
            noisy = tensor + scale * absmax * noise
        noisy_state[name] = noisy
    return noisy_state


def gaussian_noise_member(model, state, policy: QuantPolicy, setting, seed: int, *, device):
    """A perturbed copy of the weights, on the device."""
    return on_device(gaussian_member(state, policy, setting, seed), device)


SPEC = Spec(
    "gaussian-noise",
    baseline=Baseline(
        row="Gaussian noise",
        setting="noise scale",
        chosen="noise scale {:g}",
        problem=scales_problem,
        member=gaussian_noise_member,
        storage=fp32_bits,
    ),
)
