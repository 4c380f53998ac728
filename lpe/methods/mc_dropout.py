"""``mc-dropout`` (Table 6): MC dropout at rate ``p`` on every ``nn.Dropout`` of the timm ViT
except attention probabilities (timm's fused attention takes its dropout flag from the attention
module, not the dropout module). Member k's masks come from torch's global generator seeded with
``member_seed(seed, k)`` inside ``fork_rng``. Its members are masks drawn at run time from the one
stored FP32 model, so the whole ensemble costs one model. The rate is chosen on validation from
``baselines.dropout_rates``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

from lpe.evaluation.baselines import Baseline
from lpe.formats.policy import QuantPolicy
from lpe.methods import Spec
from lpe.models.factory import count_params


def rates_problem(candidates: Sequence[float]) -> str | None:
    if all(0 <= p < 1 for p in candidates):
        return None
    return f"baselines.dropout rates must be in [0, 1), got {list(candidates)}"


@contextlib.contextmanager
def dropout_member(model, state, policy: QuantPolicy, setting, seed: int, *, device):
    """Masks from torch's global generator seeded with ``seed``, inside ``fork_rng``."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        set_dropout(model, setting)
        yield None


def set_dropout(model: torch.nn.Module, rate: float) -> None:
    """Rate ``rate`` on every dropout module but attention's, in train mode (the rest in eval)."""
    model.eval()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Dropout) and not name.endswith("attn_drop"):
            module.p = rate
            module.train()


def mask_bits(model, state, setting: float, members: int) -> list[int]:
    """MC dropout's members are masks of the one stored FP32 model."""
    return [32 * count_params(model)] + [0] * (members - 1)


SPEC = Spec(
    "mc-dropout",
    baseline=Baseline(
        row="MC dropout",
        setting="dropout rate",
        chosen="dropout rate {:g}",
        problem=rates_problem,
        member=dropout_member,
        storage=mask_bits,
        dropout=True,
    ),
)
