"""Predictions of members and models for the stages: the job parts that say what is evaluated
(:class:`Evaluation`, :class:`Calibrated`), and a member folder or a checkpoint evaluated through
the evaluation spine (``lpe.evaluation.spine``: one model instance, one member alive at a time).
What the stages write from them is ``lpe.evaluation.predictions_file``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lpe.core.jobs import setting
from lpe.core.runtime import Inference
from lpe.data.datasets import SPLITS
from lpe.data.inputs import StageData
from lpe.evaluation import spine
from lpe.members.sets import folder_members
from lpe.models.checkpoints import checkpoint_info, load_checkpoint


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
    batch_size: int = setting(1000, "examples per forward pass", config="predict.batch_size")

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
    model = info.build().to(device)  # the one instance every member runs through
    done = spine.evaluate(
        model,
        members,
        spine.open_member(model),
        x,
        batch_size,
        device,
        calibration_x=calibration_x,
        members_per_call=members_per_call,
        bits=lambda member: member.bits,
    )
    return done._replace(bits=np.asarray(done.bits, dtype=np.int64)), manifest, info


def predict_fp32(checkpoint, x, batch_size, device, calibration_x=None):
    """The FP32 model of ``checkpoint`` as one :class:`Evaluated` member, and its info."""
    state, info = load_checkpoint(checkpoint)
    model = info.build().to(device)
    model.load_state_dict(state, strict=True)
    bits = sum(32 * t.numel() for t in state.values())
    own = [None]  # one member: the model's own weights
    done = spine.evaluate(
        model, own, spine.open_member(model), x, batch_size, device, calibration_x=calibration_x
    )
    return done._replace(bits=np.asarray([bits])), info
