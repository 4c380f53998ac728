"""Fine-tuning a checkpoint with SGD, SWAG, IVON, SSE or CSGLD; solutions and posterior files.

All start from the same trained checkpoint and see the same minibatch order (seeded):

- ``sgd``: SGD with momentum, cosine decay of the learning rate to 0. The solution is the final
  weights: the LPE-BSR centre of Figure 2's first panel.
- ``swag``: SGD with momentum at a constant learning rate; from ``swag_start_epoch`` on, a
  snapshot every ``swag_collect_every`` steps feeds SWAG's moments (``lpe.sources.swag``). The
  solution is the SWA mean; the posterior file holds the mean, diagonal variance and deviations.
- ``ivon``: the IVON optimizer of the ``ivon-opt`` package, cosine decay. The solution is the
  IVON mean; the posterior file holds the Hessian estimate (``lpe.sources.ivon_posterior``).
- ``sse`` and ``csgld`` (Figures 4, 5, 9, used by ``lpe.stages.fast``): SGD with momentum under the
  cyclic cosine schedule of ``lpe.sources.cyclic`` (``cycles`` cycles, peak ``lr``); CSGLD adds the
  Langevin noise of ``lpe.sources.csgld`` at ``csgld_temperature`` after each step of a cycle's
  sampling phase (the part after ``csgld_exploration``). A snapshot is taken at the end of every
  cycle; the solution is the last one.

Every random draw comes from the seed: the minibatch order from an explicit generator, IVON's
weight noise (drawn by ``ivon-opt`` from torch's global generator) inside
``torch.random.fork_rng``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, fields

import torch
from tqdm import tqdm

from lpe.core.artifacts import ArtifactError, load_tensors, save_tensors
from lpe.core.resume import Resume, rng_state, set_rng_state
from lpe.members.files import member_seed
from lpe.models.checkpoints import load_checkpoint
from lpe.sources.csgld import add_langevin_noise
from lpe.sources.cyclic import CyclicSchedule
from lpe.sources.ivon_posterior import IvonPosterior
from lpe.sources.swag import SwagCollector, SwagError, SwagPosterior
from lpe.training.loop import DivergenceError, evaluate_on, lr_factor, require_finite_weights

OPTIMIZERS = ("sgd", "swag", "ivon", "sse", "csgld")


CYCLIC = ("sse", "csgld")


LR_SETTINGS = {"ivon": "bma.ivon.lr", "sse": "fast.sse.lr", "csgld": "fast.csgld.lr"}


POSTERIOR_KIND = "lpe-posterior"


@dataclass(frozen=True)
class FinetuneConfig:
    optimizer: str = "sgd"
    epochs: int = 3
    batch_size: int = 128
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    swag_rank: int = 20
    swag_start_epoch: int = 1
    swag_collect_every: int = 5
    ivon_lr: float = 3e-4
    ivon_ess: float = 12000.0
    ivon_hess_init: float = 10.0
    ivon_beta2: float = 0.99999
    ivon_weight_decay: float = 1e-4
    ivon_mc_samples: int = 1
    cycles: int = 1
    csgld_temperature: float = 1.0
    csgld_exploration: float = 0.5

    def __post_init__(self) -> None:
        problems = []
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for key in ("epochs", "batch_size", "swag_collect_every", "ivon_mc_samples", "cycles"):
            if getattr(self, key) < 1:
                problems.append(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.lr <= 0 or self.ivon_lr <= 0:
            problems.append(f"learning rates must be > 0, got lr={self.lr}, ivon_lr={self.ivon_lr}")
        if not self.ivon_ess > 0:
            problems.append(f"ivon_ess (effective sample size) must be > 0, got {self.ivon_ess}")
        if self.optimizer == "swag" and self.swag_rank < 2:
            problems.append(f"swag_rank must be >= 2, got {self.swag_rank}")
        if self.optimizer == "swag" and not 0 <= self.swag_start_epoch < self.epochs:
            problems.append(
                f"swag_start_epoch must be in [0, epochs={self.epochs}), "
                f"got {self.swag_start_epoch}"
            )
        if self.csgld_temperature < 0:
            problems.append(f"csgld temperature must be >= 0, got {self.csgld_temperature}")
        if not 0 <= self.csgld_exploration <= 1:
            problems.append(f"csgld exploration must be in [0, 1], got {self.csgld_exploration}")
        if problems:
            raise ValueError("bad fine-tuning settings: " + "; ".join(problems))

    def swag_snapshots(self, steps_per_epoch: int) -> int:
        """How many snapshots SWAG will collect (known before training starts)."""
        collecting = (self.epochs - self.swag_start_epoch) * steps_per_epoch
        return collecting // self.swag_collect_every

    def schedule(self, steps_per_epoch: int) -> CyclicSchedule:
        """The cyclic schedule of ``sse``/``csgld`` (refuses cycles that do not divide it)."""
        exploration = self.csgld_exploration if self.optimizer == "csgld" else 1.0
        return CyclicSchedule(self.epochs * steps_per_epoch, self.cycles, self.lr, exploration)


def _optimizer(cfg: FinetuneConfig, model: torch.nn.Module):
    if cfg.optimizer == "ivon":
        import ivon  # the IVON authors' optimizer (package ivon-opt)

        return ivon.IVON(
            model.parameters(),
            lr=cfg.ivon_lr,
            ess=cfg.ivon_ess,
            hess_init=cfg.ivon_hess_init,
            beta2=cfg.ivon_beta2,
            weight_decay=cfg.ivon_weight_decay,
            mc_samples=cfg.ivon_mc_samples,
        )
    return torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )


def finetune(model: torch.nn.Module, data, cfg: FinetuneConfig, device, log=sys.stderr,
             resume: Resume | None = None):  # fmt: skip
    """Fine-tune ``model`` in place on ``data`` (``lpe.data.inputs``).

    Returns (backward passes, posterior or None, snapshots); ``snapshots`` lists, for ``sse``
    and ``csgld``, each cycle's final weights (CPU copies) with the backward passes spent so far.
    With ``resume``, the loop's whole state is saved every ``resume.every`` steps and a saved
    state is continued from, giving the weights an uninterrupted run gives (tested).
    """
    steps_per_epoch = math.ceil(data.train_size / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    cyclic = cfg.schedule(steps_per_epoch) if cfg.optimizer in CYCLIC else None
    collector = None
    if cfg.optimizer == "swag":
        snapshots = cfg.swag_snapshots(steps_per_epoch)
        if cfg.swag_rank > snapshots:
            raise SwagError(
                f"swag.rank = {cfg.swag_rank} is larger than the {snapshots} snapshots the "
                f"schedule collects ({cfg.epochs - cfg.swag_start_epoch} epochs x "
                f"{steps_per_epoch} steps / every {cfg.swag_collect_every}); lower swag.rank "
                "or collect more often"
            )
        collector = SwagCollector(cfg.swag_rank)
    model = model.to(device)
    optimizer = _optimizer(cfg, model)
    scheduler = None  # SWAG collects at a constant learning rate; the others decay to 0
    if cyclic is not None:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cyclic.lr_at(s) / cfg.lr)
    elif cfg.optimizer != "swag":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, 0))
    order = torch.Generator().manual_seed(cfg.seed + 1)
    langevin = torch.Generator(device=device).manual_seed(cfg.seed + 2)
    backward_passes = step = first_epoch = skip = 0
    snapshots = []
    resume = resume or Resume(None, 0, {})
    saved = resume.load()
    if saved is not None:
        model.load_state_dict(saved["model"])
        _load_optimizer(optimizer, saved["optimizer"], device)
        if scheduler is not None:
            scheduler.load_state_dict(saved["scheduler"])
        order.set_state(saved["epoch_order"])  # the epoch's minibatch order is drawn again
        langevin.set_state(saved["langevin"])
        set_rng_state(saved["rng"], device)
        if collector is not None:
            collector.restore(saved["collector"])
        backward_passes, step = saved["backward_passes"], saved["step"]
        snapshots, first_epoch, skip = saved["snapshots"], saved["epoch"], saved["batch"]
    with tqdm(total=total, initial=step, desc=f"finetune {cfg.optimizer}", file=log,
              mininterval=5) as bar:  # fmt: skip
        for epoch in range(first_epoch, cfg.epochs):
            model.train()
            epoch_order = order.get_state()
            start = skip if epoch == first_epoch else 0
            batches = data.train_batches(cfg.batch_size, order, device, skip=start)
            for batch, (xb, yb) in enumerate(batches, start=start):
                if cfg.optimizer == "ivon":
                    for _ in range(cfg.ivon_mc_samples):
                        with optimizer.sampled_params(train=True):
                            optimizer.zero_grad(set_to_none=True)
                            loss = _loss(model, xb, yb, cfg, epoch)
                            loss.backward()
                        backward_passes += 1
                else:
                    optimizer.zero_grad(set_to_none=True)
                    loss = _loss(model, xb, yb, cfg, epoch)
                    loss.backward()
                    backward_passes += 1
                optimizer.step()
                if cfg.optimizer == "csgld" and cyclic.sampling(step):
                    add_langevin_noise(
                        model.parameters(),
                        cyclic.lr_at(step),
                        cfg.csgld_temperature,
                        data.train_size,
                        langevin,
                    )
                if cyclic is not None and cyclic.cycle_end(step):
                    weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                    snapshots.append((weights, backward_passes))
                if scheduler is not None:
                    scheduler.step()
                step += 1
                since = step - cfg.swag_start_epoch * steps_per_epoch  # steps into collection
                if collector is not None and since > 0 and since % cfg.swag_collect_every == 0:
                    collector.collect(torch.nn.utils.parameters_to_vector(model.parameters()))
                bar.update(1)
                if resume.due(step) or step == total:  # the end too: a finished run is kept
                    resume.save({
                        "model": model.state_dict(), "optimizer": _optimizer_state(optimizer),
                        "scheduler": scheduler.state_dict() if scheduler is not None else None,
                        "epoch_order": epoch_order, "langevin": langevin.get_state(),
                        "rng": rng_state(device), "backward_passes": backward_passes,
                        "step": step, "epoch": epoch, "batch": batch + 1, "snapshots": snapshots,
                        "collector": collector.state() if collector is not None else None,
                    })  # fmt: skip
            require_finite_weights(model, f"{cfg.optimizer} fine-tuning", _lr_advice(cfg))
            val = validate(model, data, device)
            bar.write(f"epoch {epoch + 1}/{cfg.epochs}: val nll {val['nll']:.4f}")
    posterior = None
    if collector is not None:
        posterior = collector.posterior()
        torch.nn.utils.vector_to_parameters(posterior.mean.to(device), model.parameters())
    elif cfg.optimizer == "ivon":
        posterior = IvonPosterior.from_optimizer(optimizer, model)
        if not torch.isfinite(posterior.hess).all():
            raise DivergenceError("ivon: the Hessian estimate is not finite; lower ivon.lr")
    return backward_passes, posterior, snapshots


# IVON counts its steps (for debiasing its momentum) outside its state_dict
OPTIMIZER_ATTRIBUTES = ("current_step",)


def _optimizer_state(optimizer) -> dict:
    attributes = {a: getattr(optimizer, a) for a in OPTIMIZER_ATTRIBUTES if hasattr(optimizer, a)}
    return {"state_dict": optimizer.state_dict(), "attributes": attributes}


def _load_optimizer(optimizer, saved: dict, device) -> None:
    """``optimizer.load_state_dict`` and the attributes it leaves out; then the tensors IVON
    keeps in its parameter groups (its Hessian and momentum; torch moves only per-parameter
    state) moved to the device."""
    optimizer.load_state_dict(saved["state_dict"])
    for name, value in saved["attributes"].items():
        setattr(optimizer, name, value)
    for group in optimizer.param_groups:
        for key, value in group.items():
            if isinstance(value, torch.Tensor) and key != "params":
                group[key] = value.to(device)


def validate(model, data, device) -> dict[str, float]:
    """NLL, ERR, ECE on the data's selection split (validation, or an image folder's holdout)."""
    return evaluate_on(model, *data.inputs(data.selection_split), device)


def _loss(model, xb, yb, cfg: FinetuneConfig, epoch: int) -> torch.Tensor:
    loss = torch.nn.functional.cross_entropy(model(xb), yb)
    if not torch.isfinite(loss):
        raise DivergenceError(
            f"{cfg.optimizer} fine-tuning diverged: loss {loss.item()} at epoch {epoch}; "
            f"{_lr_advice(cfg)}"
        )
    return loss


def _lr_advice(cfg: FinetuneConfig) -> str:
    lr = cfg.ivon_lr if cfg.optimizer == "ivon" else cfg.lr
    return f"lower {LR_SETTINGS.get(cfg.optimizer, 'bma.sgd.lr')} (now {lr})"


def save_posterior(path, posterior, solution_sha256: str) -> None:
    if isinstance(posterior, SwagPosterior):
        meta = {"type": "swag", "snapshots": posterior.snapshots}
    else:
        meta = {
            "type": "ivon",
            "ess": posterior.ess,
            "weight_decay": posterior.weight_decay,
            "hess_init": posterior.hess_init,
            "hessian_moved": posterior.hessian_moved(),
        }  # read by the claims report
        print("IVON Hessian / hess_init: " + ", ".join(
            f"{k} {v:.3g}" for k, v in meta["hessian_moved"].items()))  # fmt: skip
    metadata = {"lpe_kind": POSTERIOR_KIND, "solution_sha256": solution_sha256}
    metadata.update({k: json.dumps(v) for k, v in meta.items()})
    save_tensors(path, posterior.tensors(), metadata)


def load_posterior(path) -> tuple[SwagPosterior | IvonPosterior, dict[str, str]]:
    tensors, meta = load_tensors(path, "posterior file")
    if meta.get("lpe_kind") != POSTERIOR_KIND:
        raise ArtifactError(f"{path} is not an LPE posterior file")
    kind = json.loads(meta["type"])
    if kind == "swag":
        return SwagPosterior.from_tensors(tensors, json.loads(meta["snapshots"])), meta
    ess, wd = json.loads(meta["ess"]), json.loads(meta["weight_decay"])
    init = json.loads(meta.get("hess_init", "NaN"))
    return IvonPosterior(tensors["mean"], tensors["hess"], ess, wd, init), meta


def load_solution(checkpoint, posterior_path):
    """A fine-tuned solution's state, info and posterior, refusing a posterior of another one."""
    state, info = load_checkpoint(checkpoint)
    posterior, meta = load_posterior(posterior_path)
    if meta["solution_sha256"] != info.sha256:
        raise ValueError(
            f"{posterior_path} belongs to another solution than {checkpoint}; "
            "delete both and rerun the workflow"
        )
    return state, info, posterior


# FinetuneConfig from the config's bma section (lpe.core.settings): config key -> field. The
# optimizer is the job's (a wildcard), not a setting.
FINETUNE_SETTINGS = {
    "bma.epochs": "epochs",
    "bma.batch_size": "batch_size",
    "bma.seed": "seed",
    "bma.sgd.lr": "lr",
    "bma.sgd.momentum": "momentum",
    "bma.sgd.weight_decay": "weight_decay",
    "bma.swag.rank": "swag_rank",
    "bma.swag.start_epoch": "swag_start_epoch",
    "bma.swag.collect_every": "swag_collect_every",
    "bma.ivon.lr": "ivon_lr",
    "bma.ivon.ess": "ivon_ess",
    "bma.ivon.hess_init": "ivon_hess_init",
    "bma.ivon.beta2": "ivon_beta2",
    "bma.ivon.weight_decay": "ivon_weight_decay",
    "bma.ivon.mc_samples": "ivon_mc_samples",
}
# Resumable state: every bma.checkpoint_every steps, to the job's own file (the workflow's
# job.resume: none when checkpoint_every is 0)
RESUME_SETTINGS = {"bma.checkpoint_every": "checkpoint_every", "job.resume": "resume"}


def add_finetune_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per ``FinetuneConfig`` field (``--swag-rank``, ...), defaulting to its default."""
    for field in fields(FinetuneConfig):
        flag = f"--{field.name.replace('_', '-')}"
        parser.add_argument(flag, type=type(field.default), default=field.default)


def add_resume_arguments(parser: argparse.ArgumentParser) -> None:
    """``--resume PATH`` and ``--checkpoint-every N``: resumable training (``lpe.core.resume``)."""
    parser.add_argument("--resume", help="file (or, for several runs, folder) of resumable state")
    parser.add_argument("--checkpoint-every", type=int, default=0,
                        help="save the resumable state every N steps (0: never)")  # fmt: skip


def finetune_config(args: argparse.Namespace) -> FinetuneConfig:
    return FinetuneConfig(**{f.name: getattr(args, f.name) for f in fields(FinetuneConfig)})


def run_finetune(state, info, data, cfg: FinetuneConfig, device, resume_path=None,
                 checkpoint_every: int = 0):  # fmt: skip
    """Fine-tune a fresh model from ``state`` with every random draw seeded by ``cfg.seed``.

    Returns (model on the CPU, summary for its checkpoint, posterior or None, snapshots); the
    summary's backward passes are the starting checkpoint's plus the fine-tuning's. With
    ``resume_path``, the run's state is saved there every ``checkpoint_every`` steps and at its
    end, and continued from when it exists (the caller deletes it once its outputs are written).
    """
    model = info.build()
    model.load_state_dict(state)
    fingerprint = {"finetune": asdict(cfg), "start": info.sha256, "train_size": data.train_size}
    resume = Resume(resume_path, checkpoint_every, fingerprint)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # IVON draws its weight noise from the global generator
        backward_passes, posterior, snapshots = finetune(model, data, cfg, device, resume=resume)
    summary = {
        "model": info.model,
        "num_classes": info.num_classes,
        "input_shape": list(info.input_shape),
        "optimizer": cfg.optimizer,
        "backward_passes": info.backward_passes + backward_passes,
        "finetune": asdict(cfg),
        "val": validate(model, data, device),
    }
    return model.cpu(), summary, posterior, snapshots


def draw(posterior, seed: int, index: int, swag_scale: float = 0.5) -> torch.Tensor:
    """Member ``index`` of the BMA ensemble with seed ``seed``: one flat weight vector."""
    generator = torch.Generator().manual_seed(member_seed(seed, index))
    # FP32 whatever the forwards' precision: SWAG's low-rank product would otherwise run at the
    # autocast dtype of a CPU stage (--dtype bfloat16)
    with torch.autocast("cpu", enabled=False):
        if isinstance(posterior, SwagPosterior):
            return posterior.sample(generator, scale=swag_scale)
        return posterior.sample(generator)
