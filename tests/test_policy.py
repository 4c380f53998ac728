import pytest
import torch

from lpe.formats.policy import QuantPolicy
from lpe.models.factory import create_model


def vit_state():
    return create_model("vit_mini_t", 10, (1, 1, 40)).state_dict()


def test_default_policy_quantizes_only_block_weights():
    state = vit_state()
    summary = QuantPolicy().split(state)
    assert summary.quantized, "some tensors must be quantized"
    for name in summary.quantized:
        assert name.startswith("blocks.") and name.endswith(".weight")
        assert state[name].dim() >= 2
    for name in (
        "patch_embed.proj.weight",
        "pos_embed",
        "cls_token",
        "head.weight",
        "head.bias",
        "norm.weight",
        "blocks.0.attn.qkv.bias",
    ):
        assert name in summary.kept
    total = sum(t.numel() for t in state.values())
    assert summary.quantized_params + summary.kept_params == total
    assert "quantized" in summary.describe()


def test_exclude_patterns_are_configurable():
    state = vit_state()
    policy = QuantPolicy(exclude=("blocks.0.*",), min_ndim=2)
    summary = policy.split(state)
    assert "head.weight" in summary.quantized  # no longer excluded
    assert not any(n.startswith("blocks.0.") for n in summary.quantized)


def test_min_ndim_must_be_positive():
    with pytest.raises(ValueError, match="min_ndim"):
        QuantPolicy(min_ndim=0)


def test_integer_tensors_are_never_quantized():
    assert not QuantPolicy().quantizes("x", torch.zeros(3, 3, dtype=torch.int64))
