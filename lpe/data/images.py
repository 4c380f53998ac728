"""Image-folder data for the paper profile and ``lpe.tools.apply``: ImageNet-style class folders.

The expected layout is torchvision's ``ImageFolder``: ``ROOT/<class>/<image>``, one folder per
class, named so that their sorted order is the model's class order (ImageNet-1k's WordNet ids
``n01440764 ... n15075141`` sort into the order timm's in1k heads use). Images are preprocessed
with the model's own timm data config (input size, crop, interpolation, mean and std), so every
checkpoint sees what it was trained on.

A missing folder, a folder without class subfolders or images, or a number of classes that does
not match the model's head stops with a message that names the path and the layout expected,
before any model is evaluated.

**Any subset of classes** (:func:`class_indices`): a folder may hold fewer classes than the model
has (a per-class study, a 10-class subset such as Imagenette, a quick check on a few images).
Each class folder's label is then the model's class index of its name: its ImageNet-1k index for
a WordNet id (timm's ImageNet information), or the index a class map gives (``--class-map``).
A folder that cannot be mapped stops with a one-line error naming it. A subset is never
relabelled 0..k-1.
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


def imagenet_wnids() -> list[str]:
    """ImageNet-1k's 1000 WordNet ids in the order of timm's in1k heads (timm's class info)."""
    from timm.data import ImageNetInfo

    return list(ImageNetInfo().label_names())


def read_class_map(path: str | Path) -> dict[str, int]:
    """A class map file: a JSON object ``{"folder": index}``, or one ``folder index`` pair a line
    (space, tab or comma between them; ``#`` starts a comment)."""
    import json

    text = Path(path).read_text()
    mapping = json.loads(text) if text.lstrip().startswith("{") else {}
    for number, line in enumerate([] if mapping else text.splitlines(), 1):
        fields = line.split("#")[0].replace(",", " ").split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            raise ImageFolderError(
                f"class map {path} line {number}: expected 'folder index', got {line.strip()!r}"
            )
        mapping[fields[0]] = int(fields[1])
    if not isinstance(mapping, dict) or not all(isinstance(v, int) for v in mapping.values()):
        raise ImageFolderError(f"class map {path}: expected folder names mapped to integers")
    return mapping


def class_indices(
    root: str | Path,
    classes: list[str],
    num_classes: int | None = None,
    class_map: dict[str, int] | None = None,
) -> list[int]:
    """The model's class index of each class folder of ``root`` (``classes``, sorted names).

    With a ``class_map``, each folder's entry; a folder it does not name takes its WordNet id's
    ImageNet-1k index (a 1000-class model), so a map lists only the folders that need it.
    Without, a folder holding as many classes as the model (or with no model given) is the
    model's class order (the sorted names), unless its names are a subset of ImageNet-1k's
    WordNet ids: those take their ImageNet-1k index. A folder with fewer classes than the model
    must be named by WordNet id (a 1000-class model) or mapped.
    """
    if class_map is not None:
        wnids = (
            {w: i for i, w in enumerate(imagenet_wnids())} if num_classes in (None, 1000) else {}
        )
        unmapped = [c for c in classes if c not in class_map and c not in wnids]
        if unmapped:
            raise ImageFolderError(
                f"image folder {root}: class folder {unmapped[0]!r} is not in "
                f"the class map ({len(unmapped)} unmapped) nor an ImageNet-1k "
                "WordNet id of a 1000-class model"
            )
        indices = [class_map[c] if c in class_map else wnids[c] for c in classes]
    else:
        wnids = {w: i for i, w in enumerate(imagenet_wnids())}
        subset = len(classes) < 1000 and all(c in wnids for c in classes)
        if subset and num_classes in (None, 1000):
            indices = [wnids[c] for c in classes]
        elif num_classes is None or len(classes) == num_classes:
            indices = list(range(len(classes)))
        else:
            unknown = next((c for c in classes if c not in wnids), classes[0])
            raise ImageFolderError(
                f"image folder {root} has {len(classes)} class folders but the model has "
                f"{num_classes} classes, and folder {unknown!r} is not an ImageNet-1k WordNet id "
                f"of a 1000-class model: name the folders by WordNet id or map them to the "
                f"model's classes with --class-map FILE (lines 'folder index'); {LAYOUT}"
            )
    if num_classes is not None and not all(0 <= i < num_classes for i in indices):
        bad = next(c for c, i in zip(classes, indices, strict=True) if not 0 <= i < num_classes)
        raise ImageFolderError(
            f"image folder {root}: class folder {bad!r} maps to a class the "
            f"model does not have (it has {num_classes})"
        )
    return indices


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

    from lpe.models.zeroshot import tower_name

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
    *,
    workers: int = 0,
    held_out: float = 0.0,
    part: str = "evaluated",
    class_map: dict[str, int] | None = None,
) -> DecodedImages:
    """Batches ``(images, labels)`` of ``root`` in a fixed order, preprocessed by ``transform``,
    decoded once into the image cache (``decoded_images``) and read from there after.

    ``limit`` keeps the first ``limit`` images of a seeded permutation (seed 0), so a quick run
    sees every class in proportion yet is the same each time. ``held_out`` in (0, 1) sets the
    first ``round(held_out * N)`` images of that permutation aside (a calibration split):
    ``part="held_out"`` gives those, ``part="evaluated"`` the others (``limit`` then keeps the
    first ``limit`` of them), so the two parts never share an image. ``.labels`` holds the labels
    in the batches' order: each folder's class index in the model (:func:`class_indices`; a
    subset of the model's classes keeps its true indices, through WordNet ids or ``class_map``).
    """
    from torchvision.datasets import ImageFolder

    if part not in ("evaluated", "held_out"):
        raise ValueError(f"part must be 'evaluated' or 'held_out', got {part!r}")
    if not 0 <= held_out < 1 or (part == "held_out" and not held_out):
        raise ValueError(f"held_out must be a fraction in (0, 1) for part {part!r}, got {held_out}")
    indices = class_indices(root, check_folder(root), num_classes, class_map)
    dataset = ImageFolder(str(root), transform=transform)
    labels = torch.as_tensor([indices[t] for t in dataset.targets], dtype=torch.long)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if limit is not None or held_out:
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))
        cut = round(held_out * len(dataset))
        if held_out and not 1 <= cut < len(dataset):
            raise ValueError(
                f"holding out {held_out:g} of the {len(dataset)} images of {root} leaves "
                f"{cut} to calibrate on and {len(dataset) - cut} to evaluate: both need one"
            )
        chosen = order[:cut] if part == "held_out" else order[cut:][:limit]
        dataset = torch.utils.data.Subset(dataset, chosen.tolist())
        labels = labels[chosen]
    return decoded_images(dataset, labels, transform, batch_size, workers)


# Decoded once, read by every member ---------------------------------------------------------
# Decoding and resizing 50k JPEGs costs more than a ViT forward on a GPU, and every member of
# every ensemble evaluates the same split. So a split is decoded once per data config into a
# uint8 file (N, 3, H, W) under the image cache, and each batch is normalised from it; the result
# is bit-identical to the eval transform (ToTensor's x / 255, then Normalize's (x - mean) / std,
# the same float32 operations in the same order; tested).

CACHE_ENV = "LPE_IMAGE_CACHE"


def image_cache_dir() -> Path:
    """Where decoded splits are kept: ``$LPE_IMAGE_CACHE``, else ``~/.cache/lpe/images``.
    A 224 x 224 split of 50,000 images takes 7.5 GB."""
    import os

    return Path(os.environ.get(CACHE_ENV, "~/.cache/lpe/images")).expanduser()


def split_transform(transform):
    """``(PIL operations, mean, std)`` of a timm eval transform ending in ToTensor, Normalize."""
    from torchvision import transforms as T

    steps = list(getattr(transform, "transforms", []))
    if len(steps) < 2 or not isinstance(steps[-1], T.Normalize):
        raise ValueError(f"not an eval transform ending in ToTensor + Normalize: {transform}")
    if type(steps[-2]).__name__ not in ("ToTensor", "MaybeToTensor"):
        raise ValueError(f"not an eval transform ending in ToTensor + Normalize: {transform}")
    mean = torch.as_tensor(steps[-1].mean, dtype=torch.float32).reshape(-1, 1, 1)
    std = torch.as_tensor(steps[-1].std, dtype=torch.float32).reshape(-1, 1, 1)
    return T.Compose([*steps[:-2], _to_uint8]), mean, std


def _to_uint8(image) -> torch.Tensor:
    import numpy as np

    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()


class DecodedImages:
    """A split's images decoded once (uint8, memory-mapped) and its labels; iterating yields
    ``(inputs, labels)`` batches exactly as a loader with the eval transform would."""

    def __init__(self, pixels, labels: torch.Tensor, mean, std, batch_size: int) -> None:
        self.pixels, self.labels = pixels, labels  # (N, 3, H, W) uint8, (N,)
        self.mean, self.std, self.batch_size = mean, std, batch_size

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self):
        import numpy as np

        for i in range(0, len(self.labels), self.batch_size):
            end = i + self.batch_size
            x = torch.from_numpy(np.array(self.pixels[i:end]))  # a copy: the map is read-only
            yield x.float().div(255).sub(self.mean).div(self.std), self.labels[i:end]


def decoded_images(
    dataset, labels, transform, batch_size: int = 64, workers: int = 0, *, cache: Path | None = None
) -> DecodedImages:
    """``dataset`` (an ImageFolder, or a Subset of one) decoded once with ``transform``'s PIL
    operations into the image cache, keyed by its files (paths, sizes, times) and the operations;
    a later call with the same files and operations reads the cached file."""
    import hashlib

    import numpy as np

    from lpe.core.artifacts import atomic_path

    pil_ops, mean, std = split_transform(transform)
    key = hashlib.sha256(repr(pil_ops).encode())
    for path in _sample_paths(dataset):
        path = Path(path).resolve()
        stat = path.stat()
        key.update(f"|{path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    target = (cache or image_cache_dir()) / f"{key.hexdigest()[:32]}.npy"
    if not target.is_file():
        decoding = copy_with_transform(dataset, pil_ops)
        loader = torch.utils.data.DataLoader(decoding, batch_size=64, num_workers=workers)
        first = decoding[0][0]
        with atomic_path(target, suffix=".npy") as tmp:
            pixels = np.lib.format.open_memmap(
                tmp, mode="w+", dtype=np.uint8, shape=(len(decoding), *first.shape)
            )
            position = 0
            for xb, _ in loader:
                pixels[position : position + len(xb)] = xb.numpy()
                position += len(xb)
            pixels.flush()
            del pixels
    pixels = np.load(target, mmap_mode="r")
    if len(pixels) != len(labels):
        raise ValueError(f"image cache {target} holds {len(pixels)} images, not {len(labels)}")
    return DecodedImages(pixels, labels, mean, std, batch_size)


def _sample_paths(dataset) -> list[str]:
    """The image files of an ImageFolder, or of (nested) Subsets of one, in the dataset's order."""
    if hasattr(dataset, "indices"):
        inner = _sample_paths(dataset.dataset)
        return [inner[i] for i in dataset.indices]
    return [path for path, _ in dataset.samples]


def copy_with_transform(dataset, transform):
    """The files of ``dataset`` (an ImageFolder or a Subset of one), read with ``transform``."""
    import copy

    if hasattr(dataset, "indices"):
        return torch.utils.data.Subset(
            copy_with_transform(dataset.dataset, transform), dataset.indices
        )
    out = copy.copy(dataset)
    out.transform = transform
    out.loader = NamedImageReader(dataset.loader)
    return out


class NamedImageReader:
    """An ImageFolder's image reader whose failure names the file (a truncated JPEG otherwise
    stops the decoding with PIL's "image file is truncated" and no path)."""

    def __init__(self, read) -> None:
        self.read = read

    def __call__(self, path):
        try:
            return self.read(path)
        except Exception as err:  # PIL's errors vary by format: any of them is this file's
            raise ImageFolderError(
                f"cannot read image {path} ({type(err).__name__}: {err}): remove or replace it "
                "and rerun (nothing was evaluated)"
            ) from err
