"""``swag`` (Maddox et al., 2019): SGD at a constant rate whose iterates give a Gaussian posterior;
BMA draws from it (Figures 2-8, method ``swag-bma``).

During SGD with a constant learning rate, snapshots of the flattened weights are collected. SWAG
keeps their first moment (the SWA mean), their second moment (for the diagonal variance) and the
last ``rank`` deviations of each snapshot from the running mean (the low-rank part). A draw is

    theta = mean + sqrt(scale) * (diag^(1/2) z1 + D z2 / sqrt(rank - 1)),  z1, z2 ~ N(0, I)

with the usual ``scale = 0.5`` (the 1/sqrt(2) of the paper's sampling formula), as in the authors'
reference code. Written here rather than taken from a library: the reference implementation is a
research repository, not a package, and it wraps a model instead of flat weight vectors.

The mini models are timm ViTs with LayerNorm only, so SWA means and draws need no refit of
normalisation statistics; a BatchNorm model would need one (``torch.optim.swa_utils.update_bn``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lpe.core.jobs import setting
from lpe.methods import Spec
from lpe.methods.sgd import Sgd, SgdSettings
from lpe.training.finetuning import finetuning_method, posterior_type
from lpe.training.loop import Plan


class SwagError(ValueError):
    """A SWAG setting that cannot work (for example a rank above the snapshot count)."""


@posterior_type
@dataclass
class SwagPosterior:
    mean: torch.Tensor  # (P,)
    variance: torch.Tensor  # (P,) diagonal: second moment minus squared mean, clamped above 0
    deviations: torch.Tensor  # (K, P): the last K snapshots minus the running mean at that time
    snapshots: int

    @property
    def rank(self) -> int:
        return self.deviations.shape[0]

    def sample(self, generator: torch.Generator, scale: float = 0.5) -> torch.Tensor:
        """One flat weight vector drawn from the SWAG Gaussian."""
        if self.rank < 2:
            raise SwagError(f"SWAG sampling needs rank >= 2 deviations, have {self.rank}")
        z1 = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype)
        z2 = torch.randn(self.rank, generator=generator, dtype=self.mean.dtype)
        low_rank = self.deviations.T @ z2 / (self.rank - 1) ** 0.5
        return self.mean + scale**0.5 * (self.variance.sqrt() * z1 + low_rank)

    def covariance(self, scale: float = 0.5) -> torch.Tensor:
        """The dense covariance the draws follow (for tests on small vectors only)."""
        low_rank = self.deviations.T @ self.deviations / (self.rank - 1)
        return scale * (torch.diag(self.variance) + low_rank)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "variance": self.variance, "deviations": self.deviations}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], snapshots: int) -> SwagPosterior:
        return cls(tensors["mean"], tensors["variance"], tensors["deviations"], snapshots)

    kind = "swag"  # its posterior files' type
    scaled = True  # its draws take a scale (lpe.training.finetuning.draw)

    def metadata(self) -> dict:
        """What a posterior file records beside the tensors (``from_file`` reads it back)."""
        return {"snapshots": self.snapshots}

    @classmethod
    def from_file(cls, tensors: dict[str, torch.Tensor], metadata: dict) -> SwagPosterior:
        return cls.from_tensors(tensors, metadata["snapshots"])


class SwagCollector:
    """Running moments and the last ``rank`` deviations of the collected weight vectors."""

    def __init__(self, rank: int) -> None:
        if rank < 2:
            raise SwagError(f"swag.rank must be >= 2, got {rank}")
        self.rank = rank
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.sq_mean: torch.Tensor | None = None
        self.deviations: list[torch.Tensor] = []

    def collect(self, weights: torch.Tensor) -> None:
        # Moments in float64 (P-sized sums of small differences), kept on the CPU: on a GPU,
        # 2 + rank float64 copies of a ViT-B/16 would take 15 GB. Deviations are stored as the
        # FP32 they become in the posterior anyway.
        w = weights.detach().to("cpu", torch.float64)
        self.count += 1
        if self.mean is None:
            self.mean, self.sq_mean = w.clone(), w.square()
        else:
            self.mean += (w - self.mean) / self.count
            self.sq_mean += (w.square() - self.sq_mean) / self.count
        self.deviations = [*self.deviations, (w - self.mean).float()][-self.rank :]

    def state(self) -> dict:
        """Everything collected so far (to resume an interrupted run)."""
        return {
            "count": self.count,
            "mean": self.mean,
            "sq_mean": self.sq_mean,
            "deviations": list(self.deviations),
        }

    def restore(self, state: dict) -> None:
        self.count, self.mean, self.sq_mean = state["count"], state["mean"], state["sq_mean"]
        self.deviations = list(state["deviations"])

    def posterior(self) -> SwagPosterior:
        if self.count < self.rank:
            raise SwagError(
                f"swag.rank = {self.rank} but only {self.count} snapshots were collected; "
                "lower swag.rank or collect more often (swag.collect_every) or for longer"
            )
        # clamped: the second moment minus the squared mean can round below zero for weights
        # that barely move
        variance = (self.sq_mean - self.mean.square()).clamp_min(1e-30)
        return SwagPosterior(
            mean=self.mean.float(),
            variance=variance.float(),
            deviations=torch.stack(self.deviations).float(),
            snapshots=self.count,
        )


@dataclass(frozen=True)
class SwagSettings(SgdSettings):
    swag_rank: int = setting(20, "SWAG: deviations kept (low rank)", config="bma.swag.rank")
    swag_start_epoch: int = setting(1, "SWAG: its first epoch", config="bma.swag.start_epoch")
    swag_collect_every: int = setting(
        5, "SWAG: steps between collected weights", config="bma.swag.collect_every"
    )

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.swag_collect_every < 1:
            problems.append(f"swag_collect_every must be >= 1, got {self.swag_collect_every}")
        if self.swag_rank < 2:
            problems.append(f"swag_rank must be >= 2, got {self.swag_rank}")
        return problems


@finetuning_method
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


SPEC = Spec("swag-bma", finetuning=Swag, posterior=SwagPosterior)
