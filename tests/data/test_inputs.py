"""lpe.data.inputs: the image folder as training data (holdout, seeded order), stages on it."""

import numpy as np
import pytest
import timm
import torch
from helpers import image_folder

from lpe.data.datasets import build
from lpe.data.images import ImageFolderError
from lpe.data.inputs import ImageData, TensorData, open_data
from lpe.models.checkpoints import checkpoint_info
from lpe.stages.bma import main as bma
from lpe.stages.download_checkpoint import download
from lpe.stages.finetune import main as finetune

NAME = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
CPU = torch.device("cpu")


@pytest.fixture
def root(tmp_path):
    image_folder(tmp_path / "imagenet" / "train", 3, per_class=4, size=24)
    image_folder(tmp_path / "imagenet" / "val", 3, size=24)
    return tmp_path / "imagenet"


def labels_of(batches):
    return torch.cat([yb for _, yb in batches]).tolist()


def test_the_holdout_is_taken_out_of_training_and_the_order_is_seeded(root):
    data = open_data(root, NAME, 3, holdout=3)
    assert isinstance(data, ImageData) and data.selection_split == "holdout"
    assert data.train_size == 9
    first = list(data.train_batches(4, torch.Generator().manual_seed(1), CPU))
    again = list(data.train_batches(4, torch.Generator().manual_seed(1), CPU))
    assert [len(yb) for _, yb in first] == [4, 4, 1]
    assert first[0][0].shape == (4, 3, 224, 224)  # the model's training crop
    # the crops too are seeded
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
    loaders = open_data(root, NAME, 3, holdout=3, workers=2)  # the same in loading processes
    parallel = list(loaders.train_batches(4, torch.Generator().manual_seed(1), CPU))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, parallel, strict=True))
    other = [labels_of(data.train_batches(4, torch.Generator().manual_seed(s), CPU))
             for s in range(2, 6)]  # fmt: skip
    assert any(o != labels_of(first) for o in other)
    _, held = data.inputs("holdout")
    # every training image is either held out or trained on, never both
    trained = sorted(labels_of(first))
    assert sorted(trained + held.tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    x, y = data.tensors("val", 4)
    assert x.shape == (4, 3, 224, 224) and len(y) == 4


def test_a_holdout_that_leaves_nothing_to_train_on_is_refused(root):
    data = open_data(root, NAME, 3, holdout=12)
    with pytest.raises(ImageFolderError, match="set dataset.holdout"):
        list(data.train_batches(4, torch.Generator(), CPU))


def test_evaluation_alone_does_not_need_the_training_folder(root, tmp_path):
    (tmp_path / "valonly").mkdir()
    (root / "val").rename(tmp_path / "valonly" / "val")
    data = open_data(tmp_path / "valonly", NAME, 3)
    loader, labels = data.inputs("val", 4)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ImageFolderError, match=r"valonly/train does not exist; expected"):
        list(data.train_batches(4, torch.Generator(), CPU))


def test_a_data_file_keeps_its_validation_split():
    splits = build("mnist1d", train=30, val=20, test=10, seed=0)
    data = TensorData(splits)
    assert data.selection_split == "val" and data.train_size == 30
    x, y = data.tensors("test", 4)
    assert torch.equal(x, splits.x["test"][:4])


def test_swag_fine_tuning_and_its_bma_run_on_an_image_folder(root, tmp_path):
    def stand_in(name, cache):
        return timm.create_model(name, pretrained=False, num_classes=3)

    checkpoint = download(NAME, tmp_path / "cache", tmp_path / "c.safetensors", fetch=stand_in)
    solution, posterior = tmp_path / "swag.safetensors", tmp_path / "post.safetensors"
    finetune(["--checkpoint", str(checkpoint), "--data", str(root), "--holdout", "3",
              "--optimizer", "swag", "--epochs", "2", "--batch-size", "4", "--swag-rank", "2",
              "--swag-start-epoch", "1", "--swag-collect-every", "1", "--device", "cpu",
              "--out", str(solution), "--posterior", str(posterior)])  # fmt: skip
    info = checkpoint_info(solution)
    assert info.model == NAME and info.backward_passes == 2 * 3  # 9 images, batch 4
    common = ["--checkpoint", str(solution), "--posterior", str(posterior), "--data", str(root),
              "--members", "2", "--seeds", "0", "--split", "val", "--batch-size", "4",
              "--device", "cpu"]  # fmt: skip
    bma([*common, "--out", str(tmp_path / "bma.npz")])
    bma([*common, "--dtype", "bfloat16", "--out", str(tmp_path / "bf16.npz")])
    with np.load(tmp_path / "bma.npz") as f, np.load(tmp_path / "bf16.npz") as g:
        assert f["log_probs"].shape == (2, 6, 3)
        assert f["labels"].tolist() == [0, 0, 1, 1, 2, 2]
        assert np.isfinite(f["log_probs"]).all()
        # bfloat16 forwards: the same draws, close to FP32 but not equal (autocast is applied)
        np.testing.assert_allclose(g["log_probs"], f["log_probs"], atol=0.1, rtol=0.1)
        assert not np.array_equal(g["log_probs"], f["log_probs"])


def test_training_stages_do_not_offer_a_reduced_precision(capsys):
    with pytest.raises(SystemExit):
        finetune(["--checkpoint", "c", "--data", "d", "--out", "o", "--dtype", "bfloat16"])
    assert "unrecognized arguments: --dtype bfloat16" in capsys.readouterr().err


def test_a_subset_of_imagenet_classes_trains_and_evaluates_with_its_true_labels(tmp_path):
    """A paper-profile data folder may hold a subset of ImageNet-1k (Imagenette's 10 classes):
    training, holdout and validation images keep their ImageNet-1k indices, never 0..k-1."""
    from lpe.data.images import imagenet_wnids

    wnids = imagenet_wnids()
    chosen = [5, 400, 999]
    for split, per_class in (("train", 4), ("val", 2)):
        image_folder(tmp_path / "subset" / split, 3, per_class=per_class, size=24)
        for c, index in enumerate(chosen):  # rename n0000000c to the class's WordNet id
            (tmp_path / "subset" / split / f"n{c:08d}").rename(
                tmp_path / "subset" / split / wnids[index]
            )
    data = open_data(tmp_path / "subset", NAME, 1000, holdout=3)
    trained = labels_of(data.train_batches(4, torch.Generator().manual_seed(0), CPU))
    _, held = data.inputs("holdout")
    _, val = data.inputs("val")
    assert sorted(trained + held.tolist()) == [5] * 4 + [400] * 4 + [999] * 4
    assert sorted(val.tolist()) == [5, 5, 400, 400, 999, 999]
