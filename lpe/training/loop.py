"""The one training loop: MAP training, fine-tuning and the fast sources all run :func:`fit`.

A run is a model, its data, a :class:`Plan` (epochs, minibatch size, seed) and a :class:`Method`:
the optimizer with its learning-rate schedule and what it does around each step (SWAG's
snapshots, IVON's weight samples, CSGLD's noise, ...; ``lpe.methods``). The loop owns
what every run shares:

- the minibatch order, drawn from a generator seeded by ``plan.seed + 1`` (one permutation per
  epoch), so every method sees the same data in the same order;
- the count of backward passes (minibatch gradient evaluations): the training budget of
  everything derived from the weights;
- the divergence checks: a non-finite loss stops the run at once, non-finite weights at the end
  of an epoch, each naming the setting to lower;
- resumable state (``lpe.core.resume``): the weights, the method's state, the epoch's minibatch
  order and torch's global generators, every ``resume.every`` steps and at the end, continued
  from to the weights of an uninterrupted run (tested);
- the progress bar, and a per-epoch hook (validation, keeping the best epoch).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm import tqdm

from lpe.core import metrics
from lpe.core.resume import Resume, rng_state, set_rng_state
from lpe.evaluation.spine import predict_log_probs


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


@dataclass(frozen=True)
class Plan:
    """How long a run is and where its randomness starts."""

    epochs: int
    batch_size: int
    seed: int

    def steps_per_epoch(self, train_size: int) -> int:
        return math.ceil(train_size / self.batch_size)


# IVON counts its steps (for debiasing its momentum) outside its state_dict
OPTIMIZER_ATTRIBUTES = ("current_step",)


def settings_problems(problems: list[str], what: str) -> None:
    """Refuse a method's settings with every problem found (``bad <what> settings: ...``)."""
    if problems:
        raise ValueError(f"bad {what} settings: " + "; ".join(problems))


class Method:
    """An optimizer and its hooks around the loop's steps. The defaults are one cross-entropy
    backward per minibatch and a plain optimizer step; a method overrides what it changes.

    ``begin`` builds the optimizer (``make_optimizer``) and the learning-rate schedule
    (``make_scheduler``, None for a constant rate) once the run's length is known; ``step``
    updates the weights (``after_step`` then sees them, before the schedule moves on);
    ``state``/``restore`` carry the method's own state across a resumed run.
    """

    what = "training"  # names the run in messages
    has_posterior = False  # whether ``posterior`` returns one (a posterior file to write)
    snapshots: list  # (CPU weights, backward passes so far) taken during the run, if any

    def advice(self) -> str:
        """How to avoid divergence: which setting to lower."""
        raise NotImplementedError

    def make_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        raise NotImplementedError

    def make_scheduler(self, optimizer, total: int, steps_per_epoch: int):
        return None

    def begin(self, model, plan: Plan, train_size: int, device) -> None:
        self.device = device
        self.snapshots = []
        self.optimizer = self.make_optimizer(model)
        steps_per_epoch = plan.steps_per_epoch(train_size)
        total = plan.epochs * steps_per_epoch
        self.scheduler = self.make_scheduler(self.optimizer, total, steps_per_epoch)

    def backward(self, model, xb, yb) -> tuple[float, int]:
        """Gradients of the minibatch's loss; returns (the loss, backward passes spent)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        return loss.item(), 1

    def step(self, model, step: int, passes: int) -> None:
        self.optimizer.step()
        self.after_step(model, step, passes)
        if self.scheduler is not None:
            self.scheduler.step()

    def after_step(self, model, step: int, passes: int) -> None:
        """After the weights' update of 0-based ``step``, with ``passes`` spent so far."""

    def posterior(self, model):
        """The run's posterior, read once the run has ended (None: it has none)."""
        return None

    def snapshot(self, model, passes: int) -> None:
        weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        self.snapshots.append((weights, passes))

    def state(self) -> dict:
        attributes = {
            a: getattr(self.optimizer, a)
            for a in OPTIMIZER_ATTRIBUTES
            if hasattr(self.optimizer, a)
        }
        return {
            "optimizer": self.optimizer.state_dict(),
            "attributes": attributes,
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "snapshots": self.snapshots,
        }

    def restore(self, saved: dict) -> None:
        """``state()`` back: ``optimizer.load_state_dict``, the attributes it leaves out, and the
        tensors IVON keeps in its parameter groups (torch moves only per-parameter state)."""
        self.optimizer.load_state_dict(saved["optimizer"])
        for name, value in saved["attributes"].items():
            setattr(self.optimizer, name, value)
        for group in self.optimizer.param_groups:
            for key, value in group.items():
                if isinstance(value, torch.Tensor) and key != "params":
                    group[key] = value.to(self.device)
        if self.scheduler is not None:
            self.scheduler.load_state_dict(saved["scheduler"])
        self.snapshots = saved["snapshots"]


def fit(
    model: torch.nn.Module,
    data,
    method: Method,
    plan: Plan,
    device,
    *,
    desc: str,
    resume: Resume | None = None,
    on_epoch: Callable[[int], str] | None = None,
    log=sys.stderr,
) -> int:
    """Train ``model`` in place on ``data`` (``lpe.data.inputs``) with ``method``; return the
    backward passes spent. ``on_epoch(epoch)`` runs after each epoch's weight check and returns
    the line the progress bar prints."""
    steps_per_epoch = plan.steps_per_epoch(data.train_size)
    total = plan.epochs * steps_per_epoch
    model = model.to(device)
    method.begin(model, plan, data.train_size, device)
    order = torch.Generator().manual_seed(plan.seed + 1)
    passes = step = first_epoch = skip = 0
    resume = resume or Resume(None, 0, {})
    if (saved := resume.load()) is not None:
        model.load_state_dict(saved["model"])
        method.restore(saved["method"])
        order.set_state(saved["epoch_order"])  # the epoch's minibatch order is drawn again
        set_rng_state(saved["rng"], device)
        passes, step, first_epoch, skip = (saved[k] for k in ("passes", "step", "epoch", "batch"))
    with tqdm(total=total, initial=step, desc=desc, file=log, mininterval=5) as bar:
        for epoch in range(first_epoch, plan.epochs):
            model.train()
            epoch_order = order.get_state()
            start = skip if epoch == first_epoch else 0
            batches = data.train_batches(plan.batch_size, order, device, skip=start)
            for batch, (xb, yb) in enumerate(batches, start=start):
                loss, spent = method.backward(model, xb, yb)
                if not math.isfinite(loss):
                    raise DivergenceError(
                        f"{method.what} diverged: loss {loss} at epoch {epoch}; {method.advice()}"
                    )
                passes += spent
                method.step(model, step, passes)
                step += 1
                bar.update(1)
                if resume.due(step) or step == total:  # the end too: a finished run is kept
                    resume.save(
                        {
                            "model": model.state_dict(),
                            "method": method.state(),
                            "epoch_order": epoch_order,
                            "rng": rng_state(device),
                            "passes": passes,
                            "step": step,
                            "epoch": epoch,
                            "batch": batch + 1,
                        }
                    )
            require_finite_weights(model, method.what, method.advice())
            if on_epoch is not None:
                bar.write(on_epoch(epoch))
    return passes


def evaluate(model, splits, split: str, device) -> dict[str, float]:
    return evaluate_on(model, splits.x[split], splits.y[split], device)


def evaluate_on(model, x, y, device) -> dict[str, float]:
    """NLL, ERR, ECE of one model on inputs ``x`` (a tensor or a loader of batches)."""
    lp = predict_log_probs(model, x, batch_size=1000, device=device)  # (N, C)
    return metrics.score(lp.unsqueeze(0), y)  # (1, N, C): one member
