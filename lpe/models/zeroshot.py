"""CLIP as a zero-shot ImageNet classifier: a timm image tower with a text-derived class head.

The paper's large image models (Table 3, Figure 7, Table 6) are CLIP image towers used as
zero-shot classifiers (ASSUMED, see docs/paper.md). The model here is timm's CLIP image tower
(``vit_large_patch14_clip_quickgelu_224.openai``, whose ``head`` is CLIP's visual projection)
with that head replaced by :class:`ZeroShotHead`: the projection, L2 normalisation, and the
similarity to each class's text embedding times CLIP's logit scale. The class embeddings come
from OpenCLIP's text tower of the same training run (``lpe.models.clip_towers``), averaged over the
prompt templates of CLIP's ImageNet evaluation (``open_clip.OPENAI_IMAGENET_TEMPLATES``,
``open_clip.IMAGENET_CLASSNAMES``).

Everything under ``head.`` (projection and class embeddings) stays FP32 under the suite's
quantization policy; the transformer blocks of the image tower are quantized. In the suite a
zero-shot model is named ``<timm tower>+zeroshot``; ``lpe.models.factory.create_model`` rebuilds it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lpe.models.clip_towers import ZEROSHOT_SUFFIX

SUFFIX = ZEROSHOT_SUFFIX


class ZeroShotHead(nn.Module):
    """``logits = scale * normalize(proj(x)) @ classes.T`` with ``classes`` unit rows."""

    def __init__(self, proj: nn.Module, classes: torch.Tensor, scale: float) -> None:
        super().__init__()
        self.proj = proj
        self.register_buffer("classes", classes.detach().clone().float())  # (C, dim)
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = nn.functional.normalize(self.proj(x), dim=-1)
        return self.scale * features @ self.classes.T


def tower_name(name: str) -> str:
    return name.removesuffix(SUFFIX)


def zeroshot_model(tower: nn.Module, classes: torch.Tensor, scale: float) -> nn.Module:
    """Put a zero-shot head of ``classes`` (C, dim) on a timm CLIP image ``tower``, in place."""
    if classes.shape[1] != tower.num_classes:
        raise ValueError(
            f"class embeddings of width {classes.shape[1]} do not match the tower's projection "
            f"width {tower.num_classes}"
        )
    tower.head = ZeroShotHead(tower.head, classes, scale)
    tower.num_classes = classes.shape[0]
    return tower


def build(name: str, num_classes: int) -> nn.Module:
    """The architecture of zero-shot model ``name`` (weights and class embeddings to be loaded)."""
    import timm

    tower = timm.create_model(tower_name(name), pretrained=False)
    return zeroshot_model(tower, torch.zeros(num_classes, tower.num_classes), 1.0)


@torch.inference_mode()
def class_embeddings(
    clip_model,
    tokenizer,
    classnames: Sequence[str],
    templates: Sequence[str],
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``(C, dim)`` unit class embeddings: text embeddings averaged over templates.

    Uses OpenCLIP's own ``build_zero_shot_classifier`` (mean of the normalised template
    embeddings, renormalised) and returns it class-major.
    """
    import open_clip

    # 80 templates per class: 4,000 prompts per batch on a GPU, 800 on the CPU
    per_batch = 50 if torch.device(device).type == "cuda" else 10
    weights = open_clip.build_zero_shot_classifier(
        clip_model,
        tokenizer,
        classnames,
        templates,
        num_classes_per_batch=per_batch,
        device=device,
    )  # (dim, C)
    return weights.T.float().cpu()


def fetch_zeroshot(name: str, openclip: Sequence[str], cache) -> nn.Module:
    """Download the timm tower and the OpenCLIP text tower, and build the zero-shot model."""
    import open_clip
    import timm

    arch, pretrained = openclip
    tower = timm.create_model(tower_name(name), pretrained=True, cache_dir=str(cache))
    clip_model, _, _ = open_clip.create_model_and_transforms(
        arch, pretrained=pretrained, cache_dir=str(cache)
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    clip_model = clip_model.to(device).eval()
    classes = class_embeddings(
        clip_model,
        open_clip.get_tokenizer(arch),
        open_clip.IMAGENET_CLASSNAMES,
        open_clip.OPENAI_IMAGENET_TEMPLATES,
        device,
    )
    return zeroshot_model(tower, classes, float(clip_model.logit_scale.exp()))
