"""A check: a margin (positive on a claim's side) against its noise band, with three outcomes.

It holds above the band, fails below minus the band and is "within noise" in between; a margin
of NaN fails (nothing to decide on). The claims report (``lpe.reports.claims``) and the apply
tool's verdicts on a user's model (``lpe.evaluation.verdicts``) decide with it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """One comparison: ``margin`` > 0 is the claim's side, decided only outside ``+-band``.

    A compound check (claim 5's budgets, claim 2's steps) has several ``parts``; it holds when
    every part holds, fails when any part fails, else is within noise. ``claim_part`` names the
    part of its claim's statement that it checks (claim 2's "size" or "precision"): a claim with
    several parts is decided part by part (``lpe.reports.claims.claim``).
    """

    text: str
    parts: tuple[tuple[float, float], ...]  # (margin, band) each
    claim_part: str = ""

    @classmethod
    def of(cls, text: str, margin: float, noise: float, claim_part: str = "") -> Check:
        return cls(text, ((float(margin), float(noise)),), claim_part)

    @property
    def outcome(self) -> str:
        outcomes = {outcome_of(margin, noise) for margin, noise in self.parts}
        if "fails" in outcomes or not self.parts:
            return "fails"
        return "holds" if outcomes == {"holds"} else "within noise"

    @property
    def leaning(self) -> str:
        """Which way the margins lean, decided or not: "for" the claim when every part's margin
        is positive (as "holds" needs every part), else "against"."""
        return "for" if self.parts and all(m > 0 for m, _ in self.parts) else "against"

    def markdown(self) -> str:
        shown = "; ".join(f"margin {m:+.5f} vs band ±{b:.5f}" for m, b in self.parts)
        # the leaning is printed for every check (a decided one leans its own way), so that a
        # check moving in or out of its band changes words, not the line's shape
        return f"- **{self.outcome}, leaning {self.leaning}**: {self.text} [{shown}]"


def outcome_of(margin: float, noise: float) -> str:
    if margin != margin:  # NaN: nothing to decide on
        return "fails"
    if margin > noise:
        return "holds"
    return "fails" if margin < -noise else "within noise"
