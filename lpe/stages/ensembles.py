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
--rtn-members-out M/rtn-int4-seed0 --rtn-out P/rtn-int4-seed0.npz``
"""

from __future__ import annotations

import argparse

from lpe.cli.flags import (
    CALIBRATED_SETTINGS,
    QUANT_SETTINGS,
    add_calibration_arguments,
    add_member_arguments,
    add_runtime_arguments,
    apply_settings,
    calibration_split,
    check_calibration,
    member_format,
)
from lpe.core.runtime import autocast, resolve_device, set_threads
from lpe.data.datasets import SPLITS
from lpe.evaluation.prediction import eval_inputs, predict_members
from lpe.evaluation.predictions_file import member_run, write_evaluated
from lpe.members.sets import LAYOUTS, generate, seed_runs_problem
from lpe.models.checkpoints import checkpoint_info


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    add_member_arguments(parser)
    parser.add_argument("--members", type=int, default=1, help="members per LPE-BSR seed")
    parser.add_argument(
        "--layout",
        default="shared-base",
        choices=LAYOUTS,
        help="one shared-base ensemble file or one file per member (files)",
    )
    parser.add_argument("--seeds", type=int, nargs="*", default=[], help="LPE-BSR ensemble seeds")
    parser.add_argument("--members-out", nargs="*", default=[], help="member folder per seed")
    parser.add_argument("--out", nargs="*", default=[], help="predictions file per seed")
    # nargs="?": a flag with no value (a rule's empty output list) means no RTN run
    parser.add_argument("--rtn-members-out", nargs="?", help="member folder of the RTN member")
    parser.add_argument("--rtn-out", nargs="?", help="predictions file of the RTN member")
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=0, help="image loading processes")
    add_calibration_arguments(parser)
    add_runtime_arguments(parser)
    apply_settings(parser, argv, {**QUANT_SETTINGS, **CALIBRATED_SETTINGS})
    args = parser.parse_args(argv)
    check_calibration(parser, args)
    if problem := seed_runs_problem(args.seeds, args.members_out, args.out):
        parser.error(problem)
    if (args.rtn_members_out is None) != (args.rtn_out is None):
        parser.error("--rtn-members-out and --rtn-out go together")
    if not args.seeds and args.rtn_out is None:
        parser.error("nothing to do: give --seeds (LPE-BSR) and/or --rtn-out (RTN)")
    try:
        member_format(args)  # an unknown format stops here, before the checkpoint is read
    except ValueError as err:
        parser.error(str(err))
    return args


def runs(args) -> list[tuple[str, int, int, str, str]]:
    """``(method, seed, members, member folder, predictions file)`` of each run, RTN first."""
    todo = []
    if args.rtn_out is not None:
        todo.append(("rtn", 0, 1, args.rtn_members_out, args.rtn_out))
    todo += [
        ("bsr", s, args.members, folder, out)
        for s, folder, out in zip(args.seeds, args.members_out, args.out, strict=True)
    ]
    return todo


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    set_threads(args.threads)
    device = resolve_device(args.device)
    fmt, policy = member_format(args)
    info = checkpoint_info(args.checkpoint)
    x, labels = eval_inputs(args.data, args.split, info, args.batch_size, args.workers)
    calib_x, calib_labels = calibration_split(args, info)
    for method, seed, members, folder, out in runs(args):
        generate(
            args.checkpoint,
            folder,
            fmt,
            method,
            seed,
            members=members,
            policy=policy,
            layout=args.layout,
        )
        with autocast(device, args.dtype):
            done, manifest, info = predict_members(
                args.checkpoint, folder, x, args.batch_size, device, calibration_x=calib_x
            )
        write_evaluated(
            out, done, labels, info, member_run(manifest), calibration_labels=calib_labels
        )


if __name__ == "__main__":
    main()
