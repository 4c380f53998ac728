"""Verdict words in noise mode: a check may move between a decided outcome and "within noise"
(another draw inside its band), never from "holds" to "fails"; a claims report's verdicts only
with its checks."""

from __future__ import annotations

import re
from pathlib import Path

from lpe.core.selection import NOISE_SE
from lpe.tools.compare.tolerances import Report

# The words a verdict is written in (claims, checks, the convergence gate). In noise mode a check
# may move between "holds" or "fails" and "within noise" (another draw inside its band), never
# from "holds" to "fails" beyond the checkpoint's noise; the other words follow from the checks.
# ("undecided (within noise)" ends in a bracket, where no word boundary follows: it is matched
# first, without one)
VERDICT = re.compile(
    r"\bundecided \(within noise\)|\b(?:partially reproduced|not reproduced|reproduced"
    r"|within noise|leaning for|leaning against|holds|fails|passes|FAILS|yes|no|NO)\b"
)


MARGIN = re.compile(r"margin ([-+]?\d+\.\d+) vs band ±(\d+\.\d+)")


def _judged(parts: list[tuple[float, float]], widen: float) -> str:
    """A check's outcome with every band widened by ``widen`` (as ``lpe.reports.claims.Check``)."""
    outcomes = {
        "holds" if m > b + widen else "fails" if m < -(b + widen) else "within noise"
        for m, b in parts
    }
    if "fails" in outcomes:
        return "fails"
    return "holds" if outcomes == {"holds"} else "within noise"


def _words(ref_line: str, act_line: str) -> str:
    return f"{', '.join(VERDICT.findall(ref_line))} -> {', '.join(VERDICT.findall(act_line))}"


def _check_moved(where: str, ref_line: str, act_line: str, report: Report) -> bool | None:
    """A check line (``[margin m vs band b]``) whose verdict word moved (noise mode), judged
    again with its bands widened by NOISE_SE checkpoint units of a margin: it may not go from
    "holds" to "fails" or back. True: accepted, False: failed, None: not a check line."""
    ref_parts = [(float(m), float(b)) for m, b in MARGIN.findall(ref_line)]
    act_parts = [(float(m), float(b)) for m, b in MARGIN.findall(act_line)]
    if not ref_parts or len(ref_parts) != len(act_parts):
        return None
    widen = NOISE_SE * report.checkpoint.margin(report.checkpoint.models(ref_line))
    judged = {_judged(ref_parts, widen), _judged(act_parts, widen)}
    if judged == {"holds", "fails"}:
        report.problems.append(
            f"{where}: a check moved beyond noise ({_words(ref_line, act_line)}; with bands "
            f"widened by {widen:.3g} for the checkpoint it still holds in one and fails in the "
            f"other)\n    reference:   {ref_line}\n    regenerated: {act_line}"
        )
        return False
    report.verdicts_moved.append(
        f"{where}: {_words(ref_line, act_line)} (a check: within noise with its bands widened "
        f"by {widen:.3g} for the checkpoint)"
    )
    return True


def _verdicts_moved(name, moved, checks_moved: int, report: Report) -> None:
    """Verdict words moved off check lines (noise mode). In a claims report they follow from
    its checks (a claim's verdict, its counts): they may move only where a check moved within
    noise. Elsewhere (the gate's yes/no, a tie) they follow from the numbers on their line,
    which are judged as numbers. Accepted moves are listed, not failed."""
    for where, ref_line, act_line in moved:
        if Path(name).name.startswith("claims") and not checks_moved:
            report.problems.append(
                f"{where}: a verdict moved ({_words(ref_line, act_line)}) while no check of the "
                f"report moved\n    reference:   {ref_line}\n    regenerated: {act_line}"
            )
        else:
            report.verdicts_moved.append(f"{where}: {_words(ref_line, act_line)}")
