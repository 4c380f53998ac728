"""The ``ensembles`` stage: the low precision runs of one checkpoint at one precision, in one job.

For each run it writes the members (``lpe.stages.generate``) as one shared-base ensemble file
(``--layout shared-base``, the default: ``lpe.members.shared_base``; ``files``: one file per member)
and then evaluates them from it (``lpe.stages.predict``), exactly as the two stages run one after
the other would, and with the same numbers in either layout (tested); one process pays the
start-up (torch, timm) and reads the checkpoint and the data once for all of them. The runs are
the optional rounding-to-nearest member (``--rtn-members-out`` and ``--rtn-out``) and one LPE-BSR
ensemble of ``--members`` members per ``--seeds`` entry (``--members-out`` and ``--out``, one
folder and one predictions file per seed, in the same order).

Usage: ``python -m lpe.stages.ensembles --checkpoint CKPT --data DATA --format int4 --members 10
--seeds 0 1 --members-out M/bsr-int4-seed0 M/bsr-int4-seed1
--out P/bsr-int4-seed0.npz P/bsr-int4-seed1.npz
--rtn-members-out M/rtn-int4-seed0 --rtn-out P/rtn-int4-seed0.npz``; from Python,
``run(EnsemblesJob(checkpoint=..., data=..., format="int4", ...))``.
"""

from __future__ import annotations

from dataclasses import dataclass

from lpe.cli.jobs import from_cli
from lpe.core.jobs import setting
from lpe.core.runtime import autocast
from lpe.evaluation.prediction import Calibrated, predict_members
from lpe.evaluation.predictions_file import member_run, write_evaluated
from lpe.members.sets import LAYOUTS, MemberFormat, generate, seed_runs_problem
from lpe.models.checkpoints import checkpoint_info


@dataclass(frozen=True, kw_only=True)
class EnsemblesJob(MemberFormat, Calibrated):
    """The low precision runs of one checkpoint at one format (see the module's docstring)."""

    checkpoint: str = setting(help="the FP32 checkpoint the members are made from")
    members: int = setting(1, "members per LPE-BSR seed")
    layout: str = setting(
        "shared-base",
        "one shared-base ensemble file or one file per member (files)",
        choices=LAYOUTS,
    )
    seeds: tuple[int, ...] = setting((), "LPE-BSR ensemble seeds")
    members_out: tuple[str, ...] = setting((), "member folder per seed")
    out: tuple[str, ...] = setting((), "predictions file per seed")
    # a flag with no value (a rule's empty output list) means no RTN run
    rtn_members_out: str | None = setting(
        None, "member folder of the RTN member", optional_value=True
    )
    rtn_out: str | None = setting(None, "predictions file of the RTN member", optional_value=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if problem := seed_runs_problem(list(self.seeds), self.members_out, self.out):
            raise ValueError(problem)
        if (self.rtn_members_out is None) != (self.rtn_out is None):
            raise ValueError("--rtn-members-out and --rtn-out go together")
        if not self.seeds and self.rtn_out is None:
            raise ValueError("nothing to do: give --seeds (LPE-BSR) and/or --rtn-out (RTN)")

    def runs(self) -> list[tuple[str, int, int, str, str]]:
        """``(method, seed, members, member folder, predictions file)`` of each run, RTN first."""
        todo = []
        if self.rtn_out is not None:
            todo.append(("rtn", 0, 1, self.rtn_members_out, self.rtn_out))
        todo += [
            ("bsr", s, self.members, folder, out)
            for s, folder, out in zip(self.seeds, self.members_out, self.out, strict=True)
        ]
        return todo


def run(job: EnsemblesJob) -> None:
    """Make and evaluate each run of ``job``, one after the other."""
    device = job.start()
    info = checkpoint_info(job.checkpoint)
    (x, labels), (calib_x, calib_labels) = job.inputs_and_calibration(info)
    fmt, policy = job.number_format(), job.policy()
    for method, seed, members, folder, out in job.runs():
        generate(
            job.checkpoint,
            folder,
            fmt,
            method,
            seed,
            members=members,
            policy=policy,
            layout=job.layout,
        )
        with autocast(device, job.dtype):
            done, manifest, info = predict_members(
                job.checkpoint, folder, x, job.batch_size, device, calibration_x=calib_x
            )
        write_evaluated(
            out, done, labels, info, member_run(manifest), calibration_labels=calib_labels
        )


def main(argv: list[str] | None = None) -> None:
    run(from_cli(EnsemblesJob, argv, __doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
