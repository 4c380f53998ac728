"""``batchensemble``: one BatchEnsemble of ``runs`` rank-1 members (``lpe.sources.batchensemble``)
fine-tuned with the SGD settings, as a single source holding all members. Every minibatch is
repeated for the members, so each member sees the same data order as the other methods' runs; a
step counts ``runs`` backward passes (every member's gradient, in one K-times-wider pass)."""

from __future__ import annotations

import argparse
from dataclasses import asdict

import torch

from lpe.sources.batchensemble import batch_ensemble
from lpe.training.loop import Plan, fit
from lpe.training.methods import BatchEnsembleSettings, BatchEnsembleSgd

SETTINGS = {
    "fast.batchensemble.init_std": "init_std",
    "fast.batchensemble.micro_batch": "micro_batch",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--init-std", type=float, default=0.1, help="fast weights' std around 1")
    parser.add_argument("--micro-batch", type=int, default=0,
                        help="examples per accumulated chunk (0: the whole batch)")  # fmt: skip


def check(args) -> str | None:
    if args.micro_batch < 0:
        return f"--micro-batch must be >= 0, got {args.micro_batch}"
    return None


def train(job) -> dict:
    args, info = job.args, job.info
    settings = BatchEnsembleSettings(args.lr, args.momentum, args.weight_decay, args.runs,
                                     args.micro_batch)  # fmt: skip
    plan = Plan(args.epochs, args.batch_size, args.seed)
    model = info.build()
    model.load_state_dict(job.state)
    batch_ensemble(model, args.runs, torch.Generator().manual_seed(args.seed), "gaussian",
                   args.init_std)  # fmt: skip
    record = {**asdict(plan), **asdict(settings), "init_std": args.init_std}
    resume = job.resumes.run("batchensemble", {"batchensemble": record, "start": info.sha256})
    passes = fit(model, job.data, BatchEnsembleSgd(settings, plan), plan, job.device,
                 desc="batchensemble", resume=resume)  # fmt: skip
    job.sources.spent += passes
    summary = {
        "model": info.model,
        "num_classes": info.num_classes,
        "input_shape": list(info.input_shape),
        "optimizer": "sgd",
        "batch_ensemble": args.runs,
    }
    job.sources.add(model.cpu(), summary, members=args.runs)
    return {"epochs_per_run": args.epochs, **record}
