"""Which tensors of a model are quantized, and which stay in full precision.

Default (docs/paper.md): weight tensors with 2 or more dimensions (linear and conv kernels) are
quantized; biases and normalization parameters stay FP32. Token/patch/position embeddings and the
classification head are kept FP32 by default (ASSUMED); both are name patterns in the config.

:class:`QuantPolicy`'s default patterns are timm ViT names (the workflow's models). For any other
model, :func:`policy_for` finds the same roles in the model itself: the first layer (a CNN's stem,
a ViT's patch embedding, a language model's embedding table), the classifier (timm's
``get_classifier()``, also a distilled model's pair of heads, a Hugging Face model's
``get_output_embeddings()`` or its ``classifier``: :func:`classifier_names`), embedding tables,
positional tables and tokens, and normalisation stay FP32; the weight of every other linear or
convolution layer is quantized.
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


def model_tensors(model: torch.nn.Module, keep_vars: bool = False) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` without the entries that are not tensors (a module's
    ``get_extra_state()``, which ``state_dict`` includes as it is) and with each tied tensor
    once (:func:`untied`): what members round, keep and replace."""
    state = model.state_dict(keep_vars=keep_vars)
    return untied({name: t for name, t in state.items() if isinstance(t, torch.Tensor)})


def untied(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with each tensor once: a name whose tensor is the same memory as an earlier
    name's (a tied weight: ``dec.weight = enc.weight``) is left out, so that it is rounded,
    stored and counted once; evaluations pass the first name and the model's tie carries it to
    the others (``lpe.evaluation.spine.run_with``)."""
    seen, out = set(), {}
    for name, t in state.items():
        key = (t.device, t.dtype, t.data_ptr(), tuple(t.shape), t.stride())
        if t.numel() and key in seen:
            continue
        seen.add(key)
        out[name] = t
    return out


def _layer_types() -> tuple[type, ...]:
    """Linear and convolution layers (and GPT-2's ``Conv1D``, a linear layer, when transformers
    is installed): the layers whose weight a policy by role quantizes."""
    types: list[type] = [torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d]
    try:
        from transformers.pytorch_utils import Conv1D

        types.append(Conv1D)
    except ImportError:  # transformers is optional for the library
        pass
    return tuple(types)


def transposed_weights(model: torch.nn.Module) -> frozenset[str]:
    """The weights ``model`` stores as (in, out), its output channels along dimension 1: GPT-2's
    ``Conv1D``. The members round them transposed, so that their scales are per output channel
    as for every other layer (one row per output channel: ``lpe.members.files.Member``)."""
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # transformers is optional for the library
        return frozenset()
    return frozenset(
        f"{name}.weight" if name else "weight"
        for name, module in model.named_modules()
        if isinstance(module, Conv1D)
    )


# Where models without timm's or Hugging Face's getters keep their classifier: Hugging Face image
# and sequence classifiers (``classifier``; GPT-2's ``score``), torchvision's ResNets (``fc``)
HEAD_ATTRIBUTES = ("classifier", "score", "fc", "head")


def classifier_names(model: torch.nn.Module) -> list[str]:
    """The module names of ``model``'s classifier(s): timm's ``get_classifier()`` (a module, or a
    tuple of them: a distilled DeiT's ``head`` and ``head_dist``), a Hugging Face model's
    ``get_output_embeddings()``, else the first of :data:`HEAD_ATTRIBUTES` the model has (a
    Hugging Face ``ViTForImageClassification`` has no output embeddings, only ``classifier``);
    empty when there is none."""
    names = {id(m): name for name, m in model.named_modules()}
    for getter in ("get_classifier", "get_output_embeddings"):
        head = getattr(model, getter, None)
        head = head() if callable(head) else None
        heads = head if isinstance(head, tuple | list) else (head,)
        found = [names[id(h)] for h in heads if _a_layer(h) and id(h) in names]
        if found:
            return found
    for attribute in HEAD_ATTRIBUTES:
        head = getattr(model, attribute, None)
        if _a_layer(head) and id(head) in names:
            return [names[id(head)]]
    return []


def _a_layer(module) -> bool:
    """A module with weights of its own or below it (not an Identity or an empty head)."""
    return isinstance(module, torch.nn.Module) and any(True for _ in module.parameters())


def policy_for(
    model: torch.nn.Module,
    keep: tuple[str, ...] | list[str] = (),
    quantize_head: bool = False,
    min_ndim: int = 2,
) -> QuantPolicy:
    """A policy by role for any model (see the module docstring): every tensor with at least
    ``min_ndim`` dimensions that is not the weight of a linear or convolution layer, the first
    such layer and the classifier (unless ``quantize_head``) stay FP32, and so does whatever
    matches a ``keep`` pattern (``fnmatch``, e.g. ``"blocks.11.*"``)."""
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, _layer_types())]
    quantizable = {f"{name}.weight" if name else "weight" for name, _ in layers}
    kept = [
        name
        for name, t in model_tensors(model).items()
        if t.dim() >= min_ndim and name not in quantizable
    ]
    # the first layer: a stem or patch embedding; a language model's is its embedding table
    tokens = any(isinstance(m, torch.nn.Embedding) for m in model.modules())
    roles = [layers[0][0]] if layers and not tokens else []
    if not quantize_head:
        roles += classifier_names(model)
    exclude = [*(f"{name}.*" for name in roles if name), *kept, *keep]
    return QuantPolicy(exclude=tuple(dict.fromkeys(exclude)), min_ndim=min_ndim)
