"""The ``predict`` stage: member log-probabilities on a data split, as one predictions file.

Members are evaluated one at a time into a single model instance; the file's layout is
:mod:`lpe.evaluation.prediction`'s.

Usage (FP32 model): ``python -m lpe.stages.predict --checkpoint CKPT --data DATA --out OUT.npz``;
(low precision members): add ``--members DIR`` written by ``python -m lpe.stages.generate``;
``--calibrate`` also predicts the data's selection split (the temperature-scaling control,
:mod:`lpe.evaluation.temperature`).
"""

from __future__ import annotations

import argparse

from lpe.cli.flags import (
    CALIBRATED_SETTINGS,
    add_calibration_arguments,
    add_runtime_arguments,
    apply_settings,
    calibration_split,
    check_calibration,
)
from lpe.core.runtime import autocast, resolve_device, set_threads
from lpe.data.datasets import SPLITS
from lpe.evaluation.prediction import eval_inputs, predict_fp32, predict_members
from lpe.evaluation.predictions_file import member_run, write_evaluated
from lpe.models.checkpoints import checkpoint_info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--members", help="folder of member files; omit for the FP32 model")
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--out", required=True)
    add_runtime_arguments(parser)
    parser.add_argument(
        "--members-per-call",
        default="auto",
        type=lambda v: v if v == "auto" else int(v),
        help="members evaluated in one batched call: auto (1 on CPU) or a count",
    )
    parser.add_argument("--workers", type=int, default=0, help="image loading processes")
    add_calibration_arguments(parser)
    apply_settings(parser, argv, CALIBRATED_SETTINGS)
    args = parser.parse_args(argv)
    check_calibration(parser, args)
    set_threads(args.threads)
    device = resolve_device(args.device)
    info = checkpoint_info(args.checkpoint)
    x, labels = eval_inputs(args.data, args.split, info, args.batch_size, args.workers)
    calib_x, calib_labels = calibration_split(args, info)
    with autocast(device, args.dtype):
        done, info, run = _predict(args, x, device, calib_x)
    write_evaluated(args.out, done, labels, info, run, calibration_labels=calib_labels)


def _predict(args, x, device, calib_x):
    if args.members:
        done, manifest, info = predict_members(args.checkpoint, args.members, x, args.batch_size,
                                               device, members_per_call=args.members_per_call,
                                               calibration_x=calib_x)  # fmt: skip
        return done, info, member_run(manifest)
    done, info = predict_fp32(args.checkpoint, x, args.batch_size, device, calib_x)
    return done, info, {"method": "fp32", "bits": 0, "seed": 0}


if __name__ == "__main__":
    main()
