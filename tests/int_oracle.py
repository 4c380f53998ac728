"""INT-b written out plainly: the test oracle the suite's one INT-b type (``int_format`` of
lpe.formats.number_formats) and its kernels are held against.

Symmetric uniform INT-b (ASSUMED from the first author's public quantization code, see
docs/paper.md): integer codes ``q`` in ``{-qmax, ..., qmax}`` with ``qmax = 2**(b-1) - 1``, no zero
point; ``w ~ s * q`` with one scale per output channel (dim 0) by default, or one per tensor. The
rounding rules are lpe.formats.rounding's reference expressions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lpe.formats.names import MAX_BITS, MIN_BITS
from lpe.formats.rounding import bsr_reference, rtn_reference


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
    return rtn_reference(weight, scales, fmt.qmax)


def round_stochastic(weight, scales, fmt: IntFormat, generator: torch.Generator) -> torch.Tensor:
    return bsr_reference(weight, scales, fmt.qmax, generator)


def dequantize(codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """The FP32 weight a member runs with ("fake quantization"): ``s * q``."""
    return codes.float() * scales
