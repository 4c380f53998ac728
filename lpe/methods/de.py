"""``de``: a deep ensemble of fine-tuning runs. ``runs`` SGD runs with seeds ``seed, seed + 1,
...``; run 0 is the SGD solution of the SWAG/IVON figures when given as ``--reuse``."""

from __future__ import annotations

import json
from dataclasses import asdict

import torch

from lpe.core.artifacts import read_metadata
from lpe.methods import FastSource, Spec
from lpe.methods import sgd as _sgd  # noqa: F401  (registers run 0's method, sgd)
from lpe.models.checkpoints import load_checkpoint
from lpe.training.finetuning import (
    FinetuneConfig,
    draw,
    finetune_config,
    load_solution,
    run_finetune,
)
from lpe.training.sources import Setting


def check(options) -> str | None:
    return None


def train(job, optimizer: str = "sgd", draws: int = 1, reuse_posterior: str | None = None) -> dict:
    """``runs`` independent runs of ``optimizer`` with seeds ``seed + r``. A run's source is its
    solution, or, when it has a posterior (IVON), ``draws`` draws from it."""
    options, info = job.options, job.info
    for r in range(options["runs"]):
        cfg = finetune_config(options, optimizer=optimizer, seed=options["seed"] + r)
        if r == 0 and options["reuse"]:
            model, summary, posterior = reused_run(cfg, job, options["reuse"], reuse_posterior)
        else:
            model, summary, posterior, _ = run_finetune(
                job.state,
                info,
                job.data,
                cfg,
                job.device,
                resume_path=job.resumes.path(f"run{r}"),
                checkpoint_every=job.resumes.every,
            )
        job.sources.spent += summary["backward_passes"] - info.backward_passes
        if posterior is None:
            job.sources.add(model, summary)
            continue
        for d in range(draws):
            torch.nn.utils.vector_to_parameters(draw(posterior, cfg.seed, d), model.parameters())
            job.sources.add(model, {**summary, "run": r, "draw": d})
    return {
        "epochs_per_run": options["epochs"],
        "finetune": asdict(finetune_config(options, optimizer=optimizer)),
    }


def reused_run(cfg: FinetuneConfig, job, checkpoint, posterior=None):
    """Run 0 from an existing fine-tuning run (with its ``posterior`` file, if it has one),
    checking it is the run this method would make. Returns (model, summary, posterior or None).
    """
    if posterior:
        state, info, post = load_solution(checkpoint, posterior)
    else:
        (state, info), post = load_checkpoint(checkpoint), None
    meta = read_metadata(checkpoint, "checkpoint")
    summary = {k: json.loads(v) for k, v in meta.items() if not k.startswith("lpe_")}
    wanted = asdict(cfg)
    different = {
        k: (v, wanted[k]) for k, v in summary.get("finetune", {}).items() if wanted.get(k, v) != v
    }
    pretrain = job.info
    expected = pretrain.backward_passes + cfg.epochs * cfg.plan.steps_per_epoch(job.data.train_size)
    if info.model != pretrain.model or different or info.backward_passes != expected:
        raise ValueError(
            f"--reuse {checkpoint} is not run 0 of this method (model {info.model}, "
            f"{info.backward_passes} backward passes, expected {expected}; settings that differ "
            f"(stored, wanted): {different}); rerun its fine-tuning or drop --reuse"
        )
    model = info.build()
    model.load_state_dict(state)
    return model, summary, post


SPEC = Spec(
    "de",
    fast=FastSource(
        settings={"job.reuse": "reuse"},
        options=(Setting("reuse", str, None, help="an existing run 0 (its checkpoint)"),),
        check=check,
        train=train,
    ),
)
