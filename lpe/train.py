"""MAP training of one model: AdamW, linear warmup then cosine decay, weight decay.

Every random draw (initialisation, minibatch order) comes from generators seeded by ``--seed``.
The number of backward passes (minibatch gradient evaluations) is counted and saved with the
checkpoint: it is the training budget of everything derived from it.

Usage: ``python -m lpe.train --data work/mini/data/mnist1d.npz --model vit_mini_s --epochs 20
--batch-size 128 --lr 1e-3 --weight-decay 0.05 --warmup-epochs 1 --seed 0
--out work/mini/checkpoints/vit_mini_s.safetensors``
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import asdict, dataclass

import torch
from tqdm import tqdm

from lpe import metrics
from lpe.checkpoints import save_checkpoint
from lpe.data import load_splits
from lpe.models import MODELS, count_params, create_model
from lpe.predict import predict_log_probs
from lpe.runtime import add_runtime_arguments, resolve_device, set_threads


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


def minibatches(x, y, batch_size: int, order: torch.Generator, device, skip: int = 0):
    """One epoch of ``(inputs, labels)`` minibatches, in a permutation drawn from ``order``;
    ``skip`` leaves out the first batches (a resumed epoch: the same draw, then the rest)."""
    permutation = torch.randperm(len(y), generator=order)
    for start in range(skip * batch_size, len(y), batch_size):
        idx = permutation[start : start + batch_size]
        yield x[idx].to(device), y[idx].to(device)


def train(model_name: str, splits, cfg: TrainConfig, device: torch.device, log=sys.stderr):
    """Train ``model_name`` on ``splits``; return the model and a summary dict."""
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
            bar.write(
                f"epoch {epoch + 1}/{cfg.epochs}: val nll {val['nll']:.4f} err {val['err']:.2f}%"
            )
    summary = {
        "model": model_name,
        "params": count_params(model),
        "num_classes": splits.num_classes,
        "input_shape": list(splits.input_shape),
        "optimizer": "adamw",
        "backward_passes": backward_passes,
        "train": asdict(cfg),
        "val": evaluate(model, splits, "val", device),
        "val_nll_curve": val_curve,
    }
    return model, summary


def evaluate(model, splits, split: str, device) -> dict[str, float]:
    return evaluate_on(model, splits.x[split], splits.y[split], device)


def evaluate_on(model, x, y, device) -> dict[str, float]:
    """NLL, ERR, ECE of one model on inputs ``x`` (a tensor or a loader of batches)."""
    lp = predict_log_probs(model, x, batch_size=1000, device=device)  # (N, C)
    return metrics.score(lp.unsqueeze(0), y)  # (1, N, C): one member


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", required=True, choices=sorted(MODELS))
    defaults = TrainConfig()
    for key, value in asdict(defaults).items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--out", required=True)
    add_runtime_arguments(parser, inference=False)
    args = parser.parse_args(argv)
    cfg = TrainConfig(**{k: getattr(args, k) for k in asdict(defaults)})
    set_threads(args.threads)
    splits = load_splits(args.data)
    model, summary = train(args.model, splits, cfg, resolve_device(args.device))
    save_checkpoint(args.out, model.cpu(), summary)
    print(
        f"saved {args.out}: val nll {summary['val']['nll']:.4f}, "
        f"err {summary['val']['err']:.2f}%, {summary['backward_passes']} backward passes"
    )


if __name__ == "__main__":
    main()
