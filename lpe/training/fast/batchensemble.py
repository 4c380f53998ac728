"""``batchensemble``: one BatchEnsemble of ``runs`` rank-1 members (``lpe.sources.batchensemble``)
fine-tuned with the SGD settings, as a single source holding all members. Every minibatch is
repeated for the members, so each member sees the same data order as the other methods' runs; a
step counts ``runs`` backward passes (every member's gradient, in one K-times-wider pass)."""

from __future__ import annotations

from dataclasses import asdict

import torch

from lpe.sources.batchensemble import batch_ensemble
from lpe.training.fast import Setting
from lpe.training.loop import Plan, fit
from lpe.training.methods import BatchEnsembleSettings, BatchEnsembleSgd

SETTINGS = {
    "fast.batchensemble.init_std": "init_std",
    "fast.batchensemble.micro_batch": "micro_batch",
}


OPTIONS = (
    Setting("init_std", float, 0.1, help="fast weights' std around 1"),
    Setting("micro_batch", int, 0, help="examples per accumulated chunk (0: the whole batch)"),
)


def check(options) -> str | None:
    if options["micro_batch"] < 0:
        return f"--micro-batch must be >= 0, got {options['micro_batch']}"
    return None


def train(job) -> dict:
    o, info = job.options, job.info
    settings = BatchEnsembleSettings(o["lr"], o["momentum"], o["weight_decay"], o["runs"],
                                     o["micro_batch"])  # fmt: skip
    plan = Plan(o["epochs"], o["batch_size"], o["seed"])
    model = info.build()
    model.load_state_dict(job.state)
    batch_ensemble(model, o["runs"], torch.Generator().manual_seed(o["seed"]), "gaussian",
                   o["init_std"])  # fmt: skip
    record = {**asdict(plan), **asdict(settings), "init_std": o["init_std"]}
    resume = job.resumes.run("batchensemble", {"batchensemble": record, "start": info.sha256})
    passes = fit(model, job.data, BatchEnsembleSgd(settings, plan), plan, job.device,
                 desc="batchensemble", resume=resume)  # fmt: skip
    job.sources.spent += passes
    summary = {
        "model": info.model,
        "num_classes": info.num_classes,
        "input_shape": list(info.input_shape),
        "optimizer": "sgd",
        "batch_ensemble": o["runs"],
    }
    job.sources.add(model.cpu(), summary, members=o["runs"])
    return {"epochs_per_run": o["epochs"], **record}
