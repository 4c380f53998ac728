"""The ``finetune`` stage: SGD, SWAG or IVON fine-tuning of a checkpoint (Figures 2, 3, 6, 8).

The optimizers are ``lpe.methods``'s, the runs and their outputs
``lpe.training.finetuning``'s.

Outputs: the solution as a checkpoint (``lpe.models.checkpoints``; its backward passes are the
pre-training's plus the fine-tuning's) and, for SWAG and IVON, a posterior file. Every random draw
comes from ``--seed``: the minibatch order from an explicit generator, IVON's weight noise
(drawn by ``ivon-opt`` from torch's global generator) inside ``torch.random.fork_rng``.

Usage: ``python -m lpe.stages.finetune --checkpoint CKPT --data DATA --optimizer swag --out SOL
--posterior POST [settings]``; ``--help`` lists the settings.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lpe.cli.flags import (
    DATA_SETTINGS,
    FINETUNE_SETTINGS,
    RESUME_SETTINGS,
    add_data_arguments,
    add_finetune_arguments,
    add_resume_arguments,
    add_runtime_arguments,
    open_stage_data,
)
from lpe.cli.jobs import apply_settings
from lpe.core.resume import Resume
from lpe.core.runtime import resolve_device, set_threads
from lpe.models.checkpoints import checkpoint_info, load_checkpoint, save_checkpoint
from lpe.training.finetuning import FINETUNING, finetune_config, run_finetune, save_posterior


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="the trained checkpoint to start from")
    add_data_arguments(parser)
    add_finetune_arguments(parser)
    parser.add_argument("--out", required=True, help="the solution, as a checkpoint")
    parser.add_argument("--posterior", help="the posterior file (swag and ivon)")
    add_resume_arguments(parser)
    add_runtime_arguments(parser, inference=False)
    apply_settings(parser, argv, {**DATA_SETTINGS, **FINETUNE_SETTINGS, **RESUME_SETTINGS})
    args = parser.parse_args(argv)
    cfg = finetune_config(vars(args))
    if FINETUNING[cfg.optimizer].has_posterior and not args.posterior:
        parser.error(f"--posterior is required for {cfg.optimizer}")
    set_threads(args.threads)
    state, info = load_checkpoint(args.checkpoint)
    data = open_stage_data(args, info)
    device = resolve_device(args.device)
    model, summary, posterior, _ = run_finetune(state, info, data, cfg, device,
                                                resume_path=args.resume,
                                                checkpoint_every=args.checkpoint_every)  # fmt: skip
    save_checkpoint(args.out, model, summary)
    if posterior is not None:
        save_posterior(args.posterior, posterior, checkpoint_info(args.out).sha256)
    Resume(args.resume, args.checkpoint_every, {}).done()
    val = summary["val"]
    print(f"saved {args.out}: val nll {val['nll']:.4f}, err {val['err']:.2f}%")
    if posterior is not None:
        print(f"saved {Path(args.posterior)}")


if __name__ == "__main__":
    main()
