"""Which OpenCLIP training run each timm CLIP image tower comes from (no torch import: the
workflow's config check reads it).

A zero-shot head is made by a text tower, and it only lines up with an image tower of the same
training run: another run's text embeddings live in another space, and zero-shot accuracy falls
to chance. timm's CLIP towers are converted OpenCLIP/OpenAI weights (their model cards name the
run), so each tower here is paired with the OpenCLIP ``[architecture, pretrained tag]`` of that
run. OpenAI's CLIP was trained with QuickGELU: timm's plain ``*_clip_224.openai`` towers build
``nn.GELU`` ("natively QuickGELU, use quickgelu model variant for original results", timm's
note), so only the ``*_clip_quickgelu_224`` variants reproduce OpenAI's image embeddings.
``tests/models/test_zeroshot.py`` checks every pair numerically (random OpenCLIP weights copied into
the timm tower give OpenCLIP's image embedding).
"""

from __future__ import annotations

# Suffix of a CLIP image tower used as a zero-shot classifier (lpe.models.zeroshot), e.g.
# vit_large_patch14_clip_quickgelu_224.openai+zeroshot.
ZEROSHOT_SUFFIX = "+zeroshot"

# timm tower -> (OpenCLIP architecture, pretrained tag) of the run it was converted from
OPENCLIP_RUNS = {
    "vit_base_patch32_clip_quickgelu_224.openai": ("ViT-B-32-quickgelu", "openai"),
    "vit_base_patch16_clip_quickgelu_224.openai": ("ViT-B-16-quickgelu", "openai"),
    "vit_large_patch14_clip_quickgelu_224.openai": ("ViT-L-14-quickgelu", "openai"),
    "vit_giant_patch14_clip_224.laion2b": ("ViT-g-14", "laion2b_s12b_b42k"),
    "vit_gigantic_patch14_clip_224.laion2b": ("ViT-bigG-14", "laion2b_s39b_b160k"),
}
# GELU towers of runs trained with QuickGELU -> the variant that reproduces them
QUICKGELU_VARIANTS = {
    "vit_base_patch32_clip_224.openai": "vit_base_patch32_clip_quickgelu_224.openai",
    "vit_base_patch16_clip_224.openai": "vit_base_patch16_clip_quickgelu_224.openai",
    "vit_large_patch14_clip_224.openai": "vit_large_patch14_clip_quickgelu_224.openai",
}


def pairing_problems(key: str, tower: str, openclip: list | tuple | None) -> list[str]:
    """What is wrong with zero-shot tower ``tower`` and its text tower ``openclip``; ``key``
    names the config entry in the messages."""
    if tower in QUICKGELU_VARIANTS:
        return [
            f"{key}: {tower} runs GELU, but its weights were trained with QuickGELU (its image "
            f"embeddings would be wrong): use {QUICKGELU_VARIANTS[tower]}"
        ]
    known = OPENCLIP_RUNS.get(tower)
    if known is not None and openclip is not None and tuple(openclip)[1] != known[1]:
        return [
            f"'checkpoints.openclip.{tower}' = {list(openclip)} is the text tower of another "
            f"training run than the image tower's: use {list(known)}"
        ]
    return []
