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

from dataclasses import dataclass

from lpe.cli.jobs import from_cli
from lpe.core.jobs import part, setting
from lpe.core.runtime import Device
from lpe.data.datasets import load_splits
from lpe.models.checkpoints import save_checkpoint
from lpe.models.factory import MODELS
from lpe.training.pretraining import TrainConfig, train


@dataclass(frozen=True, kw_only=True)
class TrainJob(TrainConfig, Device):
    """One model trained on one data file."""

    data: str = setting(help="the data file (lpe.stages.data)")
    model: str = setting(help="the model", choices=tuple(sorted(MODELS)))
    out: str = setting(help="the checkpoint: the best validation epoch")
    last_out: str | None = setting(None, "also save the last epoch's weights here")


def run(job: TrainJob) -> None:
    """Train the job's model; save the best epoch (and, with ``last_out``, the last)."""
    cfg = part(job, TrainConfig)
    device = job.start()
    splits = load_splits(job.data)
    model, summary, last = train(job.model, splits, cfg, device)
    save_checkpoint(job.out, model.cpu(), summary)
    if job.last_out:
        model.load_state_dict(last)
        last_summary = {k: v for k, v in summary.items() if k != "val"}  # val: the best epoch's
        save_checkpoint(job.last_out, model.cpu(), {**last_summary, "best_epoch": cfg.epochs})
    print(
        f"saved {job.out} (epoch {summary['best_epoch']}): val nll {summary['val']['nll']:.4f}, "
        f"err {summary['val']['err']:.2f}%, {summary['backward_passes']} backward passes"
    )


def main(argv: list[str] | None = None) -> None:
    run(from_cli(TrainJob, argv, __doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
