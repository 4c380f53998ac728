"""The ``fast`` stage: fast ensembles as member sources, with and without LPE-BSR (Figures 4, 5, 9).

Every method fine-tunes the same trained checkpoint with the SGD/IVON settings of the SWAG/IVON
figures, one "run" being ``epochs`` epochs of them, and yields an ordered list of FP32 *sources*:

- ``sse``: one SGD run of ``runs`` cycles x ``epochs`` epochs under a cyclic cosine learning rate
  (peak ``--lr``); a snapshot at the end of each cycle.
- ``csgld``: the same schedule with Langevin noise at ``--csgld-temperature`` in the sampling
  phase of each cycle (after ``--csgld-exploration``); a sample at the end of each cycle.
- ``de``: ``runs`` SGD runs with seeds ``seed, seed + 1, ...`` (a deep ensemble of fine-tuning
  runs). Run 0 is the SGD solution of the SWAG/IVON figures when given as ``--reuse``.
- ``multiivon``: ``runs`` IVON runs (run 0 reusable likewise), ``--draws`` posterior draws each.
- ``batchensemble``: one BatchEnsemble of ``runs`` members (``lpe.sources.batchensemble``) trained
  with the SGD settings; a single source holding all members.

Each source records the training budget spent when it exists: the cumulative backward passes,
pre-training included. A cycle costs one run, so SSE with c snapshots, CSGLD with c samples, a DE
of c runs and MultiIVON with c runs all cost the same. A BatchEnsemble step is counted as
``runs`` backward passes (every member's gradient on the minibatch, in one K-times-wider pass).

Subcommands:

- ``train --method M --checkpoint PRE --data DATA --out DIR``: the sources as checkpoints
  ``DIR/source00.safetensors, ...`` plus ``DIR/manifest.json``, written atomically.
- ``predict --sources DIR --data DATA --out PREDS.npz``: the FP32 predictions of every source in
  order. With ``--bits b --copies k --seeds s... --members-out MDIR... --out PREDS...`` instead:
  per seed, ``k`` LPE-BSR copies of every source (member files under ``MDIR/sourceNN``, made by
  ``lpe.stages.generate``), ordered source by source; ``--fp32-out FP32.npz`` adds the FP32
  predictions in the same run. A predictions file carries each member's ``budget``: LPE-BSR adds
  none.

``--help`` on each subcommand lists the settings.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lpe.core.artifacts import (
    MANIFEST,
    ArtifactError,
    atomic_dir,
    read_manifest,
    read_metadata,
    write_manifest,
)
from lpe.core.resume import Resume
from lpe.core.runtime import add_runtime_arguments, autocast, resolve_device, set_threads
from lpe.core.settings import apply_settings, argument_value, subcommand
from lpe.data.datasets import SPLITS
from lpe.data.inputs import DATA_SETTINGS, add_data_arguments, open_stage_data
from lpe.evaluation.prediction import (
    CALIBRATED_SETTINGS,
    Evaluated,
    add_calibration_arguments,
    batches,
    check_calibration,
    predict_fp32,
    predict_members,
    write_evaluated,
)
from lpe.formats.integer import MAX_BITS, MIN_BITS
from lpe.formats.policy import DEFAULT_EXCLUDE, QuantPolicy
from lpe.formats.registry import get_format
from lpe.members.files import derive_seed
from lpe.members.sets import QUANT_SETTINGS, generate, seed_runs_problem
from lpe.models.checkpoints import checkpoint_info, load_checkpoint, save_checkpoint
from lpe.sources.batchensemble import batch_ensemble, member_log_probs
from lpe.sources.registry import family
from lpe.training.finetuning import (
    FINETUNE_SETTINGS,
    RESUME_SETTINGS,
    FinetuneConfig,
    add_finetune_arguments,
    add_resume_arguments,
    draw,
    finetune_config,
    load_solution,
    run_finetune,
    validate,
)
from lpe.training.loop import DivergenceError, lr_factor, require_finite_weights

METHODS = tuple(s.name for s in family("fast"))  # lpe.sources.registry
REUSABLE = ("de", "multiivon")  # methods whose run 0 is an existing fine-tuning run


class Sources:
    """Writes a method's sources into a folder, tracking the cumulative budget."""

    def __init__(self, folder: Path, method: str, pretrain_passes: int) -> None:
        self.folder, self.method = folder, method
        self.pretrain_passes = self.spent = pretrain_passes
        self.entries: list[dict] = []

    def add(self, model: torch.nn.Module, summary: dict, members: int = 1) -> None:
        name = f"source{len(self.entries):02d}.safetensors"
        summary = {**summary, "backward_passes": self.spent}
        save_checkpoint(self.folder / name, model, summary)
        self.entries.append({"file": name, "backward_passes": self.spent, "members": members})
        print(f"{self.method} source {len(self.entries)}: {self.spent:,} backward passes")

    def manifest(self, settings: dict) -> dict:
        return {
            "method": self.method,
            "pretrain_backward_passes": self.pretrain_passes,
            "sources": self.entries,
            "settings": settings,
        }


def _steps_per_epoch(data, batch_size: int) -> int:
    return math.ceil(data.train_size / batch_size)


def _cyclic(sources: Sources, state, info, data, cfg: FinetuneConfig, device, resume) -> None:
    model, summary, _, snapshots = run_finetune(state, info, data, cfg, device,
                                                resume.path("run"), resume.every)  # fmt: skip
    model.to(device)  # run_finetune hands it back on the CPU; its snapshots are validated here
    for weights, passes in snapshots:
        model.load_state_dict(weights)
        sources.spent = sources.pretrain_passes + passes
        sources.add(model, {**summary, "val": validate(model, data, device)})


def choose_peak_rate(state, info, data, cfg: FinetuneConfig, candidates, device) -> dict:
    """SSE's or CSGLD's peak rate, chosen on the validation split by the first cycle's snapshot.

    Each candidate runs one cycle (``cfg.epochs`` epochs) from the starting model; the rate whose
    snapshot has the lowest validation NLL wins (ties: the smaller rate). The starting model's
    validation NLL is recorded beside them: a snapshot 1 worse than it means the rate throws
    away the solution it starts from. The probes' backward passes are selection cost, not the
    method's training budget (as the baselines' validation ensembles are not theirs).
    """
    model = info.build().to(device)
    model.load_state_dict(state)
    start = validate(model, data, device)["nll"]
    nll = {}
    for lr in sorted(candidates):
        probe = replace(cfg, lr=lr, cycles=1)
        snapshot, *_ = run_finetune(state, info, data, probe, device)
        nll[lr] = validate(snapshot.to(device), data, device)["nll"]
        print(f"{cfg.optimizer} peak rate {lr:g}: snapshot 1 validation NLL {nll[lr]:.5f} "
              f"(starting model {start:.5f})")  # fmt: skip
    chosen = min(nll, key=lambda lr: (nll[lr], lr))
    print(f"chosen on the validation split: {cfg.optimizer} peak rate {chosen:g}")
    return {"chosen": chosen, "validation_nll": {f"{k:g}": v for k, v in nll.items()},
            "start_validation_nll": start}  # fmt: skip


def _reused_run(cfg: FinetuneConfig, pretrain, data, checkpoint, posterior=None):
    """Run 0 from an existing fine-tuning run, checking it is the run this method would make.

    Returns (model, its checkpoint summary, its posterior or None).
    """
    if cfg.optimizer == "ivon":
        state, info, post = load_solution(checkpoint, posterior)
    else:
        (state, info), post = load_checkpoint(checkpoint), None
    meta = read_metadata(checkpoint, "checkpoint")
    summary = {k: json.loads(v) for k, v in meta.items() if not k.startswith("lpe_")}
    wanted = asdict(cfg)
    different = {
        k: (v, wanted[k]) for k, v in summary.get("finetune", {}).items() if wanted.get(k, v) != v
    }
    expected = pretrain.backward_passes + cfg.epochs * _steps_per_epoch(data, cfg.batch_size)
    if info.model != pretrain.model or different or info.backward_passes != expected:
        raise ValueError(
            f"--reuse {checkpoint} is not run 0 of this method (model {info.model}, "
            f"{info.backward_passes} backward passes, expected {expected}; settings that differ "
            f"(stored, wanted): {different}); rerun its fine-tuning or drop --reuse"
        )
    model = info.build()
    model.load_state_dict(state)
    return model, summary, post


def _runs(sources, state, info, data, cfg, runs, device, resume, reuse=None, posterior=None,
          draws=1):  # fmt: skip
    """``de`` and ``multiivon``: independent runs with seeds ``seed + r``."""
    for r in range(runs):
        run_cfg = replace(cfg, seed=cfg.seed + r)
        if r == 0 and reuse:
            model, summary, post = _reused_run(run_cfg, info, data, reuse, posterior)
        else:
            resume_path = resume.path(f"run{r}")
            model, summary, post, _ = run_finetune(
                state, info, data, run_cfg, device, resume_path, resume.every
            )
        sources.spent += summary["backward_passes"] - info.backward_passes
        if run_cfg.optimizer != "ivon":
            sources.add(model, summary)
            continue
        for d in range(draws):  # MultiIVON: posterior draws of this run, FP32 each
            torch.nn.utils.vector_to_parameters(draw(post, run_cfg.seed, d), model.parameters())
            sources.add(model, {**summary, "run": r, "draw": d})


def train_batch_ensemble(state, info, data, cfg: FinetuneConfig, members: int, init_std, device,
                         resume: Resume | None = None, micro_batch: int = 0):  # fmt: skip
    """Fine-tune a BatchEnsemble of ``members`` from ``state`` with SGD (cosine decay).

    Every minibatch is repeated for the members, so each member sees the same data order as the
    other methods' runs. ``micro_batch`` > 0 splits each minibatch into chunks of that many
    examples (times the members) whose gradients are accumulated, for a GPU on which the
    repeated batch does not fit; the gradient is the whole batch's. Returns (model, backward
    passes counted as members x steps); resumable like ``lpe.training.finetuning.finetune``.
    """
    model = info.build()
    model.load_state_dict(state)
    batch_ensemble(model, members, torch.Generator().manual_seed(cfg.seed), "gaussian", init_std)
    model.to(device)
    total = cfg.epochs * _steps_per_epoch(data, cfg.batch_size)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, 0))
    order = torch.Generator().manual_seed(cfg.seed + 1)
    passes = step = first_epoch = skip = 0
    resume = resume or Resume(None, 0, {})
    if (saved := resume.load()) is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        order.set_state(saved["epoch_order"])
        passes, step, first_epoch, skip = (saved[k] for k in ("passes", "step", "epoch", "batch"))
    with tqdm(total=total, initial=step, desc="batchensemble", file=sys.stderr,
              mininterval=5) as bar:  # fmt: skip
        for epoch in range(first_epoch, cfg.epochs):
            model.train()
            epoch_order = order.get_state()
            start = skip if epoch == first_epoch else 0
            batches = data.train_batches(cfg.batch_size, order, device, skip=start)
            for batch, (xb, yb) in enumerate(batches, start=start):
                optimizer.zero_grad(set_to_none=True)
                loss = _batch_ensemble_backward(model, xb, yb, members, micro_batch)
                if not math.isfinite(loss):
                    raise DivergenceError(
                        f"batchensemble fine-tuning diverged: loss {loss} at epoch "
                        f"{epoch}; lower bma.sgd.lr (now {cfg.lr})"
                    )
                optimizer.step()
                scheduler.step()
                passes += members
                step += 1
                bar.update(1)
                if resume.due(step) or step == total:
                    resume.save({
                        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "epoch_order": epoch_order,
                        "passes": passes, "step": step, "epoch": epoch, "batch": batch + 1,
                    })  # fmt: skip
            advice = f"lower bma.sgd.lr (now {cfg.lr})"
            require_finite_weights(model, "batchensemble fine-tuning", advice)
    return model.cpu(), passes


def _batch_ensemble_backward(model, xb, yb, members: int, micro_batch: int) -> float:
    """Backward of the members' mean cross-entropy on ``xb`` repeated once per member (the
    BatchEnsemble layout: member m takes the m-th copy); the loss, as a float."""
    if not micro_batch or micro_batch >= len(xb):
        loss = torch.nn.functional.cross_entropy(
            model(xb.repeat(members, *([1] * (xb.dim() - 1)))), yb.repeat(members)
        )
        loss.backward()
        return loss.item()
    total = 0.0
    for chunk_x, chunk_y in zip(xb.split(micro_batch), yb.split(micro_batch), strict=True):
        repeated = chunk_x.repeat(members, *([1] * (chunk_x.dim() - 1)))
        loss = torch.nn.functional.cross_entropy(model(repeated), chunk_y.repeat(members))
        (loss * (len(chunk_x) / len(xb))).backward()  # the chunk's share of the batch mean
        total += loss.item() * len(chunk_x) / len(xb)
    return total


def train(args) -> dict:
    if args.lr_candidates and (args.method not in ("sse", "csgld") or min(args.lr_candidates) <= 0):
        raise ValueError(f"--lr-candidates are positive peak rates of sse or csgld; got "
                         f"{args.lr_candidates} for {args.method}")  # fmt: skip
    cfg = finetune_config(args)
    state, info = load_checkpoint(args.checkpoint)
    data = open_stage_data(args, info)
    device = resolve_device(args.device)
    settings = {"runs": args.runs, "epochs_per_run": cfg.epochs, **asdict(cfg)}
    # one resumable state per run, in the --resume folder (kept until the sources are written)
    resume = RunResumes(args.resume, args.checkpoint_every)
    with atomic_dir(args.out) as tmp:
        sources = Sources(tmp, args.method, info.backward_passes)
        if args.method in ("sse", "csgld"):
            if len(args.lr_candidates) == 1:  # nothing to choose
                cfg = replace(cfg, lr=args.lr_candidates[0])
                settings["lr"] = cfg.lr
            elif args.lr_candidates:
                choice = choose_peak_rate(state, info, data, replace(cfg, optimizer=args.method),
                                          args.lr_candidates, device)  # fmt: skip
                cfg = replace(cfg, lr=choice["chosen"])
                settings.update(lr=cfg.lr, lr_choice=choice)
            cyclic = replace(cfg, optimizer=args.method, cycles=args.runs)
            cyclic = replace(cyclic, epochs=cfg.epochs * args.runs)
            _cyclic(sources, state, info, data, cyclic, device, resume)
        elif args.method == "de":
            run = replace(cfg, optimizer="sgd")
            _runs(sources, state, info, data, run, args.runs, device, resume, args.reuse)
        elif args.method == "multiivon":
            run = replace(cfg, optimizer="ivon")
            _runs(
                sources, state, info, data, run, args.runs, device, resume,
                args.reuse, args.reuse_posterior, args.draws,
            )  # fmt: skip
            settings["draws"] = args.draws
        else:
            be_cfg = replace(cfg, optimizer="sgd")
            fingerprint = {"batchensemble": asdict(be_cfg), "members": args.runs,
                           "init_std": args.init_std, "start": info.sha256}  # fmt: skip
            model, passes = train_batch_ensemble(
                state, info, data, be_cfg, args.runs, args.init_std, device,
                resume.run("batchensemble", fingerprint), args.micro_batch,
            )  # fmt: skip
            sources.spent += passes
            summary = {
                "model": info.model,
                "num_classes": info.num_classes,
                "input_shape": list(info.input_shape),
                "optimizer": "sgd",
                "batch_ensemble": args.runs,
            }
            sources.add(model, summary, members=args.runs)
            settings["init_std"] = args.init_std
        manifest = sources.manifest(settings)
        write_manifest(tmp, manifest)
    resume.done()
    return manifest


class RunResumes:
    """The resumable states of a method's runs: ``FOLDER/<run>.pt`` each (``lpe.core.resume``)."""

    def __init__(self, folder: str | None, every: int) -> None:
        self.folder, self.every = (Path(folder) if folder else None), every

    def path(self, name: str) -> Path | None:
        return self.folder / f"{name}.pt" if self.folder else None

    def run(self, name: str, fingerprint: dict) -> Resume:
        return Resume(self.path(name), self.every, fingerprint)

    def done(self) -> None:
        if self.folder is not None and self.folder.is_dir():
            shutil.rmtree(self.folder)


def read_sources(folder: str | Path) -> dict:
    manifest = read_manifest(folder, "sources folder")
    path = Path(folder) / MANIFEST
    if manifest.get("method") not in METHODS or not manifest.get("sources"):
        raise ArtifactError(f"{path} is not a sources manifest of {METHODS}")
    return manifest


def load_batch_ensemble(path: str | Path) -> tuple[torch.nn.Module, int, object]:
    state, info = load_checkpoint(path)
    members = json.loads(read_metadata(path, "checkpoint")["batch_ensemble"])
    model = batch_ensemble(info.build(), members)
    model.load_state_dict(state, strict=True)
    return model, members, info


def batch_ensemble_bits(model: torch.nn.Module, members: int) -> list[int]:
    """FP32 storage: member 1 carries the shared weights, each member its own fast weights."""
    fast = sum(
        p.numel()
        for n, p in model.named_parameters()
        if n.rsplit(".", 1)[-1] in ("r", "s") or (n.endswith("bias") and p.dim() == 2)
    )
    total = sum(t.numel() for t in model.state_dict().values())
    per_member = fast // members
    return [32 * (total - fast + per_member)] + [32 * per_member] * (members - 1)


def _predict_batch_ensemble(path, x, batch_size, device, calib_x=None) -> tuple[Evaluated, object]:
    model, members, info = load_batch_ensemble(path)
    model.to(device)

    def log_probs(inputs):
        chunks = batches(inputs, batch_size)
        return torch.cat([member_log_probs(model, members, xb.to(device)).cpu() for xb in chunks],
                         dim=1)  # fmt: skip

    start = time.perf_counter()
    lp = log_probs(x)
    took = (time.perf_counter() - start) / members  # one batched forward for all members
    calibration = None if calib_x is None else log_probs(calib_x)
    done = Evaluated(lp, batch_ensemble_bits(model, members), [took] * members, calibration)
    return done, info


def _joined(parts: list[Evaluated]) -> Evaluated:
    """The members of several evaluated sources, in order, as one :class:`Evaluated`."""
    calibration = [p.calibration for p in parts]
    return Evaluated(
        torch.cat([p.log_probs for p in parts]),
        [int(b) for p in parts for b in p.bits],
        [t for p in parts for t in p.seconds],
        None if calibration[0] is None else torch.cat(calibration),
    )


def predict_fp32_sources(folder, x, batch_size, device, calib_x=None):
    """Every source in order, evaluated (:class:`Evaluated`), their budgets and first info."""
    manifest = read_sources(folder)
    parts, budget, first = [], [], None
    for source in tqdm(manifest["sources"], desc=manifest["method"], mininterval=5):
        path = Path(folder) / source["file"]
        if manifest["method"] == "batchensemble":
            done, info = _predict_batch_ensemble(path, x, batch_size, device, calib_x)
        else:
            done, info = predict_fp32(path, x, batch_size, device, calib_x)
        parts.append(done)
        budget += [source["backward_passes"]] * len(done.log_probs)
        first = first or info
    return manifest, _joined(parts), budget, first


def predict_copies(folder, members_out, fmt, copies, seed, policy, x, batch_size, device,
                   calib_x=None):  # fmt: skip
    """``copies`` LPE-BSR members of every source, written to ``members_out`` and evaluated."""
    manifest = read_sources(folder)
    if manifest["method"] == "batchensemble":
        raise ValueError("LPE-BSR copies of a BatchEnsemble are not part of the paper's design")
    parts, budget, first = [], [], None
    with atomic_dir(members_out) as tmp:
        for c, source in enumerate(manifest["sources"]):
            checkpoint = Path(folder) / source["file"]
            out = tmp / f"source{c:02d}"
            generate(checkpoint, out, fmt, "bsr", derive_seed("source", seed, c), copies, policy)
            done, _, info = predict_members(
                checkpoint, out, x, batch_size, device, calibration_x=calib_x
            )
            parts.append(done)
            budget += [source["backward_passes"]] * len(done.log_probs)
            first = first or info
    return manifest, _joined(parts), budget, first


def predict(args) -> None:
    first = Path(args.sources) / read_sources(args.sources)["sources"][0]["file"]
    data = open_stage_data(args, checkpoint_info(first))
    x, labels = data.inputs(args.split, args.batch_size)
    calib_x, calib_labels = (
        data.inputs(data.selection_split, args.batch_size) if args.calibrate else (None, None)
    )
    device = resolve_device(args.device)
    fp32_out = args.out[0] if args.bits is None else args.fp32_out
    if fp32_out:
        with autocast(device, args.dtype):
            manifest, done, budget, info = predict_fp32_sources(
                args.sources, x, args.batch_size, device, calib_x
            )
        run = {"method": manifest["method"], "bits": 0, "seed": 0}
        _write(fp32_out, done, labels, calib_labels, budget, info, run)
    if args.bits is None:
        return
    fmt = get_format(f"int{args.bits}", per_channel=not args.per_tensor)
    policy = QuantPolicy(exclude=tuple(args.exclude), min_ndim=args.min_ndim)
    for seed, members_out, out in zip(args.seeds, args.members_out, args.out, strict=True):
        with autocast(device, args.dtype):
            manifest, done, budget, info = predict_copies(
                args.sources, members_out, fmt, args.copies, seed, policy, x,
                args.batch_size, device, calib_x,
            )  # fmt: skip
        run = {"method": f"{manifest['method']}+lpe-bsr", "bits": args.bits, "seed": seed}
        _write(out, done, labels, calib_labels, budget, info, run)


def _write(out, done: Evaluated, labels, calib_labels, budget, info, run) -> None:
    run["budget"] = np.asarray(budget, dtype=np.int64)
    write_evaluated(out, done, labels, info, run, calib_labels)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {number}")
    return number


# Each method's own settings from the config's fast section (lpe.core.settings), after bma's
# fine-tuning settings (FINETUNE_SETTINGS), which they override: config key -> option
METHOD_SETTINGS = {
    "sse": {"fast.sse.lr": "lr_candidates", "fast.sse.momentum": "momentum"},
    "csgld": {
        "fast.csgld.lr": "lr_candidates",
        "fast.csgld.momentum": "momentum",
        "fast.csgld.temperature": "csgld_temperature",
        "fast.csgld.exploration": "csgld_exploration",
    },
    "multiivon": {"fast.multiivon.draws": "draws"},
    "batchensemble": {
        "fast.batchensemble.init_std": "init_std",
        "fast.batchensemble.micro_batch": "micro_batch",
    },
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("train", help="a method's sources (checkpoints + manifest)")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--checkpoint", required=True, help="the trained checkpoint to start from")
    add_data_arguments(p)
    p.add_argument("--runs", type=_positive, default=4, help="runs, cycles or BE members (K)")
    p.add_argument("--draws", type=_positive, default=2, help="multiivon: draws per run")
    p.add_argument("--init-std", type=float, default=0.1, help="batchensemble: fast weight std")
    p.add_argument("--reuse", help="de/multiivon: an existing run 0 (its checkpoint)")
    p.add_argument(
        "--lr-candidates", type=float, nargs="*", default=[],
        help="sse/csgld: peak rates to choose from on validation (first cycle; replaces --lr)",
    )  # fmt: skip
    p.add_argument("--reuse-posterior", help="multiivon: run 0's posterior file")
    p.add_argument(
        "--micro-batch",
        type=int,
        default=0,
        help="batchensemble: examples per accumulated chunk (0: the whole batch)",
    )
    add_finetune_arguments(p)
    add_resume_arguments(p)
    p.add_argument("--out", required=True, help="the sources folder")
    add_runtime_arguments(p, inference=False)
    q = commands.add_parser("predict", help="predictions of the sources, or of LPE-BSR copies")
    q.add_argument("--sources", required=True)
    add_data_arguments(q)
    q.add_argument("--split", default="test", choices=SPLITS)
    q.add_argument("--batch-size", type=int, default=1000)
    q.add_argument(
        "--bits",
        type=int,
        choices=range(MIN_BITS, MAX_BITS + 1),
        metavar=f"{{{MIN_BITS}..{MAX_BITS}}}",
        help="make LPE-BSR copies at INT-b (omit for the FP32 sources)",
    )
    q.add_argument("--copies", type=_positive, default=5, help="LPE-BSR copies per source (k)")
    q.add_argument(
        "--seeds", "--seed", type=int, nargs="+", default=[0], help="LPE-BSR ensemble seeds"
    )
    q.add_argument(
        "--members-out", nargs="+", default=[], help="per seed, the copies' folder (with --bits)"
    )
    q.add_argument("--per-tensor", action="store_true")
    q.add_argument("--exclude", nargs="*", default=list(DEFAULT_EXCLUDE))
    q.add_argument("--min-ndim", type=int, default=2)
    q.add_argument(
        "--out", nargs="+", required=True, help="the predictions file (per seed with --bits)"
    )
    q.add_argument("--fp32-out", help="with --bits: also the FP32 predictions of the sources")
    add_calibration_arguments(q, holdout=False)  # --holdout: the data flags'
    add_runtime_arguments(q)
    command = subcommand(argv)
    if command == "train":
        own = METHOD_SETTINGS.get(argument_value(argv, "--method"), {})
        apply_settings(p, argv, {**DATA_SETTINGS, **FINETUNE_SETTINGS, **RESUME_SETTINGS,
                                 "fast.runs": "runs", "job.reuse": "reuse",
                                 "job.reuse_posterior": "reuse_posterior", **own})  # fmt: skip
    elif command == "predict":
        policy = QUANT_SETTINGS if argument_value(argv, "--bits") else {}  # LPE-BSR copies only
        apply_settings(q, argv, {**DATA_SETTINGS, **CALIBRATED_SETTINGS, **policy})
    args = parser.parse_args(argv)
    if args.command == "train":
        if args.method in REUSABLE and args.reuse is None and args.reuse_posterior:
            parser.error("--reuse-posterior needs --reuse")
        if args.method == "multiivon" and args.reuse and not args.reuse_posterior:
            parser.error("multiivon --reuse needs --reuse-posterior (run 0's posterior file)")
        if args.reuse and args.method not in REUSABLE:
            parser.error(f"--reuse applies to {REUSABLE}, not {args.method}")
        set_threads(args.threads)
        manifest = train(args)
        print(f"wrote {len(manifest['sources'])} {args.method} sources to {args.out}")
    else:
        check_calibration(parser, args)
        if args.bits is not None and not args.members_out:
            parser.error("--bits needs --members-out (where the member files go)")
        if args.bits is None and (len(args.out) != 1 or args.fp32_out or args.members_out):
            parser.error("without --bits: one --out (the FP32 predictions), no --fp32-out")
        if args.bits is not None and (
            problem := seed_runs_problem(args.seeds, args.members_out, args.out)
        ):
            parser.error(problem)
        set_threads(args.threads)
        predict(args)


if __name__ == "__main__":
    main()
