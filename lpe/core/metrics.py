"""Ensemble metrics from member log-probabilities.

Shape convention, members first: ``log_probs`` is ``(M, N, C)`` (members, test points, classes),
float log-softmax outputs; ``labels`` is ``(N,)`` int. The ensemble prediction is the average of
the members' probabilities, ``p = mean_m p_m``, computed as ``logsumexp_m log p_m - log M`` for
stability. Metrics are computed in float64.

Column names are fixed: ``nll``, ``err`` (percent), ``ece`` (15 equal-width bins), ``brier``,
``avg_loss`` (mean member NLL), ``ambiguity`` and ``ens_loss`` (= ``nll``); by Jensen,
``ens_loss = avg_loss - ambiguity`` exactly, with ambiguity >= 0.
"""

from __future__ import annotations

import math

import torch

ECE_BINS = 15


def ensemble_log_probs(log_probs: torch.Tensor) -> torch.Tensor:
    """``(M, N, C) -> (N, C)``: log of the mean of member probabilities."""
    lp = log_probs.double()
    return torch.logsumexp(lp, dim=0) - math.log(lp.shape[0])


class RunningLogMean:
    """:func:`ensemble_log_probs` accumulated one member at a time (memory: one ``(N, C)``
    tensor, in the members' dtype): ``add`` each member's log-probabilities, ``value()`` is the
    log of the mean member probability so far. The running part of the evaluation spine's one
    accumulator (``lpe.evaluation.spine.Accumulator``)."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.count = 0

    def add(self, log_probs: torch.Tensor) -> None:
        self.total = log_probs if self.total is None else torch.logaddexp(self.total, log_probs)
        self.count += 1

    def value(self) -> torch.Tensor:
        if self.total is None:
            raise ValueError("an ensemble of no members")
        return self.total - math.log(self.count)


def _true_class(log_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(..., N, C), (N,) -> (..., N)``: log-probability of each point's label."""
    index = labels.long().expand(*log_probs.shape[:-1]).unsqueeze(-1)
    return log_probs.gather(-1, index).squeeze(-1)


def nll(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Ensemble negative log-likelihood, mean over points."""
    return float(-_true_class(ensemble_log_probs(log_probs), labels).mean())


def err(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Error rate of the ensemble's argmax, in percent."""
    pred = ensemble_log_probs(log_probs).argmax(dim=-1)
    return 100.0 * float((pred != labels.long()).double().mean())


def ece(log_probs: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> float:
    """Expected calibration error of the ensemble with ``bins`` equal-width confidence bins.

    A point with confidence c goes to bin ``ceil(c * bins) - 1`` (bins are ``(lo, hi]``), the
    convention of torchmetrics and of Guo et al. (2017).
    """
    probs = ensemble_log_probs(log_probs).exp()
    confidence, pred = probs.max(dim=-1)
    correct = (pred == labels.long()).double()
    index = (torch.ceil(confidence * bins) - 1).clamp(0, bins - 1).long()
    total = torch.zeros(bins, dtype=torch.float64)
    gap = torch.zeros(bins, dtype=torch.float64)
    total.index_add_(0, index, torch.ones_like(confidence))
    gap.index_add_(0, index, confidence - correct)
    # sum over bins of |B|/N * |mean(conf - acc)| = sum |sum_B (conf - correct)| / N
    return float(gap.abs().sum() / confidence.numel())


def brier(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Brier score of the ensemble: mean over points of ``sum_k (p_k - 1[y=k])^2``."""
    probs = ensemble_log_probs(log_probs).exp()
    onehot = torch.nn.functional.one_hot(labels.long(), probs.shape[-1]).double()
    return float(((probs - onehot) ** 2).sum(dim=-1).mean())


def avg_loss(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over members of each member's NLL."""
    return float(-_true_class(log_probs.double(), labels).mean())


def ambiguity(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over points and members of ``log p(y|x) - log p_m(y|x)`` (>= 0 by Jensen).

    Computed from its own definition, not as a difference of the other two metrics, so that the
    identity ``ens_loss = avg_loss - ambiguity`` is a check and not a tautology.
    """
    member = _true_class(log_probs.double(), labels)  # (M, N)
    ensemble = _true_class(ensemble_log_probs(log_probs), labels)  # (N,)
    return float((ensemble.unsqueeze(0) - member).mean())


def score(log_probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """All metrics of one ensemble, keyed by their fixed column names."""
    ens = nll(log_probs, labels)
    return {
        "nll": ens,
        "err": err(log_probs, labels),
        "ece": ece(log_probs, labels),
        "brier": brier(log_probs, labels),
        "avg_loss": avg_loss(log_probs, labels),
        "ambiguity": ambiguity(log_probs, labels),
        "ens_loss": ens,
    }
