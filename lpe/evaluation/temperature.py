"""Temperature scaling (Guo et al., 2017), the calibration control of every ensemble gain.

One temperature ``T`` per model or ensemble: the ensemble's prediction (the log of its averaged
member probabilities, :func:`lpe.core.metrics.ensemble_log_probs`; one member for a single model) is
divided by ``T`` and renormalised. ``T`` minimises the NLL on held-out data (the data's selection
split: MNIST-1D's validation split, an image folder's holdout), never on the evaluated split.

The fit is a golden-section search over the inverse temperature ``beta = 1 / T``: the NLL of
``softmax(beta * z)`` is convex in ``beta`` (a log-sum-exp minus a linear term), so a 1-D search
finds its minimum to the tolerance on ``[1 / T_MAX, 1 / T_MIN]``, in float64, deterministically
(no optimizer state, no line-search heuristics; scipy's bounded search would do the same and is
not a dependency of the suite).
"""

from __future__ import annotations

import math

import torch

from lpe.core.metrics import ensemble_log_probs

T_MIN, T_MAX = 0.05, 20.0  # the searched range; a fit at an end means the data wants more
TOLERANCE = 1e-7  # on beta; the NLL is flat to ~1e-14 there
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def scaled(log_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """``(M, N, C) -> (1, N, C)``: the ensemble's log-probabilities at ``temperature``."""
    z = ensemble_log_probs(log_probs) / temperature
    return torch.log_softmax(z, dim=-1)[None]


def _nll(z: torch.Tensor, labels: torch.Tensor, beta: float) -> float:
    """Mean NLL of ``softmax(beta * z)`` (``z``: (N, C) float64)."""
    scaled_z = beta * z
    true = scaled_z.gather(-1, labels.long()[:, None]).squeeze(-1)
    return float((torch.logsumexp(scaled_z, dim=-1) - true).mean())


def at_bound(temperature: float) -> bool:
    """Whether a fitted temperature sits at an end of the searched range ``[T_MIN, T_MAX]``: the
    held-out data wanted a more extreme one, and the scaled NLL is not at its minimum."""
    return any(abs(temperature - end) <= 1e-4 * end for end in (T_MIN, T_MAX))


def bound_warning(what: str, temperature: float) -> str | None:
    """A warning for a temperature fit at the search's bound (:func:`at_bound`), else None."""
    if not at_bound(temperature):
        return None
    return (
        f"warning: {what}'s temperature was fit at the search's bound (T = {temperature:.3g}; "
        f"the range is {T_MIN:g}-{T_MAX:g}): the held-out data wants a more extreme one (too few "
        "held-out images, or predictions far from calibrated on them), so its temperature-scaled "
        "row is not at its minimum"
    )


def fit_temperature(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature that minimises the NLL of the ensemble of ``log_probs`` (M, N, C) on
    ``labels`` (N,): fit these on held-out data only."""
    if log_probs.ndim != 3 or log_probs.shape[1] != labels.shape[0] or labels.numel() == 0:
        raise ValueError(
            f"fit_temperature needs log-probs (M, N, C) and N labels, got {tuple(log_probs.shape)}"
            f" and {tuple(labels.shape)}"
        )
    z = ensemble_log_probs(log_probs)
    lo, hi = 1.0 / T_MAX, 1.0 / T_MIN
    a, b = hi - GOLDEN * (hi - lo), lo + GOLDEN * (hi - lo)
    fa, fb = _nll(z, labels, a), _nll(z, labels, b)
    while hi - lo > TOLERANCE:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - GOLDEN * (hi - lo)
            fa = _nll(z, labels, a)
        else:
            lo, a, fa = a, b, fb
            b = lo + GOLDEN * (hi - lo)
            fb = _nll(z, labels, b)
    return 1.0 / ((lo + hi) / 2.0)
