import math

import pytest
import torch

from lpe.core import metrics


def random_log_probs(m=4, n=50, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(m, n, c, generator=g) * 2
    labels = torch.randint(0, c, (n,), generator=g)
    return torch.log_softmax(logits, dim=-1), labels


def test_nll_of_one_member_equals_torch_cross_entropy():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(200, 10, generator=g) * 3
    labels = torch.randint(0, 10, (200,), generator=g)
    lp = torch.log_softmax(logits, dim=-1)
    expected = torch.nn.functional.cross_entropy(logits.double(), labels).item()
    assert metrics.nll(lp[None], labels) == pytest.approx(expected, rel=1e-6)


def test_ensemble_nll_averages_probabilities_not_logits():
    p1 = torch.tensor([[0.9, 0.1]])
    p2 = torch.tensor([[0.5, 0.5]])
    lp = torch.stack([p1.log(), p2.log()])  # (2, 1, 2)
    assert metrics.nll(lp, torch.tensor([0])) == pytest.approx(-math.log(0.7))


def test_ensemble_loss_equals_average_loss_minus_ambiguity():
    for seed in range(5):
        lp, y = random_log_probs(seed=seed)
        s = metrics.score(lp, y)
        assert s["ens_loss"] == pytest.approx(s["avg_loss"] - s["ambiguity"], abs=1e-12)
        assert s["ambiguity"] >= 0
        assert s["ens_loss"] == s["nll"]


def test_single_member_has_zero_ambiguity():
    lp, y = random_log_probs(m=1)
    assert metrics.ambiguity(lp, y) == pytest.approx(0.0, abs=1e-12)


def test_err_in_percent():
    lp = torch.log(torch.tensor([[[0.6, 0.4], [0.3, 0.7], [0.8, 0.2], [0.1, 0.9]]]))
    assert metrics.err(lp, torch.tensor([0, 0, 0, 1])) == pytest.approx(25.0)


def test_ece_hand_computed():
    # confidences 0.9 (correct), 0.9 (wrong), 0.6 (correct), 0.55 (correct)
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.45, 0.55]])
    labels = torch.tensor([0, 1, 0, 1])
    # bin (0.8667, 0.9333]: conf 0.9, acc 0.5 -> 2/4 * 0.4 = 0.2
    # bin (0.5333, 0.6]: conf 0.6 and 0.55, acc 1 -> 2/4 * |0.575 - 1| = 0.2125
    assert metrics.ece(probs.log()[None], labels) == pytest.approx(0.4125)


def test_ece_is_zero_when_perfectly_calibrated():
    # confidence 0.75, and exactly 3 of 4 points correct, all in one bin
    probs = torch.tensor([[0.75, 0.25]] * 4, dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1])
    assert metrics.ece(probs.log()[None], labels) == pytest.approx(0.0, abs=1e-12)


def test_brier_hand_computed():
    probs = torch.tensor([[0.8, 0.2], [0.5, 0.5]])
    labels = torch.tensor([0, 1])
    expected = ((0.2**2 + 0.2**2) + (0.5**2 + 0.5**2)) / 2
    assert metrics.brier(probs.log()[None], labels) == pytest.approx(expected)


def test_ece_uses_fifteen_bins():
    # confidences 0.62 (right) and 0.68 (wrong): two bins of width 1/15, one bin of width 1/10
    probs = torch.tensor([[0.62, 0.38], [0.68, 0.32]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    fifteen = (abs(0.62 - 1) + abs(0.68 - 0)) / 2  # 0.53
    assert metrics.ece(probs.log()[None], labels) == pytest.approx(fifteen)
    assert metrics.ece(probs.log()[None], labels, bins=10) == pytest.approx(abs(0.65 - 0.5))


def test_the_running_ensemble_is_the_ensemble_of_its_members():
    from lpe.core.metrics import RunningLogMean, ensemble_log_probs

    members = torch.log_softmax(
        torch.randn(5, 7, 3, generator=torch.Generator().manual_seed(0)), -1
    )
    running = RunningLogMean()
    with pytest.raises(ValueError, match="no members"):
        running.value()
    for lp in members:
        running.add(lp)
    assert running.count == 5
    assert torch.allclose(running.value().double(), ensemble_log_probs(members), atol=1e-6)
