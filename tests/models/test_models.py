import copy
import subprocess
import sys

import pytest
import torch

from lpe.formats.policy import QuantPolicy
from lpe.models.factory import MODELS, count_params, create_model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_classifies_mnist1d_shaped_inputs(name):
    model = create_model(name, 10, (1, 1, 40))
    out = model(torch.zeros(3, 1, 1, 40))
    assert out.shape == (3, 10)
    assert model.patch_embed.num_patches == 10  # 1x40 cut into 1x4 patches
    assert QuantPolicy().split(model.state_dict()).quantized  # same code path as the paper


def test_family_spans_at_least_30x_in_parameters():
    sizes = [
        count_params(create_model(n, 10, (1, 1, 40)))
        for n in ("vit_mini_t", "vit_mini_s", "vit_mini_b", "vit_mini_l")
    ]
    assert sizes == sorted(sizes)
    assert sizes[-1] / sizes[0] >= 30


def test_unknown_model_names_the_registered_ones():
    with pytest.raises(ValueError, match=r"neither registered \(vit_mini_b.*\) nor a timm model"):
        create_model("vit_huge", 10, (1, 1, 40))


def test_a_timm_name_builds_that_architecture_without_weights():
    model = create_model("vit_tiny_patch16_224.augreg_in21k_ft_in1k", 7, (3, 224, 224))
    assert model.num_classes == 7 and model.patch_embed.img_size == (224, 224)


def test_initialisation_is_seeded_and_leaves_the_global_generator_alone():
    before = torch.random.get_rng_state()
    a = create_model("vit_mini_t", 10, (1, 1, 40), seed=3).state_dict()
    b = create_model("vit_mini_t", 10, (1, 1, 40), seed=3).state_dict()
    c = create_model("vit_mini_t", 10, (1, 1, 40), seed=4).state_dict()
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_the_head_runs_in_fp32_under_bf16_autocast_and_fp32_is_unchanged():
    import timm

    from lpe.models.factory import keep_head_fp32

    kwargs = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, num_classes=10)
    torch.manual_seed(0)
    plain = timm.create_model("vit_tiny_patch16_224", pretrained=False, **kwargs).eval()
    kept = keep_head_fp32(copy.deepcopy(plain))
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(kept(x), plain(x))  # FP32: bit-identical
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = kept(x)
            plain_logits = plain(x)
    assert logits.dtype == torch.float32
    assert plain_logits.dtype == torch.bfloat16  # what the head would do otherwise
    fp32 = torch.log_softmax(plain(x), -1)
    bf16 = torch.log_softmax(logits, -1)
    # the stated tolerance of bf16 evaluation on this stand-in: 0.02 in log-probability
    assert not torch.equal(bf16, fp32) and (bf16 - fp32).abs().max() < 0.02
    clone = copy.deepcopy(kept)  # a copy's head is its own (the bound forward is rebound)
    clone.get_classifier().weight.data.zero_()
    with torch.no_grad():
        assert not torch.equal(clone(x), kept(x))


def test_stages_import_timm_without_torch_dynamo_and_leave_torch_as_it_was():
    """lpe.models.timm_import keeps torch._dynamo (about 3 s) out of a stage's start-up; afterwards
    torch.compiler.disable is torch's own and torch._dynamo imports and works as usual."""
    code = (
        "import sys, torch, torch.compiler; disable = torch.compiler.disable\n"
        "import lpe.stages.ensembles, lpe.stages.train, lpe.stages.fast_train\n"
        "assert 'timm' in sys.modules\n"
        "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo was imported'\n"
        "assert torch.compiler.disable is disable\n"
        "roi_align = sys.modules['torchvision.ops.roi_align']\n"
        "assert roi_align.is_compile_supported('cpu') is True\n"  # the deferred one, then the real
        "assert 'torch._dynamo' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
