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

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from lpe.cli.jobs import from_cli
from lpe.core.jobs import setting
from lpe.core.resume import Resume
from lpe.core.runtime import Device
from lpe.data.inputs import StageData
from lpe.methods import load_all
from lpe.models.checkpoints import checkpoint_info, load_checkpoint, save_checkpoint
from lpe.training.finetuning import (
    FINETUNING,
    RUN_FIELDS,
    FinetuneConfig,
    RunSettings,
    finetune_config,
    method_fields,
    run_finetune,
    save_posterior,
)

load_all()  # the registered methods' settings become the job's fields (FinetuneJob)


@dataclass(frozen=True, kw_only=True)
class FinetuneRun(RunSettings, StageData, Device):
    """A fine-tuning run's own fields; ``FinetuneJob`` adds every method's settings."""

    checkpoint: str = setting(help="the trained checkpoint to start from")
    optimizer: str = setting(
        RUN_FIELDS["optimizer"], "the fine-tuning method", choices=tuple(FINETUNING)
    )
    out: str = setting(help="the solution, as a checkpoint")
    posterior: str | None = setting(None, "the posterior file (swag and ivon)")
    resume: str | None = setting(None, "file of resumable state", config="job.resume")
    checkpoint_every: int = setting(
        0, "save the resumable state every N steps (0: never)", config="bma.checkpoint_every"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        cfg = self.config()  # bad settings stop here, before the checkpoint is read
        if FINETUNING[cfg.optimizer].has_posterior and not self.posterior:
            raise ValueError(f"a posterior file is required for {cfg.optimizer}")

    def config(self) -> FinetuneConfig:
        """The run: its method, length, seed and the method's own settings."""
        return finetune_config({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})


# The job of the stage: the run's fields and every registered method's settings (``--lr``,
# ``--swag-rank``, ``--ivon-lr``, ...; each defaulting to its config key's schema default)
FinetuneJob = dataclasses.make_dataclass(
    "FinetuneJob", method_fields(), bases=(FinetuneRun,), frozen=True, kw_only=True
)


def run(job: FinetuneRun) -> None:
    """Fine-tune, then write the solution (and the posterior)."""
    cfg = job.config()
    device = job.start()
    state, info = load_checkpoint(job.checkpoint)
    model, summary, posterior, _ = run_finetune(
        state,
        info,
        job.open(info),
        cfg,
        device,
        resume_path=job.resume,
        checkpoint_every=job.checkpoint_every,
    )
    save_checkpoint(job.out, model, summary)
    if posterior is not None:
        save_posterior(job.posterior, posterior, checkpoint_info(job.out).sha256)
    Resume(job.resume, job.checkpoint_every, {}).done()
    val = summary["val"]
    print(f"saved {job.out}: val nll {val['nll']:.4f}, err {val['err']:.2f}%")
    if posterior is not None:
        print(f"saved {Path(job.posterior)}")


def main(argv: list[str] | None = None) -> None:
    run(from_cli(FinetuneJob, argv, __doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
