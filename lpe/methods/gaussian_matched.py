"""``gaussian-matched`` (Table 6): Gaussian weight noise of LPE-BSR's per-weight variance
``s^2 f (1 - f)`` at the precision ``lpe-bsr`` chose (its choice file, ``--setting-file``): the
same perturbation size as LPE-BSR, Gaussian instead of two-point; stored as FP32 weights.
"""

from __future__ import annotations

import torch

from lpe.evaluation.baselines import Baseline, channel_scales, fp32_bits, on_device
from lpe.formats.number_formats import int_format
from lpe.formats.policy import QuantPolicy
from lpe.methods import Spec
from lpe.methods.lpe_bsr import bits_problem


@torch.no_grad()
def matched_member(state, policy: QuantPolicy, bits: int, seed: int) -> dict:
    """``state`` plus Gaussian noise of LPE-BSR's per-weight variance at INT-``bits``.

    BSR rounds ``w = s (c + f)`` (grid step ``s``, code ``c``, fraction ``f`` in [0, 1)) up with
    probability ``f``: an unbiased perturbation of variance ``s^2 f (1 - f)``. This member adds
    a Gaussian of exactly that variance, weight by weight, so that it differs from an LPE-BSR
    member only in the shape of the noise (Gaussian, not two-point on the grid).
    """
    generator = torch.Generator().manual_seed(seed)
    fmt = int_format(bits)
    noisy_state = {}
    for name, tensor in state.items():
        noisy = tensor
        if policy.quantizes(name, tensor):
            step = channel_scales(fmt, tensor)
            u = tensor.float() / step
            f = u - u.floor()
            noise = torch.randn(tensor.shape, generator=generator)
            noisy = tensor + step * (f * (1 - f)).sqrt() * noise
        noisy_state[name] = noisy
    return noisy_state


def matched_noise_member(model, state, policy: QuantPolicy, setting, seed: int, *, device):
    """A perturbed copy of the weights, on the device."""
    return on_device(matched_member(state, policy, int(setting), seed), device)


# no candidates of its own: it takes LPE-BSR's chosen precision (its registry line)
SPEC = Spec(
    "gaussian-matched",
    baseline=Baseline(
        row="Gaussian noise, BSR's variance",
        setting="variance of LPE-BSR INT-",
        chosen="",
        problem=bits_problem,
        member=matched_noise_member,
        storage=fp32_bits,
    ),
)
