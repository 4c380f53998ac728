"""Which tensors of a model are quantized, and which stay in full precision.

Default (docs/paper.md): weight tensors with 2 or more dimensions (linear and conv kernels) are
quantized; biases and normalization parameters stay FP32. Token/patch/position embeddings and the
classification head are kept FP32 by default (ASSUMED); both are name patterns in the config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import torch

# timm VisionTransformer names: patch embedding conv, position embedding, class token, head.
DEFAULT_EXCLUDE = ("patch_embed.*", "pos_embed", "cls_token", "reg_token", "head.*")


@dataclass(frozen=True)
class QuantPolicy:
    """Quantize tensors with at least ``min_ndim`` dims whose names match no ``exclude`` pattern.

    Patterns are shell-style (``fnmatch``), matched against the full state-dict name.
    """

    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    min_ndim: int = 2

    def __post_init__(self) -> None:
        if self.min_ndim < 1:
            raise ValueError(f"QuantPolicy.min_ndim must be >= 1, got {self.min_ndim}")
        object.__setattr__(self, "exclude", tuple(self.exclude))

    def quantizes(self, name: str, tensor: torch.Tensor) -> bool:
        if tensor.dim() < self.min_ndim or not tensor.is_floating_point():
            return False
        return not any(fnmatchcase(name, pattern) for pattern in self.exclude)

    def split(self, state: Mapping[str, torch.Tensor]) -> PolicySummary:
        """Names to quantize and names to keep, with parameter counts."""
        quantized = [n for n, t in state.items() if self.quantizes(n, t)]
        kept = [n for n in state if n not in set(quantized)]
        return PolicySummary(
            quantized=quantized,
            kept=kept,
            quantized_params=sum(state[n].numel() for n in quantized),
            kept_params=sum(state[n].numel() for n in kept),
        )


@dataclass(frozen=True)
class PolicySummary:
    quantized: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    quantized_params: int = 0
    kept_params: int = 0

    def describe(self) -> str:
        total = self.quantized_params + self.kept_params
        share = 100.0 * self.quantized_params / max(total, 1)
        return (
            f"quantized {self.quantized_params:,} params in {len(self.quantized)} tensors "
            f"({share:.1f}%), kept FP32 {self.kept_params:,} params in {len(self.kept)} tensors"
        )
