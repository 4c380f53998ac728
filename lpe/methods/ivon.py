"""``ivon``: the IVON optimizer (Shen et al., 2024) and its posterior, a diagonal Gaussian read from
the optimizer's state; BMA draws from it (Figures 2-8, method ``ivon-bma``).

IVON (the authors' ``ivon-opt`` package) keeps, besides the mean weights, a Hessian estimate
``h`` per weight; its posterior is ``N(mean, 1 / (ess * (h + weight_decay)))`` with ``ess`` the
effective sample size. That is exactly what ``IVON.sampled_params`` draws from during training;
here draws take an explicit ``torch.Generator`` (the optimizer's own draws use the global one).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lpe.core.jobs import setting
from lpe.methods import Spec
from lpe.methods.sgd import Sgd
from lpe.training.finetuning import finetuning_method, posterior_type
from lpe.training.loop import DivergenceError, settings_problems


@posterior_type
@dataclass
class IvonPosterior:
    mean: torch.Tensor  # (P,) in the order of model.parameters()
    hess: torch.Tensor  # (P,)
    ess: float
    weight_decay: float
    hess_init: float = float("nan")  # the optimizer's starting Hessian (NaN: not recorded)

    def __post_init__(self) -> None:
        if not self.ess > 0:
            raise ValueError(f"ivon.ess (effective sample size) must be > 0, got {self.ess}")

    @property
    def std(self) -> torch.Tensor:
        return (self.ess * (self.hess + self.weight_decay)).rsqrt()

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype)
        return self.mean + self.std * z

    def hessian_moved(self) -> dict[str, float]:
        """How far the Hessian estimate moved from ``hess_init``: quantiles of ``hess / init``.

        With a ``beta2`` close to 1 and few steps the estimate barely leaves its start, and the
        posterior is the configured isotropic one rather than a learned one (median ratio ~1).
        """
        ratio = self.hess / self.hess_init
        q = torch.quantile(
            ratio[:: max(1, ratio.numel() // 100_000)].double(),
            torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64),
        )
        return {"p10_ratio": q[0].item(), "median_ratio": q[1].item(), "p90_ratio": q[2].item()}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "hess": self.hess}

    kind = "ivon"  # its posterior files' type
    scaled = False  # its draws take no scale (lpe.training.finetuning.draw)

    def metadata(self) -> dict:
        """What a posterior file records beside the tensors (``hessian_moved``: for the claims
        report); ``from_file`` reads it back."""
        return {
            "ess": self.ess,
            "weight_decay": self.weight_decay,
            "hess_init": self.hess_init,
            "hessian_moved": self.hessian_moved(),
        }

    @classmethod
    def from_file(cls, tensors: dict[str, torch.Tensor], metadata: dict) -> IvonPosterior:
        init = metadata.get("hess_init", float("nan"))  # NaN: not recorded
        return cls(
            tensors["mean"], tensors["hess"], metadata["ess"], metadata["weight_decay"], init
        )

    @classmethod
    def from_optimizer(cls, optimizer, model: torch.nn.Module) -> IvonPosterior:
        """Read the posterior of an ``ivon.IVON`` optimizer over all of ``model``'s parameters."""
        (group,) = optimizer.param_groups  # the suite builds IVON with one parameter group
        # on the CPU, like SWAG's: draws come from CPU generators, the same on any device
        mean = torch.nn.utils.parameters_to_vector(model.parameters()).detach().cpu().clone()
        if group["hess"].shape != mean.shape:
            raise ValueError("the IVON optimizer does not cover every parameter of the model")
        hess = group["hess"].detach().cpu().clone()
        return cls(mean, hess, group["ess"], group["weight_decay"], group["hess_init"])


@dataclass(frozen=True)
class IvonSettings:
    ivon_lr: float = setting(3e-4, "IVON: learning rate", config="bma.ivon.lr")
    ivon_ess: float = setting(12000.0, "IVON: effective sample size", config="bma.ivon.ess")
    ivon_hess_init: float = setting(10.0, "IVON: initial Hessian", config="bma.ivon.hess_init")
    # the schema's bma.ivon.beta2 (ivon-opt's 0.99999 suits 10^5+ steps)
    ivon_beta2: float = setting(0.99, "IVON: Hessian moving average", config="bma.ivon.beta2")
    ivon_weight_decay: float = setting(1e-4, "IVON: weight decay", config="bma.ivon.weight_decay")
    ivon_mc_samples: int = setting(1, "IVON: weight samples per step", config="bma.ivon.mc_samples")

    def __post_init__(self) -> None:
        problems = []
        if self.ivon_lr <= 0:
            problems.append(f"learning rates must be > 0, got ivon_lr={self.ivon_lr}")
        if not self.ivon_ess > 0:
            problems.append(f"ivon_ess (effective sample size) must be > 0, got {self.ivon_ess}")
        if self.ivon_mc_samples < 1:
            problems.append(f"ivon_mc_samples must be >= 1, got {self.ivon_mc_samples}")
        settings_problems(problems, "fine-tuning")


@finetuning_method
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


SPEC = Spec("ivon-bma", finetuning=Ivon, posterior=IvonPosterior)
