"""The optimizers and methods the loop runs (``lpe.training.loop.fit``), each with its settings.

Each method is a :class:`~lpe.training.loop.Method` (its optimizer, schedule and step hooks)
built from its own frozen settings dataclass; the math of SWAG, IVON's posterior, the cyclic
schedule, CSGLD's noise and BatchEnsemble lives in ``lpe.sources``. A settings field keeps its
method's prefix (``swag_rank``, ``ivon_lr``, ...): it is also the stage's flag (``--swag-rank``).

- ``adamw`` (MAP training, ``lpe.training.pretraining``): AdamW, linear warmup then cosine decay.
- ``sgd``: SGD with momentum, cosine decay to 0. The solution is the final weights.
- ``swag``: SGD with momentum at a constant rate; from ``swag_start_epoch`` on, a snapshot every
  ``swag_collect_every`` steps feeds SWAG's moments. The solution is the SWA mean.
- ``ivon``: the IVON optimizer of the ``ivon-opt`` package (``ivon_mc_samples`` weight samples per
  step, each a backward pass), cosine decay. The solution is the IVON mean.
- ``sse``: SGD under the cyclic cosine schedule (``cycles`` cycles, peak ``lr``), a snapshot at
  the end of every cycle.
- ``csgld``: ``sse``'s schedule plus Langevin noise at ``csgld_temperature`` after each step of a
  cycle's sampling phase (after ``csgld_exploration`` of it); a sample at each cycle's end.
- ``batchensemble``: SGD with cosine decay on a BatchEnsemble model; each minibatch goes through
  every member (``members`` backward passes per step), in chunks of ``micro_batch`` examples.

``FINETUNING`` names the fine-tuning methods (the ``finetune`` stage's ``--optimizer``); a new
optimizer is its settings, its class and one entry there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lpe.sources.csgld import add_langevin_noise
from lpe.sources.cyclic import CyclicSchedule
from lpe.sources.ivon_posterior import IvonPosterior
from lpe.sources.swag import SwagCollector, SwagError
from lpe.training.loop import DivergenceError, Method, Plan, lr_factor


def _problems(problems: list[str], what: str) -> None:
    if problems:
        raise ValueError(f"bad {what} settings: " + "; ".join(problems))


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


@dataclass(frozen=True)
class SgdSettings:
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 5e-4

    def __post_init__(self) -> None:
        _problems(self.problems(), "fine-tuning")

    def problems(self) -> list[str]:
        return [f"learning rates must be > 0, got lr={self.lr}"] if self.lr <= 0 else []


class Sgd(Method):
    """SGD with momentum, cosine decay of the learning rate to 0."""

    name, what = "sgd", "sgd fine-tuning"
    Settings = SgdSettings
    lr_setting = "bma.sgd.lr"  # the config key of its learning rate

    def __init__(self, settings, plan: Plan) -> None:
        self.settings = settings

    def advice(self) -> str:
        return f"lower {self.lr_setting} (now {self.settings.lr})"

    def make_optimizer(self, model):
        s = self.settings
        return torch.optim.SGD(
            model.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay
        )

    def make_scheduler(self, optimizer, total, steps_per_epoch):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, 0))


@dataclass(frozen=True)
class SwagSettings(SgdSettings):
    swag_rank: int = 20
    swag_start_epoch: int = 1
    swag_collect_every: int = 5

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.swag_collect_every < 1:
            problems.append(f"swag_collect_every must be >= 1, got {self.swag_collect_every}")
        if self.swag_rank < 2:
            problems.append(f"swag_rank must be >= 2, got {self.swag_rank}")
        return problems


class Swag(Sgd):
    """SGD at a constant rate whose iterates feed SWAG's moments; ends at the SWA mean."""

    name, what = "swag", "swag fine-tuning"
    Settings = SwagSettings
    has_posterior = True

    def __init__(self, settings: SwagSettings, plan: Plan) -> None:
        super().__init__(settings, plan)
        if not 0 <= settings.swag_start_epoch < plan.epochs:
            raise ValueError(
                f"bad fine-tuning settings: swag_start_epoch must be in [0, epochs={plan.epochs}),"
                f" got {settings.swag_start_epoch}"
            )
        self.plan = plan

    def make_scheduler(self, optimizer, total, steps_per_epoch):
        return None  # SWAG collects at a constant learning rate

    def begin(self, model, plan, train_size, device) -> None:
        s, steps_per_epoch = self.settings, plan.steps_per_epoch(train_size)
        collecting = (plan.epochs - s.swag_start_epoch) * steps_per_epoch
        snapshots = collecting // s.swag_collect_every
        if s.swag_rank > snapshots:
            raise SwagError(
                f"swag.rank = {s.swag_rank} is larger than the {snapshots} snapshots the "
                f"schedule collects ({plan.epochs - s.swag_start_epoch} epochs x "
                f"{steps_per_epoch} steps / every {s.swag_collect_every}); lower swag.rank "
                "or collect more often"
            )
        self.collector = SwagCollector(s.swag_rank)
        self.first = s.swag_start_epoch * steps_per_epoch  # the step collecting starts after
        super().begin(model, plan, train_size, device)

    def after_step(self, model, step, passes) -> None:
        since = step + 1 - self.first  # steps into collection
        if since > 0 and since % self.settings.swag_collect_every == 0:
            self.collector.collect(torch.nn.utils.parameters_to_vector(model.parameters()))

    def state(self) -> dict:
        return {**super().state(), "collector": self.collector.state()}

    def restore(self, saved: dict) -> None:
        super().restore(saved)
        self.collector.restore(saved["collector"])

    def posterior(self, model):
        posterior = self.collector.posterior()
        torch.nn.utils.vector_to_parameters(posterior.mean.to(self.device), model.parameters())
        return posterior


@dataclass(frozen=True)
class IvonSettings:
    ivon_lr: float = 3e-4
    ivon_ess: float = 12000.0
    ivon_hess_init: float = 10.0
    ivon_beta2: float = 0.99999
    ivon_weight_decay: float = 1e-4
    ivon_mc_samples: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.ivon_lr <= 0:
            problems.append(f"learning rates must be > 0, got ivon_lr={self.ivon_lr}")
        if not self.ivon_ess > 0:
            problems.append(f"ivon_ess (effective sample size) must be > 0, got {self.ivon_ess}")
        if self.ivon_mc_samples < 1:
            problems.append(f"ivon_mc_samples must be >= 1, got {self.ivon_mc_samples}")
        _problems(problems, "fine-tuning")


class Ivon(Sgd):
    """The IVON optimizer (``ivon-opt``) with cosine decay; ends at the IVON mean."""

    name, what = "ivon", "ivon fine-tuning"
    Settings = IvonSettings
    lr_setting = "bma.ivon.lr"
    has_posterior = True

    def advice(self) -> str:
        return f"lower {self.lr_setting} (now {self.settings.ivon_lr})"

    def make_optimizer(self, model):
        import ivon  # the IVON authors' optimizer (package ivon-opt)

        s = self.settings
        return ivon.IVON(
            model.parameters(),
            lr=s.ivon_lr,
            ess=s.ivon_ess,
            hess_init=s.ivon_hess_init,
            beta2=s.ivon_beta2,
            weight_decay=s.ivon_weight_decay,
            mc_samples=s.ivon_mc_samples,
        )

    def backward(self, model, xb, yb) -> tuple[float, int]:
        """One backward pass per weight sample (``sampled_params`` draws from torch's global
        generator, seeded by the caller); the loss is the samples' mean."""
        losses = []
        for _ in range(self.settings.ivon_mc_samples):
            with self.optimizer.sampled_params(train=True):
                losses.append(super().backward(model, xb, yb)[0])
        return sum(losses) / len(losses), len(losses)

    def posterior(self, model):
        posterior = IvonPosterior.from_optimizer(self.optimizer, model)
        if not torch.isfinite(posterior.hess).all():
            raise DivergenceError("ivon: the Hessian estimate is not finite; lower ivon.lr")
        return posterior


@dataclass(frozen=True)
class CyclicSettings(SgdSettings):
    cycles: int = 1

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.cycles < 1:
            problems.append(f"cycles must be >= 1, got {self.cycles}")
        return problems


class Sse(Sgd):
    """SGD under a cyclic cosine schedule, a snapshot at the end of every cycle."""

    name, what = "sse", "sse fine-tuning"
    Settings = CyclicSettings
    lr_setting = "fast.sse.lr"
    exploration = 1.0  # no Langevin phase

    def make_scheduler(self, optimizer, total, steps_per_epoch):
        # refuses cycles that do not divide the run
        self.cyclic = CyclicSchedule(total, self.settings.cycles, self.settings.lr,
                                     self.exploration)  # fmt: skip
        lr = self.settings.lr
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: self.cyclic.lr_at(s) / lr)

    def after_step(self, model, step, passes) -> None:
        if self.cyclic.cycle_end(step):
            self.snapshot(model, passes)


@dataclass(frozen=True)
class CsgldSettings(CyclicSettings):
    csgld_temperature: float = 1.0
    csgld_exploration: float = 0.5

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.csgld_temperature < 0:
            problems.append(f"csgld temperature must be >= 0, got {self.csgld_temperature}")
        if not 0 <= self.csgld_exploration <= 1:
            problems.append(f"csgld exploration must be in [0, 1], got {self.csgld_exploration}")
        return problems


class Csgld(Sse):
    """``sse``'s schedule with Langevin noise in each cycle's sampling phase."""

    name, what = "csgld", "csgld fine-tuning"
    Settings = CsgldSettings
    lr_setting = "fast.csgld.lr"

    def __init__(self, settings: CsgldSettings, plan: Plan) -> None:
        super().__init__(settings, plan)
        self.exploration = settings.csgld_exploration

    def begin(self, model, plan, train_size, device) -> None:
        self.langevin = torch.Generator(device=device).manual_seed(plan.seed + 2)
        self.train_size = train_size  # the noise scales with 1 / the data set's size
        super().begin(model, plan, train_size, device)

    def after_step(self, model, step, passes) -> None:
        if self.cyclic.sampling(step):
            add_langevin_noise(model.parameters(), self.cyclic.lr_at(step),
                               self.settings.csgld_temperature, self.train_size,
                               self.langevin)  # fmt: skip
        super().after_step(model, step, passes)

    def state(self) -> dict:
        return {**super().state(), "langevin": self.langevin.get_state()}

    def restore(self, saved: dict) -> None:
        super().restore(saved)
        self.langevin.set_state(saved["langevin"])


@dataclass(frozen=True)
class BatchEnsembleSettings(SgdSettings):
    members: int = 4
    micro_batch: int = 0  # examples per accumulated chunk (0: the whole minibatch)

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.members < 1 or self.micro_batch < 0:
            problems.append(f"members must be >= 1 and micro_batch >= 0, got {self.members} and "
                            f"{self.micro_batch}")  # fmt: skip
        return problems


class BatchEnsembleSgd(Sgd):
    """``sgd`` on a BatchEnsemble model (``lpe.sources.batchensemble``): every minibatch repeated
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


# the fine-tuning methods: the finetune stage's --optimizer (sse and csgld: the fast sources')
FINETUNING = {m.name: m for m in (Sgd, Swag, Ivon, Sse, Csgld)}
