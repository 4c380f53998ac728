"""``sgd``: SGD with momentum, cosine decay of the learning rate to 0; the solution is the final
weights. Figure 2's SGD run, run 0 of ``de``, and the base the other fine-tuning methods extend
(their settings add to :class:`SgdSettings`, their classes to :class:`Sgd`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lpe.core.jobs import setting
from lpe.training.finetuning import finetuning_method
from lpe.training.loop import Method, Plan, lr_factor, settings_problems


@dataclass(frozen=True)
class SgdSettings:
    lr: float = setting(0.001, "peak learning rate (cosine decay to 0)", config="bma.sgd.lr")
    momentum: float = setting(0.9, "momentum", config="bma.sgd.momentum")
    weight_decay: float = setting(5e-4, "weight decay", config="bma.sgd.weight_decay")

    def __post_init__(self) -> None:
        settings_problems(self.problems(), "fine-tuning")

    def problems(self) -> list[str]:
        return [f"learning rates must be > 0, got lr={self.lr}"] if self.lr <= 0 else []


@finetuning_method
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
