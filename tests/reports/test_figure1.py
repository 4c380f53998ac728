import pytest
import torch

from lpe.data.datasets import build
from lpe.reports.fig1 import compute, expected_share, nll, train, two_features


@pytest.fixture(scope="module")
def splits():
    return build("mnist1d", train=800, val=10, test=10, seed=0)


def test_the_trained_weights_are_the_minimum_of_the_loss(splits):
    features, labels = two_features(splits, 500)
    assert set(labels.unique().tolist()) == {0.0, 1.0}
    w = train(features, labels).requires_grad_(True)
    nll(w, features, labels).backward()
    assert w.grad.abs().max() < 1e-6


def test_rtn_is_the_nearest_grid_point_and_bsr_shares_match_bernoulli(splits):
    table, scale, features, labels = compute(splits, bits=4, grid_range=2.0, draws=4000,
                                             points=500, seed=0)  # fmt: skip
    trained = table[table["point"] == "trained"][["w1", "w2"]].to_numpy()[0]
    rtn = table[table["point"] == "rtn"][["w1", "w2"]].to_numpy()[0]
    bsr = table[table["point"].str.startswith("bsr")]
    assert 2 <= len(bsr) <= 4  # only the corners of the trained weights' grid cell
    corners = bsr[["w1", "w2"]].to_numpy()
    distances = ((corners - trained) ** 2).sum(1)
    assert ((rtn - trained) ** 2).sum() == pytest.approx(distances.min())
    assert bsr["count"].sum() == 4000
    for row in bsr.itertuples():
        sd = (row.expected_share * (1 - row.expected_share) / 4000) ** 0.5
        assert abs(row.share - row.expected_share) < 4 * sd + 1e-9, row.point
    assert bsr["expected_share"].sum() == pytest.approx(1.0)
    assert (abs(corners - trained) < scale + 1e-9).all()  # every draw is a neighbour


def test_expected_share_is_the_product_of_the_two_bernoulli_probabilities():
    w, scale = torch.tensor([1.25, -0.5]), 1.0  # u = (1.25, -0.5)
    assert expected_share(w, scale, (2, 0)) == pytest.approx(0.25 * 0.5)
    assert expected_share(w, scale, (1, -1)) == pytest.approx(0.75 * 0.5)


def test_a_range_below_one_is_refused(splits):
    with pytest.raises(ValueError, match="figure1.range must be >= 1"):
        compute(splits, bits=4, grid_range=0.5, draws=10, points=100, seed=0)
