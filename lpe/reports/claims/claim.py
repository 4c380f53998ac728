"""A claim of the paper and its checks: the verdict from the decided checks, its Markdown.

A claim whose statement has several parts ("grows with model size *and* as precision drops") is
decided part by part: each part's verdict comes from its own checks, and the claim is
"reproduced" only when every part is. A check within noise still leans one way (``Check.leaning``);
the report counts those that lean against the claim, so that an undecided part whose numbers all
go the other way is not read as support.
"""

from __future__ import annotations

from dataclasses import dataclass

from lpe.core.checks import Check


def verdict_of(checks: list[Check]) -> str:
    """From the decided checks only; "undecided (within noise)" when every check is within noise."""
    held = sum(c.outcome == "holds" for c in checks)
    failed = sum(c.outcome == "fails" for c in checks)
    if held + failed == 0:
        return "undecided (within noise)"
    if failed == 0:
        return "reproduced"
    return "partially reproduced" if held else "not reproduced"


def counts(checks: list[Check]) -> str:
    """``4 of 4 decided checks hold; 2 within noise, 2 leaning against``."""
    held = sum(c.outcome == "holds" for c in checks)
    decided = held + sum(c.outcome == "fails" for c in checks)
    within = [c for c in checks if c.outcome == "within noise"]
    against = sum(c.leaning == "against" for c in within)
    # the same words whatever the counts: another rounding moves numbers, not the sentence
    return (
        f"{held} of {decided} decided checks hold; {len(within)} within noise, "
        f"{against} leaning against"
    )


@dataclass
class Claim:
    number: int
    statement: str
    checks: list[Check]
    note: str = ""
    basis: str = ""  # what the verdict rests on, when it is less than every trained model
    parts: tuple[str, ...] = ()  # the statement's parts, each decided on its own checks

    def count(self, outcome: str) -> int:
        return sum(c.outcome == outcome for c in self.checks)

    def leaning_against(self) -> int:
        """Checks within noise whose margins lean against the claim."""
        return sum(c.outcome == "within noise" and c.leaning == "against" for c in self.checks)

    def part_checks(self, part: str) -> list[Check]:
        return [c for c in self.checks if c.claim_part == part]

    def part_verdicts(self) -> dict[str, str]:
        """Each part's verdict (empty for a claim of one part)."""
        unassigned = [c.text for c in self.checks if self.parts and c.claim_part not in self.parts]
        if unassigned:  # a check of no declared part would be left out of the verdict
            raise ValueError(f"claim {self.number}: checks of no part {self.parts}: {unassigned}")
        return {part: verdict_of(self.part_checks(part)) for part in self.parts}

    @property
    def verdict(self) -> str:
        """One part: from its decided checks. Several: "reproduced" only when every part is,
        "partially reproduced" when at least one part is (fully or partly), else "not
        reproduced" when a part is, else "undecided"; each part's verdict follows in brackets
        (always: another rounding may move a part's verdict, never the sentence around it)."""
        by_part = self.part_verdicts()
        if not by_part:
            return verdict_of(self.checks)
        verdicts = set(by_part.values())
        if len(verdicts) == 1:
            overall = next(iter(verdicts))
        elif verdicts & {"reproduced", "partially reproduced"}:
            overall = "partially reproduced"
        else:
            overall = "not reproduced" if "not reproduced" in verdicts else verdict_of([])
        listed = "; ".join(f"{part}: {verdict}" for part, verdict in by_part.items())
        return f"{overall} ({listed})"

    def markdown(self) -> str:
        lines = [
            f"## Claim {self.number}: {self.statement}",
            "",
            f"**Verdict: {self.verdict}** ({counts(self.checks)})"
            + (f"; it rests on {self.basis}" if self.basis else ""),
            "",
        ]
        if self.parts:
            lines += [
                f"- part *{part}*: **{verdict}** ({counts(self.part_checks(part))})"
                for part, verdict in self.part_verdicts().items()
            ] + [""]
        lines += [check.markdown() for check in self.checks]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines) + "\n"
