"""Data sets: a registry of builders, and split files (save, load, check).

A builder returns float32 inputs shaped like images ``(N, 1, H, W)`` and int64 labels ``(N,)``
for the train, validation and test splits. The mini profile's MNIST-1D is generated locally by
the ``mnist1d`` package (no download): 40-sample signals become ``1 x 40`` images. A split file
is one ``.npz``, written by the ``data`` stage and read by every stage that trains or predicts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lpe.core.artifacts import ArtifactError, write_with

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Splits:
    """Inputs ``(N, 1, H, W)`` float32 and labels ``(N,)`` int64 per split."""

    x: dict[str, torch.Tensor]
    y: dict[str, torch.Tensor]
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x["train"].shape[1:])


DATASETS: dict[str, Callable[..., Splits]] = {}


def register_dataset(fn: Callable[..., Splits]) -> Callable[..., Splits]:
    DATASETS[fn.__name__] = fn
    return fn


@register_dataset
def mnist1d(train: int, val: int, test: int, seed: int) -> Splits:
    """MNIST-1D (Greydanus 2020) with the package's default transforms, generated from ``seed``.

    ``mnist1d.data.make_dataset`` seeds numpy's and Python's global generators itself (it has no
    generator argument); this stage runs in its own process, so nothing else depends on them.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    total = train + val + test
    args = get_dataset_args()
    # make_dataset draws num_samples // 10 examples per class: round up to a multiple of 10
    args.num_samples = -(-total // 10) * 10
    args.train_split = 1.0  # we split ourselves below
    args.seed = seed
    data = make_dataset(args)
    x = torch.from_numpy(np.asarray(data["x"], dtype=np.float32))[:total]  # (N, 40)
    y = torch.from_numpy(np.asarray(data["y"], dtype=np.int64))[:total]
    x = x[:, None, None, :]  # (N, 40) -> (N, 1, 1, 40): a one-pixel-high grey image
    bounds = np.cumsum([0, train, val, test])
    return Splits(
        x={s: x[bounds[i] : bounds[i + 1]] for i, s in enumerate(SPLITS)},
        y={s: y[bounds[i] : bounds[i + 1]] for i, s in enumerate(SPLITS)},
        num_classes=10,
    )


def build(name: str, **sizes) -> Splits:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; registered: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](**sizes)


def save_splits(path: str | Path, splits: Splits) -> None:
    arrays = {f"x_{s}": splits.x[s].numpy() for s in SPLITS}
    arrays.update({f"y_{s}": splits.y[s].numpy() for s in SPLITS})
    arrays["num_classes"] = np.asarray(splits.num_classes)
    write_with(path, lambda tmp: np.savez(tmp, **arrays), suffix=".npz")


def load_splits(path: str | Path) -> Splits:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"data file not found: {path}. Run the workflow's data rule.")
    try:
        with np.load(path, allow_pickle=False) as f:
            x = {s: torch.from_numpy(f[f"x_{s}"]) for s in SPLITS}
            y = {s: torch.from_numpy(f[f"y_{s}"]) for s in SPLITS}
            num_classes = int(f["num_classes"])
    except Exception as err:
        raise ArtifactError(
            f"data file {path} is truncated or corrupted ({err}); delete it and rerun."
        ) from err
    problems = split_problems(x, y, num_classes)
    if problems:
        raise ArtifactError(f"data file {path}: " + "; ".join(problems))
    return Splits(x=x, y=y, num_classes=num_classes)


def split_problems(x: dict, y: dict, num_classes: int) -> list[str]:
    """What is wrong with a data file's arrays: dtypes, shapes, label counts and ranges."""
    problems = [] if num_classes >= 2 else [f"num_classes is {num_classes}, not >= 2"]
    shapes = {s: tuple(x[s].shape[1:]) for s in SPLITS}
    for s in SPLITS:
        if x[s].dtype != torch.float32 or x[s].dim() < 2:
            problems.append(
                f"x_{s} is {x[s].dtype} of shape {tuple(x[s].shape)}; expected float32 (N, ...)"
            )
        elif not torch.isfinite(x[s]).all():
            problems.append(f"x_{s} holds non-finite values")
        if shapes[s] != shapes["train"]:
            problems.append(f"x_{s} examples are {shapes[s]}, x_train's {shapes['train']}")
        if y[s].dtype != torch.int64 or y[s].shape != (len(x[s]),):
            problems.append(
                f"y_{s} is {y[s].dtype} of shape {tuple(y[s].shape)}; expected "
                f"int64 ({len(x[s])},), one label per example"
            )
        elif len(y[s]) and not (0 <= int(y[s].min()) and int(y[s].max()) < num_classes):
            problems.append(
                f"y_{s} has labels outside 0..{num_classes - 1} "
                f"({int(y[s].min())}..{int(y[s].max())})"
            )
    return problems


def require_match(path, splits: Splits, input_shape, num_classes: int, checkpoint="") -> None:
    """The data file fits the model: same example shape and number of classes."""
    expected, actual = tuple(input_shape), splits.input_shape
    if actual != expected or splits.num_classes != num_classes:
        raise ArtifactError(
            f"data file {path} holds examples of shape {actual} in {splits.num_classes} classes; "
            f"the model{f' {checkpoint}' if checkpoint else ''} takes {expected} in "
            f"{num_classes} classes"
        )
