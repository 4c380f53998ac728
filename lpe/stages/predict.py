"""The ``predict`` stage: member log-probabilities on a data split, as one predictions file.

Members are evaluated one at a time into a single model instance; the file's layout is
:mod:`lpe.evaluation.prediction`'s.

Usage (FP32 model): ``python -m lpe.stages.predict --checkpoint CKPT --data DATA --out OUT.npz``;
(low precision members): add ``--members DIR`` written by ``python -m lpe.stages.generate``;
``--calibrate`` also predicts the data's selection split (the temperature-scaling control,
:mod:`lpe.evaluation.temperature`). From Python: ``run(PredictJob(checkpoint=..., data=...,
out=...))``.
"""

from __future__ import annotations

from dataclasses import dataclass

from lpe.cli.jobs import from_cli
from lpe.core.jobs import setting
from lpe.core.runtime import autocast
from lpe.evaluation.prediction import Calibrated, predict_fp32, predict_members
from lpe.evaluation.predictions_file import member_run, write_evaluated
from lpe.models.checkpoints import checkpoint_info


def members_per_call(value: str) -> int | str:
    """``auto`` or a count: the ``--members-per-call`` flag's text."""
    return value if value == "auto" else int(value)


@dataclass(frozen=True, kw_only=True)
class PredictJob(Calibrated):
    """One predictions file of the FP32 model or of a folder of members."""

    checkpoint: str = setting(help="the FP32 checkpoint (the members' own, with --members)")
    members: str | None = setting(None, "folder of member files; omit for the FP32 model")
    out: str = setting(help="the predictions file written")
    members_per_call: int | str = setting(
        "auto",
        "members evaluated in one batched call: auto (1 on CPU) or a count",
        parse=members_per_call,
    )


def run(job: PredictJob) -> None:
    """Evaluate the job's model or members and write its predictions file."""
    device = job.start()
    info = checkpoint_info(job.checkpoint)
    (x, labels), (calib_x, calib_labels) = job.inputs_and_calibration(info)
    with autocast(device, job.dtype):
        if job.members:
            done, manifest, info = predict_members(
                job.checkpoint,
                job.members,
                x,
                job.batch_size,
                device,
                members_per_call=job.members_per_call,
                calibration_x=calib_x,
            )
            what = member_run(manifest)
        else:
            done, info = predict_fp32(job.checkpoint, x, job.batch_size, device, calib_x)
            what = {"method": "fp32", "bits": 0, "seed": 0}
    write_evaluated(job.out, done, labels, info, what, calibration_labels=calib_labels)


def main(argv: list[str] | None = None) -> None:
    run(from_cli(PredictJob, argv, __doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
