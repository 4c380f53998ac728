"""The paper profile's checkpoint download (cache, offline errors) and image-folder predictions."""

import os
import subprocess
import sys

import numpy as np
import pytest
import timm
import torch
from helpers import image_folder

from lpe.models.checkpoints import checkpoint_info, load_checkpoint
from lpe.stages.download_checkpoint import (
    DownloadError,
    cached_path,
    describe,
    download,
    fetch_timm,
)
from lpe.stages.generate import main as generate
from lpe.stages.predict import main as predict

NAME = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"


def stand_in(name, cache, num_classes=3):
    """What timm would download, without the network: the architecture, random weights."""
    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def refuse(name, cache):
    raise AssertionError("the network was used although the checkpoint is cached")


def test_a_download_is_cached_and_the_cache_is_used_without_network(tmp_path):
    out = download(NAME, tmp_path / "cache", tmp_path / "a.safetensors", fetch=stand_in)
    info = checkpoint_info(out)
    assert info.model == NAME and info.num_classes == 3 and info.input_shape == (3, 224, 224)
    assert info.optimizer == "pretrained" and info.backward_passes == 0
    assert cached_path(tmp_path / "cache", NAME).exists()
    again = download(NAME, tmp_path / "cache", tmp_path / "b.safetensors", fetch=refuse)
    assert checkpoint_info(again).sha256 == info.sha256
    state, _ = load_checkpoint(again)
    model = info.build()  # the timm architecture by name, weights from the checkpoint
    model.load_state_dict(state)


def test_a_damaged_cache_file_is_refused(tmp_path):
    download(NAME, tmp_path / "cache", tmp_path / "a.safetensors", fetch=stand_in)
    cached = cached_path(tmp_path / "cache", NAME)
    cached.write_bytes(cached.read_bytes()[:-100])
    with pytest.raises(Exception, match="truncated|corrupted"):
        download(NAME, tmp_path / "cache", tmp_path / "b.safetensors", fetch=refuse)
    assert not (tmp_path / "b.safetensors").exists()


def test_a_bad_name_says_which_names_exist(tmp_path):
    with pytest.raises(DownloadError, match="timm has no model 'vit_tinny_patch16_224'"):
        fetch_timm("vit_tinny_patch16_224", tmp_path)


def test_offline_with_an_empty_cache_says_what_to_download_and_where(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out, cache = tmp_path / "x.safetensors", tmp_path / "cache"
    result = subprocess.run(
        [sys.executable, "-m", "lpe.stages.download_checkpoint", "--name", NAME,
         "--cache", str(cache), "--out", str(out)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode != 0 and not out.exists()
    assert f"cannot download {NAME}" in result.stderr
    assert str(cached_path(cache, NAME)) in result.stderr  # where to put it


def test_members_of_a_timm_checkpoint_are_predicted_on_an_image_folder(tmp_path):
    checkpoint = download(NAME, tmp_path / "cache", tmp_path / "c.safetensors", fetch=stand_in)
    image_folder(tmp_path / "imagenet" / "val", 3)
    members = tmp_path / "members"
    generate(["--checkpoint", str(checkpoint), "--method", "bsr", "--format", "int4",
              "--members", "2", "--out", str(members)])  # fmt: skip
    common = ["--checkpoint", str(checkpoint), "--data", str(tmp_path / "imagenet"), "--split",
              "val", "--batch-size", "4", "--device", "cpu"]  # fmt: skip
    predict([*common, "--out", str(tmp_path / "fp32.npz")])
    predict([*common, "--members", str(members), "--out", str(tmp_path / "bsr.npz")])
    predict([*common, "--dtype", "bfloat16", "--out", str(tmp_path / "bf16.npz")])
    with np.load(tmp_path / "fp32.npz") as f, np.load(tmp_path / "bsr.npz") as g:
        assert f["log_probs"].shape == (1, 6, 3) and g["log_probs"].shape == (2, 6, 3)
        assert f["labels"].tolist() == [0, 0, 1, 1, 2, 2]
        assert str(g["model"]) == NAME
        fp32 = torch.from_numpy(f["log_probs"])
    with np.load(tmp_path / "bf16.npz") as h:  # bfloat16 forwards: close to FP32, not equal
        torch.testing.assert_close(torch.from_numpy(h["log_probs"]), fp32, atol=0.1, rtol=0.1)
        assert not np.array_equal(h["log_probs"], fp32.numpy())  # --dtype is not ignored


def test_a_missing_image_folder_names_the_path_before_any_model_runs(tmp_path):
    checkpoint = download(NAME, tmp_path / "cache", tmp_path / "c.safetensors", fetch=stand_in)
    with pytest.raises(ValueError, match=r"image folder .*/nowhere/val does not exist; expected"):
        predict(["--checkpoint", str(checkpoint), "--data", str(tmp_path / "nowhere"),
                 "--split", "val", "--out", str(tmp_path / "x.npz")])  # fmt: skip


def test_describe_records_the_source():
    assert describe(stand_in(NAME, None), NAME)["source"] == f"timm:timm/{NAME}"


def test_decoded_batches_equal_the_eval_transform_and_are_decoded_once(tmp_path, monkeypatch):
    import timm
    from torchvision.datasets import ImageFolder

    from lpe.data import images
    from lpe.data.images import image_loader, model_transform

    folder = image_folder(tmp_path / "val", classes=3, per_class=3, size=50)
    model = timm.create_model("vit_tiny_patch16_224.augreg_in21k_ft_in1k", pretrained=False)
    transform = model_transform(model)
    monkeypatch.setenv("LPE_IMAGE_CACHE", str(tmp_path / "cache"))
    decoded = image_loader(folder, transform, 3, batch_size=4, limit=7)
    direct = torch.utils.data.DataLoader(
        torch.utils.data.Subset(
            ImageFolder(str(folder), transform=transform),
            torch.randperm(9, generator=torch.Generator().manual_seed(0))[:7].tolist(),
        ),
        batch_size=4,
    )
    pairs = list(zip(decoded, direct, strict=True))
    for (x, y), (x_ref, y_ref) in pairs:
        assert torch.equal(x, x_ref) and torch.equal(y, y_ref)  # bit for bit
    (cached,) = (tmp_path / "cache").glob("*.npy")
    monkeypatch.setattr(images, "copy_with_transform", lambda *a: 1 / 0)  # no decoding now
    again = image_loader(folder, transform, 3, batch_size=4, limit=7)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(again, decoded, strict=True))
    (tmp_path / "val" / "n00000000" / "img0.png").touch()  # a changed file: decoded anew
    monkeypatch.undo()
    monkeypatch.setenv("LPE_IMAGE_CACHE", str(tmp_path / "cache"))
    image_loader(folder, transform, 3, batch_size=4, limit=7)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2
