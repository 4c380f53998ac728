import ivon
import pytest
import torch

from lpe.methods.ivon import IvonPosterior


def trained_ivon(steps=20):
    torch.manual_seed(0)  # ivon-opt draws its weight noise from the global generator
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    optimizer = ivon.IVON(model.parameters(), lr=0.05, ess=200, hess_init=0.5, beta2=0.9)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g)
    for _ in range(steps):
        with optimizer.sampled_params(train=True):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model, optimizer


def test_the_posterior_is_read_from_the_optimizer_state():
    model, optimizer = trained_ivon()
    post = IvonPosterior.from_optimizer(optimizer, model)
    (group,) = optimizer.param_groups
    expected_std = 1 / (group["ess"] * (group["hess"] + group["weight_decay"])).sqrt()
    torch.testing.assert_close(post.std, expected_std)
    assert not torch.allclose(group["hess"], torch.full_like(group["hess"], 0.5))  # it learned
    torch.testing.assert_close(
        post.mean, torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    )


def test_draws_differ_from_the_mean_by_the_scale_the_optimizer_implies():
    model, optimizer = trained_ivon()
    post = IvonPosterior.from_optimizer(optimizer, model)
    g = torch.Generator().manual_seed(2)
    draws = torch.stack([post.sample(g) for _ in range(3000)])
    z = (draws - post.mean) / post.std
    assert abs(z.mean().item()) < 0.01
    assert abs(z.std().item() - 1) < 0.01
    # and IVON's own sampling during training has the same spread, per weight
    own = []
    with torch.random.fork_rng():
        torch.manual_seed(3)
        for _ in range(1000):
            with optimizer.sampled_params():
                own.append(torch.nn.utils.parameters_to_vector(model.parameters()).clone())
    ratio = torch.stack(own).std(0) / post.std
    assert abs(ratio.mean().item() - 1) < 0.02


def test_an_effective_sample_size_of_zero_is_refused():
    with pytest.raises(ValueError, match=r"ivon.ess \(effective sample size\) must be > 0"):
        IvonPosterior(torch.zeros(3), torch.ones(3), ess=0, weight_decay=1e-4)


def test_the_hessian_ratio_says_how_far_the_posterior_moved_from_its_start():
    model, optimizer = trained_ivon()
    post = IvonPosterior.from_optimizer(optimizer, model)
    assert post.hess_init == 0.5
    moved = post.hessian_moved()
    ratio = post.hess / 0.5
    assert moved["median_ratio"] == pytest.approx(ratio.median().item(), rel=1e-6)
    assert moved["p10_ratio"] <= moved["median_ratio"] <= moved["p90_ratio"]
    # with beta2 = 1 the estimate never moves: every ratio is 1
    _, frozen = trained_ivon(steps=0)
    still = IvonPosterior.from_optimizer(frozen, model).hessian_moved()
    assert still == {"p10_ratio": 1.0, "median_ratio": 1.0, "p90_ratio": 1.0}
