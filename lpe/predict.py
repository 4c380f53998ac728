"""The ``predict`` stage: member log-probabilities on a data split, as one predictions file.

Members are evaluated one at a time into a single model instance; the file's layout is
:mod:`lpe.prediction`'s.

Usage (FP32 model): ``python -m lpe.predict --checkpoint CKPT --data DATA --out OUT.npz``;
(low precision members): add ``--members DIR`` written by ``python -m lpe.generate``.
"""

from __future__ import annotations

import argparse

from lpe.checkpoints import checkpoint_info
from lpe.datasets import SPLITS
from lpe.prediction import eval_inputs, member_run, predict_fp32, predict_members, write_predictions
from lpe.runtime import add_runtime_arguments, autocast, resolve_device, set_threads


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
    args = parser.parse_args(argv)
    set_threads(args.threads)
    device = resolve_device(args.device)
    info = checkpoint_info(args.checkpoint)
    x, labels = eval_inputs(args.data, args.split, info, args.batch_size, args.workers)
    with autocast(device, args.dtype):
        log_probs, bits, info, run = _predict(args, x, device)
    write_predictions(args.out, log_probs, labels, bits, info, run)


def _predict(args, x, device):
    if args.members:
        log_probs, bits, manifest, info = predict_members(
            args.checkpoint, args.members, x, args.batch_size, device, args.members_per_call
        )
        run = member_run(manifest)
    else:
        log_probs, bits, info = predict_fp32(args.checkpoint, x, args.batch_size, device)
        run = {"method": "fp32", "bits": 0, "seed": 0}
    return log_probs, bits, info, run


if __name__ == "__main__":
    main()
