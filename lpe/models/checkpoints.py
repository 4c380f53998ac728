"""Trained checkpoints: FP32 weights plus what is needed to rebuild and account for the model.

A checkpoint is a safetensors file (loaded without code execution) whose metadata records the
model name, number of classes, input shape, training seed and the backward passes spent on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lpe.core.artifacts import ArtifactError, load_tensors, read_metadata, save_tensors

if TYPE_CHECKING:  # torch only in annotations: the report stages read headers without it
    import torch

CHECKPOINT_KIND = "lpe-checkpoint"


@dataclass(frozen=True)
class CheckpointInfo:
    model: str
    num_classes: int
    input_shape: tuple[int, ...]
    backward_passes: int
    sha256: str
    optimizer: str = "adamw"  # how the weights were obtained: adamw (training), sgd, swag, ivon

    def build(self) -> torch.nn.Module:
        """A fresh instance of the architecture (weights to be loaded by the caller)."""
        # imported here: timm costs seconds to import, and the generate stage never needs it
        from lpe.models.factory import create_model

        return create_model(self.model, self.num_classes, self.input_shape)


def save_checkpoint(path: str | Path, model: torch.nn.Module, info: dict) -> None:
    metadata = {"lpe_kind": CHECKPOINT_KIND, **{k: json.dumps(v) for k, v in info.items()}}
    save_tensors(path, model.state_dict(), metadata)


def _info(path: str | Path, meta: dict[str, str]) -> CheckpointInfo:
    if meta.get("lpe_kind") != CHECKPOINT_KIND:
        raise ArtifactError(f"{path} is not an LPE checkpoint (kind {meta.get('lpe_kind')!r}).")
    return CheckpointInfo(
        model=json.loads(meta["model"]),
        num_classes=json.loads(meta["num_classes"]),
        input_shape=tuple(json.loads(meta["input_shape"])),
        backward_passes=json.loads(meta["backward_passes"]),
        sha256=meta["lpe_sha256"],
        optimizer=json.loads(meta.get("optimizer", '"adamw"')),
    )


def checkpoint_info(path: str | Path) -> CheckpointInfo:
    """The checkpoint's description, read from its header only (no tensors loaded)."""
    return _info(path, read_metadata(path, "checkpoint"))


# The convergence gate. A model passes when it was trained to a plateau and not past its best:
# - plateau: its best validation NLL so far improved by less than GATE_TOLERANCE (relative) over
#   the last GATE_WINDOW of its epochs (still improving: under-trained);
# - not past its best: the last epoch's validation NLL is at most GATE_RISE (relative) above the
#   best epoch's. The checkpoint kept is the best epoch (lpe.training.pretraining), but a run whose
#   validation NLL rose by more has been trained into the region where one different rounding
#   moves the result most (vit_mini_s rose 6.3% at its end on one CPU, 0.8% on another, with the
#   same code and seeds). 5% is above the rises the mini profile's models show at their last
#   epochs (0-3%, docs/experiments.md) and below that one.
GATE_WINDOW = 0.2
GATE_TOLERANCE = 0.01
GATE_RISE = 0.05


def convergence_gain(curve: list[float]) -> float:
    """Relative improvement of the best validation NLL so far over the last ``GATE_WINDOW`` of the
    epochs.

    ``curve`` holds the validation NLL after each epoch. The window is at least one epoch; the
    improvement is measured from the best before the window to the best at the end (positive:
    still improving; never negative). A curve of fewer than two epochs has no window: NaN.
    """
    if len(curve) < 2:
        return float("nan")
    window = max(1, round(GATE_WINDOW * len(curve)))
    before = min(curve[: len(curve) - window]) if window < len(curve) else curve[0]
    return (before - min(curve)) / before


def rise_after_best(curve: list[float]) -> float:
    """How far the last epoch's validation NLL is above the best epoch's, relative (NaN: empty)."""
    if not curve:
        return float("nan")
    return (curve[-1] - min(curve)) / min(curve)


def convergence_gate(path: str | Path) -> tuple[float, float, bool]:
    """The checkpoint's :func:`convergence_gain`, :func:`rise_after_best` and whether it passes
    the gate (NaN fails)."""
    curve = validation_curve(path)
    gain, rise = convergence_gain(curve), rise_after_best(curve)
    return gain, rise, bool(gain < GATE_TOLERANCE and rise <= GATE_RISE)


def validation_curve(path: str | Path) -> list[float]:
    """The validation NLL after each training epoch (empty for a checkpoint not trained here)."""
    meta = read_metadata(path, "checkpoint")
    return json.loads(meta["val_nll_curve"]) if "val_nll_curve" in meta else []


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    """The checkpoint's state dict (checksum verified) and its description."""
    state, meta = load_tensors(path, "checkpoint")
    return state, _info(path, meta)
