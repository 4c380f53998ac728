"""Where a stage's examples come from: a data file's tensors (mini) or an image folder (paper).

``open_data(path, model_name, num_classes)`` returns one of two classes with the same uses, so
that fine-tuning, posterior draws, landscapes, baselines and fast ensembles run unchanged on
either:

- ``train_size`` and ``train_batches(batch_size, order, device, skip=0)``: one epoch of shuffled
  training minibatches, the order drawn from the generator ``order`` (``skip``: leave out the
  first batches, for a resumed epoch);
- ``inputs(split, batch_size)``: ``(inputs, labels)`` of an evaluation split, the inputs a tensor
  or a loader of batches (both work with ``lpe.evaluation.spine.predict_log_probs``);
- ``tensors(split, limit)``: the first ``limit`` examples of a split as tensors (landscapes);
- ``selection_split``: the split settings are chosen on and runs are watched on (never the test).

An image folder holds one folder per split, ``ROOT/train/<class>/...`` and ``ROOT/val/<class>/...``
(ImageNet-1k). ImageNet has no labelled test split, so ``ROOT/val`` is the evaluation split and
cannot also choose settings: the selection split of an image folder, ``holdout``, is ``holdout``
images of ``ROOT/train`` drawn with seed 0, taken out of the training set. Training images get
timm's training transform for the model (random resized crop and flip, no colour jitter; ASSUMED
fine-tuning augmentation); every other image the model's eval transform.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from lpe.core.jobs import Job, setting
from lpe.data.datasets import load_splits, require_match

HOLDOUT = "holdout"
DEFAULT_HOLDOUT = 10_000  # ImageNet-1k: 10 training images per class (ASSUMED)


def is_image_folder(path) -> bool:
    return Path(path).is_dir() or not str(path).endswith(".npz")


def open_data(
    path,
    model_name: str,
    num_classes: int,
    holdout: int = DEFAULT_HOLDOUT,
    workers: int = 0,
    *,
    input_shape=None,
):
    """The examples at ``path`` for the model ``model_name`` (its transforms, its classes).

    A data file is checked up front against the model (``input_shape``, when given, and
    ``num_classes``), so a mismatch names the file instead of failing inside a forward pass.
    """
    if is_image_folder(path):
        return ImageData(path, model_name, num_classes, holdout, workers)
    splits = load_splits(path)
    require_match(path, splits, input_shape or splits.input_shape, num_classes, model_name)
    return TensorData(splits)


@dataclass(frozen=True, kw_only=True)
class StageData(Job):
    """The job part of the stages that read examples: the data and, for an image folder, its
    holdout (the config's ``dataset.holdout``) and image-loading processes."""

    data: str = setting(help="a data file (mini) or an image folder")
    holdout: int = setting(
        DEFAULT_HOLDOUT,
        "image folder: training images held out (the selection split)",
        config="dataset.holdout",
    )
    workers: int = setting(0, "image folder: processes decoding images (0: in the main one)")

    def open(self, info):
        """The examples of ``data`` for the checkpoint ``info`` (``open_data``)."""
        return open_data(
            self.data,
            info.model,
            info.num_classes,
            self.holdout,
            self.workers,
            input_shape=info.input_shape,
        )


def minibatches(x, y, batch_size: int, order: torch.Generator, device, *, skip: int = 0):
    """One epoch of ``(inputs, labels)`` minibatches, in a permutation drawn from ``order``;
    ``skip`` leaves out the first batches (a resumed epoch: the same draw, then the rest)."""
    permutation = torch.randperm(len(y), generator=order)
    for start in range(skip * batch_size, len(y), batch_size):
        idx = permutation[start : start + batch_size]
        yield x[idx].to(device), y[idx].to(device)


class TensorData:
    """The train, val and test tensors of a data file (``lpe.stages.data``)."""

    selection_split = "val"

    def __init__(self, splits) -> None:
        self.splits = splits

    @property
    def train_size(self) -> int:
        return len(self.splits.y["train"])

    def train_batches(self, batch_size: int, order: torch.Generator, device, skip: int = 0):
        yield from minibatches(
            self.splits.x["train"], self.splits.y["train"], batch_size, order, device, skip=skip
        )

    def inputs(self, split: str, batch_size: int = 1000):
        return self.splits.x[split], self.splits.y[split]

    def tensors(self, split: str, limit: int):
        return self.splits.x[split][:limit], self.splits.y[split][:limit]


class ImageData:
    """An ImageNet-style folder; the training set and its holdout are opened only when used."""

    selection_split = HOLDOUT

    def __init__(self, root, model_name: str, num_classes: int, holdout: int, workers: int):
        self.root = Path(root)
        self.model_name = model_name
        self.num_classes = num_classes
        self.holdout = holdout
        self.workers = workers

    @cached_property
    def _eval_transform(self):
        from lpe.data.images import name_transform

        return name_transform(self.model_name)

    @cached_property
    def _train_folder(self):
        """The training folder (train transform) and the indices of its holdout and the rest."""
        from torchvision.datasets import ImageFolder

        from lpe.data.images import ImageFolderError, check_folder, class_indices, train_transform

        root = self.root / "train"
        indices = class_indices(root, check_folder(root), self.num_classes)
        folder = ImageFolder(str(root), transform=train_transform(self.model_name))
        # a subset of the model's classes (Imagenette's 10 of ImageNet-1k) keeps its true labels
        folder.samples = [(path, indices[target]) for path, target in folder.samples]
        folder.targets = [indices[target] for target in folder.targets]
        if not 0 < self.holdout < len(folder):
            raise ImageFolderError(
                f"{self.root / 'train'} has {len(folder)} images: the holdout of {self.holdout} "
                "must leave some for training (set dataset.holdout)"
            )
        order = torch.randperm(len(folder), generator=torch.Generator().manual_seed(0))
        return folder, order[: self.holdout], order[self.holdout :]

    @property
    def train_size(self) -> int:
        return len(self._train_folder[2])

    def train_batches(self, batch_size: int, order: torch.Generator, device, skip: int = 0):
        folder, _, train = self._train_folder
        epoch_seed = int(torch.randint(2**31, (), generator=order))
        permutation = torch.randperm(len(train), generator=order)
        loader = torch.utils.data.DataLoader(
            SeededAugmentation(folder, train.tolist(), epoch_seed),
            batch_size=batch_size,
            sampler=permutation[skip * batch_size :].tolist(),
            num_workers=self.workers,
            pin_memory=device.type == "cuda",
        )
        for xb, yb in loader:
            yield xb.to(device, non_blocking=True), yb.to(device)

    def _holdout_set(self):
        folder, holdout, _ = self._train_folder
        evaluated = copy.copy(folder)  # same file list, eval transform
        evaluated.transform = self._eval_transform
        labels = torch.as_tensor(folder.targets)[holdout]
        return torch.utils.data.Subset(evaluated, holdout.tolist()), labels

    def inputs(self, split: str, batch_size: int = 64, limit: int | None = None):
        from lpe.data.images import decoded_images, image_loader

        if split != HOLDOUT:
            loader = image_loader(
                self.root / split,
                self._eval_transform,
                self.num_classes,
                batch_size,
                limit=limit,
                workers=self.workers,
            )
            return loader, loader.labels
        dataset, labels = self._holdout_set()
        if limit is not None:
            dataset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
            labels = labels[:limit]
        # decoded once: fine-tuning watches the holdout every epoch, baselines per candidate
        images = decoded_images(dataset, labels, self._eval_transform, batch_size, self.workers)
        return images, labels

    def tensors(self, split: str, limit: int):
        loader, labels = self.inputs(split, limit=limit)
        return torch.cat([xb for xb, _ in loader]), labels


class SeededAugmentation(torch.utils.data.Dataset):
    """``folder[indices[i]]`` with its random augmentation seeded by ``(seed, i)``.

    timm's random resized crop draws from Python's ``random``, the flip from torch's global
    generator; both are seeded per image here and restored after, so the crops are the same
    whatever the number of loading processes and the caller's random state is left untouched.
    """

    def __init__(self, folder, indices: list[int], seed: int) -> None:
        self.folder, self.indices, self.seed = folder, indices, seed

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        python_state = random.getstate()
        try:
            with torch.random.fork_rng(devices=[]):
                seed = self.seed * 1_000_003 + i
                random.seed(seed)
                torch.manual_seed(seed)
                return self.folder[self.indices[i]]
        finally:
            random.setstate(python_state)
