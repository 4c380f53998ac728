"""The ``train`` stage: MAP training of one model (``lpe.training.pretraining``), as a checkpoint.

Every random draw (initialisation, minibatch order) comes from generators seeded by ``--seed``.
The number of backward passes is saved with the checkpoint: it is the training budget of
everything derived from it (all epochs run, including those after the best one kept).
``--last-out`` also saves the last epoch's weights, for the comparison of the two rules.

Usage: ``python -m lpe.stages.train --data work/mini/data/mnist1d.npz --model vit_mini_s --epochs 20
--batch-size 128 --lr 1e-3 --weight-decay 0.05 --warmup-epochs 1 --seed 0
--out work/mini/checkpoints/vit_mini_s.safetensors``
"""

from __future__ import annotations

import argparse
from dataclasses import asdict

from lpe.cli.flags import add_runtime_arguments
from lpe.core.runtime import resolve_device, set_threads
from lpe.data.datasets import load_splits
from lpe.models.checkpoints import save_checkpoint
from lpe.models.factory import MODELS
from lpe.training.pretraining import TrainConfig, train


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", required=True, choices=sorted(MODELS))
    defaults = TrainConfig()
    for key, value in asdict(defaults).items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--out", required=True, help="the checkpoint: the best validation epoch")
    parser.add_argument("--last-out", help="also save the last epoch's weights here")
    add_runtime_arguments(parser, inference=False)
    args = parser.parse_args(argv)
    cfg = TrainConfig(**{k: getattr(args, k) for k in asdict(defaults)})
    set_threads(args.threads)
    splits = load_splits(args.data)
    model, summary, last = train(args.model, splits, cfg, resolve_device(args.device))
    save_checkpoint(args.out, model.cpu(), summary)
    if args.last_out:
        model.load_state_dict(last)
        last_summary = {k: v for k, v in summary.items() if k != "val"}  # val: the best epoch's
        save_checkpoint(args.last_out, model.cpu(), {**last_summary, "best_epoch": cfg.epochs})
    print(
        f"saved {args.out} (epoch {summary['best_epoch']}): val nll {summary['val']['nll']:.4f}, "
        f"err {summary['val']['err']:.2f}%, {summary['backward_passes']} backward passes"
    )


if __name__ == "__main__":
    main()
