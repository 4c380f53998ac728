"""BatchEnsemble (Wen et al., 2020): K members sharing one weight matrix per linear layer.

Member k of a linear layer ``W`` uses ``W_k = W * (s_k r_k^T)``, i.e.
``y = ((x * r_k) @ W^T) * s_k + b_k``, with fast weights ``r_k`` (input size) and ``s_k`` (output
size) and a bias per member. A batch holds the K members' inputs one after another: its first
dimension is ``K x b``, chunk k going through member k. Evaluating all members on the same inputs
is ``model(x.repeat(K, ...))``, whose output chunk k is member k's prediction.

``batch_ensemble(model, k)`` replaces every ``nn.Linear`` of a model (for the timm ViT: qkv, proj,
fc1, fc2 and the head) in place. Fast weights start at 1 (optionally with random signs, the
paper's initialisation, or near 1 for fine-tuning, from an explicit generator), so a fresh
BatchEnsemble with ``init="ones"`` equals the model.

The fast source ``batchensemble``: one BatchEnsemble of ``runs`` rank-1 members fine-tuned with
the SGD settings, as a single source holding all members. Every minibatch is repeated for the
members, so each member sees the same data order as the other methods' runs; a step counts
``runs`` backward passes (every member's gradient, in one K-times-wider pass).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from lpe.core.artifacts import read_metadata
from lpe.methods import FastSource, Spec
from lpe.methods.sgd import Sgd, SgdSettings
from lpe.models.checkpoints import load_checkpoint
from lpe.training.loop import Plan, fit
from lpe.training.sources import Setting


class BatchEnsembleLinear(nn.Module):
    def __init__(self, linear: nn.Linear, members: int) -> None:
        super().__init__()
        if members < 1:
            raise ValueError(f"batch ensemble members must be >= 1, got {members}")
        self.members = members
        self.weight = linear.weight  # shared slow weight (out, in)
        self.r = nn.Parameter(torch.ones(members, linear.in_features))
        self.s = nn.Parameter(torch.ones(members, linear.out_features))
        bias = linear.bias if linear.bias is not None else torch.zeros(linear.out_features)
        self.bias = nn.Parameter(bias.detach().clone().repeat(members, 1))  # (K, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] % self.members:
            raise ValueError(
                f"a BatchEnsemble batch must hold {self.members} equal chunks; got {x.shape[0]}"
            )
        chunks = x.reshape(self.members, x.shape[0] // self.members, *x.shape[1:])
        # broadcast the fast weights of member k over chunk k's remaining dimensions
        shape = (self.members,) + (1,) * (x.dim() - 1)
        r = self.r.reshape(*shape, -1)
        s = self.s.reshape(*shape, -1)
        b = self.bias.reshape(*shape, -1)
        y = nn.functional.linear(chunks * r, self.weight) * s + b
        return y.reshape(x.shape[0], *y.shape[2:])


INITS = ("ones", "signs", "gaussian")


def batch_ensemble(
    model: nn.Module,
    members: int,
    generator: torch.Generator | None = None,
    init: str = "ones",
    std: float = 0.1,
) -> nn.Module:
    """Turn every ``nn.Linear`` of ``model`` into a BatchEnsemble layer, in place.

    ``init`` sets the fast weights: ``ones`` (the ensemble starts as ``members`` copies of the
    model), ``signs`` (random +-1, the paper's choice when training from scratch) or ``gaussian``
    (``N(1, std^2)``: near the pre-trained function, for fine-tuning). The random ones draw from
    ``generator``.
    """
    if init not in INITS:
        raise ValueError(f"batch ensemble init must be one of {INITS}, got {init!r}")
    if init != "ones" and generator is None:
        raise ValueError(f"batch ensemble init {init!r} needs a generator")
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear):
            layer = BatchEnsembleLinear(child, members)
            with torch.no_grad():
                for fast in (layer.r, layer.s):
                    if init == "signs":
                        signs = torch.randint(0, 2, fast.shape, generator=generator) * 2 - 1
                        fast.copy_(signs.to(fast.dtype))
                    elif init == "gaussian":
                        fast.add_(torch.randn(fast.shape, generator=generator), alpha=std)
            setattr(model, name, layer)
        else:
            batch_ensemble(child, members, generator, init, std)
    return model


def repeated(x: torch.Tensor, members: int) -> torch.Tensor:
    """The inputs once per member, members first: a BatchEnsemble model's batch of K members."""
    return x.repeat(members, *([1] * (x.dim() - 1)))


def per_member(output: torch.Tensor, members: int) -> torch.Tensor:
    """``(K * N, C) -> (K, N, C)``: the log-softmax of a BatchEnsemble output, by member."""
    return torch.log_softmax(output.float(), dim=-1).reshape(members, -1, output.shape[-1])


@torch.inference_mode()
def member_log_probs(model: nn.Module, members: int, x: torch.Tensor) -> torch.Tensor:
    """``(K, N, C)`` log-softmax of each member of a BatchEnsemble model on the same inputs."""
    was_training = model.training
    model.eval()
    out = per_member(model(repeated(x, members)), members)
    model.train(was_training)
    return out


@dataclass(frozen=True)
class BatchEnsembleSettings(SgdSettings):
    members: int = 4
    micro_batch: int = 0  # examples per accumulated chunk (0: the whole minibatch)

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.members < 1 or self.micro_batch < 0:
            problems.append(
                f"members must be >= 1 and micro_batch >= 0, got {self.members} and "
                f"{self.micro_batch}"
            )
        return problems


class BatchEnsembleSgd(Sgd):
    """``sgd`` on a BatchEnsemble model (``lpe.methods.batchensemble``): every minibatch repeated
    once per member, each member's gradient counted as a backward pass."""

    name, what = "batchensemble", "batchensemble fine-tuning"
    Settings = BatchEnsembleSettings

    def backward(self, model, xb, yb) -> tuple[float, int]:
        """Backward of the members' mean cross-entropy on ``xb`` repeated once per member (member
        m takes the m-th copy); with ``micro_batch``, in chunks whose gradients add up to the
        whole batch's (for a GPU on which the repeated batch does not fit)."""
        self.optimizer.zero_grad(set_to_none=True)
        members, micro_batch = self.settings.members, self.settings.micro_batch
        if not micro_batch or micro_batch >= len(xb):
            loss = torch.nn.functional.cross_entropy(
                model(xb.repeat(members, *([1] * (xb.dim() - 1)))), yb.repeat(members)
            )
            loss.backward()
            return loss.item(), members
        total = 0.0
        for chunk_x, chunk_y in zip(xb.split(micro_batch), yb.split(micro_batch), strict=True):
            repeated = chunk_x.repeat(members, *([1] * (chunk_x.dim() - 1)))
            loss = torch.nn.functional.cross_entropy(model(repeated), chunk_y.repeat(members))
            (loss * (len(chunk_x) / len(xb))).backward()  # the chunk's share of the batch mean
            total += loss.item() * len(chunk_x) / len(xb)
        return total, members


# ---- its checkpoints: loading and storage


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


# ---- the fast source's trainer (lpe.training.sources)


def check(options) -> str | None:
    if options["micro_batch"] < 0:
        return f"--micro-batch must be >= 0, got {options['micro_batch']}"
    return None


def train(job) -> dict:
    o, info = job.options, job.info
    settings = BatchEnsembleSettings(
        o["lr"], o["momentum"], o["weight_decay"], o["runs"], o["micro_batch"]
    )
    plan = Plan(o["epochs"], o["batch_size"], o["seed"])
    model = info.build()
    model.load_state_dict(job.state)
    batch_ensemble(
        model, o["runs"], torch.Generator().manual_seed(o["seed"]), "gaussian", o["init_std"]
    )
    record = {**asdict(plan), **asdict(settings), "init_std": o["init_std"]}
    resume = job.resumes.run("batchensemble", {"batchensemble": record, "start": info.sha256})
    passes = fit(
        model,
        job.data,
        BatchEnsembleSgd(settings, plan),
        plan,
        job.device,
        desc="batchensemble",
        resume=resume,
    )
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


SPEC = Spec(
    "batchensemble",
    fast=FastSource(
        settings={
            "fast.batchensemble.init_std": "init_std",
            "fast.batchensemble.micro_batch": "micro_batch",
        },
        options=(
            Setting("init_std", float, 0.1, help="fast weights' std around 1"),
            Setting(
                "micro_batch", int, 0, help="examples per accumulated chunk (0: the whole batch)"
            ),
        ),
        check=check,
        train=train,
    ),
)
