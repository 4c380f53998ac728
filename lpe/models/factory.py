"""Model registry: the mini profile's family of timm VisionTransformers (and any timm name).

The four models are T/S/B/L analogues of the paper's ViT-T/16 ... ViT-L/16, shrunk to fit a
2-core CPU. They take MNIST-1D as ``1 x 40`` images cut into ``1 x 4`` patches (10 tokens plus a
class token), and use the same timm module types (attention, MLP, LayerNorm) as the paper's ViTs,
so quantization follows the same code path and the same tensor names.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import torch

from lpe.models.timm_import import import_timm

VisionTransformer = import_timm().models.vision_transformer.VisionTransformer

MODELS: dict[str, Callable[..., torch.nn.Module]] = {}


def register_model(fn: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
    MODELS[fn.__name__] = fn
    return fn


def _mini_vit(embed_dim: int, depth: int, num_heads: int, num_classes: int, input_shape):
    channels, height, width = input_shape
    model = VisionTransformer(
        img_size=(height, width),
        patch_size=(1, 4),
        in_chans=channels,
        num_classes=num_classes,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=4.0,
        global_pool="token",
    )
    # Attention written out (q k^T, softmax, v) instead of torch's fused kernel: on the CPU, the
    # fused kernel's blocked code costs more than it saves on 11-token sequences (one training step
    # of vit_mini_l: 207 -> 188 ms, vit_mini_t 18.2 -> 16.8 ms, 1 thread, AVX2 pinned). Both are
    # the same attention; the written-out one is timm's own fallback path.
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False
    return model


@register_model
def vit_mini_t(num_classes: int = 10, input_shape=(1, 1, 40)) -> torch.nn.Module:
    """ViT-T analogue: width 24, depth 2, 2 heads (~15k parameters)."""
    return _mini_vit(24, 2, 2, num_classes, input_shape)


@register_model
def vit_mini_s(num_classes: int = 10, input_shape=(1, 1, 40)) -> torch.nn.Module:
    """ViT-S analogue: width 48, depth 3, 3 heads (~86k parameters)."""
    return _mini_vit(48, 3, 3, num_classes, input_shape)


@register_model
def vit_mini_b(num_classes: int = 10, input_shape=(1, 1, 40)) -> torch.nn.Module:
    """ViT-B analogue: width 80, depth 4, 4 heads (~0.3M parameters)."""
    return _mini_vit(80, 4, 4, num_classes, input_shape)


@register_model
def vit_mini_l(num_classes: int = 10, input_shape=(1, 1, 40)) -> torch.nn.Module:
    """ViT-L analogue: width 96, depth 6, 4 heads (~0.68M parameters)."""
    return _mini_vit(96, 6, 4, num_classes, input_shape)


def create_model(name: str, num_classes: int, input_shape, seed: int = 0) -> torch.nn.Module:
    """A freshly initialised model; the initialisation is drawn from ``seed``.

    timm's initialisers draw from torch's global generator (they take no generator argument), so
    the draw happens inside ``fork_rng``: seeded, and the caller's global state left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return keep_head_fp32(_create(name, num_classes, input_shape))


def _create(name: str, num_classes: int, input_shape) -> torch.nn.Module:
    if name in MODELS:
        return MODELS[name](num_classes=num_classes, input_shape=tuple(input_shape))
    from lpe.models import zeroshot

    if name.endswith(zeroshot.SUFFIX):  # a CLIP image tower with a zero-shot class head
        return zeroshot.build(name, num_classes)
    import timm  # the paper profile: a timm architecture, weights loaded by the caller

    if not timm.is_model(name.split(".")[0]):
        raise ValueError(
            f"unknown model {name!r}: neither registered ({', '.join(sorted(MODELS))}) "
            "nor a timm model"
        )
    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def keep_head_fp32(model: torch.nn.Module) -> torch.nn.Module:
    """Run ``model``'s classifier head (timm's ``get_classifier()``) in FP32 under autocast.

    bf16 forwards (``--dtype bfloat16``) would otherwise compute the logits, which the NLL reads
    to their tail, in bf16. Outside autocast nothing changes (an FP32 input is passed as is), so
    FP32 numbers stay bit-identical. The state dict keeps its names (the head is not wrapped).
    """
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if isinstance(head, torch.nn.Module) and not isinstance(head, torch.nn.Identity):
        head.forward = types.MethodType(_fp32_forward, head)
    return model


def _fp32_forward(self, x, *args, **kwargs):
    # a method bound to the head, so that deepcopy rebinds it to the copy
    with torch.autocast(x.device.type, enabled=False):
        return type(self).forward(self, x.float(), *args, **kwargs)


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def unknown_timm_model(name: str) -> str | None:
    """A message naming close timm names when timm does not know ``name``, else None."""
    import timm

    architecture = name.split(".")[0]
    if timm.is_model(architecture):
        return None
    import difflib

    close = difflib.get_close_matches(architecture, timm.list_models(), n=6, cutoff=0.6)
    if not close:  # nothing close: the family by its first word
        close = timm.list_models(f"*{architecture.split('_')[0]}*")[:6]
    return f"timm has no model {name!r}; close names: {', '.join(close) or 'none'}"
