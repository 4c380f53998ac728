import pytest
import torch

from lpe.methods.swag import SwagCollector, SwagError, SwagPosterior


def toy_weights(n=30, p=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    scales = torch.linspace(0.1, 2.0, p, dtype=torch.float64)  # weights that move unequally
    return torch.randn(n, p, generator=g, dtype=torch.float64) * scales


def test_moments_equal_the_closed_form():
    weights = toy_weights()
    collector = SwagCollector(rank=5)
    for w in weights:
        collector.collect(w)
    post = collector.posterior()
    assert post.snapshots == 30 and post.rank == 5
    torch.testing.assert_close(post.mean, weights.mean(0).float())
    torch.testing.assert_close(post.variance, weights.var(0, unbiased=False).float())
    # deviations: the last 5 snapshots minus the running mean at the time they were collected
    expected = torch.stack([weights[i] - weights[: i + 1].mean(0) for i in range(25, 30)])
    torch.testing.assert_close(post.deviations, expected.float())


def test_draws_fall_in_their_own_95_percent_region_95_percent_of_the_time():
    weights = toy_weights(n=12, p=5)
    collector = SwagCollector(rank=4)
    for w in weights:
        collector.collect(w)
    post = collector.posterior()
    cov = post.covariance(scale=0.5).double()
    precision = torch.linalg.inv(cov)
    g = torch.Generator().manual_seed(1)
    draws = torch.stack([post.sample(g, scale=0.5) for _ in range(4000)]).double()
    d = draws - post.mean.double()
    mahalanobis = torch.einsum("ni,ij,nj->n", d, precision, d)
    # chi-square CDF with 5 degrees of freedom: the regularised lower incomplete gamma
    cdf = torch.special.gammainc(torch.tensor(2.5, dtype=torch.float64), mahalanobis / 2)
    share = (cdf <= 0.95).double().mean().item()
    sd = (0.95 * 0.05 / 4000) ** 0.5
    assert abs(share - 0.95) < 4 * sd, share
    # and the draws' covariance is the covariance SWAG claims
    # (each entry within 5 of its sampling sd, sqrt((S_ii S_jj + S_ij^2) / n) for Gaussians)
    v = cov.diag()
    entry_sd = ((v[:, None] * v[None, :] + cov.square()) / len(draws)).sqrt()
    assert ((torch.cov(draws.T) - cov).abs() <= 5 * entry_sd).all()


def test_same_generator_seed_gives_the_same_draw():
    post = SwagPosterior(torch.zeros(3), torch.ones(3), torch.randn(4, 3), snapshots=4)
    a = post.sample(torch.Generator().manual_seed(5))
    b = post.sample(torch.Generator().manual_seed(5))
    c = post.sample(torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_a_rank_above_the_snapshots_is_refused_with_the_setting_named():
    collector = SwagCollector(rank=20)
    for w in toy_weights(n=7):
        collector.collect(w)
    with pytest.raises(SwagError, match="swag.rank = 20 but only 7 snapshots"):
        collector.posterior()


def test_rank_below_two_is_refused():
    with pytest.raises(SwagError, match="swag.rank must be >= 2"):
        SwagCollector(rank=1)
