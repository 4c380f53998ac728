"""CLIP zero-shot classifiers, offline: a tiny OpenCLIP text tower, timm towers without weights."""

import json

import numpy as np
import open_clip
import pytest
import timm
import torch
from helpers import image_folder

from lpe.checkpoints import checkpoint_info
from lpe.generate import main as generate
from lpe.hub import download
from lpe.models import create_model
from lpe.predict import main as predict
from lpe.zeroshot import SUFFIX, ZeroShotHead, class_embeddings, zeroshot_model

TOWER = "vit_base_patch32_clip_224.openai"  # the smallest CLIP tower with a timm data config


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """An OpenCLIP model from a tiny config (random weights, the bundled tokenizer)."""
    folder = tmp_path_factory.mktemp("configs")
    vision = {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16}
    text = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
    config = {"embed_dim": 16, "vision_cfg": vision, "text_cfg": text}
    (folder / "lpe-tiny.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder)
    torch.manual_seed(0)
    return open_clip.create_model("lpe-tiny", pretrained=None).eval()


def test_class_embeddings_are_unit_rows_one_per_class(tiny_clip):
    tokenizer = open_clip.get_tokenizer("lpe-tiny")
    names = ["tench", "goldfish", "great white shark"]
    templates = ["a photo of a {}.", "a bad photo of the {}."]
    classes = class_embeddings(tiny_clip, tokenizer, names, templates)
    assert classes.shape == (3, 16)
    torch.testing.assert_close(classes.norm(dim=1), torch.ones(3))
    # the mean of each class's normalised template embeddings, renormalised
    with torch.no_grad():
        text = tiny_clip.encode_text(tokenizer([t.format(names[1]) for t in templates]))
    mean = torch.nn.functional.normalize(text, dim=-1).mean(0)
    torch.testing.assert_close(classes[1], mean / mean.norm(), atol=1e-5, rtol=1e-5)


def test_the_head_scores_scaled_cosine_similarity_to_each_class():
    proj = torch.nn.Linear(4, 3, bias=False)
    classes = torch.nn.functional.normalize(torch.randn(5, 3), dim=-1)
    head = ZeroShotHead(proj, classes, scale=100.0)
    x = torch.randn(2, 4)
    features = torch.nn.functional.normalize(proj(x), dim=-1)
    torch.testing.assert_close(head(x), 100.0 * features @ classes.T)


def test_a_zero_shot_checkpoint_rebuilds_quantizes_and_predicts(tmp_path):
    classes = torch.nn.functional.normalize(torch.randn(3, 512), dim=-1)

    def stand_in(name, cache):
        tower = timm.create_model(TOWER, pretrained=False)
        return zeroshot_model(tower, classes, 100.0)

    name = TOWER + SUFFIX
    checkpoint = download(name, tmp_path / "cache", tmp_path / "c.safetensors", fetch=stand_in)
    info = checkpoint_info(checkpoint)
    assert info.num_classes == 3 and info.input_shape == (3, 224, 224)
    rebuilt = create_model(name, 3, info.input_shape)
    assert isinstance(rebuilt.head, ZeroShotHead)
    members = tmp_path / "members"
    generate(["--checkpoint", str(checkpoint), "--method", "bsr", "--bits", "5",
              "--members", "2", "--out", str(members)])  # fmt: skip
    manifest = json.loads((members / "manifest.json").read_text())
    assert manifest["kept_params"] >= 3 * 512  # the class head stays FP32
    image_folder(tmp_path / "imagenet" / "val", 3)
    common = ["--checkpoint", str(checkpoint), "--data", str(tmp_path / "imagenet"), "--split",
              "val", "--batch-size", "6", "--device", "cpu"]  # fmt: skip
    predict([*common, "--out", str(tmp_path / "fp32.npz")])
    predict([*common, "--members", str(members), "--out", str(tmp_path / "bsr.npz")])
    with np.load(tmp_path / "fp32.npz") as f, np.load(tmp_path / "bsr.npz") as g:
        assert f["log_probs"].shape == (1, 6, 3) and g["log_probs"].shape == (2, 6, 3)
        assert str(g["model"]) == name
        assert not np.allclose(g["log_probs"][0], g["log_probs"][1])  # members differ


def test_a_tower_of_another_width_is_refused():
    tower = timm.create_model(TOWER, pretrained=False)
    with pytest.raises(ValueError, match="width 8 do not match the tower's projection width 512"):
        zeroshot_model(tower, torch.zeros(3, 8), 100.0)
