"""Building blocks of the fast-ensembling methods: cyclic schedules, CSGLD noise, BatchEnsemble."""

import math

import pytest
import torch

from lpe.data.datasets import build
from lpe.methods.batchensemble import BatchEnsembleLinear, batch_ensemble, member_log_probs
from lpe.methods.csgld import add_langevin_noise, noise_std
from lpe.methods.sse import CyclicSchedule
from lpe.models.factory import create_model


def test_a_cyclic_schedule_restarts_where_configured_and_ends_each_cycle_at_its_minimum():
    schedule = CyclicSchedule(total_steps=40, cycles=4, lr=0.1)
    lrs = [schedule.lr_at(t) for t in range(40)]
    starts = [t for t in range(1, 40) if lrs[t] > lrs[t - 1]]
    assert starts == [10, 20, 30]  # restarts exactly at the cycle boundaries
    assert all(lrs[t] == pytest.approx(0.1) for t in (0, 10, 20, 30))
    ends = [t for t in range(40) if schedule.cycle_end(t)]
    assert ends == [9, 19, 29, 39]
    for end in ends:  # the minimum of each cycle is its last step
        cycle = lrs[end - 9 : end + 1]
        assert min(cycle) == lrs[end] and lrs[end] < 0.01
    assert lrs[5] == pytest.approx(0.05)  # half way down the cosine


def test_csgld_samples_only_after_the_exploration_fraction():
    schedule = CyclicSchedule(total_steps=20, cycles=2, lr=0.1, exploration=0.8)
    assert [t for t in range(20) if schedule.sampling(t)] == [8, 9, 18, 19]
    assert not any(CyclicSchedule(20, 2, 0.1).sampling(t) for t in range(20))  # SSE: never


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"total_steps": 40, "cycles": 3, "lr": 0.1}, "3 cycles do not divide"),
        ({"total_steps": 40, "cycles": 4, "lr": 0.1, "exploration": 1.5}, "exploration"),
        ({"total_steps": 40, "cycles": 0, "lr": 0.1}, "cycles and steps must be >= 1"),
    ],
)
def test_bad_cycles_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CyclicSchedule(**kwargs)


def test_langevin_noise_has_the_variance_its_temperature_implies():
    lr, temperature, n = 0.01, 0.5, 1000
    p = torch.zeros(200_000)
    add_langevin_noise([p], lr, temperature, n, torch.Generator().manual_seed(0))
    expected = math.sqrt(2 * lr * temperature / n)
    assert p.std().item() == pytest.approx(expected, rel=0.01)
    assert abs(p.mean().item()) < 4 * expected / math.sqrt(len(p))
    q = torch.zeros(10)
    add_langevin_noise([q], lr, 0.0, n, torch.Generator().manual_seed(0))
    assert torch.equal(q, torch.zeros(10))  # temperature 0: plain SGD


def test_a_negative_temperature_is_refused():
    with pytest.raises(ValueError, match="csgld.temperature must be >= 0"):
        noise_std(0.1, -1.0, 100)


def test_batch_ensemble_with_all_fast_weights_at_one_equals_the_shared_model():
    model = create_model("vit_mini_t", 10, (1, 1, 40), seed=0).eval()
    x = build("mnist1d", train=10, val=10, test=12, seed=0).x["test"]
    with torch.no_grad():
        expected = torch.log_softmax(model(x), dim=-1)
    ensemble = batch_ensemble(model, members=3)
    assert sum(isinstance(m, BatchEnsembleLinear) for m in ensemble.modules()) == 2 * 4 + 1
    out = member_log_probs(ensemble, 3, x)
    assert out.shape == (3, 12, 10)
    for k in range(3):
        torch.testing.assert_close(out[k], expected, rtol=1e-5, atol=1e-5)


def test_each_batch_ensemble_member_is_the_rank_one_scaled_weight_plus_its_own_bias():
    # member k computes x @ (W * (s_k r_k^T))^T + b_k (Wen et al., 2020), on its own chunk
    gen = torch.Generator().manual_seed(0)
    layer = BatchEnsembleLinear(torch.nn.Linear(5, 3), members=4)
    with torch.no_grad():
        for p in (layer.r, layer.s, layer.bias):
            p.copy_(torch.randn(p.shape, generator=gen))
    x = torch.randn(4 * 2, 6, 5, generator=gen)  # 4 chunks of 2 examples, 6 tokens each
    out = layer(x).reshape(4, 2, 6, 3)
    for k in range(4):
        weight = layer.weight * torch.outer(layer.s[k], layer.r[k])
        expected = x.reshape(4, 2, 6, 5)[k] @ weight.T + layer.bias[k]
        torch.testing.assert_close(out[k], expected)


def test_batch_ensemble_members_differ_with_random_sign_fast_weights():
    model = create_model("vit_mini_t", 10, (1, 1, 40), seed=0)
    ensemble = batch_ensemble(model, 2, generator=torch.Generator().manual_seed(0), init="signs")
    x = build("mnist1d", train=10, val=10, test=8, seed=0).x["test"]
    out = member_log_probs(ensemble, 2, x)
    assert not torch.allclose(out[0], out[1])


def test_batch_ensemble_refuses_a_batch_that_does_not_split_into_members():
    layer = BatchEnsembleLinear(torch.nn.Linear(4, 3), members=3)
    with pytest.raises(ValueError, match="must hold 3 equal chunks"):
        layer(torch.zeros(4, 4))


def test_batch_ensemble_micro_batches_give_the_whole_batch_gradient():
    from lpe.methods.batchensemble import BatchEnsembleSettings, BatchEnsembleSgd
    from lpe.training.loop import Plan

    splits = build("mnist1d", train=12, val=10, test=10, seed=0)
    x, y = splits.x["train"], splits.y["train"]
    grads = {}
    for micro in (0, 5):  # 12 examples: chunks of 5, 5 and 2
        model = batch_ensemble(create_model("vit_mini_t", 10, (1, 1, 40), seed=0), 3,
                               generator=torch.Generator().manual_seed(0), init="gaussian",
                               std=0.1)  # fmt: skip
        method = BatchEnsembleSgd(
            BatchEnsembleSettings(members=3, micro_batch=micro), Plan(1, 12, 0)
        )
        method.begin(model, Plan(1, 12, 0), len(y), torch.device("cpu"))
        loss, passes = method.backward(model, x, y)
        assert passes == 3  # one backward pass per member
        grads[micro] = (loss, [p.grad.clone() for p in model.parameters()])
    assert grads[5][0] == pytest.approx(grads[0][0], rel=1e-6)
    for whole, chunked in zip(grads[0][1], grads[5][1], strict=True):
        torch.testing.assert_close(chunked, whole, rtol=1e-4, atol=1e-6)
