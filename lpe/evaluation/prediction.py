"""Predictions of members and models: streamed evaluation (the forward passes).

Members are evaluated one at a time through a single model instance (the forward of
``lpe.evaluation.ensemble``): only one member's weights are alive at once besides that instance.
What the stages write from them is ``lpe.evaluation.predictions_file``'s.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from lpe.core.jobs import setting
from lpe.core.runtime import Inference
from lpe.data.datasets import SPLITS
from lpe.data.inputs import StageData
from lpe.evaluation.ensemble import log_softmax_of, member_weights, run_with
from lpe.members.files import Member
from lpe.members.sets import folder_members
from lpe.models.checkpoints import checkpoint_info, load_checkpoint
from lpe.models.factory import count_params


def batches(x, batch_size: int):
    """Input batches of a tensor (sliced) or of a loader of ``(inputs, labels)`` (image folders)."""
    if isinstance(x, torch.Tensor):
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size]
    else:
        for xb, _ in x:
            yield xb


def evaluates_test(split: str) -> bool:
    """Whether a stage evaluating ``split`` also predicts the calibration split: the test split's
    temperature-scaling control (the selection split cannot calibrate itself)."""
    return split == "test"


CALIBRATE_HELP = (
    "also predict the data's selection split (validation; an image folder's holdout, see "
    "--holdout), on which lpe.stages.score fits each run's temperature"
)


@dataclass(frozen=True, kw_only=True)
class Evaluation(StageData, Inference):
    """The job part of the stages that evaluate on a data split (the config's ``predict`` keys)."""

    split: str = setting("test", "the split evaluated", config="predict.split", choices=SPLITS)
    batch_size: int = setting(1000, "examples per forward pass")

    def inputs(self, info):
        """``(inputs, labels)`` of the evaluated split: tensors of a data file, or a loader of an
        image folder (preprocessed with the checkpoint's timm data config, streamed in batches)."""
        return self.open(info).inputs(self.split, self.batch_size)


@dataclass(frozen=True, kw_only=True)
class Calibrated(Evaluation):
    """The job part of the stages behind Tables 1, 5 and 6: the evaluated split as the
    temperature-scaling control (evaluating the test split also predicts the selection split,
    where the temperatures are fit; the selection split cannot calibrate itself)."""

    calibrate: bool = setting(
        False, CALIBRATE_HELP, config="predict.split", from_config=evaluates_test
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.calibrate and not evaluates_test(self.split):
            raise ValueError("calibrate fits on the selection split: evaluate the test split")

    def inputs_and_calibration(self, info):
        """``((inputs, labels), (calibration inputs, labels))``, the data opened once: the
        evaluated split, and the data's selection split (the validation split of a data file, the
        holdout of an image folder; never the test split) or ``(None, None)`` without
        ``calibrate``."""
        data = self.open(info)
        evaluated = data.inputs(self.split, self.batch_size)
        if not self.calibrate:
            return evaluated, (None, None)
        return evaluated, data.inputs(data.selection_split, self.batch_size)


@torch.inference_mode()
def predict_log_probs(
    model: torch.nn.Module,
    x: torch.Tensor,
    batch_size: int,
    device: torch.device,
    eval_mode: bool = True,
    *,
    weights: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``(N, ...) -> (N, C)`` float32 log-softmax of ``model``, on the CPU; with ``weights``
    (``lpe.evaluation.ensemble.member_weights``), of the model run with those weights instead of
    its own.

    In eval mode by default; ``eval_mode=False`` keeps the modules' modes as the caller set them
    (MC dropout keeps its dropout modules in train mode).
    """
    was_training = model.training
    if eval_mode:
        model.eval()

    def forward(xb):
        if weights is None:
            return model(xb)
        return run_with(model, weights, xb)

    out = [log_softmax_of(forward(xb.to(device))).cpu() for xb in batches(x, batch_size)]
    if eval_mode:
        model.train(was_training)
    return torch.cat(out)


def timed_log_probs(model, x, batch_size: int, device, eval_mode: bool = True, *, weights=None):
    """:func:`predict_log_probs` and its wall time in seconds (the device synchronised)."""
    start = time.perf_counter()
    log_probs = predict_log_probs(model, x, batch_size, device, eval_mode, weights=weights)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return log_probs, time.perf_counter() - start


class Evaluated(NamedTuple):
    """What evaluating M members gives: their log-probs ``(M, N, C)``, bits and forward seconds
    on the evaluated split, and their log-probs on the calibration split (None if not asked)."""

    log_probs: torch.Tensor
    bits: list[int]
    seconds: list[float]
    calibration: torch.Tensor | None = None


# Members per batched call ("auto"): measured with benchmarks/ensemble_eval.py on a 2-core CPU,
# batching members with torch.func was slower than one at a time for every mini model (the forward
# is compute-bound there, and stacking multiplies the activations), so the CPU evaluates one at a
# time. On CUDA small models are launch-bound and batching is the usual win; that choice is not
# measured on this project's machine.
CUDA_BATCH_MAX_PARAMS = 2_000_000


CUDA_BATCH_MEMBERS = 8


def auto_members_per_call(model: torch.nn.Module, device: torch.device) -> int:
    if device.type == "cuda" and count_params(model) <= CUDA_BATCH_MAX_PARAMS:
        return CUDA_BATCH_MEMBERS
    return 1


def _unfuse_attention(model: torch.nn.Module) -> None:
    # timm's fused attention calls scaled_dot_product_attention, which has no vmap batching rule
    # (torch falls back to a per-member loop and warns); the explicit softmax(q k^T) v batches.
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False


@torch.inference_mode()
def predict_log_probs_batched(
    model: torch.nn.Module,
    states: list[dict[str, torch.Tensor]],
    x: torch.Tensor,
    batch_size: int,
    device: torch.device,
) -> torch.Tensor:
    """``(K, N, C)`` log-softmax of K weight sets in one vmapped call per input batch.

    ``model`` only supplies the architecture (``torch.func.functional_call``); it is not modified
    apart from switching its attention to the explicit form.
    """
    _unfuse_attention(model)
    model.eval()
    stacked = {n: torch.stack([s[n] for s in states]).to(device) for n in states[0]}

    def forward(params, xb):
        return torch.func.functional_call(model, params, (xb,))

    batched = torch.vmap(forward, in_dims=(0, None))
    out = [
        torch.log_softmax(batched(stacked, xb.to(device)).float(), -1).cpu()
        for xb in batches(x, batch_size)
    ]
    return torch.cat(out, dim=1)


def evaluate_members(
    model: torch.nn.Module,
    members: Iterable[Member],
    x: torch.Tensor,
    batch_size: int,
    device: torch.device,
    *,
    members_per_call: int | str = "auto",
    calibration_x=None,
) -> Evaluated:
    """Stream ``members`` through ``model`` on ``x`` (and on ``calibration_x`` when given).

    With one member per call (the CPU default) each member runs through ``model`` with its own
    weights (``lpe.evaluation.ensemble.member_weights``, the forward of ``LowPrecisionEnsemble``),
    so memory holds one model plus one member, never M models.
    With K > 1, K members are dequantized and evaluated in one batched call (each member is
    charged 1/K of the call's time).
    """
    if members_per_call == "auto":
        members_per_call = auto_members_per_call(model, device)
    if not isinstance(members_per_call, int) or members_per_call < 1:
        raise ValueError(f"members_per_call must be 'auto' or >= 1, got {members_per_call!r}")
    log_probs, calibration, bits, seconds, pending = [], [], [], [], []

    def flush():
        start = time.perf_counter()
        log_probs.append(predict_log_probs_batched(model, pending, x, batch_size, device))
        seconds.extend([(time.perf_counter() - start) / len(pending)] * len(pending))
        if calibration_x is not None:
            calibration.append(
                predict_log_probs_batched(model, pending, calibration_x, batch_size, device)
            )
        pending.clear()

    for member in members:
        bits.append(member.bits)
        if members_per_call == 1:
            weights = member_weights(model, member)
        else:
            pending.append(member.state_dict())
        del member  # freed before the next one is read: at most one member alive
        if members_per_call == 1:
            lp, took = timed_log_probs(model, x, batch_size, device, weights=weights)
            log_probs.append(lp[None])
            seconds.append(took)
            if calibration_x is not None:
                lp = predict_log_probs(model, calibration_x, batch_size, device, weights=weights)
                calibration.append(lp[None])
            del weights
        elif len(pending) == members_per_call:
            flush()
    if pending:
        flush()
    return Evaluated(
        torch.cat(log_probs), bits, seconds, torch.cat(calibration) if calibration else None
    )


def predict_members(
    checkpoint, members_dir, x, batch_size, device, *, members_per_call="auto", calibration_x=None
):
    """Evaluate each member of ``members_dir`` in turn (read or decoded lazily, one at a time;
    ``lpe.members.sets.folder_members``).

    Returns the :class:`Evaluated` members (bits as an int64 array), the manifest and the
    checkpoint info.
    """
    info = checkpoint_info(checkpoint)
    progress = f"predict {Path(members_dir).name}"
    manifest, members = folder_members(members_dir, checkpoint, info.sha256, progress)
    model = info.build().to(device)  # the one instance every member is loaded into
    done = evaluate_members(
        model,
        members,
        x,
        batch_size,
        device,
        members_per_call=members_per_call,
        calibration_x=calibration_x,
    )
    return done._replace(bits=np.asarray(done.bits, dtype=np.int64)), manifest, info


def predict_fp32(checkpoint, x, batch_size, device, calibration_x=None):
    """The FP32 model of ``checkpoint`` as one :class:`Evaluated` member, and its info."""
    state, info = load_checkpoint(checkpoint)
    model = info.build().to(device)
    model.load_state_dict(state, strict=True)
    bits = sum(32 * t.numel() for t in state.values())
    log_probs, took = timed_log_probs(model, x, batch_size, device)
    calibration = None
    if calibration_x is not None:
        calibration = predict_log_probs(model, calibration_x, batch_size, device)[None]
    return Evaluated(log_probs[None], np.asarray([bits]), [took], calibration), info
