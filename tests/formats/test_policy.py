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


def test_the_policy_by_role_keeps_a_cnns_stem_and_classifier_and_quantizes_depthwise_kernels():
    import timm

    from lpe.formats.policy import policy_for

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)  # BatchNorm, depthwise
    state = model.state_dict()
    split = policy_for(model).split(state)
    assert "conv_stem.weight" in split.kept and "classifier.weight" in split.kept
    assert not any(name.startswith("bn") or ".bn" in name for name in split.quantized)
    depthwise = [n for n, m in model.named_modules()
                 if isinstance(m, torch.nn.Conv2d) and m.groups > 1]  # fmt: skip
    assert depthwise and all(f"{n}.weight" in split.quantized for n in depthwise)
    assert all(state[n].dim() >= 2 for n in split.quantized)
    head = policy_for(model, quantize_head=True).split(state)
    assert "classifier.weight" in head.quantized and "conv_stem.weight" in head.kept
    more = policy_for(model, keep=["blocks.6.*"]).split(state)
    assert not any(n.startswith("blocks.6.") for n in more.quantized)
    assert len(more.quantized) < len(split.quantized)


def test_the_policy_by_role_equals_the_vit_patterns_on_a_timm_vit():
    import timm

    from lpe.formats.policy import policy_for

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8,
                              embed_dim=32, depth=2, num_heads=2, num_classes=3)  # fmt: skip
    state = model.state_dict()
    assert policy_for(model).split(state).quantized == QuantPolicy().split(state).quantized


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_the_policy_by_role_keeps_a_language_models_embeddings_and_head(family):
    import transformers

    if family == "gpt2":
        config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100,
                                         n_positions=16, bos_token_id=0,
                                         eos_token_id=0)  # fmt: skip
        model = transformers.GPT2LMHeadModel(config)
        embeddings = ["transformer.wte.weight", "transformer.wpe.weight"]
    else:
        config = transformers.LlamaConfig(num_hidden_layers=2, hidden_size=32,
                                          intermediate_size=64, num_attention_heads=2,
                                          num_key_value_heads=2, vocab_size=100, bos_token_id=0,
                                          eos_token_id=0)  # fmt: skip
        model = transformers.LlamaForCausalLM(config)
        embeddings = ["model.embed_tokens.weight"]
    from lpe.formats.policy import policy_for

    split = policy_for(model).split(model.state_dict())
    assert set(embeddings) <= set(split.kept) and "lm_head.weight" in split.kept
    # every attention and MLP projection of every layer is quantized, the first layer's too
    blocks, layers = ("transformer.h.", "model.layers."), ("Linear", "Conv1D")
    projections = [n for n, m in model.named_modules()
                   if n.startswith(blocks) and type(m).__name__ in layers]  # fmt: skip
    assert projections and all(f"{n}.weight" in split.quantized for n in projections)


def _tiny_hf(kind):
    import transformers

    if kind == "hf-vit":
        config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                        intermediate_size=64, image_size=32, patch_size=8,
                                        num_labels=5)  # fmt: skip
        return transformers.ViTForImageClassification(config)
    config = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                       num_labels=5)  # fmt: skip
    return transformers.ResNetForImageClassification(config)


@pytest.mark.parametrize(
    ("kind", "heads"),
    [
        ("deit_tiny_distilled_patch16_224", ["head.weight", "head_dist.weight"]),
        ("convnext_atto", ["head.fc.weight"]),
        ("resnet18", ["fc.weight"]),
        ("hf-vit", ["classifier.weight"]),
        ("hf-resnet", ["classifier.1.weight"]),
    ],
)
def test_the_policy_by_role_keeps_every_classifier_of_timm_and_hugging_face_models(kind, heads):
    import timm

    from lpe.formats.policy import policy_for

    if kind.startswith("hf-"):
        model = _tiny_hf(kind)
    else:
        model = timm.create_model(kind, pretrained=False, num_classes=5)
    split = policy_for(model).split(model.state_dict())
    assert set(heads) <= set(split.kept), [h for h in heads if h not in split.kept]
    assert split.quantized  # the rest of the network is quantized
    assert set(heads) <= set(
        policy_for(model, quantize_head=True).split(model.state_dict()).quantized
    )
