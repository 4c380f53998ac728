"""Low precision number systems and the two rounding rules of the paper.

A format is a small frozen value object; rounding functions are pure and take an explicit
``torch.Generator`` for any randomness (never the global RNG). ``round_stochastic`` is the
reference expression of BSR; members are drawn by the fast counter-based kernel of
``lpe.formats.kernels``, which follows the same rule and is tested to agree with it in distribution.

Number system (ASSUMED from the first author's public quantization code, see docs/paper.md):
symmetric uniform INT-b, integer codes ``q`` in ``{-qmax, ..., qmax}`` with ``qmax = 2**(b-1) - 1``,
no zero point. A weight ``w`` is represented by ``s * q``; the scale ``s`` is one per output channel
(dim 0) by default, or one per tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MIN_BITS, MAX_BITS = 2, 16


@dataclass(frozen=True)
class IntFormat:
    """Symmetric INT-``bits`` with per-output-channel (default) or per-tensor scales."""

    bits: int
    per_channel: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or not MIN_BITS <= self.bits <= MAX_BITS:
            raise ValueError(
                f"IntFormat.bits must be an integer in {MIN_BITS}..{MAX_BITS}, got {self.bits!r}"
            )

    @property
    def qmax(self) -> int:
        """Largest code magnitude: codes lie in ``[-qmax, qmax]``."""
        return 2 ** (self.bits - 1) - 1

    @property
    def name(self) -> str:
        return f"int{self.bits}"


def compute_scales(weight: torch.Tensor, fmt: IntFormat) -> torch.Tensor:
    """FP32 scales ``s = max|w| / qmax``, shaped to broadcast against ``weight``.

    Per channel: shape ``(out, 1, 1, ...)``, one scale per slice along dim 0. Per tensor: shape
    ``(1, 1, ...)``. An all-zero channel gets scale 1 so that its codes are 0 (not NaN).
    """
    w = weight.detach().float()
    if fmt.per_channel and w.dim() >= 1:
        absmax = w.abs().reshape(w.shape[0], -1).amax(dim=1)  # (out,)
        shape = (w.shape[0],) + (1,) * (w.dim() - 1)
    else:
        absmax = w.abs().amax().reshape(1)
        shape = (1,) * max(w.dim(), 1)
    scales = absmax / fmt.qmax
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    return scales.reshape(shape)


def round_nearest(weight: torch.Tensor, scales: torch.Tensor, fmt: IntFormat) -> torch.Tensor:
    """RTN: the nearest code, ``clip(round(w / s))``, as int32 (ties to even, as torch.round)."""
    u = weight.detach().float() / scales
    return torch.round(u).clamp_(-fmt.qmax, fmt.qmax).to(torch.int32)


def round_stochastic(
    weight: torch.Tensor, scales: torch.Tensor, fmt: IntFormat, generator: torch.Generator
) -> torch.Tensor:
    """BSR: ``q = floor(u) + Bernoulli(u - floor(u))`` with ``u = w / s``, so ``E[s q] = w``.

    Every weight is rounded independently with one uniform draw from ``generator`` (which must
    live on ``weight``'s device). The clip only guards against ``u`` exceeding ``qmax`` by a
    floating-point ulp at the channel maximum; it never moves an unbiased draw.
    """
    u = weight.detach().float() / scales
    low = torch.floor(u)
    draws = torch.rand(u.shape, generator=generator, device=u.device, dtype=u.dtype)
    q = low + (draws < (u - low)).to(u.dtype)
    return q.clamp_(-fmt.qmax, fmt.qmax).to(torch.int32)


def dequantize(codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """The FP32 weight a member runs with ("fake quantization"): ``s * q``."""
    return codes.float() * scales
