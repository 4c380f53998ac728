"""The IVON posterior (Shen et al., 2024): a diagonal Gaussian read from the optimizer's state.

IVON (the authors' ``ivon-opt`` package) keeps, besides the mean weights, a Hessian estimate
``h`` per weight; its posterior is ``N(mean, 1 / (ess * (h + weight_decay)))`` with ``ess`` the
effective sample size. That is exactly what ``IVON.sampled_params`` draws from during training;
here draws take an explicit ``torch.Generator`` (the optimizer's own draws use the global one).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
        q = torch.quantile(ratio[:: max(1, ratio.numel() // 100_000)].double(),
                           torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))  # fmt: skip
        return {"p10_ratio": q[0].item(), "median_ratio": q[1].item(), "p90_ratio": q[2].item()}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "hess": self.hess}

    kind = "ivon"  # its posterior files' type

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
