"""``sse``: snapshot ensembles. One SGD run of ``runs`` cycles x ``epochs`` epochs under a cyclic
cosine learning rate (``lpe.sources.cyclic``), a snapshot at the end of each cycle; the peak rate
is chosen on validation among ``--lr-candidates`` by the first cycle's snapshot."""

from __future__ import annotations

from lpe.training.fast import Setting
from lpe.training.finetuning import finetune_config, run_finetune, validate

SETTINGS = {"fast.sse.lr": "lr_candidates", "fast.sse.momentum": "momentum"}
OPTIONS = (
    Setting("lr_candidates", float, [], many=True,
            help="peak rates to choose from on validation (first cycle; replaces --lr)"),
)  # fmt: skip


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
        print(f"{optimizer} peak rate {lr:g}: snapshot 1 validation NLL {nll[lr]:.5f} "
              f"(starting model {start:.5f})")  # fmt: skip
    chosen = min(nll, key=lambda lr: (nll[lr], lr))
    print(f"chosen on the validation split: {optimizer} peak rate {chosen:g}")
    return {"chosen": chosen, "validation_nll": {f"{k:g}": v for k, v in nll.items()},
            "start_validation_nll": start}  # fmt: skip
