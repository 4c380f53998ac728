"""Image-folder data for the paper profile and for ``lpe.apply``: ImageNet-style class folders.

The expected layout is torchvision's ``ImageFolder``: ``ROOT/<class>/<image>``, one folder per
class, named so that their sorted order is the model's class order (ImageNet-1k's WordNet ids
``n01440764 ... n15075141`` sort into the order timm's in1k heads use). Images are preprocessed
with the model's own timm data config (input size, crop, interpolation, mean and std), so every
checkpoint sees what it was trained on.

A missing folder, a folder without class subfolders or images, or a number of classes that does
not match the model's head stops with a message that names the path and the layout expected,
before any model is evaluated.
"""

from __future__ import annotations

from pathlib import Path

import torch

LAYOUT = (
    "expected ROOT/<class>/<image> with one folder per class (for ImageNet-1k validation: 1000 "
    "folders named by WordNet id, n01440764/ ... n15075141/, each holding that class's images)"
)


class ImageFolderError(ValueError):
    pass


def check_folder(root: str | Path, num_classes: int | None = None) -> list[str]:
    """The class folder names of ``root``, refusing a missing or malformed folder."""
    root = Path(root)
    if not root.is_dir():
        raise ImageFolderError(f"image folder {root} does not exist; {LAYOUT}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ImageFolderError(f"image folder {root} has no class subfolders; {LAYOUT}")
    empty = [c for c in classes if not any(f.is_file() for f in (root / c).iterdir())]
    if empty:
        raise ImageFolderError(
            f"image folder {root}: class folders without images: {empty[:5]}; {LAYOUT}"
        )
    if num_classes is not None and len(classes) != num_classes:
        raise ImageFolderError(
            f"image folder {root} has {len(classes)} class folders but the model has "
            f"{num_classes} classes; {LAYOUT}"
        )
    return classes


def model_transform(model: torch.nn.Module):
    """The eval preprocessing of ``model``'s timm data config."""
    from timm.data import create_transform, resolve_model_data_config

    config = resolve_model_data_config(model)
    # a model built with another img_size than its pretrained config's takes that size
    img_size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if img_size is not None:
        config["input_size"] = (config["input_size"][0], *img_size)
    return create_transform(**config, is_training=False)


def name_transform(name: str):
    """The eval preprocessing of timm model ``name``'s pretrained config, without building it."""
    from timm.data import create_transform

    return create_transform(**_name_data_config(name), is_training=False)


def train_transform(name: str):
    """The fine-tuning preprocessing of timm model ``name``: timm's training transform for its
    data config (random resized crop, horizontal flip), without colour jitter (ASSUMED)."""
    from timm.data import create_transform

    return create_transform(**_name_data_config(name), is_training=True, color_jitter=None)


def _name_data_config(name: str) -> dict:
    from timm.data import resolve_data_config
    from timm.models import get_pretrained_cfg

    from lpe.zeroshot import tower_name

    pretrained = get_pretrained_cfg(tower_name(name))
    if pretrained is None:
        raise ValueError(f"timm has no pretrained config for {name!r} (no data config known)")
    return resolve_data_config(pretrained_cfg=pretrained.to_dict())


def image_loader(
    root: str | Path,
    transform,
    num_classes: int | None = None,
    batch_size: int = 64,
    limit: int | None = None,
    workers: int = 0,
) -> torch.utils.data.DataLoader:
    """Batches ``(images, labels)`` of ``root`` in a fixed order, preprocessed by ``transform``.

    ``limit`` keeps the first ``limit`` images of a seeded permutation (seed 0), so a quick run
    sees every class in proportion yet is the same each time. ``loader.labels`` holds the labels
    in the loader's order.
    """
    from torchvision.datasets import ImageFolder

    check_folder(root, num_classes)
    dataset = ImageFolder(str(root), transform=transform)
    labels = torch.as_tensor(dataset.targets)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))
        dataset = torch.utils.data.Subset(dataset, order[:limit].tolist())
        labels = labels[order[:limit]]
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers
    )
    loader.labels = labels
    return loader
