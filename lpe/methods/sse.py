"""``sse``: snapshot ensembles (Huang et al., 2017), a fast source (Figures 4, 5, 9, Table 5).

One SGD run of ``runs`` cycles x ``epochs`` epochs under a cyclic cosine learning rate, a snapshot
at the end of each cycle; the peak rate is chosen on validation among ``--lr-candidates`` by the
first cycle's snapshot.

The cyclic schedule (shared with cyclical SGLD, ``lpe.methods.csgld``) splits training into
``cycles`` equal cycles of ``steps_per_cycle`` steps. Within a cycle the learning rate follows a
cosine from ``lr`` down to 0 (Huang et al., 2017; Zhang et al., 2020):

    lr(t) = lr / 2 * (cos(pi * r(t)) + 1),   r(t) = (t mod steps_per_cycle) / steps_per_cycle

so it restarts at ``lr`` at the first step of every cycle and reaches its minimum at the last one,
where SSE takes its snapshot. CSGLD runs the first ``exploration`` fraction of each cycle as
plain SGD and the rest as Langevin dynamics, collecting samples at the end of the cycle. Written
here because the schedule is four lines; torch's ``CosineAnnealingWarmRestarts`` works per epoch
fraction and does not expose the cycle phase that CSGLD needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lpe.core.jobs import setting
from lpe.methods import FastSource, Spec
from lpe.methods.sgd import Sgd, SgdSettings
from lpe.training.finetuning import finetune_config, finetuning_method, run_finetune, validate
from lpe.training.sources import Setting


@dataclass(frozen=True)
class CyclicSchedule:
    total_steps: int
    cycles: int
    lr: float
    exploration: float = 1.0  # fraction of each cycle without Langevin noise (1.0: SSE)

    def __post_init__(self) -> None:
        if self.cycles < 1 or self.total_steps < 1:
            raise ValueError(
                f"cycles and steps must be >= 1, got {self.cycles}, {self.total_steps}"
            )
        if self.total_steps % self.cycles:
            raise ValueError(
                f"{self.cycles} cycles do not divide the training length of {self.total_steps} "
                "steps; choose a number of cycles that divides epochs x steps per epoch"
            )
        if not 0.0 <= self.exploration <= 1.0:
            raise ValueError(f"exploration must be in [0, 1], got {self.exploration}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    @property
    def steps_per_cycle(self) -> int:
        return self.total_steps // self.cycles

    def phase(self, step: int) -> float:
        """Position of ``step`` (0-based) within its cycle, in [0, 1)."""
        return (step % self.steps_per_cycle) / self.steps_per_cycle

    def lr_at(self, step: int) -> float:
        return self.lr / 2 * (math.cos(math.pi * self.phase(step)) + 1)

    def sampling(self, step: int) -> bool:
        """Whether ``step`` is in the Langevin (sampling) phase of its cycle."""
        return self.phase(step) >= self.exploration

    def cycle_end(self, step: int) -> bool:
        """Whether ``step`` is the last step of a cycle (where snapshots are taken)."""
        return (step + 1) % self.steps_per_cycle == 0


@dataclass(frozen=True)
class CyclicSettings(SgdSettings):
    cycles: int = setting(1, "learning-rate cycles (a snapshot at the end of each)")

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.cycles < 1:
            problems.append(f"cycles must be >= 1, got {self.cycles}")
        return problems


@finetuning_method
class Sse(Sgd):
    """SGD under a cyclic cosine schedule, a snapshot at the end of every cycle."""

    name, what = "sse", "sse fine-tuning"
    Settings = CyclicSettings
    lr_setting = "fast.sse.lr"
    exploration = 1.0  # no Langevin phase

    def make_scheduler(self, optimizer, total, steps_per_epoch):
        # refuses cycles that do not divide the run
        self.cyclic = CyclicSchedule(
            total, self.settings.cycles, self.settings.lr, self.exploration
        )
        lr = self.settings.lr
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: self.cyclic.lr_at(s) / lr)

    def after_step(self, model, step, passes) -> None:
        if self.cyclic.cycle_end(step):
            self.snapshot(model, passes)


# ---- the fast source's trainer (lpe.training.sources)


def check(options) -> str | None:
    candidates = options["lr_candidates"]
    if candidates and min(candidates) <= 0:
        return f"--lr-candidates are positive peak rates; got {candidates}"
    return None


def train(job, optimizer: str = "sse") -> dict:
    """The cyclic run of ``optimizer`` (``sse`` or ``csgld``), its snapshots as the sources."""
    options, settings = job.options, {}
    lr, candidates = options["lr"], options["lr_candidates"]
    if len(candidates) == 1:  # nothing to choose
        lr = settings["lr"] = candidates[0]
    elif candidates:
        choice = choose_peak_rate(job, optimizer, candidates)
        lr = settings["lr"] = choice["chosen"]
        settings["lr_choice"] = choice
    runs, resumes = options["runs"], job.resumes
    cfg = finetune_config(
        options, optimizer=optimizer, lr=lr, cycles=runs, epochs=options["epochs"] * runs
    )
    model, summary, _, snapshots = run_finetune(
        job.state,
        job.info,
        job.data,
        cfg,
        job.device,
        resume_path=resumes.path("run"),
        checkpoint_every=resumes.every,
    )
    model.to(job.device)  # run_finetune hands it back on the CPU; its snapshots are validated here
    for weights, passes in snapshots:
        model.load_state_dict(weights)
        job.sources.spent = job.sources.pretrain_passes + passes
        job.sources.add(model, {**summary, "val": validate(model, job.data, job.device)})
    return settings


def choose_peak_rate(job, optimizer: str, candidates) -> dict:
    """The peak rate, chosen on the validation split by the first cycle's snapshot.

    Each candidate runs one cycle (``--epochs`` epochs) from the starting model; the rate whose
    snapshot has the lowest validation NLL wins (ties: the smaller rate). The starting model's
    validation NLL is recorded beside them: a snapshot 1 worse than it means the rate throws
    away the solution it starts from. The probes' backward passes are selection cost, not the
    method's training budget (as the baselines' validation ensembles are not theirs).
    """
    model = job.info.build().to(job.device)
    model.load_state_dict(job.state)
    start = validate(model, job.data, job.device)["nll"]
    nll = {}
    for lr in sorted(candidates):
        cfg = finetune_config(job.options, optimizer=optimizer, lr=lr, cycles=1)
        snapshot, *_ = run_finetune(job.state, job.info, job.data, cfg, job.device)
        nll[lr] = validate(snapshot.to(job.device), job.data, job.device)["nll"]
        print(
            f"{optimizer} peak rate {lr:g}: snapshot 1 validation NLL {nll[lr]:.5f} "
            f"(starting model {start:.5f})"
        )
    chosen = min(nll, key=lambda lr: (nll[lr], lr))
    print(f"chosen on the validation split: {optimizer} peak rate {chosen:g}")
    return {
        "chosen": chosen,
        "validation_nll": {f"{k:g}": v for k, v in nll.items()},
        "start_validation_nll": start,
    }


SPEC = Spec(
    "sse",
    finetuning=Sse,
    fast=FastSource(
        settings={"fast.sse.lr": "lr_candidates", "fast.sse.momentum": "momentum"},
        options=(
            Setting(
                "lr_candidates",
                float,
                [],
                many=True,
                help="peak rates to choose from on validation (first cycle; replaces --lr)",
            ),
        ),
        check=check,
        train=train,
    ),
)
