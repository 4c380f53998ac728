"""Choices made on the validation split among configured candidates (light: reports use it)."""

from __future__ import annotations

import math
from collections.abc import Sequence

NOISE_SE = 2.0  # a noise band is this many standard errors of the mean over the seeds

# How bma.model's choice file (lpe.stages.select_model) opens its line when the rule chose another
# model than the configured one, and the words that say whether the rule's tie band covers it:
# the claims report repeats the line, lpe.tools.compare judges a move by it.
DISAGREEMENT = "**bma.model: the rule chooses "
WITHIN_TIE_BAND = "within the rule's tie band"


def band(sd: float, n: int) -> float:
    """The noise band of a mean over ``n`` seeds with spread ``sd``: NOISE_SE standard errors."""
    return NOISE_SE * sd / math.sqrt(n) if n > 1 and sd == sd else 0.0


def joint_band(*bands: float) -> float:
    """The band of a difference (or sum) of independent noisy quantities."""
    return math.sqrt(sum(b * b for b in bands))


def at_an_end(setting: float, candidates: Sequence[float]) -> bool:
    """Whether a choice among several candidates is the smallest or the largest of them: the
    best setting may then lie beyond the list, and the reports say so."""
    return len(set(candidates)) > 1 and setting in (min(candidates), max(candidates))
