"""A claim of the paper and its checks: the verdict from the decided checks, its Markdown."""

from __future__ import annotations

from dataclasses import dataclass

from lpe.core.checks import Check


@dataclass
class Claim:
    number: int
    statement: str
    checks: list[Check]
    note: str = ""
    basis: str = ""  # what the verdict rests on, when it is less than every trained model

    def count(self, outcome: str) -> int:
        return sum(c.outcome == outcome for c in self.checks)

    @property
    def verdict(self) -> str:
        """From the decided checks only; "undecided" when every check is within noise."""
        held, failed = self.count("holds"), self.count("fails")
        if held + failed == 0:
            return "undecided (within noise)"
        if failed == 0:
            return "reproduced"
        return "partially reproduced" if held else "not reproduced"

    def markdown(self) -> str:
        held, failed = self.count("holds"), self.count("fails")
        lines = [
            f"## Claim {self.number}: {self.statement}",
            "",
            f"**Verdict: {self.verdict}** ({held} of {held + failed} decided checks hold; "
            f"{self.count('within noise')} within noise)"
            + (f"; it rests on {self.basis}" if self.basis else ""),
            "",
        ]
        lines += [check.markdown() for check in self.checks]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines) + "\n"
