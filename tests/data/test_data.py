import pytest
import torch

from lpe.core.artifacts import ArtifactError
from lpe.data.datasets import build, load_splits, save_splits


def test_mnist1d_is_generated_locally_with_requested_sizes():
    splits = build("mnist1d", train=30, val=20, test=15, seed=0)
    assert [len(splits.y[s]) for s in ("train", "val", "test")] == [30, 20, 15]
    assert splits.x["train"].shape == (30, 1, 1, 40)
    assert splits.x["test"].dtype == torch.float32
    assert splits.num_classes == 10
    assert set(splits.y["train"].tolist()) <= set(range(10))


def test_mnist1d_is_seeded():
    a = build("mnist1d", train=20, val=10, test=10, seed=1)
    b = build("mnist1d", train=20, val=10, test=10, seed=1)
    c = build("mnist1d", train=20, val=10, test=10, seed=2)
    assert torch.equal(a.x["test"], b.x["test"])
    assert not torch.equal(a.x["test"], c.x["test"])


def test_splits_do_not_overlap():
    s = build("mnist1d", train=40, val=20, test=20, seed=0)
    rows = {tuple(r.flatten().tolist()) for split in s.x.values() for r in split}
    assert len(rows) == 80


def test_unknown_dataset_names_the_registered_ones():
    with pytest.raises(ValueError, match="registered: mnist1d"):
        build("cifar", train=1, val=1, test=1, seed=0)


def test_split_file_round_trips_and_truncation_is_refused(tmp_path):
    splits = build("mnist1d", train=20, val=10, test=10, seed=0)
    path = tmp_path / "d.npz"
    save_splits(path, splits)
    loaded = load_splits(path)
    for s in ("train", "val", "test"):
        assert torch.equal(loaded.x[s], splits.x[s]) and torch.equal(loaded.y[s], splits.y[s])
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ArtifactError, match="d.npz is truncated or corrupted"):
        load_splits(path)
    assert not list(tmp_path.glob("*.tmp-*")), "atomic writes leave no temporary file"
