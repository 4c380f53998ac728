"""MAP training: AdamW, linear warmup then cosine decay, weight decay; the best epoch is kept.

The checkpoint kept is the epoch with the best validation NLL, not the last one: a model trained
past its best sits where training is most sensitive (one different rounding of the GEMMs moved a
mini model's test NLL by 9% at its last epoch), and the best epoch is the usual model-selection
rule. The last epoch's weights are returned too (docs/experiments.md measures both rules' spread
over training seeds); the convergence gate (``lpe.models.checkpoints``) reads the whole
validation curve.

Every random draw (initialisation, minibatch order) comes from generators seeded by the config's
seed; the loop is ``lpe.training.loop.fit`` with the ``adamw`` method, whose schedule and
divergence checks fine-tuning and the fast sources share.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass

import torch

from lpe.core.jobs import Job, setting
from lpe.data.inputs import TensorData
from lpe.models.factory import count_params, create_model
from lpe.training.loop import Method, Plan, evaluate, fit, lr_factor


@dataclass(frozen=True)
class AdamWSettings:
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 1


class AdamW(Method):
    """AdamW with linear warmup then cosine decay: MAP training of a model from scratch."""

    def __init__(self, settings: AdamWSettings, model_name: str) -> None:
        self.settings, self.what = settings, model_name

    def advice(self) -> str:
        return f"lower train.lr (now {self.settings.lr}) or check the data"

    def make_optimizer(self, model):
        s = self.settings
        return torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)

    def make_scheduler(self, optimizer, total, steps_per_epoch):
        warmup = self.settings.warmup_epochs * steps_per_epoch
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup))


@dataclass(frozen=True, kw_only=True)
class TrainConfig(Job):
    """A training run's settings: the config's ``train`` keys, as the workflow passes them for
    one model (its ``train.per_model`` overrides applied; a seed run's seed as ``train.seed``)."""

    epochs: int = setting(12, "passes over the training set", config="train.epochs")
    batch_size: int = setting(128, "minibatch size", config="train.batch_size")
    lr: float = setting(1e-3, "peak AdamW learning rate", config="train.lr")
    weight_decay: float = setting(0.05, "decoupled weight decay", config="train.weight_decay")
    warmup_epochs: int = setting(
        1, "linear warmup epochs before the cosine decay", config="train.warmup_epochs"
    )
    seed: int = setting(0, "initialisation and minibatch order", config="train.seed")

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"train.{key} must be >= 1, got {getattr(self, key)}")
        if self.lr <= 0 or self.weight_decay < 0 or self.warmup_epochs < 0 or self.seed < 0:
            raise ValueError(f"invalid training settings: {self}")


def train(model_name: str, splits, cfg: TrainConfig, device, log=sys.stderr):
    """Train ``model_name`` on ``splits``; return the model at its best validation NLL, a
    summary dict, and the last epoch's state dict."""
    model = create_model(model_name, splits.num_classes, splits.input_shape, seed=cfg.seed)
    model = model.to(device)
    plan = Plan(cfg.epochs, cfg.batch_size, cfg.seed)
    method = AdamW(AdamWSettings(cfg.lr, cfg.weight_decay, cfg.warmup_epochs), model_name)
    total = cfg.epochs * plan.steps_per_epoch(len(splits.y["train"]))
    print(f"{model_name}: {count_params(model):,} parameters, {total} steps", file=log)
    val_curve: list[float] = []  # validation NLL after each epoch: the convergence gate's data
    best: tuple[float, int, dict, dict] | None = None  # (val nll, epoch, state, val metrics)

    def keep_best(epoch: int) -> str:
        nonlocal best
        val = evaluate(model, splits, "val", device)
        val_curve.append(val["nll"])
        if best is None or val["nll"] < best[0]:  # ties keep the earlier epoch
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best = (val["nll"], epoch + 1, state, val)
        return f"epoch {epoch + 1}/{cfg.epochs}: val nll {val['nll']:.4f} err {val['err']:.2f}%" + (
            " (best)" if best[1] == epoch + 1 else ""
        )

    backward_passes = fit(
        model,
        TensorData(splits),
        method,
        plan,
        device,
        desc=f"train {model_name}",
        on_epoch=keep_best,
        log=log,
    )
    last = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best[2])
    print(
        f"kept epoch {best[1]} of {cfg.epochs} (best validation NLL {best[0]:.4f}; "
        f"last epoch {val_curve[-1]:.4f})",
        file=log,
    )
    summary = {
        "model": model_name,
        "params": count_params(model),
        "num_classes": splits.num_classes,
        "input_shape": list(splits.input_shape),
        "optimizer": "adamw",
        "backward_passes": backward_passes,
        "train": asdict(cfg),
        "val": best[3],
        "val_nll_curve": val_curve,
        "best_epoch": best[1],
    }
    return model, summary, last
