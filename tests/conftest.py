import os
import tempfile

import pytest

from lpe.core.numerics import pin_cpu_numerics

# The test session computes on the stages' pinned CPU paths, as the stages it compares with do
# (importing lpe no longer pins anything: tests/core/test_numerics.py checks both).
pin_cpu_numerics()

from lpe.models.checkpoints import save_checkpoint  # noqa: E402
from lpe.models.factory import count_params, create_model  # noqa: E402

# Decoded image splits go to a cache of the test session's own, not the user's (the workflow
# tests' stages inherit it through the environment).
os.environ.setdefault("LPE_IMAGE_CACHE", tempfile.mkdtemp(prefix="lpe-image-cache-"))


@pytest.fixture(autouse=True)
def seeded_torch():
    """Every test starts from the same global torch seed: a test that builds a model with
    timm.create_model(pretrained=False) gets the same weights on every run and on every xdist
    worker, so a check that passes once passes always (CI once drew weights on which a
    temperature fit sat at its bound)."""
    import torch

    torch.manual_seed(0)


@pytest.fixture
def data(tmp_path, request):
    """A seeded MNIST-1D data file of the test module's ``SIZES`` (helpers.SMALL if it has none)."""
    from helpers import SMALL

    from lpe.data.datasets import build, save_splits

    path = tmp_path / "d.npz"
    save_splits(path, build("mnist1d", **getattr(request.module, "SIZES", SMALL)))
    return path


@pytest.fixture
def vit_state():
    """A small, deterministic timm ViT state dict (the mini family's T model)."""
    return create_model("vit_mini_t", 10, (1, 1, 40), seed=0).state_dict()


@pytest.fixture
def checkpoint(tmp_path):
    """A checkpoint file of an untrained vit_mini_t, as the train stage writes it."""
    model = create_model("vit_mini_t", 10, (1, 1, 40), seed=0)
    path = tmp_path / "vit_mini_t.safetensors"
    save_checkpoint(
        path,
        model,
        {
            "model": "vit_mini_t",
            "num_classes": 10,
            "input_shape": [1, 1, 40],
            "backward_passes": 7,
            "params": count_params(model),
        },
    )
    return path
