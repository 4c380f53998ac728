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

    def __post_init__(self) -> None:
        if not self.ess > 0:
            raise ValueError(f"ivon.ess (effective sample size) must be > 0, got {self.ess}")

    @property
    def std(self) -> torch.Tensor:
        return (self.ess * (self.hess + self.weight_decay)).rsqrt()

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype)
        return self.mean + self.std * z

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "hess": self.hess}

    @classmethod
    def from_optimizer(cls, optimizer, model: torch.nn.Module) -> IvonPosterior:
        """Read the posterior of an ``ivon.IVON`` optimizer over all of ``model``'s parameters."""
        (group,) = optimizer.param_groups  # the suite builds IVON with one parameter group
        # on the CPU, like SWAG's: draws come from CPU generators, the same on any device
        mean = torch.nn.utils.parameters_to_vector(model.parameters()).detach().cpu().clone()
        if group["hess"].shape != mean.shape:
            raise ValueError("the IVON optimizer does not cover every parameter of the model")
        hess = group["hess"].detach().cpu().clone()
        return cls(mean, hess, group["ess"], group["weight_decay"])
