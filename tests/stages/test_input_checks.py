"""Data and predictions files are checked up front; a bad one is refused naming the file."""

import numpy as np
import pytest
from helpers import SMALL as SIZES
from helpers import run_predict

from lpe.core.artifacts import ArtifactError
from lpe.data.datasets import build, save_splits
from lpe.stages.score import main as score


def write_data(path, **changes):
    """A data file as lpe.stages.data writes it, with some arrays replaced."""
    save_splits(path, build("mnist1d", **SIZES))
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays.update(changes)
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        ({"x_test": np.zeros((30, 1, 1, 41), np.float32)}, r"x_test examples are \(1, 1, 41\)"),
        ({"x_test": np.zeros((30, 1, 1, 40), np.float64)}, "x_test is torch.float64"),
        ({"y_test": np.full(30, 10, np.int64)}, r"y_test has labels outside 0..9 \(10..10\)"),
        ({"y_test": np.zeros(29, np.int64)}, r"expected int64 \(30,\), one label per example"),
        ({"y_test": np.zeros(30, np.float32)}, "y_test is torch.float32"),
    ],
)
def test_a_bad_data_file_is_refused_naming_it(tmp_path, checkpoint, change, message):
    data = write_data(tmp_path / "d.npz", **change)
    with pytest.raises(ArtifactError, match=rf"data file {data}: .*{message}"):
        run_predict(checkpoint, data, tmp_path / "p.npz")
    assert not (tmp_path / "p.npz").exists()


def test_a_data_file_of_another_width_than_the_model_is_refused(tmp_path, checkpoint):
    splits = {f"x_{s}": np.zeros((n, 1, 1, 50), np.float32)
              for s, n in (("train", 20), ("val", 10), ("test", 30))}  # fmt: skip
    data = write_data(tmp_path / "d.npz", **splits)
    with pytest.raises(ArtifactError, match=r"examples of shape \(1, 1, 50\).* takes \(1, 1, 40\)"):
        run_predict(checkpoint, data, tmp_path / "p.npz")


@pytest.fixture
def predictions(tmp_path, checkpoint):
    data = write_data(tmp_path / "d.npz")
    run_predict(checkpoint, data, tmp_path / "fp32.npz")
    with np.load(tmp_path / "fp32.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda run: run.pop("bits"), "missing bits"),
        (lambda run: run.update(log_probs=run["log_probs"] + 0.5), "not normalized"),
        (lambda run: run.update(log_probs=np.zeros((1, 30, 10), np.float32)), "not normalized"),
        (lambda run: run.update(member_bits=np.zeros(0, np.int64)), "memory would be miscounted"),
        (lambda run: run.update(labels=run["labels"] + 10), "labels outside 0..9"),
        (lambda run: run.update(labels=run["labels"][:5]), r"expected integers \(30,\)"),
        (lambda run: run.update(method=np.asarray("bogus")), "unknown method 'bogus'"),
    ],
)
def test_a_bad_predictions_file_is_refused_naming_it(tmp_path, predictions, change, message):
    change(predictions)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **predictions)
    with pytest.raises(ArtifactError, match=rf"predictions file {bad}: .*{message}"):
        score(["--preds", str(bad), "--out", str(tmp_path / "s.csv")])
    assert not (tmp_path / "s.csv").exists()
