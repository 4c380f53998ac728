"""Choices made on the validation split among configured candidates (light: reports use it)."""

from __future__ import annotations

from collections.abc import Sequence


def at_an_end(setting: float, candidates: Sequence[float]) -> bool:
    """Whether a choice among several candidates is the smallest or the largest of them: the
    best setting may then lie beyond the list, and the reports say so."""
    return len(set(candidates)) > 1 and setting in (min(candidates), max(candidates))
