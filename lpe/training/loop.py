"""MAP training: AdamW, linear warmup then cosine decay, weight decay; the loop and its checks.

The checkpoint kept is the epoch with the best validation NLL, not the last one: a model trained
past its best sits where training is most sensitive (one different rounding of the GEMMs moved a
mini model's test NLL by 9% at its last epoch), and the best epoch is the usual model-selection
rule. The last epoch's weights are returned too (docs/experiments.md measures both rules' spread
over training seeds); the convergence gate (``lpe.models.checkpoints``) reads the whole
validation curve.

Every random draw (initialisation, minibatch order) comes from generators seeded by the config's
seed. The number of backward passes (minibatch gradient evaluations) is counted: it is the
training budget of everything derived from the weights. Fine-tuning and the fast ensembles reuse
the schedule (``lr_factor``), the evaluation and the divergence check.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass

import torch
from tqdm import tqdm

from lpe.core import metrics
from lpe.data.inputs import minibatches
from lpe.evaluation.prediction import predict_log_probs
from lpe.models.factory import count_params, create_model


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"train.{key} must be >= 1, got {getattr(self, key)}")
        if self.lr <= 0 or self.weight_decay < 0 or self.warmup_epochs < 0 or self.seed < 0:
            raise ValueError(f"invalid training settings: {self}")


class DivergenceError(RuntimeError):
    """The training loss or the weights became NaN or infinite."""


def require_finite_weights(model: torch.nn.Module, what: str, advice: str) -> None:
    """Raise :class:`DivergenceError` when a weight is NaN or infinite.

    The loss check before each step cannot see the last step's update: a run that diverges
    there ends with finite losses and broken weights, which would reach the metrics as NaN.
    """
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise DivergenceError(
            f"{what} diverged: {len(bad)} weight tensor(s) are not finite after the last step "
            f"(first: {bad[0]}); {advice}"
        )


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup for ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def train(model_name: str, splits, cfg: TrainConfig, device: torch.device, log=sys.stderr):
    """Train ``model_name`` on ``splits``; return the model at its best validation NLL, a
    summary dict, and the last epoch's state dict."""
    model = create_model(model_name, splits.num_classes, splits.input_shape, seed=cfg.seed)
    model = model.to(device)
    x, y = splits.x["train"], splits.y["train"]
    steps_per_epoch = math.ceil(len(y) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total, cfg.warmup_epochs * steps_per_epoch)
    )
    order = torch.Generator().manual_seed(cfg.seed + 1)
    backward_passes = 0
    val_curve: list[float] = []  # validation NLL after each epoch: the convergence gate's data
    best: tuple[float, int, dict, dict] | None = None  # (val nll, epoch, state, val metrics)
    print(f"{model_name}: {count_params(model):,} parameters, {total} steps", file=log)
    advice = f"lower train.lr (now {cfg.lr}) or check the data"
    with tqdm(total=total, desc=f"train {model_name}", file=log, mininterval=5) as bar:
        for epoch in range(cfg.epochs):
            model.train()
            for xb, yb in minibatches(x, y, cfg.batch_size, order, device):
                loss = torch.nn.functional.cross_entropy(model(xb), yb)
                if not torch.isfinite(loss):
                    raise DivergenceError(
                        f"{model_name}: training loss is {loss.item()} at epoch {epoch}; {advice}"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                backward_passes += 1
                optimizer.step()
                schedule.step()
                bar.update(1)
            require_finite_weights(model, model_name, advice)
            val = evaluate(model, splits, "val", device)
            val_curve.append(val["nll"])
            if best is None or val["nll"] < best[0]:  # ties keep the earlier epoch
                state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                best = (val["nll"], epoch + 1, state, val)
            bar.write(
                f"epoch {epoch + 1}/{cfg.epochs}: val nll {val['nll']:.4f} err {val['err']:.2f}%"
                + (" (best)" if best[1] == epoch + 1 else "")
            )
    last = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best[2])
    print(f"kept epoch {best[1]} of {cfg.epochs} (best validation NLL {best[0]:.4f}; "
          f"last epoch {val_curve[-1]:.4f})", file=log)  # fmt: skip
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


def evaluate(model, splits, split: str, device) -> dict[str, float]:
    return evaluate_on(model, splits.x[split], splits.y[split], device)


def evaluate_on(model, x, y, device) -> dict[str, float]:
    """NLL, ERR, ECE of one model on inputs ``x`` (a tensor or a loader of batches)."""
    lp = predict_log_probs(model, x, batch_size=1000, device=device)  # (N, C)
    return metrics.score(lp.unsqueeze(0), y)  # (1, N, C): one member
